package policysource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/testkit"
)

func verification(t *testing.T, pub, alg, scope string) *bundle.VerificationConfig {
	t.Helper()
	vc, err := Verification(pub, "", alg, scope)
	if err != nil {
		t.Fatal(err)
	}
	return vc
}

func TestFetchKinds(t *testing.T) {
	priv, pub := testkit.RSAKeyFiles(t)
	dir := t.TempDir()
	writePolicy(t, dir, "dir")
	file := filepath.Join(t.TempDir(), "mcp.tar.gz")
	if err := WriteFileAtomic(file, build(t, "file", "rev-file", "")); err != nil {
		t.Fatal(err)
	}
	signedFile := filepath.Join(t.TempDir(), "mcp.tar.gz")
	if err := WriteFileAtomic(signedFile, build(t, "signed", "rev-signed", priv)); err != nil {
		t.Fatal(err)
	}
	srv := testkit.NewBundleServer(t, build(t, "url", "rev-url", priv))
	tests := []struct {
		name   string
		opts   Options
		kind   Kind
		marker string
	}{
		{"directory", Options{Path: dir}, KindDirectory, "dir"},
		{"bundle file", Options{Path: file}, KindFile, "file"},
		{"signed bundle file", Options{Path: signedFile, Verification: verification(t, pub, "RS256", "")}, KindFile, "signed"},
		{"signed bundle url", Options{Path: srv.BundleURL(), Verification: verification(t, pub, "RS256", "")}, KindURL, "url"},
		{"embedded", Options{FS: os.DirFS(dir)}, KindEmbedded, "dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if w.Kind() != tc.kind {
				t.Fatalf("kind = %s, want %s", w.Kind(), tc.kind)
			}
			u, err := w.Fetch(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if marker(u) != tc.marker {
				t.Fatalf("marker = %q, want %q", marker(u), tc.marker)
			}
			for _, m := range u.Bundle.Modules {
				if strings.HasSuffix(m.Path, "_test.rego") {
					t.Fatalf("test file %s is part of the served bundle", m.Path)
				}
			}
			// The bundle compiles into a servable policy.
			if _, err := decision.Prepare(context.Background(), u.Bundle, u.Source); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A bundle that is unsigned, signed with another key, changed after signing,
// or signed for another scope is refused with an error that says which.
func TestVerificationRefusals(t *testing.T) {
	priv, pub := testkit.RSAKeyFiles(t)
	otherPriv, _ := testkit.RSAKeyFiles(t)
	ecPriv, ecPub := testkit.ECKeyFiles(t)
	signed := build(t, "good", "r1", priv)

	// Tamper: the same .signatures.json over different data.
	tampered := rewriteTar(t, signed, "/data.json", []byte(`{"marker": "evil"}`))
	scoped := func() []byte {
		dir := t.TempDir()
		writePolicy(t, dir, "scoped")
		b, err := Build(context.Background(), BuildOptions{Paths: []string{dir}, SigningKey: priv, Scope: "write"})
		if err != nil {
			t.Fatal(err)
		}
		return b.Archive
	}()
	ecSigned := func() []byte {
		dir := t.TempDir()
		writePolicy(t, dir, "ec")
		b, err := Build(context.Background(), BuildOptions{Paths: []string{dir}, SigningKey: ecPriv, SigningAlg: "ES256"})
		if err != nil {
			t.Fatal(err)
		}
		return b.Archive
	}()

	tests := []struct {
		name    string
		archive []byte
		vc      *bundle.VerificationConfig
		want    string // "" = accepted
	}{
		{"signed with the configured key", signed, verification(t, pub, "RS256", ""), ""},
		{"unsigned", build(t, "unsigned", "r2", ""), verification(t, pub, "RS256", ""), "unsigned bundle refused"},
		{"signed with another key", build(t, "other", "r3", otherPriv), verification(t, pub, "RS256", ""), "does not verify"},
		{"changed after signing", tampered, verification(t, pub, "RS256", ""), "changed after the bundle was signed"},
		{"scope mismatch", scoped, verification(t, pub, "RS256", "read"), "scope"},
		{"scope match", scoped, verification(t, pub, "RS256", "write"), ""},
		{"EC key", ecSigned, verification(t, ecPub, "ES256", ""), ""},
		{"EC signature, RSA key configured", ecSigned, verification(t, pub, "RS256", ""), "does not verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The same verdict from a bundle file and from a bundle server.
			file := filepath.Join(t.TempDir(), "b.tar.gz")
			if err := WriteFileAtomic(file, tc.archive); err != nil {
				t.Fatal(err)
			}
			srv := testkit.NewBundleServer(t, tc.archive)
			for _, path := range []string{file, srv.BundleURL()} {
				w, err := New(Options{Path: path, Verification: tc.vc})
				if err != nil {
					t.Fatal(err)
				}
				u, err := w.Fetch(context.Background())
				switch {
				case tc.want == "" && err != nil:
					t.Fatalf("%s: refused: %v", path, err)
				case tc.want != "" && (err == nil || u != nil):
					t.Fatalf("%s: accepted, want a refusal mentioning %q", path, tc.want)
				case tc.want != "" && !strings.Contains(err.Error(), tc.want):
					t.Fatalf("%s: err = %v, want it to mention %q", path, err, tc.want)
				}
			}
		})
	}
}

// A signed bundle from a URL needs a key: OPA's downloader refuses a
// signature it cannot check. From a file, an unverified PDP ignores it.
func TestSignedBundleWithoutVerification(t *testing.T) {
	priv, _ := testkit.RSAKeyFiles(t)
	signed := build(t, "signed", "r1", priv)
	srv := testkit.NewBundleServer(t, signed)
	w, err := New(Options{Path: srv.BundleURL()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "no verification key is configured") {
		t.Fatalf("err = %v", err)
	}
	file := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := WriteFileAtomic(file, signed); err != nil {
		t.Fatal(err)
	}
	w, err = New(Options{Path: file})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := w.Fetch(context.Background()); err != nil || marker(u) != "signed" {
		t.Fatalf("file: %v %v", u, err)
	}
}

func TestVerificationKeyErrors(t *testing.T) {
	priv, pub := testkit.RSAKeyFiles(t)
	empty := filepath.Join(t.TempDir(), "empty")
	testkit.WriteFile(t, empty, "")
	tests := []struct {
		name, file, alg, want string
	}{
		{"private key given", priv, "RS256", "private key"},
		{"not PEM", empty, "RS256", "not a PEM"},
		{"missing file", filepath.Join(t.TempDir(), "nope.pem"), "RS256", "no such file"},
		{"bad algorithm", pub, "none", "not one of"},
		{"empty HMAC secret", empty, "HS256", "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verification(tc.file, "", tc.alg, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// The bundle server is polled with If-None-Match (304 answers deliver
// nothing), new revisions are delivered once, and a server that fails (500,
// garbage, an unsigned bundle) is reported each time without delivering
// anything, until a good bundle comes back.
func TestURLPolling(t *testing.T) {
	priv, pub := testkit.RSAKeyFiles(t)
	srv := testkit.NewBundleServer(t, build(t, "one", "r1", priv))
	w, err := New(Options{
		Path: srv.BundleURL(), Verification: verification(t, pub, "RS256", ""),
		Interval: 10 * time.Millisecond, MinRetry: 5 * time.Millisecond, MaxRetry: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := w.Fetch(context.Background())
	if err != nil || marker(u) != "one" || u.ETag == "" {
		t.Fatalf("fetch: %v %v", u, err)
	}
	ev := run(t, w)
	testkit.WaitFor(t, "a 304 Not Modified", func() bool { return srv.NotModified.Load() >= 2 })
	if n, _ := ev.counts(); n != 0 {
		t.Fatalf("%d updates for an unchanged bundle", n)
	}

	srv.Set("ok", build(t, "two", "r2", priv))
	testkit.WaitFor(t, "revision two", func() bool { return marker(ev.lastUpdate()) == "two" })

	for _, tc := range []struct{ mode, want string }{
		{"500", "HTTP 500"},
		{"garbage", "not a bundle"},
	} {
		_, errsBefore := ev.counts()
		srv.Set(tc.mode, nil)
		testkit.WaitFor(t, tc.mode+" reported", func() bool {
			_, errs := ev.counts()
			return errs > errsBefore && strings.Contains(ev.lastErr().Error(), tc.want)
		})
	}
	_, errsBefore := ev.counts()
	srv.Set("ok", build(t, "unsigned", "r3", ""))
	testkit.WaitFor(t, "unsigned refused", func() bool {
		_, errs := ev.counts()
		return errs > errsBefore && strings.Contains(ev.lastErr().Error(), "unsigned bundle refused")
	})
	if m := marker(ev.lastUpdate()); m != "two" {
		t.Fatalf("a failing server delivered %q", m)
	}

	srv.Set("ok", build(t, "three", "r3", priv))
	testkit.WaitFor(t, "revision three", func() bool { return marker(ev.lastUpdate()) == "three" })
	// The same content under a new revision is delivered too.
	srv.Set("ok", build(t, "three", "r4", priv))
	testkit.WaitFor(t, "revision r4", func() bool { return ev.lastUpdate().Bundle.Manifest.Revision == "r4" })
	n, _ := ev.counts()
	if n != 3 {
		t.Fatalf("%d updates, want 3 (two, three, three as r4)", n)
	}
}

// A server without ETags sends the whole bundle on every poll; unchanged
// content is still delivered only once.
func TestURLWithoutETag(t *testing.T) {
	srv := testkit.NewBundleServer(t, build(t, "one", "r1", ""))
	srv.Set("noetag", nil)
	w, err := New(Options{Path: srv.BundleURL(), Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev := run(t, w)
	before := srv.Requests.Load()
	testkit.WaitFor(t, "several polls", func() bool { return srv.Requests.Load() >= before+3 })
	if n, _ := ev.counts(); n != 0 {
		t.Fatalf("%d updates for unchanged content", n)
	}
	srv.Set("noetag", build(t, "two", "r2", ""))
	testkit.WaitFor(t, "revision two", func() bool { return marker(ev.lastUpdate()) == "two" })
}

// A download cut short by FetchTimeout is an error, and the next one
// starts afresh.
func TestFetchTimeout(t *testing.T) {
	srv := testkit.NewBundleServer(t, build(t, "one", "r1", ""))
	w, err := New(Options{Path: srv.BundleURL(), FetchTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Set("slow", nil)
	if u, err := w.poll(context.Background()); u != nil || err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("slow server: %v %v", u, err)
	}
	srv.Set("ok", build(t, "two", "r2", ""))
	u, err := w.poll(context.Background())
	if err != nil || marker(u) != "two" {
		t.Fatalf("after the timeout: %v %v", u, err)
	}
}

func TestBackoff(t *testing.T) {
	w, err := New(Options{Path: "http://127.0.0.1:1/b.tar.gz", Interval: time.Second, MinRetry: 100 * time.Millisecond, MaxRetry: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		failed   int
		min, max time.Duration
	}{
		{0, 900 * time.Millisecond, 1100 * time.Millisecond}, // the interval, ±10%
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 900 * time.Millisecond},
		{50, 1600 * time.Millisecond, 2 * time.Second}, // capped
	}
	for _, tc := range tests {
		for range 20 {
			w.failed = tc.failed
			if d := w.nextDelay(); d < tc.min || d > tc.max {
				t.Fatalf("failed=%d: delay %v not in [%v, %v]", tc.failed, d, tc.min, tc.max)
			}
		}
	}
	// Failures count up; a success resets them.
	w.failed = 0
	if _, err := w.download(context.Background()); err == nil {
		t.Fatal("download from a closed port succeeded")
	}
	if w.failed != 1 {
		t.Fatalf("failed = %d after one failure", w.failed)
	}
}

// Directory watching: an edit is delivered, a broken edit is reported with
// its file and line (and nothing delivered), a fix is delivered, and a change
// to a test file alone delivers nothing.
func TestDirectoryWatch(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, "one")
	w, err := New(Options{Path: dir, Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Deterministic single polls first.
	if u, err := w.poll(context.Background()); u != nil || err != nil {
		t.Fatalf("unchanged directory: %v %v", u, err)
	}
	testkit.WriteFile(t, filepath.Join(dir, "authz_test.rego"), "package mcp.authz_test\n\ntest_other if true\n")
	if u, err := w.poll(context.Background()); u != nil || err != nil {
		t.Fatalf("test file change: %v %v", u, err)
	}
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), "package mcp.authz\n\ndecision := {\n")
	u, err := w.poll(context.Background())
	if u != nil || err == nil || !strings.Contains(err.Error(), "authz.rego:4: rego_parse_error") {
		t.Fatalf("broken edit: %v %v", u, err)
	}
	if u, err := w.poll(context.Background()); u != nil || err != nil {
		t.Fatalf("the same broken state is reported once: %v %v", u, err)
	}

	ev := run(t, w)
	writePolicy(t, dir, "two")
	testkit.WaitFor(t, "revision two", func() bool { return marker(ev.lastUpdate()) == "two" })
	testkit.WriteFile(t, filepath.Join(dir, "data.json"), `{"marker": `)
	testkit.WaitFor(t, "bad data reported", func() bool {
		err := ev.lastErr()
		return err != nil && strings.Contains(err.Error(), "data.json:1")
	})
	testkit.WriteFile(t, filepath.Join(dir, "data.json"), `{"marker": "three"}`)
	testkit.WaitFor(t, "revision three", func() bool { return marker(ev.lastUpdate()) == "three" })
}

// A bundle file replaced atomically (rename) is picked up.
func TestBundleFileWatch(t *testing.T) {
	priv, pub := testkit.RSAKeyFiles(t)
	file := filepath.Join(t.TempDir(), "mcp.tar.gz")
	if err := WriteFileAtomic(file, build(t, "one", "r1", priv)); err != nil {
		t.Fatal(err)
	}
	w, err := New(Options{Path: file, Interval: 5 * time.Millisecond, Verification: verification(t, pub, "RS256", "")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev := run(t, w)
	if err := WriteFileAtomic(file, build(t, "unsigned", "r2", "")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "unsigned refused", func() bool {
		err := ev.lastErr()
		return err != nil && strings.Contains(err.Error(), "unsigned bundle refused")
	})
	if err := WriteFileAtomic(file, build(t, "two", "r3", priv)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "revision two", func() bool { return marker(ev.lastUpdate()) == "two" })
	if ev.lastUpdate().Bundle.Manifest.Revision != "r3" {
		t.Fatalf("revision = %q", ev.lastUpdate().Bundle.Manifest.Revision)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no path", Options{}, "no path"},
		{"missing path", Options{Path: filepath.Join(t.TempDir(), "nope")}, "no such file"},
		{"credentials in URL", Options{Path: "https://user:pw@bundles.example.com/b.tar.gz"}, "header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Fatalf("error leaks credentials: %v", err)
			}
		})
	}
}
