package natsembed

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureUserSeeds(t *testing.T) {
	dir := t.TempDir()
	first, err := EnsureUserSeeds(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(Roles) {
		t.Fatalf("%d users", len(first))
	}
	seen := map[string]bool{}
	for _, role := range Roles {
		fi, err := os.Stat(SeedFile(dir, role))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, want 0600", role, fi.Mode().Perm())
		}
		if seen[first[role]] {
			t.Fatalf("two roles share a key")
		}
		seen[first[role]] = true
	}
	if fi, _ := os.Stat(filepath.Join(dir, UsersDir)); fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", fi.Mode().Perm())
	}
	again, err := EnsureUserSeeds(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range Roles {
		if again[role] != first[role] {
			t.Fatalf("%s: a second start changed the key", role)
		}
	}
	if err := os.WriteFile(SeedFile(dir, RoleReader), []byte("not a seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureUserSeeds(dir); err == nil {
		t.Fatal("a broken seed file was accepted")
	}
}
