package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/server"
)

func runToken(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: pdp token [flags]\n\nMints an access token signed by the dev issuer of a running `pdp serve --dev`\nand prints it alone on stdout.")
		fs.PrintDefaults()
	}
	dataDir := fs.String("data-dir", config.DefaultDataDir, "data directory of the dev server")
	scope := fs.String("scope", "", "space-delimited scopes, e.g. \"qr:generate\"")
	sub := fs.String("sub", "alice", "subject (the user)")
	client := fs.String("client-id", "demo", "client_id (the agent or app)")
	aud := fs.String("aud", "", "audience (default: the dev server's resource)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	jkt := fs.String("jkt", "", "binds the token to a DPoP key: its cnf.jkt, the key's RFC 7638 SHA-256 thumbprint (base64url)")
	if code, ok := parseFlagsOnly(fs, args, stdout, stderr); !ok {
		return code
	}
	iss, err := devissuer.Load(filepath.Join(*dataDir, server.DevIssuerFile))
	if err != nil {
		fmt.Fprintf(stderr, "pdp token: %v\n(is `pdp serve --dev` running with --data-dir %s?)\n", err, *dataDir)
		return 1
	}
	audience := *aud
	if audience == "" {
		b, err := os.ReadFile(filepath.Join(*dataDir, server.DevResourceFile))
		if err != nil {
			fmt.Fprintf(stderr, "pdp token: %v (pass --aud)\n", err)
			return 1
		}
		audience = strings.TrimSpace(string(b))
	}
	mo := devissuer.MintOptions{
		Subject: *sub, ClientID: *client, Audience: []string{audience},
		Scopes: strings.Fields(*scope), TTL: *ttl,
	}
	if *jkt != "" {
		mo.Extra = map[string]any{"cnf": map[string]any{"jkt": *jkt}}
	}
	tok, err := iss.Mint(mo)
	if err != nil {
		fmt.Fprintln(stderr, "pdp token:", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
