package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
)

const (
	resource = coretest.Resource
	prm      = coretest.MetadataURL
)

// recorder keeps audit events in memory: the audit sink itself is tested
// against a real NATS server in internal/auditsink and cmd/pdp.
type recorder struct {
	mu     sync.Mutex
	events []*auditsink.Event
	fail   error
}

func (r *recorder) Record(_ context.Context, ev *auditsink.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	c := *ev // Record must not keep ev
	r.events = append(r.events, &c)
	return nil
}

type env struct {
	srv   *httptest.Server
	iss   *devissuertest.Server
	audit *recorder
}

func setup(t *testing.T, opts ...func(*core.Options)) *env {
	t.Helper()
	rec := &recorder{}
	c := coretest.New(t, coretest.Options{
		Auditor: rec, TokenCacheSize: 100,
		AuditArguments: true, Redact: []string{"secret"},
		Core: func(co *core.Options) {
			for _, o := range opts {
				o(co)
			}
		},
	})
	h := api.New(api.Options{
		Core:         c.Service,
		MaxBodyBytes: 64 << 10,
		Metadata: []api.MetadataDoc{{Host: "mcp.example.com", Path: "/.well-known/oauth-protected-resource/mcp",
			Document: stepup.NewMetadata(resource, []string{c.Issuer.URL}, []string{"qr:generate"})}},
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{srv: srv, iss: c.Issuer, audit: rec}
}

func (e *env) token(t *testing.T, scopes ...string) string {
	return "Bearer " + e.iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "claude", Audience: []string{resource}, Scopes: scopes})
}

func (e *env) post(t *testing.T, body any) (*http.Response, map[string]any) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		r = bytes.NewReader(raw)
	}
	resp, err := http.Post(e.srv.URL+"/v1/decide", "application/json", r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response is not JSON: %q", raw)
	}
	return resp, out
}

func call(name string, args map[string]any) map[string]any {
	p := map[string]any{"name": name}
	if args != nil {
		p["arguments"] = args
	}
	return map[string]any{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": p}
}

func req(authz string, msg map[string]any) map[string]any {
	r := map[string]any{"resource": resource, "message": msg}
	if authz != "" {
		r["authorization"] = authz
	}
	return r
}

func TestDecideCalls(t *testing.T) {
	e := setup(t)
	expired := "Bearer " + e.iss.Mint(t, devissuer.MintOptions{Subject: "a", Audience: []string{resource}, TTL: -time.Hour})
	otherAud := "Bearer " + e.iss.Mint(t, devissuer.MintOptions{Subject: "a", Audience: []string{"https://other.example/mcp"}})
	tests := []struct {
		name    string
		body    map[string]any
		allow   bool
		status  int
		header  string
		rpcCode float64
		outcome string
	}{
		{"anonymous public", req("", call("lookup_product", nil)), true, 200, "", 0, "allow"},
		{"anonymous step-up", req("", call("generate_qr_url", nil)), false, 401,
			`Bearer resource_metadata="` + prm + `", scope="qr:generate"`, 0, "challenge"},
		{"token lacking scope", req(e.token(t, "other"), call("generate_qr_url", nil)), false, 403,
			`Bearer error="insufficient_scope", scope="qr:generate", resource_metadata="` + prm + `", error_description="missing scopes: qr:generate"`, 0, "challenge"},
		{"token with scope", req(e.token(t, "qr:generate"), call("generate_qr_url", map[string]any{"gtin": "4006381333931", "secret": "x"})), true, 200, "", 0, "allow"},
		{"hidden tool", req(e.token(t, "qr:generate"), call("drop_database", nil)), false, 200, "", -32602, "deny"},
		{"expired token on public tool", req(expired, call("lookup_product", nil)), false, 401,
			`Bearer error="invalid_token", resource_metadata="` + prm + `", error_description="token expired"`, 0, "challenge"},
		{"expired token on step-up tool", req(expired, call("generate_qr_url", nil)), false, 401,
			`Bearer error="invalid_token", resource_metadata="` + prm + `", scope="qr:generate", error_description="token expired"`, 0, "challenge"},
		{"wrong audience", req(otherAud, call("generate_qr_url", nil)), false, 401, "", 0, "challenge"},
		{"basic scheme", req("Basic YTpi", call("lookup_product", nil)), false, 401, "", 0, "challenge"},
		{"two tokens", req(e.token(t)+", "+e.token(t), call("lookup_product", nil)), false, 401, "", 0, "challenge"},
		{"missing tool name", req("", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{}}), false, 200, "", -32602, "deny"},
		{"initialize", req("", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{}}), true, 200, "", 0, "allow"},
		{"notification", req("", map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"}), true, 200, "", 0, "allow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := e.post(t, tc.body)
			if resp.StatusCode != 200 {
				t.Fatalf("HTTP %d: %v", resp.StatusCode, out)
			}
			if out["allow"] != tc.allow || out["http_status"] != float64(tc.status) || out["outcome"] != tc.outcome {
				t.Fatalf("allow=%v http_status=%v outcome=%v, want %v %d %s: %v", out["allow"], out["http_status"], out["outcome"], tc.allow, tc.status, tc.outcome, out)
			}
			if tc.header != "" && out["www_authenticate"] != tc.header {
				t.Fatalf("www_authenticate =\n%v\nwant\n%v", out["www_authenticate"], tc.header)
			}
			if h, _ := out["www_authenticate"].(string); h != "" {
				if _, err := stepup.ParseChallenges(h); err != nil {
					t.Fatalf("challenge %q does not parse: %v", h, err)
				}
			}
			if tc.rpcCode != 0 {
				rpc, _ := out["jsonrpc_error"].(map[string]any)
				if rpc == nil || rpc["code"] != tc.rpcCode {
					t.Fatalf("jsonrpc_error = %v, want code %v", out["jsonrpc_error"], tc.rpcCode)
				}
			}
			if id, _ := out["decision_id"].(string); id == "" {
				t.Fatal("no decision_id")
			}
			if s, _ := out["reason"].(string); strings.Contains(s, "eyJ") {
				t.Fatalf("reason echoes a token: %q", s)
			}
		})
	}
	// One audit event per decision, with the decision id, never the token.
	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	if len(e.audit.events) != len(tests) {
		t.Fatalf("%d audit events for %d decisions", len(e.audit.events), len(tests))
	}
	ids := map[string]bool{}
	for _, ev := range e.audit.events {
		if ids[ev.ID] {
			t.Fatalf("duplicate decision id %s", ev.ID)
		}
		ids[ev.ID] = true
		raw, _ := json.Marshal(ev)
		if bytes.Contains(raw, []byte("eyJ")) {
			t.Fatalf("audit event contains a token: %s", raw)
		}
	}
	allowed := e.audit.events[3]
	if allowed.Subject != "alice" || allowed.ClientID != "claude" || allowed.Target != "generate_qr_url" || !strings.HasPrefix(allowed.TokenFingerprint, "sha256:") {
		t.Fatalf("allowed event = %+v", allowed)
	}
	if allowed.Arguments["secret"] != "[REDACTED]" || allowed.Arguments["gtin"] != "4006381333931" {
		t.Fatalf("arguments = %v", allowed.Arguments)
	}
}

func TestDecideToolResultChallenge(t *testing.T) {
	e := setup(t)
	_, out := e.post(t, req("", call("generate_qr_url", nil)))
	tr, _ := out["tool_result"].(map[string]any)
	if tr == nil || tr["isError"] != true {
		t.Fatalf("tool_result = %v", out["tool_result"])
	}
	meta, _ := tr["_meta"].(map[string]any)
	list, _ := meta["mcp/www_authenticate"].([]any)
	if len(list) != 1 || list[0] != out["www_authenticate"] {
		t.Fatalf("_meta = %v", meta)
	}
}

func TestDecideList(t *testing.T) {
	e := setup(t)
	result := map[string]any{
		"nextCursor": "abc",
		"tools": []any{
			map[string]any{"name": "ping", "inputSchema": map[string]any{"type": "object"}},
			map[string]any{"name": "generate_qr_url", "inputSchema": map[string]any{"type": "object"}, "_meta": map[string]any{"x": 1}},
			map[string]any{"name": "internal_admin", "inputSchema": map[string]any{"type": "object"}},
		},
	}
	body := map[string]any{"resource": resource, "message": map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, "result": result}
	_, out := e.post(t, body)
	if out["allow"] != true || out["outcome"] != "filtered" {
		t.Fatalf("%v", out)
	}
	res := out["result"].(map[string]any)
	if res["nextCursor"] != "abc" {
		t.Fatalf("other result fields lost: %v", res)
	}
	tools := res["tools"].([]any)
	if len(tools) != 2 {
		t.Fatalf("tools = %v", tools)
	}
	ping, qr := tools[0].(map[string]any), tools[1].(map[string]any)
	if got, _ := json.Marshal(ping["securitySchemes"]); string(got) != `[{"type":"noauth"}]` {
		t.Fatalf("ping schemes = %s", got)
	}
	if got, _ := json.Marshal(qr["securitySchemes"]); string(got) != `[{"scopes":["qr:generate"],"type":"oauth2"}]` {
		t.Fatalf("qr schemes = %s", got)
	}
	meta := qr["_meta"].(map[string]any)
	if meta["x"] != float64(1) || meta["securitySchemes"] == nil {
		t.Fatalf("_meta = %v", meta)
	}
	e.audit.mu.Lock()
	ev := e.audit.events[0]
	e.audit.mu.Unlock()
	if strings.Join(ev.Visible, ",") != "ping,generate_qr_url" || strings.Join(ev.Hidden, ",") != "internal_admin" {
		t.Fatalf("audit visible=%v hidden=%v", ev.Visible, ev.Hidden)
	}
}

func TestAPIErrors(t *testing.T) {
	e := setup(t)
	listMsg := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	tests := []struct {
		name, ctype, body string
		status            int
		code              string
	}{
		{"malformed JSON", "application/json", `{"resource":`, 400, "invalid_json"},
		{"not an object", "application/json", `[1,2]`, 400, "invalid_json"},
		{"unknown field", "application/json", `{"resource":"` + resource + `","authorisation":"x","message":{}}`, 400, "invalid_json"},
		{"trailing data", "application/json", `{"resource":"` + resource + `","message":` + listMsg + `} {}`, 400, "invalid_json"},
		{"empty body", "application/json", ``, 400, "invalid_request"},
		{"missing resource", "application/json", `{"message":` + listMsg + `}`, 400, "invalid_request"},
		{"unknown resource", "application/json", `{"resource":"https://nope.example/mcp","message":` + listMsg + `}`, 400, "unknown_resource"},
		{"missing message", "application/json", `{"resource":"` + resource + `"}`, 400, "invalid_request"},
		{"message not JSON-RPC", "application/json", `{"resource":"` + resource + `","message":{"method":"tools/list"}}`, 400, "invalid_message"},
		{"message without method", "application/json", `{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1}}`, 400, "invalid_message"},
		{"batch message", "application/json", `{"resource":"` + resource + `","message":[` + listMsg + `]}`, 400, "invalid_message"},
		{"http_method with a message", "application/json", `{"resource":"` + resource + `","message":` + listMsg + `,"http_method":"GET"}`, 400, "invalid_request"},
		{"unknown http_method", "application/json", `{"resource":"` + resource + `","http_method":"PUT"}`, 400, "invalid_request"},
		{"http_method not a string", "application/json", `{"resource":"` + resource + `","http_method":1}`, 400, "invalid_json"},
		{"list with bad result", "application/json", `{"resource":"` + resource + `","message":` + listMsg + `,"result":{"tools":{}}}`, 400, "invalid_result"},
		{"tool without name", "application/json", `{"resource":"` + resource + `","message":` + listMsg + `,"result":{"tools":[{"title":"x"}]}}`, 400, "invalid_result"},
		{"wrong content type", "text/plain", `{}`, 415, "unsupported_media_type"},
		{"oversized", "application/json", `{"resource":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "request_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(e.srv.URL+"/v1/decide", tc.ctype, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || out["error"] != tc.code || out["error_description"] == "" {
				t.Fatalf("HTTP %d %v, want %d %s", resp.StatusCode, out, tc.status, tc.code)
			}
		})
	}
	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	if len(e.audit.events) != 0 {
		t.Fatalf("API errors produced %d audit events", len(e.audit.events))
	}
}

func TestNotReady(t *testing.T) {
	e := setup(t, func(o *core.Options) { o.Engine = decision.NewEngine(nil) })
	resp, out := e.post(t, req("", call("ping", nil)))
	if resp.StatusCode != 503 || out["error"] != "not_ready" {
		t.Fatalf("%d %v", resp.StatusCode, out)
	}
	r, err := http.Get(e.srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 503 {
		t.Fatalf("readyz = %d", r.StatusCode)
	}
}

func TestAuditFailureDenies(t *testing.T) {
	e := setup(t, func(o *core.Options) { o.DenyUnaudited = true })
	e.audit.fail = io.ErrClosedPipe
	_, out := e.post(t, req("", call("lookup_product", nil)))
	if out["allow"] != false || out["http_status"] != float64(503) || !strings.Contains(out["reason"].(string), "audit unavailable") {
		t.Fatalf("%v", out)
	}
}

func TestMetadataAndHealth(t *testing.T) {
	e := setup(t)
	get := func(path string) (int, map[string]any) {
		r, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(r.Body).Decode(&out)
		return r.StatusCode, out
	}
	code, doc := get("/.well-known/oauth-protected-resource/mcp")
	if code != 200 || doc["resource"] != resource {
		t.Fatalf("%d %v", code, doc)
	}
	if got, _ := json.Marshal(doc["bearer_methods_supported"]); string(got) != `["header"]` {
		t.Fatalf("bearer_methods_supported = %s", got)
	}
	if code, _ := get("/.well-known/oauth-protected-resource/other"); code != 404 {
		t.Fatalf("unknown metadata path = %d", code)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
	e.post(t, req("", call("ping", nil)))
	r, err := http.Get(e.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	// Labelled with the resource (here its URI: no ResourceLabels) and the
	// PEP (none: the API is open).
	if !strings.Contains(string(body), `pdp_decisions_total{http_status="200",outcome="allow",pep="none",resource="`+resource+`"} 1`) {
		t.Fatalf("metrics:\n%s", body)
	}
}
