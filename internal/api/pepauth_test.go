package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/pep"
)

func mustKey(t *testing.T, name, key string) api.APIKey {
	t.Helper()
	k, err := api.ParseAPIKey(name, api.HashAPIKey(key))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseAPIKey(t *testing.T) {
	for _, tc := range []struct{ name, sum string }{
		{"", api.HashAPIKey("k")},
		{"gw", "abc"},
		{"gw", strings.Repeat("zz", 32)},
		{"gw", api.HashAPIKey("k") + "00"},
	} {
		if _, err := api.ParseAPIKey(tc.name, tc.sum); err == nil {
			t.Errorf("ParseAPIKey(%q, %q) accepted", tc.name, tc.sum)
		}
	}
	if _, err := api.ParseAPIKey("gw", strings.ToUpper(api.HashAPIKey("k"))); err != nil {
		t.Errorf("upper-case hex refused: %v", err)
	}
}

// TestPEPAPIKeys: right key, wrong key, both headers, rotation with two
// keys, and the key's name as the PEP in the audit event. Unauthenticated
// calls get 401 and are counted; metadata, health and metrics stay public.
func TestPEPAPIKeys(t *testing.T) {
	const oldKey, newKey, otherKey = "pdpk_old-key-0123456789", "pdpk_new-key-9876543210", "pdpk_gw2-key"
	e := newHEnv(t, hopts{api: func(o *api.Options) {
		o.Auth = api.PEPAuth{APIKeys: []api.APIKey{mustKey(t, "gateway", oldKey), mustKey(t, "gateway-next", newKey), mustKey(t, "billing-mcp", otherKey)}}
	}})
	body := req("", call("lookup_product", nil))
	tests := []struct {
		name   string
		hdr    map[string]string
		status int
		pep    string // in the audit event, when 200
		reason string // failure counter label, when 401
	}{
		{"no credentials", nil, 401, "", "missing_credentials"},
		{"bearer old key", map[string]string{"Authorization": "Bearer " + oldKey}, 200, "gateway", ""},
		{"bearer new key (rotation)", map[string]string{"Authorization": "Bearer " + newKey}, 200, "gateway-next", ""},
		{"lower-case scheme, extra spaces", map[string]string{"Authorization": "bearer   " + otherKey + " "}, 200, "billing-mcp", ""},
		{"dedicated header", map[string]string{"X-PDP-API-Key": otherKey}, 200, "billing-mcp", ""},
		{"dedicated header wins over Authorization", map[string]string{"X-PDP-API-Key": otherKey, "Authorization": "Bearer wrong"}, 200, "billing-mcp", ""},
		{"wrong key", map[string]string{"Authorization": "Bearer pdpk_wrong"}, 401, "", "invalid_api_key"},
		{"wrong key in dedicated header", map[string]string{"X-PDP-API-Key": "pdpk_wrong", "Authorization": "Bearer " + oldKey}, 401, "", "invalid_api_key"},
		{"key prefix only", map[string]string{"Authorization": "Bearer " + oldKey[:10]}, 401, "", "invalid_api_key"},
		{"key with suffix", map[string]string{"Authorization": "Bearer " + oldKey + "x"}, 401, "", "invalid_api_key"},
		{"the hash instead of the key", map[string]string{"Authorization": "Bearer " + api.HashAPIKey(oldKey)}, 401, "", "invalid_api_key"},
		{"basic scheme", map[string]string{"Authorization": "Basic Z2F0ZXdheTpwZHBr"}, 401, "", "malformed_credentials"},
		{"bearer without key", map[string]string{"Authorization": "Bearer "}, 401, "", "malformed_credentials"},
		{"two keys in one header", map[string]string{"Authorization": "Bearer " + oldKey + " " + newKey}, 401, "", "malformed_credentials"},
		{"oversized key", map[string]string{"X-PDP-API-Key": strings.Repeat("k", 4096)}, 401, "", "malformed_credentials"},
		{"non-ASCII byte", map[string]string{"X-PDP-API-Key": oldKey + "\xc3\xa9"}, 401, "", "malformed_credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.metric(t, `pdp_pep_auth_failures_total{reason="`+tc.reason+`"}`)
			nEvents := len(e.audit.peps())
			resp, out := e.decide(t, tc.hdr, body)
			if resp.StatusCode != tc.status {
				t.Fatalf("HTTP %d %v, want %d", resp.StatusCode, out, tc.status)
			}
			peps := e.audit.peps()
			if tc.status == 200 {
				if out["allow"] != true || len(peps) != nEvents+1 || peps[len(peps)-1] != tc.pep {
					t.Fatalf("answer %v, audit peps %v, want pep %q", out, peps, tc.pep)
				}
				return
			}
			if out["error"] != "unauthorized" || out["error_description"] == "" {
				t.Fatalf("body %v", out)
			}
			if h := resp.Header.Get("WWW-Authenticate"); h != `Bearer realm="mcp-pdp"` {
				t.Fatalf("WWW-Authenticate %q", h)
			}
			if len(peps) != nEvents {
				t.Fatal("an unauthenticated call produced an audit event")
			}
			if after := e.metric(t, `pdp_pep_auth_failures_total{reason="`+tc.reason+`"}`); after != before+1 {
				t.Fatalf("failure counter %v -> %v", before, after)
			}
			if strings.Contains(out["error_description"].(string), "pdpk_") {
				t.Fatalf("the answer echoes a key: %v", out)
			}
		})
	}
}

// TestPEPAuthCoversAllOfV1: no path spelling reaches /v1/... without
// credentials (not even to learn that a route does not exist), and the
// public endpoints need none.
func TestPEPAuthCoversAllOfV1(t *testing.T) {
	e := newHEnv(t, hopts{api: func(o *api.Options) {
		o.Auth = api.PEPAuth{APIKeys: []api.APIKey{mustKey(t, "gw", "pdpk_k")}}
	}})
	for _, p := range []string{"/v1/decide", "/v1/", "/v1", "/v1/nope", "/V1/decide", "//v1/decide", "/v1/../v1/decide", "/./v1/decide", "/v1%2Fdecide", "/%761/decide"} {
		for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodOptions} {
			resp, out := e.do(t, nil, m, p, nil, []byte(`{}`))
			if resp.StatusCode != 401 || out["error"] != "unauthorized" {
				t.Errorf("%s %s without credentials: HTTP %d %v", m, p, resp.StatusCode, out)
			}
		}
	}
	for _, p := range []string{"/.well-known/oauth-protected-resource/mcp", "/healthz", "/readyz", "/metrics"} {
		if resp, _ := e.do(t, nil, http.MethodGet, p, nil, nil); resp.StatusCode != 200 {
			t.Errorf("GET %s = %d, want public 200", p, resp.StatusCode)
		}
	}
	if resp, _ := e.do(t, nil, http.MethodGet, "/v1/nope", map[string]string{"X-PDP-API-Key": "pdpk_k"}, nil); resp.StatusCode != 404 {
		t.Errorf("authenticated unknown route = %d, want 404", resp.StatusCode)
	}
}

// TestPEPMutualTLS with certificates generated here: an allowed client
// certificate authenticates (CN or DNS SAN, named in the audit event), a
// disallowed subject gets 401, a certificate from an unknown CA does not
// get past the handshake, and without a certificate an API key still works.
func TestPEPMutualTLS(t *testing.T) {
	ca, rogue := newTestCA(t, "PEP CA"), newTestCA(t, "rogue CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	serverCert := ca.issue(t, "pdp", nil, false)
	e := newHEnv(t, hopts{
		tls: &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12},
		api: func(o *api.Options) {
			o.Auth = api.PEPAuth{MTLS: true, AllowedSubjects: []string{"mcp-qr", "gw.pep.internal"}, APIKeys: []api.APIKey{mustKey(t, "keyed", "pdpk_k")}}
		},
	})
	client := func(certs ...tls.Certificate) *http.Client {
		// GetClientCertificate sends the certificate even when the server
		// does not list its issuer (the unknown CA case).
		tc := &tls.Config{RootCAs: certPool(ca), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if len(certs) == 0 {
				return &tls.Certificate{}, nil
			}
			return &certs[0], nil
		}}
		return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	body := mustJSON(req("", call("lookup_product", nil)))
	tests := []struct {
		name      string
		client    *http.Client
		hdr       map[string]string
		status    int // 0: the TLS handshake fails
		pep       string
		errReason string
	}{
		{"allowed CN", client(ca.issue(t, "mcp-qr", nil, true)), nil, 200, "mcp-qr", ""},
		{"allowed DNS SAN", client(ca.issue(t, "something", []string{"GW.pep.internal"}, true)), nil, 200, "gw.pep.internal", ""},
		{"disallowed subject", client(ca.issue(t, "intruder", []string{"intruder.pep.internal"}, true)), nil, 401, "", "certificate_not_allowed"},
		{"disallowed subject with a valid API key", client(ca.issue(t, "intruder", nil, true)), map[string]string{"X-PDP-API-Key": "pdpk_k"}, 401, "", "certificate_not_allowed"},
		{"server certificate as client certificate", client(ca.issue(t, "mcp-qr", nil, false)), nil, 0, "", ""},
		{"unknown CA", client(rogue.issue(t, "mcp-qr", nil, true)), nil, 0, "", ""},
		{"no certificate, API key", client(), map[string]string{"Authorization": "Bearer pdpk_k"}, 200, "keyed", ""},
		{"no certificate, no key", client(), nil, 401, "", "missing_credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hreq, _ := http.NewRequest(http.MethodPost, e.url+"/v1/decide", strings.NewReader(string(body)))
			hreq.Header.Set("Content-Type", "application/json")
			for k, v := range tc.hdr {
				hreq.Header.Set(k, v)
			}
			resp, err := tc.client.Do(hreq)
			if tc.status == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("HTTP %d, want a failed handshake", resp.StatusCode)
				}
				var ue interface{ Timeout() bool }
				if errors.As(err, &ue) && ue.Timeout() {
					t.Fatalf("timeout instead of a rejected handshake: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("HTTP %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.pep != "" {
				if peps := e.audit.peps(); peps[len(peps)-1] != tc.pep {
					t.Fatalf("audit pep = %q, want %q", peps[len(peps)-1], tc.pep)
				}
			}
			if tc.errReason != "" && e.metric(t, `pdp_pep_auth_failures_total{reason="`+tc.errReason+`"}`) == 0 {
				t.Fatalf("%s not counted", tc.errReason)
			}
		})
	}
}

func certPool(cas ...*testCA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.cert)
	}
	return p
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestPEPRateLimit: each PEP has its own bucket; over it, 429 with
// Retry-After; the other PEP is not affected.
func TestPEPRateLimit(t *testing.T) {
	e := newHEnv(t, hopts{api: func(o *api.Options) {
		o.Auth = api.PEPAuth{APIKeys: []api.APIKey{mustKey(t, "noisy", "pdpk_noisy"), mustKey(t, "quiet", "pdpk_quiet")}}
		// One token per 100 s: the bucket does not refill during the test.
		o.Limits = api.Limits{RatePerPEP: 0.01, RateBurst: 3}
	}})
	body := req("", call("lookup_product", nil))
	noisy := map[string]string{"X-PDP-API-Key": "pdpk_noisy"}
	for i := range 3 {
		if resp, out := e.decide(t, noisy, body); resp.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d %v", i, resp.StatusCode, out)
		}
	}
	resp, out := e.decide(t, noisy, body)
	if resp.StatusCode != 429 || out["error"] != "rate_limited" {
		t.Fatalf("over the burst: %d %v", resp.StatusCode, out)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 101 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if resp, out := e.decide(t, map[string]string{"X-PDP-API-Key": "pdpk_quiet"}, body); resp.StatusCode != 200 {
		t.Fatalf("other PEP: %d %v", resp.StatusCode, out)
	}
	// Unauthenticated calls do not spend any PEP's tokens.
	for range 5 {
		e.decide(t, map[string]string{"X-PDP-API-Key": "pdpk_wrong"}, body)
	}
	if e.metric(t, "pdp_rate_limited_total") != 1 {
		t.Fatalf("pdp_rate_limited_total = %v", e.metric(t, "pdp_rate_limited_total"))
	}
}

// gate holds every decision until released, to fill the concurrency limit
// with real requests.
type gate struct {
	api.Decider
	entered chan struct{}
	release chan struct{}
}

func (g *gate) DecideValid(ctx context.Context, r *pep.Request, pepName string) (*pep.Response, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Decider.DecideValid(ctx, r, pepName)
}

// TestConcurrencyLimit: with max_concurrent requests in progress, the next
// one is answered 503 overloaded at once, whoever sends it; when one
// finishes, requests are accepted again.
func TestConcurrencyLimit(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 64), release: make(chan struct{})}
	e := newHEnv(t, hopts{
		api:  func(o *api.Options) { o.Limits = api.Limits{MaxConcurrent: 2} },
		wrap: func(d api.Decider) api.Decider { g.Decider = d; return g },
	})
	body := req("", call("lookup_product", nil))
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range 2 {
		wg.Go(func() {
			resp, _ := e.decide(t, nil, body)
			codes[i] = resp.StatusCode
		})
	}
	for range 2 {
		select {
		case <-g.entered:
		case <-time.After(60 * time.Second):
			t.Fatal("requests did not reach the core")
		}
	}
	if got := e.metric(t, "pdp_api_in_flight"); got != 2 {
		t.Errorf("in flight = %v", got)
	}
	resp, out := e.decide(t, nil, body)
	if resp.StatusCode != 503 || out["error"] != "overloaded" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d %v %v", resp.StatusCode, out, resp.Header)
	}
	// Public endpoints are not counted against the limit.
	if resp, _ := e.do(t, nil, http.MethodGet, "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("healthz under load = %d", resp.StatusCode)
	}
	close(g.release)
	wg.Wait()
	if !slices.Equal(codes, []int{200, 200}) {
		t.Fatalf("held requests: %v", codes)
	}
	if resp, _ := e.decide(t, nil, body); resp.StatusCode != 200 {
		t.Fatalf("after release: %d", resp.StatusCode)
	}
	if e.metric(t, "pdp_overloaded_total") != 1 || e.metric(t, "pdp_api_in_flight") != 0 {
		t.Fatalf("overloaded=%v in_flight=%v", e.metric(t, "pdp_overloaded_total"), e.metric(t, "pdp_api_in_flight"))
	}
}
