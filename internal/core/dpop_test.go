package core_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/dpop"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/testkit/dpoptest"
	"github.com/mcp-pdp/pdp/pep"
)

// dpopEnv is the core with DPoP on for the resource (allowed, or
// required), proofs checked against a replay cache of this process.
func dpopEnv(t *testing.T, mode stepup.DPoPMode, replay dpop.ReplayCache, nonces *dpop.Nonces) *coretest.Env {
	t.Helper()
	if replay == nil {
		replay = dpop.NewMemoryReplay(1000)
	}
	v, err := dpop.New(dpop.Options{Replay: replay, Nonces: nonces})
	if err != nil {
		t.Fatal(err)
	}
	return coretest.New(t, coretest.Options{Core: func(o *core.Options) {
		r := o.Resources[0]
		r.DPoP, r.DPoPRequired = v, mode == stepup.DPoPRequired
		r.Challenge.DPoP, r.Challenge.DPoPAlgs = mode, v.Algorithms()
	}})
}

type failingReplay struct{}

func (failingReplay) Claim(context.Context, [32]byte, string, time.Time) (bool, error) {
	return false, errors.New("replay store down")
}

// TestDPoP: a token bound to a key (cnf.jkt) is accepted only with the
// DPoP scheme and a valid, fresh proof of that key for the request; each
// refusal says why, in a DPoP challenge; a plain bearer client sees the
// Bearer challenge it always saw.
func TestDPoP(t *testing.T) {
	e := dpopEnv(t, stepup.DPoPAllowed, nil, nil)
	key, other := dpoptest.NewKey(t), dpoptest.NewKey(t)
	const url = coretest.Resource
	mint := func(jkt string) string {
		o := devissuer.MintOptions{Subject: "alice", ClientID: "app", Audience: []string{url}, Scopes: []string{"qr:generate"}}
		if jkt != "" {
			o.Extra = map[string]any{"cnf": map[string]any{"jkt": jkt}}
		}
		return e.Issuer.Mint(t, o)
	}
	bound, unbound := mint(key.JKT), mint("")
	call := func(authz, proof string, http *pep.HTTPRequest) *pep.Response {
		t.Helper()
		req := callRequest(authz, "generate_qr_url")
		req.DPoP, req.HTTP = proof, http
		r, err := e.Service.Decide(context.Background(), req, "")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	post := &pep.HTTPRequest{Method: "POST", URL: url}
	replayed := key.Proof(t, "POST", url, bound, dpoptest.Options{})
	shared := key.Proof(t, "POST", url, bound, dpoptest.Options{})

	tests := []struct {
		name, authz, proof string
		http               *pep.HTTPRequest
		allow              bool
		status             int
		www                []string // substrings of WWW-Authenticate
		notWWW             string
	}{
		{"bound, DPoP scheme, valid proof", "DPoP " + bound, replayed, post, true, 200, nil, ""},
		{"the same proof again: a replay", "DPoP " + bound, replayed, post, false, 401, []string{`DPoP algs="ES256`, `error="invalid_dpop_proof"`, `error_description="the proof was used before`}, ""},
		{"one HTTP request's two decisions share its proof", "DPoP " + bound, shared, &pep.HTTPRequest{Method: "POST", URL: url, ID: "req-1"}, true, 200, nil, ""},
		{"...the second", "DPoP " + bound, shared, &pep.HTTPRequest{Method: "POST", URL: url, ID: "req-1"}, true, 200, nil, ""},
		{"...another HTTP request may not", "DPoP " + bound, shared, &pep.HTTPRequest{Method: "POST", URL: url, ID: "req-2"}, false, 401, []string{`error="invalid_dpop_proof"`}, ""},
		{"bound, presented as Bearer", "Bearer " + bound, key.Proof(t, "POST", url, bound, dpoptest.Options{}), post, false, 401, []string{`Bearer resource_metadata=`, `DPoP algs=`, `error="invalid_token"`, "present it with the DPoP scheme"}, ""},
		{"bound, DPoP scheme, no proof", "DPoP " + bound, "", post, false, 401, []string{`error="invalid_dpop_proof"`, "missing DPoP proof"}, ""},
		{"a proof of another key", "DPoP " + bound, other.Proof(t, "POST", url, bound, dpoptest.Options{}), post, false, 401, []string{`error="invalid_dpop_proof"`, "cnf.jkt"}, ""},
		{"a proof for another URL", "DPoP " + bound, key.Proof(t, "POST", "https://other.example.com/mcp", bound, dpoptest.Options{}), post, false, 401, []string{`error="invalid_dpop_proof"`, "htu"}, ""},
		{"a proof for GET", "DPoP " + bound, key.Proof(t, "GET", url, bound, dpoptest.Options{}), post, false, 401, []string{`error="invalid_dpop_proof"`, "htm"}, ""},
		{"a stale proof", "DPoP " + bound, key.Proof(t, "POST", url, bound, dpoptest.Options{IssuedAt: time.Now().Add(-6 * time.Minute)}), post, false, 401, []string{`error="invalid_dpop_proof"`, "iat"}, ""},
		{"a proof without ath", "DPoP " + bound, key.Proof(t, "POST", url, bound, dpoptest.Options{NoATH: true}), post, false, 401, []string{`error="invalid_dpop_proof"`, "ath"}, ""},
		{"a proof but no http from the PEP", "DPoP " + bound, key.Proof(t, "POST", url, bound, dpoptest.Options{}), nil, false, 401, []string{"sent no http method and url"}, ""},
		{"unbound, DPoP scheme", "DPoP " + unbound, key.Proof(t, "POST", url, unbound, dpoptest.Options{}), post, false, 401, []string{`error="invalid_token"`, "not bound to a key"}, ""},
		{"unbound, Bearer: as before", "Bearer " + unbound, "", nil, true, 200, nil, ""},
		{"anonymous, no DPoP: the Bearer challenge alone", "", "", nil, false, 401, []string{`Bearer resource_metadata=`}, "DPoP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(tt.authz, tt.proof, tt.http)
			if r.Allow != tt.allow || r.HTTPStatus != tt.status {
				t.Fatalf("allow %v %d %q; want %v %d", r.Allow, r.HTTPStatus, r.Reason, tt.allow, tt.status)
			}
			for _, w := range tt.www {
				if !strings.Contains(r.WWWAuthenticate, w) {
					t.Fatalf("WWW-Authenticate %q lacks %q", r.WWWAuthenticate, w)
				}
			}
			if tt.notWWW != "" && strings.Contains(r.WWWAuthenticate, tt.notWWW) {
				t.Fatalf("WWW-Authenticate %q has %q", r.WWWAuthenticate, tt.notWWW)
			}
			if tt.allow && (r.Caller == nil || r.Caller.Subject != "alice") {
				t.Fatalf("caller %+v", r.Caller)
			}
		})
	}
}

func TestDPoPRequired(t *testing.T) {
	e := dpopEnv(t, stepup.DPoPRequired, nil, nil)
	tok := e.Bearer(t, devissuer.MintOptions{Scopes: []string{"qr:generate"}})
	r, err := e.Service.Decide(context.Background(), callRequest(tok, "generate_qr_url"), "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Allow || r.HTTPStatus != 401 || !strings.HasPrefix(r.WWWAuthenticate, `DPoP algs="`) || strings.Contains(r.WWWAuthenticate, "Bearer") ||
		!strings.Contains(r.WWWAuthenticate, "accepts only DPoP-bound tokens") {
		t.Fatalf("%d %q", r.HTTPStatus, r.WWWAuthenticate)
	}
	// Anonymous: the DPoP challenge alone, with the metadata and the scope.
	r, _ = e.Service.Decide(context.Background(), callRequest("", "generate_qr_url"), "")
	if !strings.HasPrefix(r.WWWAuthenticate, `DPoP algs="`) || !strings.Contains(r.WWWAuthenticate, `resource_metadata="`) || !strings.Contains(r.WWWAuthenticate, `scope="qr:generate"`) {
		t.Fatalf("%q", r.WWWAuthenticate)
	}
}

// TestDPoPNonce: with server nonces, a proof without one is answered
// use_dpop_nonce with the nonce to use (DPoP-Nonce), and the retry with it
// is allowed.
func TestDPoPNonce(t *testing.T) {
	nonces, err := dpop.NewNonces([]byte(strings.Repeat("k", dpop.MinNonceKeyBytes)), time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := dpopEnv(t, stepup.DPoPAllowed, nil, nonces)
	key := dpoptest.NewKey(t)
	tok := e.Issuer.Mint(t, devissuer.MintOptions{Subject: "alice", Audience: []string{coretest.Resource}, Scopes: []string{"qr:generate"}, Extra: map[string]any{"cnf": map[string]any{"jkt": key.JKT}}})
	post := &pep.HTTPRequest{Method: "POST", URL: coretest.Resource}
	req := callRequest("DPoP "+tok, "generate_qr_url")
	req.DPoP, req.HTTP = key.Proof(t, "POST", coretest.Resource, tok, dpoptest.Options{}), post
	r, _ := e.Service.Decide(context.Background(), req, "")
	if r.Allow || r.HTTPStatus != 401 || r.DPoPNonce == "" || !strings.Contains(r.WWWAuthenticate, `error="use_dpop_nonce"`) {
		t.Fatalf("%d %q nonce %q", r.HTTPStatus, r.WWWAuthenticate, r.DPoPNonce)
	}
	req.DPoP = key.Proof(t, "POST", coretest.Resource, tok, dpoptest.Options{Nonce: r.DPoPNonce})
	if r, _ = e.Service.Decide(context.Background(), req, ""); !r.Allow {
		t.Fatalf("with the nonce: %d %q", r.HTTPStatus, r.WWWAuthenticate)
	}
	// The allowed answer carries the nonce to use next (RFC 9449 §8.2).
	if r.DPoPNonce == "" {
		t.Fatal("no dpop_nonce on the allowed answer")
	}
	// A request without DPoP gets none.
	plain, _ := e.Service.Decide(context.Background(), callRequest("", "lookup_product"), "")
	if !plain.Allow || plain.DPoPNonce != "" {
		t.Fatalf("plain request: %+v", plain)
	}
}

// TestDPoPReplayCacheDown: a proof that cannot be checked for replay is a
// deny with 503, never an allow and never a 401.
func TestDPoPReplayCacheDown(t *testing.T) {
	e := dpopEnv(t, stepup.DPoPAllowed, failingReplay{}, nil)
	key := dpoptest.NewKey(t)
	tok := e.Issuer.Mint(t, devissuer.MintOptions{Subject: "alice", Audience: []string{coretest.Resource}, Extra: map[string]any{"cnf": map[string]any{"jkt": key.JKT}}})
	req := callRequest("DPoP "+tok, "lookup_product")
	req.DPoP, req.HTTP = key.Proof(t, "POST", coretest.Resource, tok, dpoptest.Options{}), &pep.HTTPRequest{Method: "POST", URL: coretest.Resource}
	r, err := e.Service.Decide(context.Background(), req, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Allow || r.HTTPStatus != 503 || r.WWWAuthenticate != "" {
		t.Fatalf("%+v", r)
	}
}

// BenchmarkDecideCallDPoP is BenchmarkDecideCallCachedToken with the token
// bound to a key and a fresh DPoP proof per call (memory replay cache): one
// ES256 verification per call. Issue #14's figure: the cost over the same
// call without DPoP.
//
//	go test -run '^$' -bench 'DecideCall(CachedToken|DPoP)$' -count 6 ./internal/core/
func BenchmarkDecideCallDPoP(b *testing.B) {
	v, err := dpop.New(dpop.Options{Replay: dpop.NewMemoryReplay(0)})
	if err != nil {
		b.Fatal(err)
	}
	e := coretest.New(b, coretest.Options{Core: func(o *core.Options) {
		r := o.Resources[0]
		r.DPoP, r.Challenge.DPoP, r.Challenge.DPoPAlgs = v, stepup.DPoPAllowed, v.Algorithms()
	}})
	key := dpoptest.NewKey(b)
	tok := e.Issuer.Mint(b, devissuer.MintOptions{Subject: "alice", ClientID: "demo", Audience: []string{coretest.Resource}, Scopes: []string{"qr:generate"},
		Extra: map[string]any{"cnf": map[string]any{"jkt": key.JKT}}})
	http := &pep.HTTPRequest{Method: "POST", URL: coretest.Resource}
	ctx := context.Background()
	req := callRequest("DPoP "+tok, "generate_qr_url")
	req.DPoP, req.HTTP = key.Proof(b, "POST", coretest.Resource, tok, dpoptest.Options{}), http
	if r, err := e.Service.Decide(ctx, req, ""); err != nil || !r.Allow {
		b.Fatalf("%+v %v", r, err)
	}
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = key.Proof(b, "POST", coretest.Resource, tok, dpoptest.Options{})
	}
	reqs := make([]pep.Request, b.N)
	for i := range reqs {
		reqs[i] = *req
		reqs[i].DPoP = proofs[i]
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r, err := e.Service.Decide(ctx, &reqs[i], ""); err != nil || !r.Allow {
			b.Fatalf("%+v %v", r, err)
		}
	}
}
