package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/server"
)

// tokenTimeout bounds `pdp token --url`'s request to the dev server.
const tokenTimeout = 10 * time.Second

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: pdp token [--scope S] [--resource URI] [--url URL | --data-dir DIR] [flags]

Mints an access token signed by the dev issuer of a running 'pdp serve --dev'
(or 'pdp gateway --dev') and prints it alone on stdout.

With --url (the dev server's base URL, e.g. http://127.0.0.1:8181) the server
mints it (POST /dev/mint, answered to this machine only): this works from any
directory. Without --url the issuer key is read from the data directory the
server writes (--data-dir, default .pdp-data in the current directory); when
there is none, http://`+config.DefaultListen+` is asked.

--resource picks the audience among the dev server's resources (default: the
first); --aud sets any audience, unchecked.

`)
		fs.PrintDefaults()
	}
	dataDir := fs.String("data-dir", config.DefaultDataDir, "data directory of the dev server")
	baseURL := fs.String("url", "", "base URL of the running dev server, e.g. http://"+config.DefaultListen+": it mints the token (no data directory needed)")
	scope := fs.String("scope", "", "space-delimited scopes, e.g. \"qr:generate\"")
	sub := fs.String("sub", "alice", "subject (the user)")
	client := fs.String("client-id", "demo", "client_id (the agent or app)")
	resource := fs.String("resource", "", "audience: one of the dev server's resources (default: its first)")
	aud := fs.String("aud", "", "audience, any value, unchecked (default: the dev server's resource)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	jkt := fs.String("jkt", "", "binds the token to a DPoP key: its cnf.jkt, the key's RFC 7638 SHA-256 thumbprint (base64url)")
	if code, ok := parseFlagsOnly(fs, args, stdout, stderr); !ok {
		return code
	}
	if *resource != "" && *aud != "" {
		fmt.Fprintln(stderr, "pdp token: give --resource (one of the server's) or --aud (any audience), not both")
		return 2
	}
	if *ttl == 0 || *ttl/time.Second == 0 {
		fmt.Fprintln(stderr, "pdp token: --ttl must be at least a second (or negative, for an expired token)")
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["url"] && set["data-dir"] {
		fmt.Fprintln(stderr, "pdp token: give --url or --data-dir, not both")
		return 2
	}
	mr := devissuer.MintRequest{
		Subject: *sub, ClientID: *client, Scope: strings.Join(strings.Fields(*scope), " "), Resource: *resource,
		TTLSeconds: int64(*ttl / time.Second), JKT: *jkt,
	}
	var tok string
	var err error
	switch {
	case *baseURL != "":
		tok, err = mintRemote(ctx, *baseURL, mr, *aud)
	default:
		tok, err = mintFromFile(*dataDir, mr, *aud)
		if errors.Is(err, os.ErrNotExist) && !set["data-dir"] {
			// No dev server was started from here: ask the default one.
			tok, err = mintRemote(ctx, "http://"+config.DefaultListen, mr, *aud)
			if err != nil {
				err = fmt.Errorf("%w\n(no %s here either: is `pdp serve --dev` running? Pass --url of the dev server, or --data-dir)", err, filepath.Join(*dataDir, server.DevIssuerFile))
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "pdp token:", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// mintFromFile mints with the issuer key a dev server wrote in dataDir;
// the audience is aud, else the resource (checked against the server's
// list), else the server's first resource.
func mintFromFile(dataDir string, mr devissuer.MintRequest, aud string) (string, error) {
	iss, err := devissuer.Load(filepath.Join(dataDir, server.DevIssuerFile))
	if err != nil {
		return "", fmt.Errorf("%w\n(is `pdp serve --dev` running with --data-dir %s? Or pass --url of the dev server)", err, dataDir)
	}
	audience := aud
	if audience == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, server.DevResourceFile))
		if err != nil {
			return "", fmt.Errorf("%w (pass --aud, or --url of the dev server)", err)
		}
		resources := strings.Fields(string(b))
		switch {
		case len(resources) == 0:
			return "", fmt.Errorf("%s names no resource (pass --aud)", filepath.Join(dataDir, server.DevResourceFile))
		case mr.Resource == "":
			audience = resources[0]
		case slices.Contains(resources, mr.Resource):
			audience = mr.Resource
		default:
			return "", fmt.Errorf("the dev server's resources are %s; --resource %s is not one of them (--aud sets any audience)", strings.Join(resources, ", "), mr.Resource)
		}
	}
	mo := devissuer.MintOptions{
		Subject: mr.Subject, ClientID: mr.ClientID, Audience: []string{audience},
		Scopes: strings.Fields(mr.Scope), TTL: time.Duration(mr.TTLSeconds) * time.Second,
	}
	if mr.JKT != "" {
		mo.Extra = map[string]any{"cnf": map[string]any{"jkt": mr.JKT}}
	}
	return iss.Mint(mo)
}

// mintRemote asks the dev server at base to mint. With aud (any
// audience) the server mints for its default resource and the audience is
// not its to check: the file path is the one for that, so aud needs it.
func mintRemote(ctx context.Context, base string, mr devissuer.MintRequest, aud string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--url %q: want the dev server's base URL, e.g. http://%s", base, config.DefaultListen)
	}
	if aud != "" {
		return "", errors.New("--aud needs the issuer key (--data-dir); with --url use --resource, one of the server's resources")
	}
	ctx, cancel := context.WithTimeout(ctx, tokenTimeout)
	defer cancel()
	out, err := devissuer.MintRemote(ctx, &http.Client{}, base, mr)
	var me *devissuer.MintError
	switch {
	case errors.As(err, &me) && me.Code == "invalid_target" && len(me.Resources) > 0:
		return "", fmt.Errorf("the dev server's resources are %s; --resource %s is not one of them", strings.Join(me.Resources, ", "), mr.Resource)
	case errors.As(err, &me) && me.Status == http.StatusNotFound:
		return "", fmt.Errorf("%s has no mint endpoint: is it a `pdp serve --dev` (of this version)?", base)
	case err != nil:
		return "", err
	}
	return out.AccessToken, nil
}
