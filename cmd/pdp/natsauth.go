package main

import (
	"os"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/natsembed"
)

// withEmbeddedUser sets o to authenticate as role (natsembed.RoleReader
// for `pdp audit`, natsembed.RoleAdmin for `pdp revoke`) of a dev
// server's embedded NATS, whose seeds are in dataDir, unless credentials
// were given. A seed file that is not there leaves o as it is (an
// external NATS without authentication, or one set up otherwise).
func withEmbeddedUser(o *auditsink.ConnectOptions, dataDir, role string) {
	if o.CredsFile != "" || o.NKeySeedFile != "" {
		return
	}
	if seed := natsembed.SeedFile(dataDir, role); fileExists(seed) {
		o.NKeySeedFile = seed
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
