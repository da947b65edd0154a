package token

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/testkit"
)

func metaDoc(issuer, jwks string) []byte {
	b, _ := json.Marshal(map[string]string{"issuer": issuer, "jwks_uri": jwks})
	return b
}

func TestMetadataURLs(t *testing.T) {
	tests := []struct {
		issuer string
		want   []string
	}{
		{"https://id.example.com", []string{
			"https://id.example.com/.well-known/oauth-authorization-server",
			"https://id.example.com/.well-known/openid-configuration"}},
		{"https://id.example.com/", []string{
			"https://id.example.com/.well-known/oauth-authorization-server",
			"https://id.example.com/.well-known/openid-configuration"}},
		{"https://id.example.com/tenant/1", []string{
			"https://id.example.com/.well-known/oauth-authorization-server/tenant/1",
			"https://id.example.com/.well-known/openid-configuration/tenant/1",
			"https://id.example.com/tenant/1/.well-known/openid-configuration"}},
	}
	for _, tt := range tests {
		got, err := metadataURLs(tt.issuer)
		if err != nil || strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s: got %v %v, want %v", tt.issuer, got, err, tt.want)
		}
	}
}

func TestDiscovery(t *testing.T) {
	tests := []struct {
		name    string
		path    string                             // issuer path
		docs    func(iss string) map[string][]byte // metadata served, by path
		wantErr bool
	}{
		{"RFC 8414 at the root", "", func(iss string) map[string][]byte {
			return map[string][]byte{"/.well-known/oauth-authorization-server": nil}
		}, false},
		{"OIDC fallback at the root", "", func(iss string) map[string][]byte {
			return map[string][]byte{"/.well-known/openid-configuration": nil}
		}, false},
		{"RFC 8414 path insertion", "/tenant1", func(iss string) map[string][]byte {
			return map[string][]byte{"/.well-known/oauth-authorization-server/tenant1": nil}
		}, false},
		{"OIDC path insertion", "/tenant1", func(iss string) map[string][]byte {
			return map[string][]byte{"/.well-known/openid-configuration/tenant1": nil}
		}, false},
		{"OIDC path appending", "/tenant1", func(iss string) map[string][]byte {
			return map[string][]byte{"/tenant1/.well-known/openid-configuration": nil}
		}, false},
		{"metadata for another issuer is ignored", "", func(iss string) map[string][]byte {
			return map[string][]byte{"/.well-known/oauth-authorization-server": metaDoc("https://evil.example.com", "http://x/jwks")}
		}, true},
		{"8414 for another issuer, OIDC right", "", func(iss string) map[string][]byte {
			return map[string][]byte{
				"/.well-known/oauth-authorization-server": metaDoc("https://evil.example.com", "http://x/jwks"),
				"/.well-known/openid-configuration":       nil,
			}
		}, false},
		{"no jwks_uri", "", func(iss string) map[string][]byte {
			return map[string][]byte{"/.well-known/oauth-authorization-server": []byte(`{"issuer":"` + iss + `"}`)}
		}, true},
		{"metadata not JSON", "", func(iss string) map[string][]byte {
			return map[string][]byte{"/.well-known/oauth-authorization-server": []byte(`<html>`)}
		}, true},
		{"no metadata", "", func(string) map[string][]byte { return nil }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newIDP(t)
			iss := p.newIssuer(t, tt.path, "ES256")
			p.setJWKS(iss.JWKS())
			for path, doc := range tt.docs(iss.IssuerURL()) {
				if doc == nil {
					doc = metaDoc(iss.IssuerURL(), p.jwksURI())
				}
				p.setDoc(path, doc)
			}
			keys := NewKeySets(KeySetsConfig{})
			v, err := NewVerifier(Config{Resource: testResource, Issuer: iss.IssuerURL()}, keys, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			tok, _ := iss.Mint(devissuer.MintOptions{Subject: "alice", Audience: []string{testResource}})
			_, err = v.Verify(context.Background(), tok)
			if tt.wantErr {
				wantErr(t, err, CodeInvalidToken, descKeysUnavailable)
				if !errors.Is(err, ErrKeysUnavailable) {
					t.Fatalf("error %v does not wrap ErrKeysUnavailable", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("verify: %v (%v)", err, errors.Unwrap(err))
			}
			// Discovery and JWKS are cached: more tokens, no more fetches.
			before := keys.Stats().Fetches
			for range 5 {
				tok, _ := iss.Mint(devissuer.MintOptions{Subject: "bob", Audience: []string{testResource}})
				mustVerify(t, v, tok)
			}
			if after := keys.Stats().Fetches; after != before {
				t.Fatalf("fetches grew from %d to %d", before, after)
			}
		})
	}
}

// The devissuer's own handler is discoverable end to end.
func TestDiscoveryDevIssuer(t *testing.T) {
	srv := devissuertest.New(t, "EdDSA")
	keys := NewKeySets(KeySetsConfig{})
	v, err := NewVerifier(Config{Resource: testResource, Issuer: srv.URL}, keys, NewCache(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl := mustVerify(t, v, srv.Mint(t, devissuer.MintOptions{Subject: "alice", Audience: []string{testResource}}))
	if cl.Subject != "alice" {
		t.Fatal(cl)
	}
	if n := srv.Requests(); n != 2 { // metadata + JWKS
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t, "ES256", nil)
	if err := e.v.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, e.v, e.mint(t, devissuer.MintOptions{}))

	// The issuer publishes a second key and starts using it.
	next := e.idp.newIssuer(t, "", "RS256")
	both, err := devissuer.JWKSOf(e.iss, next)
	if err != nil {
		t.Fatal(err)
	}
	e.idp.setJWKS(both)
	tok, _ := next.Mint(devissuer.MintOptions{Subject: "bob", Audience: []string{testResource}})
	if cl := mustVerify(t, e.v, tok); cl.Subject != "bob" {
		t.Fatal(cl)
	}
	if n := e.idp.hitsFor("/jwks"); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2 (warm + one refetch)", n)
	}
	// Old key still fine; another unknown kid inside the min interval does
	// not refetch.
	mustVerify(t, e.v, e.mint(t, devissuer.MintOptions{}))
	_, err = e.v.Verify(context.Background(), e.mint(t, devissuer.MintOptions{Kid: "k3"}))
	wantErr(t, err, CodeInvalidToken, `unknown signing key (kid "k3")`)
	if n := e.idp.hitsFor("/jwks"); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2", n)
	}
	// After the interval, the next unknown kid refetches once more.
	e.clock.advance(DefaultMinRefetchInterval + time.Second)
	_, _ = e.v.Verify(context.Background(), e.mint(t, devissuer.MintOptions{Kid: "k4"}))
	if n := e.idp.hitsFor("/jwks"); n != 3 {
		t.Fatalf("%d JWKS fetches, want 3", n)
	}
}

func TestUnknownKidStorm(t *testing.T) {
	e := newEnv(t, "ES256", nil)
	if err := e.v.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.idp.setDelay(50 * time.Millisecond) // make the refetch overlap the storm
	const n = 200
	toks := make([]string, n)
	for i := range toks {
		toks[i] = e.mint(t, devissuer.MintOptions{Kid: fmt.Sprintf("random-%d", i)})
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = e.v.Verify(context.Background(), toks[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		wantErr(t, err, CodeInvalidToken, fmt.Sprintf("unknown signing key (kid %q)", fmt.Sprintf("random-%d", i)))
	}
	if got := e.idp.hitsFor("/jwks"); got > 2 {
		t.Fatalf("%d JWKS fetches for %d unknown kids, want <= 2", got, n)
	}
	// The good key is unaffected.
	mustVerify(t, e.v, e.mint(t, devissuer.MintOptions{}))
}

// After a good fetch, a failing endpoint must not take the keys away.
func TestStaleWhileError(t *testing.T) {
	for _, mode := range []string{"500", "garbage", "huge", "slow"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, "ES256", nil, func(_ *Config, k *KeySetsConfig) {
				k.FetchTimeout = 200 * time.Millisecond
				k.RefreshInterval = time.Minute
				k.MaxStaleness = time.Hour
			})
			if err := e.v.Warm(context.Background()); err != nil {
				t.Fatal(err)
			}
			e.idp.setMode(mode)

			// An unknown kid forces a refetch, which fails: a clean rejection,
			// within the fetch timeout.
			start := time.Now()
			_, err := e.v.Verify(context.Background(), e.mint(t, devissuer.MintOptions{Kid: "new"}))
			wantErr(t, err, CodeInvalidToken, `unknown signing key (kid "new")`)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("rejection took %v", d)
			}
			mustVerify(t, e.v, e.mint(t, devissuer.MintOptions{}))

			// A due background refresh fails too; keys still verify.
			before := e.keys.Stats().FetchErrors
			e.clock.advance(2 * time.Minute)
			mustVerify(t, e.v, e.mint(t, devissuer.MintOptions{TTL: 3 * time.Hour}))
			testkit.WaitFor(t, "refresh attempt", func() bool { return e.keys.Stats().FetchErrors > before })
			mustVerify(t, e.v, e.mint(t, devissuer.MintOptions{TTL: 3 * time.Hour}))

			// Beyond MaxStaleness the keys are gone: fail closed.
			e.clock.advance(time.Hour)
			_, err = e.v.Verify(context.Background(), e.mint(t, devissuer.MintOptions{TTL: 3 * time.Hour}))
			wantErr(t, err, CodeInvalidToken, descKeysUnavailable)

			// The endpoint recovers: keys are back.
			e.idp.setMode("")
			e.clock.advance(DefaultMinRefetchInterval)
			mustVerify(t, e.v, e.mint(t, devissuer.MintOptions{TTL: 3 * time.Hour}))
		})
	}
}

func TestFirstFetchFails(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*env)
	}{
		{"500", func(e *env) { e.idp.setMode("500") }},
		{"garbage", func(e *env) { e.idp.setMode("garbage") }},
		{"huge", func(e *env) { e.idp.setMode("huge") }},
		{"slow", func(e *env) { e.idp.setMode("slow") }},
		{"empty key set", func(e *env) { e.idp.setJWKS([]byte(`{"keys":[]}`)) }},
		{"only unusable keys", func(e *env) {
			e.idp.setJWKS([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"},{"kty":"RSA","kid":"e","use":"enc","n":"AQAB","e":"AQAB"}]}`))
		}},
		{"unreachable", func(e *env) { e.idp.srv.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, "ES256", nil, func(_ *Config, k *KeySetsConfig) { k.FetchTimeout = 200 * time.Millisecond })
			e.clock.freeze() // attempts are rate-limited by this clock, not by how long a fetch takes
			tt.setup(e)
			if err := e.v.Warm(context.Background()); err == nil || !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("warm: %v", err)
			}
			tok := e.mint(t, devissuer.MintOptions{})
			for range 3 { // not retried before the first backoff step, never panics
				_, err := e.v.Verify(context.Background(), tok)
				wantErr(t, err, CodeInvalidToken, descKeysUnavailable)
				if !errors.Is(err, ErrKeysUnavailable) {
					t.Fatal("not ErrKeysUnavailable")
				}
			}
			if got := e.keys.Stats().Fetches; got != 1 {
				t.Fatalf("%d fetches, want 1 within the first backoff step", got)
			}
		})
	}
}

// TestFirstFetchBackoff: before the first successful fetch, a failing
// JWKS endpoint is retried after 250 ms, then 500 ms, 1 s, ... up to
// MinRefetchInterval, and the first success ends the waiting at once; a
// failure after that success is retried once per MinRefetchInterval (the
// stale keys serve meanwhile).
func TestFirstFetchBackoff(t *testing.T) {
	e := newEnv(t, "ES256", nil)
	e.clock.freeze()
	e.idp.setMode("500")
	tok := e.mint(t, devissuer.MintOptions{})
	verify := func() error { _, err := e.v.Verify(context.Background(), tok); return err }
	fetches := func() uint64 { return e.keys.Stats().Fetches }

	if err := verify(); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("first attempt: %v", err)
	}
	var want uint64 = 1
	for i, gap := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, DefaultMinRefetchInterval, DefaultMinRefetchInterval} {
		e.clock.advance(gap - time.Millisecond)
		_ = verify()
		if got := fetches(); got != want {
			t.Fatalf("step %d: %d fetches %s after the last attempt, want %d (none before %s)", i, got, gap-time.Millisecond, want, gap)
		}
		e.clock.advance(time.Millisecond)
		_ = verify()
		want++
		if got := fetches(); got != want {
			t.Fatalf("step %d: %d fetches %s after the last attempt, want %d", i, got, gap, want)
		}
	}

	e.idp.setMode("")
	e.clock.advance(DefaultMinRefetchInterval)
	if err := verify(); err != nil {
		t.Fatalf("after the endpoint recovered: %v", err)
	}
	// Keys fetched: a later outage is retried once per MinRefetchInterval.
	e.idp.setMode("500")
	e.clock.advance(DefaultRefreshInterval)
	failed := e.keys.Stats().FetchErrors
	mustVerify(t, e.v, tok) // due: a refresh starts in the background (and fails); the stale keys verify
	for deadline := time.Now().Add(5 * time.Second); e.keys.Stats().FetchErrors == failed; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the due refresh did not run")
		}
	}
	n := fetches()
	e.clock.advance(time.Second)
	mustVerify(t, e.v, tok)
	if got := fetches(); got != n {
		t.Fatalf("%d fetches 1 s after a failed refresh, want %d", got, n)
	}
}

func TestVerifyContextCanceled(t *testing.T) {
	e := newEnv(t, "ES256", nil, func(_ *Config, k *KeySetsConfig) { k.FetchTimeout = 300 * time.Millisecond })
	e.idp.setMode("slow")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := e.v.Verify(ctx, e.mint(t, devissuer.MintOptions{}))
	wantErr(t, err, CodeInvalidToken, descKeysUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v does not wrap the context error", err)
	}
}

func TestBackgroundRefresh(t *testing.T) {
	e := newEnv(t, "ES256", nil, func(_ *Config, k *KeySetsConfig) {
		k.RefreshInterval = 40 * time.Millisecond
		k.MinRefetchInterval = 10 * time.Millisecond
	})
	if err := e.v.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A new key published without any token asking for it is picked up.
	next := e.idp.newIssuer(t, "", "ES256")
	both, _ := devissuer.JWKSOf(e.iss, next)
	e.idp.setJWKS(both)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.keys.Run(ctx); close(done) }()
	testkit.WaitFor(t, "background refreshes", func() bool { return e.idp.hitsFor("/jwks") >= 3 })
	cancel()
	<-done
	s := e.keys.jwksCell(e.idp.jwksURI()).snap.Load()
	if _, ok := s.val.byKid[next.KeyID()]; !ok {
		t.Fatal("new key not loaded by the background refresh")
	}
}

func TestMaxAge(t *testing.T) {
	k := NewKeySets(KeySetsConfig{RefreshInterval: 10 * time.Minute, MinRefetchInterval: 30 * time.Second})
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", 10 * time.Minute},
		{"max-age=120", 2 * time.Minute},
		{"public, max-age=5", 30 * time.Second}, // floored at MinRefetchInterval
		{"max-age=86400", 10 * time.Minute},     // never beyond RefreshInterval
		{`no-cache, MAX-AGE="60"`, time.Minute},
		{"max-age=-1", 10 * time.Minute},
		{"max-age=abc", 10 * time.Minute},
		{"no-store", 10 * time.Minute},
	}
	for _, tt := range tests {
		if got := k.refreshAfter(maxAgeOf(tt.header)); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestParseJWKSFiltering(t *testing.T) {
	a, _ := devissuer.New("https://id.example.com", "ES256")
	b, _ := devissuer.New("https://id.example.com", "RS256")
	c, _ := devissuer.New("https://id.example.com", "EdDSA")
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := devissuer.JWKSOf(a, b, c)
	var doc map[string][]map[string]any
	_ = json.Unmarshal(set, &doc)
	doc["keys"] = append(doc["keys"],
		map[string]any{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
		map[string]any{"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": doc["keys"][0]["x"], "y": doc["keys"][0]["y"]},
		map[string]any{"kty": "EC", "crv": "P-256", "kid": "ops", "key_ops": []string{"encrypt"}, "x": doc["keys"][0]["x"], "y": doc["keys"][0]["y"]},
		map[string]any{"kty": "RSA", "kid": "small", "n": enc.EncodeToString(small.N.Bytes()), "e": "AQAB"},
		map[string]any{"kty": "EC", "crv": "P-256", "kid": "rsaoaep", "alg": "RSA-OAEP", "x": doc["keys"][0]["x"], "y": doc["keys"][0]["y"]},
		map[string]any{"kty": "weird", "kid": "unsupported"},
	)
	body, _ := json.Marshal(doc)
	ks, skipped, err := parseJWKS(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.all) != 3 || len(skipped) != 6 {
		t.Fatalf("kept %d, skipped %v", len(ks.all), skipped)
	}
	for _, i := range []*devissuer.Issuer{a, b, c} {
		if _, ok := ks.byKid[i.KeyID()]; !ok {
			t.Fatalf("%s key missing", i.Alg())
		}
	}
}

// TestKeySetsCloseCancelsFetches: Close cancels a fetch under way (here one
// the IdP would answer only after an hour) and returns once it has ended;
// the waiting lookup gets the failure; a lookup after Close fails too.
func TestKeySetsCloseCancelsFetches(t *testing.T) {
	e := newEnv(t, "ES256", nil, func(_ *Config, k *KeySetsConfig) { k.FetchTimeout = time.Hour })
	e.idp.setDelay(time.Hour)
	warmed := make(chan error, 1)
	go func() { warmed <- e.v.Warm(context.Background()) }()
	testkit.WaitFor(t, "the fetch to reach the IdP", func() bool { return e.idp.hitsFor("/jwks") > 0 })
	closed := make(chan struct{})
	go func() { e.keys.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(testkit.WaitTimeout):
		t.Fatal("Close did not return: the fetch under way was not canceled")
	}
	if err := <-warmed; err == nil {
		t.Fatal("Warm succeeded although its fetch was canceled")
	}
	e.idp.setDelay(0)
	if err := e.v.Warm(context.Background()); err == nil {
		t.Fatal("Warm after Close succeeded")
	}
	e.keys.Close() // a second Close is harmless
}
