package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// TestAuthZENParity: for the demo catalog, the AuthZEN decision is the one
// /v1/decide gives for the same caller and message, the /v1/decide side
// with a real token of the dev issuer carrying the same sub, client_id and
// scopes.
func TestAuthZENParity(t *testing.T) {
	e := newServer(t, serverOptions{})
	callers := []struct {
		name   string
		mint   *devissuer.MintOptions // nil: anonymous
		scopes []string
	}{
		{"anonymous", nil, nil},
		{"alice without scopes", &devissuer.MintOptions{Subject: "alice", ClientID: "agent-7"}, nil},
		{"alice with qr:generate", &devissuer.MintOptions{Subject: "alice", ClientID: "agent-7", Scopes: []string{"qr:generate"}}, []string{"qr:generate"}},
		{"alice with qr:admin", &devissuer.MintOptions{Subject: "alice", ClientID: "agent-7", Scopes: []string{"openid", "qr:admin"}}, []string{"openid", "qr:admin"}},
		{"client on its own", &devissuer.MintOptions{Subject: "agent-7", ClientID: "agent-7"}, nil},
	}
	requests := []struct {
		name     string
		message  string
		action   string
		resource string
	}{
		{"tools/list", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "tools/list", `{"type":"mcp_server","id":"` + resource + `"}`},
		{"public tool", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_product","arguments":{}}}`, "tools/call", `{"type":"tool","id":"lookup_product"}`},
		{"step-up tool", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{}}}`, "tools/call", `{"type":"tool","id":"generate_qr_url"}`},
		{"hidden tool", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_tables","arguments":{}}}`, "tools/call", `{"type":"tool","id":"drop_tables"}`},
		{"initialize", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`, "initialize", `{"type":"mcp_server","id":"` + resource + `"}`},
		{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"x-vendor/frobnicate"}`, "x-vendor/frobnicate", `{"type":"mcp_server","id":"` + resource + `"}`},
	}
	for _, c := range callers {
		auth := ""
		subject := `{"type":"anonymous","id":"anonymous"}`
		context := `{}`
		if c.mint != nil {
			auth = e.mint(t, *c.mint)
			props := ""
			if c.scopes != nil {
				sc, _ := json.Marshal(c.scopes)
				props = `,"properties":{"scopes":` + string(sc) + `}`
			}
			subject = `{"type":"identity","id":"` + c.mint.Subject + `"` + props + `}`
			context = `{"agent":"` + c.mint.ClientID + `"}`
		}
		for _, r := range requests {
			t.Run(c.name+"/"+r.name, func(t *testing.T) {
				body := map[string]any{"resource": resource, "message": json.RawMessage(r.message)}
				if auth != "" {
					body["authorization"] = auth
				}
				resp, want := e.decide(t, nil, body)
				if resp.StatusCode != 200 {
					t.Fatalf("/v1/decide %d %v", resp.StatusCode, want)
				}
				az := `{"subject":` + subject + `,"action":{"name":"` + r.action + `"},"resource":` + r.resource + `,"context":` + context + `}`
				resp, got := e.do(t, nil, http.MethodPost, "/access/v1/evaluation", nil, []byte(az))
				if resp.StatusCode != 200 {
					t.Fatalf("evaluation %d %v", resp.StatusCode, got)
				}
				gc, _ := got["context"].(map[string]any)
				if got["decision"] != want["allow"] || gc == nil {
					t.Fatalf("decision %v, /v1/decide allow %v", got, want["allow"])
				}
				for _, k := range []string{"outcome", "http_status", "reason", "required_scopes", "missing_scopes", "www_authenticate", "policy_revision"} {
					g, _ := json.Marshal(gc[k])
					w, _ := json.Marshal(want[k])
					if string(g) != string(w) {
						t.Errorf("%s: authzen %s, /v1/decide %s", k, g, w)
					}
				}
				if want["jsonrpc_error"] != nil {
					g, _ := json.Marshal(gc["jsonrpc_error"])
					w, _ := json.Marshal(want["jsonrpc_error"])
					if string(g) != string(w) {
						t.Errorf("jsonrpc_error: authzen %s, /v1/decide %s", g, w)
					}
				}
				if gc["decision_id"] == want["decision_id"] || gc["decision_id"] == "" {
					t.Errorf("decision ids %v %v", gc["decision_id"], want["decision_id"])
				}
			})
		}
	}
	// Two audit events per case: one per decision, the AuthZEN one
	// validated by the PEP.
	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	if n := len(e.audit.events); n != 2*len(callers)*len(requests) {
		t.Fatalf("%d audit events", n)
	}
	for i := 0; i+1 < len(e.audit.events); i += 2 {
		d, a := e.audit.events[i], e.audit.events[i+1]
		if d.Subject != a.Subject || d.Outcome != a.Outcome || (a.Subject != "" && a.TokenValidation != "pep") {
			t.Errorf("events %+v / %+v", d, a)
		}
	}
}

// TestAuthZENRoutes: the evaluation endpoints are behind the PEP
// authentication of /v1/decide, answer the X-Request-ID, refuse what
// /v1/decide refuses (content type, body limit); the metadata document is
// public.
func TestAuthZENRoutes(t *testing.T) {
	e := newServer(t, serverOptions{api: func(o *api.Options) {
		o.Auth = api.PEPAuth{APIKeys: []api.APIKey{mustKey(t, "gateway", "s3cret")}}
		o.MaxBodyBytes = 4 << 10
	}})
	key := map[string]string{api.APIKeyHeader: "s3cret"}
	one := []byte(`{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"lookup_product"}}`)
	batch := []byte(`{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/call"},"options":{"evaluations_semantic":"permit_on_first_permit"},` +
		`"evaluations":[{"resource":{"type":"tool","id":"generate_qr_url"}},{"resource":{"type":"tool","id":"lookup_product"}},{"resource":{"type":"tool","id":"search_products"}}]}`)

	cases := []struct {
		name, method, path string
		hdr                map[string]string
		body               []byte
		status             int
		check              func(t *testing.T, resp *http.Response, out map[string]any)
	}{
		{"no credentials", http.MethodPost, "/access/v1/evaluation", nil, one, 401, func(t *testing.T, resp *http.Response, out map[string]any) {
			if resp.Header.Get("WWW-Authenticate") == "" || out["error"] != "unauthorized" {
				t.Errorf("%v %v", resp.Header, out)
			}
		}},
		{"no credentials, other spelling", http.MethodPost, "/ACCESS/v1/evaluations", nil, batch, 401, nil},
		{"evaluation", http.MethodPost, "/access/v1/evaluation", map[string]string{api.APIKeyHeader: "s3cret", "X-Request-ID": "bfe9eb29-ab87"}, one, 200, func(t *testing.T, resp *http.Response, out map[string]any) {
			c, _ := out["context"].(map[string]any)
			if out["decision"] != true || c["outcome"] != "allow" || resp.Header.Get("X-Request-ID") != "bfe9eb29-ab87" {
				t.Errorf("%v %v", resp.Header, out)
			}
		}},
		{"evaluations", http.MethodPost, "/access/v1/evaluations", key, batch, 200, func(t *testing.T, resp *http.Response, out map[string]any) {
			ev, _ := out["evaluations"].([]any)
			if len(ev) != 2 || ev[0].(map[string]any)["decision"] != false || ev[1].(map[string]any)["decision"] != true {
				t.Errorf("%v", out)
			}
		}},
		{"malformed", http.MethodPost, "/access/v1/evaluation", map[string]string{api.APIKeyHeader: "s3cret", "X-Request-ID": "r-2"}, []byte(`{"subject":{"type":"identity","id":"alice"}}`), 400, func(t *testing.T, resp *http.Response, out map[string]any) {
			if out["error"] != "invalid_request" || !strings.Contains(out["error_description"].(string), "action is required") || resp.Header.Get("X-Request-ID") != "r-2" {
				t.Errorf("%v %v", resp.Header, out)
			}
		}},
		{"content type", http.MethodPost, "/access/v1/evaluation", map[string]string{api.APIKeyHeader: "s3cret", "Content-Type": "text/plain"}, one, 415, nil},
		{"too large", http.MethodPost, "/access/v1/evaluations", key, []byte(`{"x":"` + strings.Repeat("a", 5<<10) + `"}`), 413, nil},
		{"GET evaluation", http.MethodGet, "/access/v1/evaluation", key, nil, 405, nil},
		{"metadata without credentials", http.MethodGet, "/.well-known/authzen-configuration", nil, nil, 200, func(t *testing.T, resp *http.Response, out map[string]any) {
			base := e.url
			if out["policy_decision_point"] != base || out["access_evaluation_endpoint"] != base+"/access/v1/evaluation" ||
				out["access_evaluations_endpoint"] != base+"/access/v1/evaluations" || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%v %v", resp.Header, out)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := e.do(t, nil, tc.method, tc.path, tc.hdr, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %v", resp.StatusCode, tc.status, out)
			}
			if tc.check != nil {
				tc.check(t, resp, out)
			}
		})
	}
	// The decisions are audited for the authenticated PEP: the evaluation
	// and the two evaluations of the batch that ran.
	if peps := e.audit.peps(); len(peps) != 3 || peps[0] != "gateway" || peps[2] != "gateway" {
		t.Fatalf("audited PEPs %v", peps)
	}
	// ...and counted in pdp_decisions_total, as /v1/decide's: two allows
	// (the evaluation, the batch's permit) and the batch's challenge.
	r, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(body), `pdp_decisions_total{http_status="200",outcome="allow",pep="gateway",resource="`+resource+`"} 2`) ||
		!strings.Contains(string(body), `pdp_decisions_total{http_status="403",outcome="challenge",pep="gateway",resource="`+resource+`"} 1`) {
		t.Fatalf("metrics:\n%s", body)
	}
}

// TestAuthZENConfigurationPublicURL: behind a proxy the metadata names the
// configured public URL, whatever Host or X-Forwarded-* the request says;
// without one it names the request's own scheme and host (and varies on
// Host), never a forwarded one.
func TestAuthZENConfigurationPublicURL(t *testing.T) {
	spoof := map[string]string{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "Forwarded": "host=evil.example;proto=https"}
	tests := []struct {
		name, public string
		want         func(e *serverEnv) string
		vary         string
	}{
		{"configured", "https://pdp.example.com/authz", func(*serverEnv) string { return "https://pdp.example.com/authz" }, ""},
		{"from the request", "", func(e *serverEnv) string { return e.url }, "Host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newServer(t, serverOptions{api: func(o *api.Options) { o.PublicURL = tt.public }})
			resp, out := e.do(t, nil, http.MethodGet, "/.well-known/authzen-configuration", spoof, nil)
			base := tt.want(e)
			if resp.StatusCode != 200 || out["policy_decision_point"] != base || out["access_evaluation_endpoint"] != base+"/access/v1/evaluation" ||
				out["access_evaluations_endpoint"] != base+"/access/v1/evaluations" || resp.Header.Get("Vary") != tt.vary {
				t.Fatalf("%d %v %v", resp.StatusCode, resp.Header, out)
			}
		})
	}
}
