package natsembed

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// The embedded server's users: it requires authentication, with one NKey
// user per role, whose seeds live in <data_dir>/nats-users/<role>.nk
// (0600). Any local process that cannot read them cannot publish into or
// read from the audit.
const (
	// RolePDP is the PDP's own user: it publishes audit events and uses
	// its key-value buckets.
	RolePDP = "pdp"
	// RoleReader serves `pdp audit`: it reads the audit and the
	// revocations, and publishes nothing into them.
	RoleReader = "reader"
	// RoleAdmin may do everything (`pdp revoke`, operators' tools).
	RoleAdmin = "admin"
)

// Roles lists every role.
var Roles = []string{RolePDP, RoleReader, RoleAdmin}

// UsersDir is the directory, inside the data directory, of the seeds.
const UsersDir = "nats-users"

// SeedFile is the path of role's NKey seed under dataDir.
func SeedFile(dataDir, role string) string {
	return filepath.Join(dataDir, UsersDir, role+".nk")
}

// EnsureUserSeeds returns the public NKey of each role, creating the
// seeds that do not exist yet (the directory 0700, each file 0600). A
// seed file that exists but is not a user seed is an error naming it.
func EnsureUserSeeds(dataDir string) (map[string]string, error) {
	dir := filepath.Join(dataDir, UsersDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsembed: create %s: %w", dir, err)
	}
	out := make(map[string]string, len(Roles))
	for _, role := range Roles {
		path := SeedFile(dataDir, role)
		seed, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			kp, kerr := nkeys.CreateUser()
			if kerr != nil {
				return nil, fmt.Errorf("natsembed: create the %s user: %w", role, kerr)
			}
			if seed, kerr = kp.Seed(); kerr != nil {
				return nil, fmt.Errorf("natsembed: create the %s user: %w", role, kerr)
			}
			err = writeExclusive(path, seed)
		}
		if err != nil {
			return nil, fmt.Errorf("natsembed: seed of the %s user: %w", role, err)
		}
		kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
		if err != nil {
			return nil, fmt.Errorf("natsembed: %s is not an NKey seed (remove it to create a new one): %w", path, err)
		}
		pub, err := kp.PublicKey()
		if err != nil || !nkeys.IsValidPublicUserKey(pub) {
			return nil, fmt.Errorf("natsembed: %s is not a user seed (remove it to create a new one)", path)
		}
		out[role] = pub
	}
	return out, nil
}

// writeExclusive creates path (0600, failing if it exists) with data,
// fsynced.
func writeExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
