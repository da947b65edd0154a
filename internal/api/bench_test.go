package api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// discardAuditor accepts every event and keeps none, so that a long
// benchmark does not grow an in-memory list.
type discardAuditor struct{}

func (discardAuditor) Record(context.Context, *auditsink.Event) error { return nil }

// benchWriter is a lean http.ResponseWriter: a fresh header map per answer
// (as net/http's own), the body kept for checks.
type benchWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *benchWriter) Header() http.Header { return w.header }
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *benchWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}

// BenchmarkDecideHTTP is the hot path of a session at HTTP level: the full
// echo handler (guard, limits, body parsing, decision, answer encoding,
// metrics) served in process, with the embedded default policy and a token
// already in the verified-token cache (tools/call of generate_qr_url with
// scope qr:generate). Requests are built as net/http's server builds them
// (a request, a header map and a body per call; the connection's buffered
// reader is not part of it), so allocations are the handler's.
func BenchmarkDecideHTTP(b *testing.B) {
	e := newServer(b, serverOptions{core: func(o *core.Options) { o.Auditor = discardAuditor{} }})
	tok := "Bearer " + e.iss.Mint(b, devissuer.MintOptions{Subject: "alice", ClientID: "claude",
		Audience: []string{resource}, Scopes: []string{"qr:generate"}})
	body := []byte(`{"resource":"` + resource + `","authorization":"` + tok + `",` +
		`"message":{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{"gtin":"4006381333931"}}}}`)
	u, err := url.Parse("/v1/decide")
	if err != nil {
		b.Fatal(err)
	}
	w := &benchWriter{}
	serve := func() {
		r := &http.Request{
			Method: http.MethodPost, URL: u, RequestURI: "/v1/decide",
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"application/json"}},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
			Host:          "pdp.example", RemoteAddr: "192.0.2.1:40000",
		}
		w.header, w.status = http.Header{}, 0
		w.body.Reset()
		e.h.ServeHTTP(w, r)
	}
	serve()
	if w.status != http.StatusOK || !strings.Contains(w.body.String(), `"allow":true`) {
		b.Fatalf("warm-up: %d %s", w.status, w.body.String())
	}
	b.ReportAllocs()
	for b.Loop() {
		serve()
		if w.status != http.StatusOK {
			b.Fatalf("%d %s", w.status, w.body.String())
		}
	}
}
