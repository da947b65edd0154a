package server

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/testkit"
)

// TestBundleServerBehindAuth: a bundle URL on an https server with a
// private CA (policy.ca_file) that wants a bearer token
// (policy.bearer_token_file) and an API key header (policy.headers). The
// policy loads with all three; without the token the start fails with the
// server's refusal, and without the CA with a certificate error.
func TestBundleServerBehindAuth(t *testing.T) {
	bundle := polRawBundle(t, testkit.MarkedPolicy("a"), "rev-auth", "")
	var refused atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret-token" || r.Header.Get("X-Bundle-Key") != "k1" {
			refused.Add(1)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(bundle)
	}))
	ca := testkit.NewCA(t, "bundle CA")
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{ca.KeyPair(t, testkit.Leaf{CommonName: "bundles"})}}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	caFile, tokenFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token")
	testkit.WriteFile(t, caFile, string(ca.PEM()))
	testkit.WriteFile(t, tokenFile, "s3cret-token\n")
	noPoll := config.Duration(0)
	good := config.Policy{
		Path: srv.URL + testkit.BundlePath, PollInterval: &noPoll,
		CAFile: caFile, BearerTokenFile: tokenFile, Headers: map[string]string{"X-Bundle-Key": "k1"},
	}
	base, a := polTestApp(t, good)
	if rev := a.Engine().Policy().Revision(); rev != "rev-auth" {
		t.Fatalf("revision %q", rev)
	}
	r, err := polDecideOnce(&http.Client{Timeout: 30 * time.Second}, base)
	if err != nil || r.Reason != "rules-a/data-a" {
		t.Fatalf("decision %+v %v", r, err)
	}

	noToken := good
	noToken.BearerTokenFile = ""
	if err := startErr(t, noToken); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without the token: %v", err)
	}
	if refused.Load() == 0 {
		t.Fatal("the bundle server refused nothing")
	}
	noCA := good
	noCA.CAFile = ""
	if err := startErr(t, noCA); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: %v", err)
	}
	badToken := good
	badToken.BearerTokenFile = filepath.Join(dir, "missing")
	if err := startErr(t, badToken); err == nil || !strings.Contains(err.Error(), "policy.bearer_token_file") {
		t.Fatalf("missing token file: %v", err)
	}
}

// startErr builds a PDP with pc and returns the start-up error.
func startErr(t *testing.T, pc config.Policy) error {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	if err := cfg.Override(func(c *config.Config) {
		c.Resources = []config.Resource{{URI: polEvalResource, Issuer: "https://issuer.example"}}
		c.Policy = pc
		off := false
		c.Audit.Enabled = &off
	}); err != nil {
		t.Fatal(err)
	}
	s, err := New(t.Context(), cfg, Options{NoListener: true})
	if err == nil {
		_ = s.Close()
	}
	return err
}
