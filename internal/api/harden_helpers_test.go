package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/policies"
)

// hopts configure a hardened test server: the real policy engine, the real
// token verifier against a real (dev) issuer, the real HTTP handler.
type hopts struct {
	api       func(*api.Options)
	core      func(*core.Options)
	keys      token.KeySetsConfig
	cacheSize int
	// issuer and jwksURI override the dev issuer (hostile JWKS servers).
	issuer, jwksURI string
	// tls, when set, serves HTTPS with this config (mTLS tests).
	tls *tls.Config
	// wrap wraps the decision core (e.g. to hold requests in flight).
	wrap func(api.Decider) api.Decider
}

type henv struct {
	h      http.Handler
	url    string
	client *http.Client
	iss    *devissuertest.Server
	audit  *recorder
	cache  *token.Cache
	keys   *token.KeySets
}

func newHEnv(t testing.TB, o hopts) *henv {
	t.Helper()
	iss := devissuertest.New(t, "ES256")
	issuer := iss.URL
	if o.issuer != "" {
		issuer = o.issuer
	}
	pol, err := decision.Load(context.Background(), decision.Source{FS: policies.FS})
	if err != nil {
		t.Fatal(err)
	}
	keys := token.NewKeySets(o.keys)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go keys.Run(ctx)
	if o.cacheSize == 0 {
		o.cacheSize = 100
	}
	cache := token.NewCache(o.cacheSize)
	v, err := token.NewVerifier(token.Config{Resource: resource, Issuer: issuer, JWKSURI: o.jwksURI}, keys, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	co := core.Options{
		Engine: decision.NewEngine(pol),
		Resources: []*core.Resource{{
			URI: resource, Key: "mcp_example_com_mcp", Verifier: v,
			Challenge: stepup.Resource{URI: resource, MetadataURL: prm, Strategy: stepup.Operation},
		}},
		Auditor: rec,
		// Generous: a loaded CI machine must not turn an allow into a
		// budget deny. Tests of the budget set their own.
		DecisionTimeout: 30 * time.Second,
	}
	if o.core != nil {
		o.core(&co)
	}
	c, err := core.New(co)
	if err != nil {
		t.Fatal(err)
	}
	var dec api.Decider = c
	if o.wrap != nil {
		dec = o.wrap(c)
	}
	ao := api.Options{
		Core:         dec,
		MaxBodyBytes: 64 << 10,
		Registry:     prometheus.NewRegistry(),
		Metadata: []api.MetadataDoc{{Host: "mcp.example.com", Path: "/.well-known/oauth-protected-resource/mcp",
			Document: stepup.NewMetadata(resource, []string{iss.URL}, []string{"qr:generate"})}},
	}
	if o.api != nil {
		o.api(&ao)
	}
	h := api.New(ao)
	srv := httptest.NewUnstartedServer(h)
	e := &henv{h: h, iss: iss, audit: rec, cache: cache, keys: keys}
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

func (e *henv) mint(t *testing.T, o devissuer.MintOptions) string {
	t.Helper()
	if o.Audience == nil {
		o.Audience = []string{resource}
	}
	if o.Subject == "" {
		o.Subject = "alice"
	}
	return "Bearer " + e.iss.Mint(t, o)
}

// do sends a request and decodes the JSON answer (nil if not JSON).
func (e *henv) do(t *testing.T, c *http.Client, method, path string, hdr map[string]string, body []byte) (*http.Response, map[string]any) {
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

func (e *henv) decide(t *testing.T, hdr map[string]string, body any) (*http.Response, map[string]any) {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		raw, _ = json.Marshal(body)
	}
	return e.do(t, nil, http.MethodPost, "/v1/decide", hdr, raw)
}

// metric reads one sample from /metrics, e.g.
// `pdp_pep_auth_failures_total{reason="invalid_api_key"}`; 0 when absent.
func (e *henv) metric(t *testing.T, series string) float64 {
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

// ---- a small PKI, generated per test ----

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func nextSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pemEncode("CERTIFICATE", der)}
}

// issue signs a leaf: a server certificate for 127.0.0.1 when client is
// false, else a client certificate with this CN and DNS SANs.
func (ca *testCA) issue(t testing.TB, cn string, dns []string, client bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
