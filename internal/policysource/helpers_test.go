package policysource

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mcp-pdp/pdp/internal/testkit"
)

// writePolicy writes a minimal policy whose decision reason is marker (from
// data), so a decision tells which policy made it.
func writePolicy(t *testing.T, dir, marker string) {
	t.Helper()
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), `package mcp.authz

decision := {"allow": true, "reason": concat("/", ["rules", data.marker])}
`)
	testkit.WriteFile(t, filepath.Join(dir, "data.json"), fmt.Sprintf(`{"marker": %q}`, marker))
	testkit.WriteFile(t, filepath.Join(dir, "authz_test.rego"), "package mcp.authz_test\n\ntest_nothing if true\n")
}

// build builds a bundle of a fresh policy with marker, signed with key ("" = unsigned).
func build(t *testing.T, marker, revision, key string) []byte {
	t.Helper()
	dir := t.TempDir()
	writePolicy(t, dir, marker)
	b, err := Build(context.Background(), BuildOptions{Paths: []string{dir}, Revision: revision, SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return b.Archive
}

// bundleServer serves one bundle at /bundles/mcp.tar.gz with a strong ETag,
// answering If-None-Match with 304. Its mode can be switched to failures.
type bundleServer struct {
	*httptest.Server
	mu          sync.Mutex
	body        []byte
	mode        string // "ok", "500", "garbage", "noetag"
	requests    atomic.Int64
	notModified atomic.Int64
}

func newBundleServer(t *testing.T, body []byte) *bundleServer {
	t.Helper()
	s := &bundleServer{body: body, mode: "ok"}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.URL.Path != "/bundles/mcp.tar.gz" {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		body, mode := s.body, s.mode
		s.mu.Unlock()
		switch mode {
		case "slow":
			<-r.Context().Done() // never answers before the client gives up
			return
		case "500":
			http.Error(w, "database on fire", http.StatusInternalServerError)
			return
		case "garbage":
			w.Header().Set("Content-Type", "application/gzip")
			_, _ = w.Write([]byte("<html>this is not a bundle</html>"))
			return
		}
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if mode != "noetag" {
			w.Header().Set("ETag", etag)
			if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, etag) {
				s.notModified.Add(1)
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *bundleServer) set(mode string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
	if body != nil {
		s.body = body
	}
}

func (s *bundleServer) url() string { return s.URL + "/bundles/mcp.tar.gz" }

// events collects what Run reports.
type events struct {
	mu      sync.Mutex
	updates []*Update
	errs    []error
}

func (e *events) fn(_ context.Context, u *Update, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.errs = append(e.errs, err)
		return
	}
	e.updates = append(e.updates, u)
}

func (e *events) counts() (int, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.updates), len(e.errs)
}

func (e *events) lastErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) == 0 {
		return nil
	}
	return e.errs[len(e.errs)-1]
}

func (e *events) lastUpdate() *Update {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.updates) == 0 {
		return nil
	}
	return e.updates[len(e.updates)-1]
}

// run starts w.Run and stops it when the test ends.
func run(t *testing.T, w *Watcher) *events {
	t.Helper()
	ev := &events{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, ev.fn) }()
	t.Cleanup(func() { cancel(); <-done })
	return ev
}

func marker(u *Update) string {
	if u == nil || u.Bundle == nil {
		return ""
	}
	m, _ := u.Bundle.Data["marker"].(string)
	return m
}

// rewriteTar replaces the content of one file of a .tar.gz bundle, keeping
// every other file (the signature among them) as it is.
func rewriteTar(t *testing.T, archive []byte, name string, content []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			body, found = content, true
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if !found {
		t.Fatalf("%s not in the bundle", name)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
