package token

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/devissuer"
)

const testResource = "https://mcp.example.com/mcp"

// idp is a real HTTP identity provider stand-in: it serves a JWKS and
// metadata documents, counts requests per path, and can be told to fail.
type idp struct {
	srv *httptest.Server
	url string // base URL

	mu    sync.Mutex
	jwks  []byte
	mode  string // "" ok, "500", "garbage", "huge", "slow"
	delay time.Duration
	docs  map[string][]byte // extra documents by path (metadata)
	hits  map[string]int
}

func newIDP(t testing.TB) *idp {
	t.Helper()
	p := &idp{docs: map[string][]byte{}, hits: map[string]int{}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.url = "http://" + p.srv.Listener.Addr().(*net.TCPAddr).String()
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.hits[r.URL.Path]++
	mode, delay, jwks := p.mode, p.delay, p.jwks
	doc, isDoc := p.docs[r.URL.Path]
	p.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if isDoc {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
		return
	}
	if r.URL.Path != "/jwks" {
		http.NotFound(w, r)
		return
	}
	switch mode {
	case "500":
		http.Error(w, "boom", http.StatusInternalServerError)
	case "garbage":
		_, _ = w.Write([]byte(`{"keys": [ this is not json`))
	case "huge":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[],"pad":"`))
		_, _ = w.Write([]byte(strings.Repeat("x", 2<<20)))
		_, _ = w.Write([]byte(`"}`))
	case "slow":
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(jwks)
	default:
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(jwks)
	}
}

func (p *idp) setJWKS(b []byte) { p.mu.Lock(); p.jwks = b; p.mu.Unlock() }
func (p *idp) setMode(m string) { p.mu.Lock(); p.mode = m; p.mu.Unlock() }
func (p *idp) setDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}
func (p *idp) setDoc(path string, b []byte) { p.mu.Lock(); p.docs[path] = b; p.mu.Unlock() }
func (p *idp) hitsFor(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[path]
}

func (p *idp) jwksURI() string { return p.url + "/jwks" }

// newIssuer creates a devissuer whose issuer URL is this IdP (plus path).
func (p *idp) newIssuer(t testing.TB, path, alg string) *devissuer.Issuer {
	t.Helper()
	iss, err := devissuer.New(p.url+path, alg)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// clock is a per-test adjustable clock: real time plus an offset, or, once
// frozen, a fixed instant plus the offset.
type clock struct{ off, frozen atomic.Int64 }

func (c *clock) now() time.Time {
	if f := c.frozen.Load(); f != 0 {
		return time.Unix(0, f+c.off.Load())
	}
	return time.Now().Add(time.Duration(c.off.Load()))
}
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }
func (c *clock) freeze()                 { c.off.Store(0); c.frozen.Store(time.Now().UnixNano()) }

// env is an IdP with one issuer, a KeySets and a Verifier using an explicit
// JWKS URI.
type env struct {
	idp   *idp
	iss   *devissuer.Issuer
	keys  *KeySets
	v     *Verifier
	clock *clock
}

type envOpt func(*Config, *KeySetsConfig)

func newEnv(t testing.TB, alg string, cache *Cache, opts ...envOpt) *env {
	t.Helper()
	p := newIDP(t)
	iss := p.newIssuer(t, "", alg)
	p.setJWKS(iss.JWKS())
	cfg := Config{Resource: testResource, Issuer: iss.IssuerURL(), JWKSURI: p.jwksURI()}
	kcfg := KeySetsConfig{FetchTimeout: 2 * time.Second}
	for _, o := range opts {
		o(&cfg, &kcfg)
	}
	e := &env{idp: p, iss: iss, clock: &clock{}}
	e.keys = NewKeySets(kcfg)
	e.keys.now = e.clock.now
	v, err := NewVerifier(cfg, e.keys, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	v.now = e.clock.now
	e.v = v
	return e
}

func (e *env) mint(t testing.TB, o devissuer.MintOptions) string {
	t.Helper()
	if o.Audience == nil {
		o.Audience = []string{testResource}
	}
	if o.Subject == "" {
		o.Subject = "alice"
	}
	tok, err := e.iss.Mint(o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wantErr asserts err is an *Error with the given code and description.
func wantErr(t testing.TB, err error, code, desc string) {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) {
		t.Fatalf("want *Error %s %q, got %T %v", code, desc, err, err)
	}
	if te.Code != code || te.Description != desc {
		t.Fatalf("want %s %q, got %s %q (cause: %v)", code, desc, te.Code, te.Description, te.Unwrap())
	}
}

func mustVerify(t testing.TB, v *Verifier, raw string) *Claims {
	t.Helper()
	cl, err := v.Verify(context.Background(), raw)
	if err != nil {
		var te *Error
		if errors.As(err, &te) {
			t.Fatalf("verify: %v (cause: %v)", err, te.Unwrap())
		}
		t.Fatalf("verify: %v", err)
	}
	return cl
}
