package api_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/token"
)

// serverOptions configure a test server: the real decision core
// (coretest: default policy, real token verifier against a real dev
// issuer) behind the real HTTP handler.
type serverOptions struct {
	api       func(*api.Options)
	core      func(*core.Options)
	keys      token.KeySetsConfig
	cacheSize int // verified-token cache bound (0 = 100)
	// issuer and jwksURI override the dev issuer (hostile JWKS servers).
	issuer, jwksURI string
	// tls, when set, serves HTTPS with this config (mTLS tests).
	tls *tls.Config
	// wrap wraps the decision core (e.g. to hold requests in flight).
	wrap func(api.Decider) api.Decider
}

// serverEnv is a running test server and what tests inspect of it.
type serverEnv struct {
	h      http.Handler
	url    string
	client *http.Client
	core   *coretest.Env
	iss    *devissuertest.Server
	audit  *recorder
	cache  *token.Cache
}

func newServer(t testing.TB, o serverOptions) *serverEnv {
	t.Helper()
	if o.cacheSize == 0 {
		o.cacheSize = 100
	}
	rec := &recorder{}
	c := coretest.New(t, coretest.Options{
		Auditor: rec, TokenCacheSize: o.cacheSize,
		KeySets: o.keys, RefreshKeys: true,
		Issuer: o.issuer, JWKSURI: o.jwksURI,
		// Generous: a loaded CI machine must not turn an allow into a
		// budget deny. Tests of the budget set their own.
		DecisionTimeout: 30 * time.Second,
		Core:            o.core,
	})
	var dec api.Decider = c.Service
	if o.wrap != nil {
		dec = o.wrap(c.Service)
	}
	ao := api.Options{
		Core:         dec,
		MaxBodyBytes: 64 << 10,
		Registry:     prometheus.NewRegistry(),
		Metadata: []api.MetadataDoc{{Host: "mcp.example.com", Path: "/.well-known/oauth-protected-resource/mcp",
			Document: stepup.NewMetadata(resource, []string{c.Issuer.URL}, []string{"qr:generate"})}},
	}
	if o.api != nil {
		o.api(&ao)
	}
	h := api.New(ao)
	srv := httptest.NewUnstartedServer(h)
	e := &serverEnv{h: h, core: c, iss: c.Issuer, audit: rec, cache: c.Cache}
	if o.tls != nil {
		srv.TLS = o.tls
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
		srv.StartTLS()
		e.client = srv.Client()
	} else {
		srv.Start()
		e.client = &http.Client{}
	}
	e.client.Timeout = 60 * time.Second // detects hangs only
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// mint returns an Authorization value with a dev issuer token (audience
// resource, subject alice unless o says otherwise).
func (e *serverEnv) mint(t *testing.T, o devissuer.MintOptions) string {
	t.Helper()
	return e.core.Bearer(t, o)
}

// do sends a request and decodes the JSON answer (nil if not JSON).
func (e *serverEnv) do(t *testing.T, c *http.Client, method, path string, hdr map[string]string, body []byte) (*http.Response, map[string]any) {
	t.Helper()
	if c == nil {
		c = e.client
	}
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp, out
}

func (e *serverEnv) decide(t *testing.T, hdr map[string]string, body any) (*http.Response, map[string]any) {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		raw, _ = json.Marshal(body)
	}
	return e.do(t, nil, http.MethodPost, "/v1/decide", hdr, raw)
}

// metric reads one sample from /metrics, e.g.
// `pdp_pep_auth_failures_total{reason="invalid_api_key"}`; 0 when absent.
func (e *serverEnv) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := e.client.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			f, _ := strconv.ParseFloat(val, 64)
			return f
		}
	}
	return 0
}

func (r *recorder) peps() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.events))
	for i, ev := range r.events {
		out[i] = ev.PEP
	}
	return out
}

func listBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1,"method":"tools/list"},"result":{"tools":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"name":"t` + strconv.Itoa(i) + `","inputSchema":{"type":"object"}}`)
	}
	b.WriteString(`]}}`)
	return b.Bytes()
}
