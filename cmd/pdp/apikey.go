package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"regexp"

	"github.com/mcp-pdp/pdp/internal/api"
)

// apiKeyPrefix marks mcp-pdp API keys so that secret scanners can find leaked ones.
const apiKeyPrefix = "pdpk_"

var pepName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}$`)

// newAPIKey returns a random key with 256 bits of entropy.
func newAPIKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return apiKeyPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

func runAPIKey(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp apikey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: pdp apikey [--name N]\n\nPrints a new random API key for a PEP (first line, alone) and the configuration\nsnippet with its SHA-256. The PDP stores only the hash; the key is not shown again.")
		fs.PrintDefaults()
	}
	name := fs.String("name", "pep", "the PEP's name, recorded as `pep` in audit events")
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "pdp apikey: unexpected argument %q\n", pos[0])
		return 2
	}
	if !pepName.MatchString(*name) {
		fmt.Fprintf(stderr, "pdp apikey: --name %q: use 1 to 64 characters of A-Z a-z 0-9 . _ : @ / -, starting with a letter or digit\n", *name)
		return 2
	}
	key, err := newAPIKey()
	if err != nil {
		fmt.Fprintln(stderr, "pdp apikey:", err)
		return 1
	}
	fmt.Fprintf(stdout, `%s

# Give the key above to the PEP %q; it sends it as
#   Authorization: Bearer <key>   or   X-PDP-API-Key: <key>
# Add this to the PDP configuration under auth.api_keys. To rotate a key, add
# the new one next to the old one under the same name, switch the PEP over,
# then remove the old entry.
auth:
  api_keys:
    - name: %s
      sha256: %s
`, key, *name, *name, api.HashAPIKey(key))
	return 0
}
