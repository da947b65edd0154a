package api_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/testkit"
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
	e := newServer(t, serverOptions{api: func(o *api.Options) {
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
	e := newServer(t, serverOptions{api: func(o *api.Options) {
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
	ca, rogue := testkit.NewCA(t, "PEP CA"), testkit.NewCA(t, "rogue CA")
	serverCert := ca.KeyPair(t, testkit.Leaf{CommonName: "pdp"})
	e := newServer(t, serverOptions{
		tls: &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12},
		api: func(o *api.Options) {
			o.Auth = api.PEPAuth{MTLS: true, AllowedSubjects: []string{"mcp-qr", "gw.pep.internal"}, APIKeys: []api.APIKey{mustKey(t, "keyed", "pdpk_k")}}
		},
	})
	client := func(certs ...tls.Certificate) *http.Client {
		// GetClientCertificate sends the certificate even when the server
		// does not list its issuer (the unknown CA case).
		tc := &tls.Config{RootCAs: ca.Pool(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
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
		{"allowed CN", client(ca.KeyPair(t, testkit.Leaf{CommonName: "mcp-qr", Client: true})), nil, 200, "mcp-qr", ""},
		{"allowed DNS SAN", client(ca.KeyPair(t, testkit.Leaf{CommonName: "something", DNSNames: []string{"GW.pep.internal"}, Client: true})), nil, 200, "gw.pep.internal", ""},
		{"disallowed subject", client(ca.KeyPair(t, testkit.Leaf{CommonName: "intruder", DNSNames: []string{"intruder.pep.internal"}, Client: true})), nil, 401, "", "certificate_not_allowed"},
		{"disallowed subject with a valid API key", client(ca.KeyPair(t, testkit.Leaf{CommonName: "intruder", Client: true})), map[string]string{"X-PDP-API-Key": "pdpk_k"}, 401, "", "certificate_not_allowed"},
		{"server certificate as client certificate", client(ca.KeyPair(t, testkit.Leaf{CommonName: "mcp-qr"})), nil, 0, "", ""},
		{"unknown CA", client(rogue.KeyPair(t, testkit.Leaf{CommonName: "mcp-qr", Client: true})), nil, 0, "", ""},
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

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
