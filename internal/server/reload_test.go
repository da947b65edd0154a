package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/policysource"
	"github.com/mcp-pdp/pdp/internal/testkit"
)

const polEvalResource = "https://mcp.example.com/mcp"

// polRawBundle writes files into a bundle without compiling them (so that it
// may be broken), signed with key when key is not "".
func polRawBundle(t *testing.T, files map[string]string, revision, key string) []byte {
	t.Helper()
	b := bundle.Bundle{Manifest: bundle.Manifest{Revision: revision}, Data: map[string]any{}}
	for name, content := range files {
		switch {
		case strings.HasSuffix(name, ".rego"):
			b.Modules = append(b.Modules, bundle.ModuleFile{URL: "/" + name, Path: "/" + name, Raw: []byte(content)})
		case name == "data.json":
			if err := json.Unmarshal([]byte(content), &b.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.Manifest.Init()
	if key != "" {
		if err := b.GenerateSignature(bundle.NewSigningConfig(key, "RS256", ""), "default", true); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := bundle.NewWriter(&out).UseModulePath(true).DisableFormat(true).Write(b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// polTestApp builds the PDP (no audit, no listener) and serves its API
// from an httptest server; logs go to logs when it is not nil.
func polTestApp(t *testing.T, pc config.Policy, logs ...*testkit.SyncBuffer) (base string, a *Server) {
	t.Helper()
	iss := devissuertest.New(t, "ES256")
	cfg := &config.Config{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(),
		Resources: []config.Resource{{URI: polEvalResource, Issuer: iss.URL}},
		Policy:    pc,
	}
	off := false
	cfg.Audit.Enabled = &off
	cfg.ApplyDefaults()
	log := slog.New(slog.DiscardHandler)
	if len(logs) > 0 {
		log = slog.New(slog.NewTextHandler(logs[0], nil))
	}
	a, err := New(context.Background(), cfg, Options{NoListener: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = a.Close()
	})
	return srv.URL, a
}

func polPollEvery(d time.Duration) *config.Duration {
	c := config.Duration(d)
	return &c
}

var polPublicCall = []byte(`{"resource": "` + polEvalResource + `", "message": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "anything"}}}`)

func polDecideOnce(client *http.Client, base string) (testkit.Decision, error) {
	return testkit.PostDecide(client, base, polPublicCall)
}

func polMetricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, series+" ") {
			var v float64
			fmt.Sscanf(strings.TrimPrefix(line, series+" "), "%g", &v)
			return v
		}
	}
	return 0
}

// TestReloadUnderLoad swaps signed bundles from a bundle server while
// clients keep deciding, interleaved with every kind of bad bundle: each
// bad one is refused, the last good policy stays active, and every single
// decision is answered by one whole policy (rules, data and revision from
// the same bundle).
func TestReloadUnderLoad(t *testing.T) {
	priv, pub := testkit.RSAKeyFiles(t)
	otherPriv, _ := testkit.RSAKeyFiles(t)
	srv := testkit.NewBundleServer(t, polRawBundle(t, testkit.MarkedPolicy("a"), "rev-a", priv))
	logs := &testkit.SyncBuffer{}
	base, a := polTestApp(t, config.Policy{
		Path: srv.BundleURL(), PollInterval: polPollEvery(5 * time.Millisecond),
		Verification: config.Verification{KeyFile: pub},
	}, logs)
	if rev := a.Engine().Policy().Revision(); rev != "rev-a" {
		t.Fatalf("start-up revision %q", rev)
	}

	// Load: clients decide continuously and record every answer.
	ctx, stop := context.WithCancel(context.Background())
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		answers  = map[string]int{} // revision -> count
		failures []string
		total    atomic.Int64
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for ctx.Err() == nil {
				r, err := polDecideOnce(client, base)
				total.Add(1)
				mu.Lock()
				name := strings.TrimPrefix(r.Revision, "rev-")
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case r.Status != http.StatusOK || !r.Allow:
					failures = append(failures, fmt.Sprintf("HTTP %d allow=%v reason=%q", r.Status, r.Allow, r.Reason))
				case r.Reason != "rules-"+name+"/data-"+name:
					failures = append(failures, fmt.Sprintf("mixed decision: revision %s, reason %q", r.Revision, r.Reason))
				default:
					answers[r.Revision]++
				}
				mu.Unlock()
			}
		}()
	}
	seen := func(rev string) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return answers[rev] > 0 }
	}
	errorsSoFar := func() float64 { return polMetricValue(t, base, `pdp_policy_reloads_total{result="error"}`) }

	testkit.WaitFor(t, "answers from rev-a", seen("rev-a"))
	bad := []struct {
		name string
		log  string // the clear error in the log
		set  func()
	}{
		{"does not compile", "rego_unsafe_var_error", func() {
			srv.Set("ok", polRawBundle(t, map[string]string{"authz.rego": "package mcp.authz\n\ndecision := {\"allow\": x}\n"}, "rev-broken", priv))
		}},
		{"invalid catalog", `is not an access class`, func() {
			files := testkit.MarkedPolicy("x")
			files["data.json"] = `{"marker": "data-x", "mcp": {"catalogs": {"c": {"tools": {"t": {"access": "publik"}}}}}}`
			srv.Set("ok", polRawBundle(t, files, "rev-invalid", priv))
		}},
		{"no decision rule", "no rule defines data.mcp.authz.decision", func() {
			srv.Set("ok", polRawBundle(t, map[string]string{"authz.rego": "package mcp.authz\n\nallow := true\n"}, "rev-nodecision", priv))
		}},
		{"unsigned", "unsigned bundle refused", func() { srv.Set("ok", polRawBundle(t, testkit.MarkedPolicy("u"), "rev-unsigned", "")) }},
		{"wrongly signed", "does not verify with the configured key", func() { srv.Set("ok", polRawBundle(t, testkit.MarkedPolicy("w"), "rev-wrong", otherPriv)) }},
		{"server error", "HTTP 500", func() { srv.Set("500", nil) }},
		{"garbage", "not a bundle", func() { srv.Set("garbage", nil) }},
	}
	good := []string{"b", "c", "d"}
	for i, g := range good {
		for _, b := range bad {
			before, logged := errorsSoFar(), strings.Count(logs.String(), b.log)
			b.set()
			// Its own error, not a late report of the previous one.
			testkit.WaitFor(t, b.name+" refused", func() bool {
				return strings.Count(logs.String(), b.log) > logged && errorsSoFar() > before
			})
			if polMetricValue(t, base, "pdp_policy_last_reload_successful") != 0 {
				t.Fatalf("%s: last reload reported successful", b.name)
			}
			want := "rev-a"
			if i > 0 {
				want = "rev-" + good[i-1]
			}
			if rev := a.Engine().Policy().Revision(); rev != want {
				t.Fatalf("after %s the active policy is %q, want the last good %q", b.name, rev, want)
			}
		}
		srv.Set("ok", polRawBundle(t, testkit.MarkedPolicy(g), "rev-"+g, priv))
		testkit.WaitFor(t, "answers from rev-"+g, seen("rev-"+g))
	}
	// Keep load on the final policy for a moment, then stop.
	n := total.Load()
	testkit.WaitFor(t, "more decisions", func() bool { return total.Load() > n+50 })
	stop()
	wg.Wait()

	for _, b := range bad {
		if !strings.Contains(logs.String(), b.log) {
			t.Errorf("%s: no %q in the log", b.name, b.log)
		}
	}
	if len(failures) > 0 {
		t.Fatalf("%d failed or mixed decisions of %d, e.g. %v", len(failures), total.Load(), failures[:min(5, len(failures))])
	}
	for rev := range answers {
		switch rev {
		case "rev-a", "rev-b", "rev-c", "rev-d":
		default:
			t.Fatalf("a decision came from the refused bundle %q", rev)
		}
	}
	if got := polMetricValue(t, base, `pdp_policy_info{revision="rev-d"}`); got != 1 {
		t.Fatalf("pdp_policy_info{revision=rev-d} = %v", got)
	}
	if got := polMetricValue(t, base, `pdp_policy_reloads_total{result="success"}`); got < 3 {
		t.Fatalf("pdp_policy_reloads_total{result=success} = %v", got)
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), `"policy_revision":"rev-d"`) {
		t.Fatalf("/readyz = %s", raw)
	}
	t.Logf("%d decisions across %v", total.Load(), answers)
}

// A policy directory is watched: edits are swapped in, a broken edit is
// refused with file:line, and the fix is swapped in.
func TestReloadDirectory(t *testing.T) {
	dir := t.TempDir()
	for name, content := range testkit.MarkedPolicy("a") {
		testkit.WriteFile(t, filepath.Join(dir, name), content)
	}
	base, a := polTestApp(t, config.Policy{Path: dir, PollInterval: polPollEvery(5 * time.Millisecond)})
	client := &http.Client{Timeout: 30 * time.Second}
	reason := func() string {
		r, err := polDecideOnce(client, base)
		if err != nil {
			t.Fatal(err)
		}
		return r.Reason
	}
	if reason() != "rules-a/data-a" {
		t.Fatalf("start: %q", reason())
	}
	testkit.WriteFile(t, filepath.Join(dir, "data.json"), `{"marker": "data-b"}`)
	testkit.WaitFor(t, "data edit", func() bool { return reason() == "rules-a/data-b" })
	active := a.Engine().Policy().Revision()

	before := polMetricValue(t, base, `pdp_policy_reloads_total{result="error"}`)
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), "package mcp.authz\n\ndecision := {\"allow\": true, \"reason\": y}\n")
	testkit.WaitFor(t, "broken edit refused", func() bool {
		return polMetricValue(t, base, `pdp_policy_reloads_total{result="error"}`) > before
	})
	if a.Engine().Policy().Revision() != active || reason() != "rules-a/data-b" {
		t.Fatal("a broken edit replaced the active policy")
	}
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), testkit.MarkedPolicy("c")["authz.rego"])
	testkit.WaitFor(t, "fixed edit", func() bool { return reason() == "rules-c/data-b" })
}

// At start-up there is no last good policy: a policy that cannot be served
// fails start-up with an error that says why and where.
func TestStartupRefusals(t *testing.T) {
	priv, pub := testkit.RSAKeyFiles(t)
	_, otherPub := testkit.RSAKeyFiles(t)
	dir := func(files map[string]string) string {
		d := t.TempDir()
		for name, content := range files {
			testkit.WriteFile(t, filepath.Join(d, name), content)
		}
		return d
	}
	file := func(archive []byte) string {
		p := filepath.Join(t.TempDir(), "mcp.tar.gz")
		if err := policysource.WriteFileAtomic(p, archive); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		pc   config.Policy
		want string
	}{
		{"compile error", config.Policy{Path: dir(map[string]string{"authz.rego": "package mcp.authz\n\ndecision := {\"allow\": x}\n"})}, "authz.rego:3: rego_unsafe_var_error"},
		{"invalid catalog", config.Policy{Path: dir(map[string]string{
			"authz.rego": "package mcp.authz\n\ndecision := {\"allow\": false}\n",
			"data.yaml":  "mcp:\n  catalogs:\n    c:\n      tools:\n        t: {access: publik}\n",
		})}, `data.yaml:5: data.mcp.catalogs.c.tools.t.access: "publik" is not an access class`},
		{"unsigned bundle", config.Policy{Path: file(polRawBundle(t, testkit.MarkedPolicy("a"), "r", "")), Verification: config.Verification{KeyFile: pub}}, "unsigned bundle refused"},
		{"wrongly signed bundle", config.Policy{Path: file(polRawBundle(t, testkit.MarkedPolicy("a"), "r", priv)), Verification: config.Verification{KeyFile: otherPub}}, "does not verify"},
		{"verification without path", config.Policy{Verification: config.Verification{KeyFile: pub}}, "policy.path is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss := devissuertest.New(t, "ES256")
			cfg := &config.Config{DataDir: t.TempDir(), Resources: []config.Resource{{URI: polEvalResource, Issuer: iss.URL}}, Policy: tc.pc}
			off := false
			cfg.Audit.Enabled = &off
			cfg.ApplyDefaults()
			a, err := New(context.Background(), cfg, Options{NoListener: true})
			if err == nil {
				_ = a.Close()
				t.Fatal("start-up succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
