package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit"

	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
)

// The bundle `make bundle` builds (bundles/mcp-pdp.tar.gz from policies/),
// served over HTTP, is what `pdp serve` loads from a policy.path URL: the
// server reports its revision and decides with it.
func TestServeLoadsBuiltBundleOverHTTP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()

	// Built as `make bundle` builds it, with a revision to recognise it by.
	const revision = "bundle-serve-test"
	archive := filepath.Join(dir, "bundles", "mcp-pdp.tar.gz")
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"bundle", "build", "../../policies", "-o", archive, "--revision", revision}, &out, &errOut); code != 0 {
		t.Fatalf("pdp bundle build: exit %d: %s%s", code, out.String(), errOut.String())
	}

	var fetched atomic.Int32
	bundles := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/bundles/mcp-pdp.tar.gz" {
			http.NotFound(w, r)
			return
		}
		fetched.Add(1)
		http.ServeFile(w, r, archive)
	}))
	defer bundles.Close()

	iss := devissuertest.New(t, "ES256")
	listen := freeLoopbackAddr(t)
	const resource = "https://mcp.example.com/mcp"
	cfgFile := filepath.Join(dir, "pdp.yaml")
	cfg := fmt.Sprintf(`listen: %s
data_dir: %s
resources:
  - uri: %s
    issuer: %s
policy:
  path: %s/bundles/mcp-pdp.tar.gz
audit:
  enabled: false
`, listen, filepath.Join(dir, "data"), resource, iss.URL, bundles.URL)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr testkit.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfgFile}, &stdout, &stderr) }()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("pdp serve: exit %d\n%s", code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("pdp serve did not stop")
		}
	}()

	base := "http://" + listen
	client := &http.Client{Timeout: 10 * time.Second}
	var ready map[string]any
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case code := <-done:
			t.Fatalf("pdp serve exited with %d before it was ready\n%s", code, stderr.String())
		default:
		}
		if status, body, err := getJSON(client, base+"/readyz"); err == nil && status == http.StatusOK {
			ready = body
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pdp serve not ready after 60s\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	if ready["policy_revision"] != revision || !strings.HasSuffix(fmt.Sprint(ready["policy_source"]), "/bundles/mcp-pdp.tar.gz") {
		t.Fatalf("/readyz: %v, want policy_revision %q from %s", ready, revision, bundles.URL)
	}
	if fetched.Load() == 0 {
		t.Fatal("the bundle server was never asked for the bundle")
	}

	// The default policy of the bundle decides: an anonymous call to a
	// public tool of the demo catalog is allowed, a step-up tool is not.
	for _, tc := range []struct {
		tool   string
		allow  bool
		reason string
	}{
		{"lookup_product", true, "public access"},
		{"generate_qr_url", false, "authorization required"},
	} {
		req := fmt.Sprintf(`{"resource": %q, "message": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": %q, "arguments": {}}}}`, resource, tc.tool)
		resp, err := client.Post(base+"/v1/decide", "application/json", strings.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var d struct {
			Allow          bool   `json:"allow"`
			Reason         string `json:"reason"`
			PolicyRevision string `json:"policy_revision"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: HTTP %d %s", tc.tool, resp.StatusCode, raw)
		}
		if d.Allow != tc.allow || d.Reason != tc.reason || d.PolicyRevision != revision {
			t.Fatalf("%s: %+v, want allow=%v reason=%q policy_revision=%q", tc.tool, d, tc.allow, tc.reason, revision)
		}
	}
}

// freeLoopbackAddr returns a loopback address with a port that was free a
// moment ago: `pdp serve` reports its address only in its log.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func getJSON(client *http.Client, url string) (int, map[string]any, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, body, nil
}
