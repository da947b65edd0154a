package local_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/pep/local"
)

const benchResource = "https://mcp.example.com/mcp"

// openBench is a local PDP on the default policy for benchResource,
// trusting a dev issuer over real HTTP, audit on (embedded NATS) or off,
// and a token of that issuer with the scope of generate_qr_url.
func openBench(tb testing.TB, audit bool) (*local.PDP, string) {
	tb.Helper()
	iss := devissuertest.New(tb, "ES256")
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "pdp.yaml")
	testkit.WriteFile(tb, cfg, "data_dir: "+strconv.Quote(filepath.Join(dir, "data"))+"\n"+
		"audit: {enabled: "+strconv.FormatBool(audit)+"}\n"+
		"resources:\n  - uri: "+benchResource+"\n    issuer: "+iss.URL+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	p, err := local.Open(ctx, cfg, local.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	tok := iss.Mint(tb, devissuer.MintOptions{Subject: "alice", ClientID: "demo", Audience: []string{benchResource}, Scopes: []string{"qr:generate"}})
	return p, "Bearer " + tok
}

// trivial answers every request with a fixed tools/call result, as a
// server's handler would after its own work.
var trivial = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}`)
})

const benchCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{"text":"hello"}}}`

func serveBench(b *testing.B, h http.Handler, authz string) {
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, benchResource, strings.NewReader(benchCall))
		r.Header.Set("Authorization", authz)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"ok"`) {
			b.Fatalf("HTTP %d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkBareHandler is the floor: the trivial handler alone, the same
// request built and recorded.
func BenchmarkBareHandler(b *testing.B) { serveBench(b, trivial, "") }

// BenchmarkLocalMiddlewareCall: the same handler behind pep.Middleware
// deciding in-process (pep/local: the default policy, the token from the
// verified-token cache after the first call; audit on: the embedded NATS
// server stores every event in this process, so its work counts here
// too; and off). Issue #13's
// target: at most 10 µs and 40 allocations over BenchmarkBareHandler.
//
//	go test -run '^$' -bench 'BareHandler|LocalMiddleware' -benchtime 20000x -count 5 ./pep/local/
func BenchmarkLocalMiddlewareCall(b *testing.B) {
	for _, audit := range []bool{true, false} {
		b.Run("audit="+strconv.FormatBool(audit), func(b *testing.B) {
			p, authz := openBench(b, audit)
			serveBench(b, pep.Middleware(trivial, pep.Options{Decider: p, Resource: benchResource}), authz)
		})
	}
}
