package policysource

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
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
