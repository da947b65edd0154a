package pep_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
)

// countingListener counts the connections a server accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// BenchmarkMiddlewareRemotePDP: pep.Middleware around a trivial handler,
// deciding with a real PDP over loopback HTTP (its /v1/decide: the core
// with the default policy, the token cached), 32 concurrent callers. It
// reports the connections the PDP accepted (pdp-conns: issue #13 wants
// one pooled connection per concurrent request and no churn) and, beside
// it, BenchmarkRemotePDPAlone is the PDP's own cost per decision over
// the same client, so that the middleware's addition is the difference.
//
//	go test -run '^$' -bench 'RemotePDP' -benchtime 20000x -count 3 ./pep/
func BenchmarkMiddlewareRemotePDP(b *testing.B) {
	c, ln, authz := remotePDP(b)
	h := pep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}`)
	}), pep.Options{Decider: c, Resource: coretest.Resource})
	b.SetParallelism(max(1, 32/2))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			r := httptest.NewRequest(http.MethodPost, coretest.Resource, strings.NewReader(remoteCall))
			r.Header.Set("Authorization", authz)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"ok"`) {
				b.Errorf("HTTP %d %s", w.Code, w.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(ln.n.Load()), "pdp-conns")
}

// BenchmarkRemotePDPAlone: the same decisions through pep.Client alone.
func BenchmarkRemotePDPAlone(b *testing.B) {
	c, ln, authz := remotePDP(b)
	req := &pep.Request{Resource: coretest.Resource, Authorization: authz, Message: []byte(remoteCall)}
	b.SetParallelism(max(1, 32/2))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			d, err := c.Decide(b.Context(), req)
			if err != nil || !d.Allow {
				b.Errorf("decision %+v %v", d, err)
				return
			}
		}
	})
	b.ReportMetric(float64(ln.n.Load()), "pdp-conns")
}

const remoteCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{"text":"hi"}}}`

func remotePDP(b *testing.B) (*pep.Client, *countingListener, string) {
	b.Helper()
	env := coretest.New(b, coretest.Options{TokenCacheSize: 1000})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ln := &countingListener{Listener: raw}
	srv := httptest.NewUnstartedServer(api.New(api.Options{Core: env.Service}))
	srv.Listener = ln
	srv.Start()
	b.Cleanup(srv.Close)
	c, err := pep.NewClient(srv.URL, pep.ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return c, ln, env.Bearer(b, devissuer.MintOptions{Subject: "alice", ClientID: "bench", Scopes: []string{"qr:generate"}})
}
