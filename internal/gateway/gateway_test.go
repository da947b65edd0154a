package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/gateway"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
)

// upstream is a real MCP server (the official go-sdk) with the demo
// catalog's tools, behind a recorder of the headers it receives.
type upstream struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
}

func newUpstream(t *testing.T, jsonAnswers bool) *upstream {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "demo-upstream", Version: "1.0.0"}, nil)
	for _, name := range []string{"lookup_product", "generate_qr_url", "internal_debug"} {
		s.AddTool(&mcp.Tool{Name: name, Description: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ran " + name}}}, nil
			})
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{JSONResponse: jsonAnswers})
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// sawAuthorization reports whether any request reached the upstream with
// an Authorization header.
func (u *upstream) sawAuthorization() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.ContainsFunc(u.headers, func(h http.Header) bool { return h.Get("Authorization") != "" })
}

// bearer adds an Authorization header to every request of a client.
type bearer struct {
	value string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.value != "" {
		r.Header.Set("Authorization", b.value)
	}
	return b.next.RoundTrip(r)
}

type fixture struct {
	env      *coretest.Env
	up       *upstream
	endpoint string
}

func newFixture(t *testing.T, jsonAnswers bool) *fixture {
	t.Helper()
	return newFixtureWith(t, jsonAnswers, coretest.Options{})
}

// newFixtureWith is newFixture with the core built as co says.
func newFixtureWith(t *testing.T, jsonAnswers bool, co coretest.Options) *fixture {
	t.Helper()
	env := coretest.New(t, co)
	up := newUpstream(t, jsonAnswers)
	u, _ := url.Parse(up.URL)
	g, err := gateway.New(gateway.Options{Decider: env.Service, Resource: coretest.Resource, Upstream: u})
	if err != nil {
		t.Fatal(err)
	}
	gs := httptest.NewServer(g)
	t.Cleanup(gs.Close)
	return &fixture{env: env, up: up, endpoint: gs.URL + "/mcp"}
}

// connect opens an MCP session through the gateway with the official
// go-sdk client, sending authz (if any) on every request.
func (f *fixture) connect(t *testing.T, authz string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	c := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1.0.0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             f.endpoint,
		HTTPClient:           &http.Client{Transport: &bearer{value: authz, next: http.DefaultTransport}},
		DisableStandaloneSSE: true,
		MaxRetries:           -1,
	}, nil)
	if err != nil {
		t.Fatalf("connect through the gateway: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func toolNames(r *mcp.ListToolsResult) []string {
	var out []string
	for _, tl := range r.Tools {
		out = append(out, tl.Name)
	}
	slices.Sort(out)
	return out
}

// TestGatewayWithGoSDK: the official go-sdk client and server on both sides
// of the gateway, with JSON and with SSE answers: lists are filtered per
// caller, a protected tool needs its scope, a hidden tool does not exist,
// and the upstream never sees the client's token.
func TestGatewayWithGoSDK(t *testing.T) {
	for _, answers := range []struct {
		name string
		json bool
	}{{"sse answers", false}, {"json answers", true}} {
		t.Run(answers.name, func(t *testing.T) {
			f := newFixture(t, answers.json)
			ctx := context.Background()

			anon := f.connect(t, "")
			list, err := anon.ListTools(ctx, nil)
			if err != nil {
				t.Fatalf("anonymous tools/list: %v", err)
			}
			if got := toolNames(list); !slices.Equal(got, []string{"generate_qr_url", "lookup_product"}) {
				t.Fatalf("anonymous tools/list = %v, want the public and the step-up tool only", got)
			}
			// go-sdk marks its lists "public"; a filtered list is per caller.
			if list.CacheScope != "private" {
				t.Fatalf("filtered list cacheScope %q, want private", list.CacheScope)
			}
			if _, err := anon.CallTool(ctx, &mcp.CallToolParams{Name: "lookup_product"}); err != nil {
				t.Fatalf("anonymous call of a public tool: %v", err)
			}
			if _, err := anon.CallTool(ctx, &mcp.CallToolParams{Name: "generate_qr_url"}); err == nil {
				t.Fatal("anonymous call of the step-up tool succeeded")
			}

			tok := f.env.Bearer(t, devissuer.MintOptions{Subject: "alice", ClientID: "demo", Scopes: []string{"qr:generate"}})
			alice := f.connect(t, tok)
			res, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: "generate_qr_url"})
			if err != nil || res.IsError || len(res.Content) == 0 || res.Content[0].(*mcp.TextContent).Text != "ran generate_qr_url" {
				t.Fatalf("alice's call of the step-up tool: %+v %v", res, err)
			}
			hidden, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: "internal_debug"})
			var rpcErr interface{ Error() string }
			if err == nil || !errors.As(err, &rpcErr) || !strings.Contains(err.Error(), "nknown tool") {
				t.Fatalf("call of a hidden tool: %+v %v, want an unknown-tool error", hidden, err)
			}
			if f.up.sawAuthorization() {
				t.Fatal("the upstream received an Authorization header")
			}
		})
	}
}

// post sends one JSON-RPC message to the gateway as a raw HTTP client.
func post(t *testing.T, endpoint, authz, session, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		for _, line := range strings.Split(string(raw), "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				_ = json.Unmarshal([]byte(d), &out)
			}
		}
	} else {
		_ = json.Unmarshal(raw, &out)
	}
	return resp, out
}

const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// TestGatewayDenialsOnTheWire: what a client sees at the HTTP level: a 401
// challenge with a JSON-RPC error body for an anonymous call of a
// protected tool, 403 for a token without the scope, 401 for a bad token
// on a list before the upstream is asked, and a session that refuses
// another caller.
func TestGatewayDenialsOnTheWire(t *testing.T) {
	f := newFixture(t, true)
	alice := f.env.Bearer(t, devissuer.MintOptions{Subject: "alice", ClientID: "demo"})
	bob := f.env.Bearer(t, devissuer.MintOptions{Subject: "bob", ClientID: "demo", Scopes: []string{"qr:generate"}})

	resp, out := post(t, f.endpoint, alice, "", initialize)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %v session %q", resp.StatusCode, out, sid)
	}
	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{}}}`

	tests := []struct {
		name, authz, session, body string
		status                     int
		header                     string // in WWW-Authenticate
		errorMsg                   string // in the JSON-RPC error message
	}{
		{"anonymous call of a step-up tool", "", "", call, http.StatusUnauthorized, `scope="qr:generate"`, ""},
		{"token without the scope", alice, sid, call, http.StatusForbidden, `error="insufficient_scope"`, ""},
		{"invalid token on a list", "Bearer not.a.token", "", `{"jsonrpc":"2.0","id":8,"method":"tools/list"}`, http.StatusUnauthorized, `error="invalid_token"`, ""},
		{"another caller on alice's session", bob, sid, call, http.StatusForbidden, "", "another caller"},
		{"not JSON", "", "", `{"jsonrpc":`, http.StatusBadRequest, "", "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := post(t, f.endpoint, tc.authz, tc.session, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("HTTP %d %v, want %d", resp.StatusCode, out, tc.status)
			}
			if tc.header != "" && !strings.Contains(resp.Header.Get("WWW-Authenticate"), tc.header) {
				t.Fatalf("WWW-Authenticate %q, want it to contain %s", resp.Header.Get("WWW-Authenticate"), tc.header)
			}
			e, _ := out["error"].(map[string]any)
			if e == nil || e["code"] == nil {
				t.Fatalf("body %v: want a JSON-RPC error (clients drop their session on an empty body)", out)
			}
			if msg, _ := e["message"].(string); !strings.Contains(msg, tc.errorMsg) {
				t.Fatalf("error message %q, want %q", msg, tc.errorMsg)
			}
		})
	}
	if f.up.sawAuthorization() {
		t.Fatal("the upstream received an Authorization header")
	}
}

// TestGatewayUpstreamFailures: an upstream that is down, or answers a list
// with something that cannot be filtered, gives the client a JSON-RPC
// error; an unfiltered list never reaches it.
func TestGatewayUpstreamFailures(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`
	secret := `{"name":"internal_debug","inputSchema":{"type":"object"}}`
	tests := []struct {
		name    string
		handler http.HandlerFunc
		status  int
	}{
		{"malformed list answer", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":3,"result":{"tools":[`+secret+`,`)
		}, http.StatusBadGateway},
		{"oversized list answer", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":3,"result":{"tools":[`+secret+`],"pad":"`+strings.Repeat("x", 2<<10)+`"}}`)
		}, http.StatusBadGateway},
		{"list answer for another id", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":4,"result":{"tools":[`+secret+`]}}`)
		}, http.StatusBadGateway},
		{"broken SSE list answer", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":["+secret+"\n\n")
		}, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := httptest.NewServer(tc.handler)
			defer up.Close()
			u, _ := url.Parse(up.URL)
			g, err := gateway.New(gateway.Options{Decider: env.Service, Resource: coretest.Resource, Upstream: u, MaxResponseBytes: 1 << 10})
			if err != nil {
				t.Fatal(err)
			}
			gs := httptest.NewServer(g)
			defer gs.Close()
			req, _ := http.NewRequest(http.MethodPost, gs.URL, strings.NewReader(list))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || bytes.Contains(raw, []byte("internal_debug")) || !bytes.Contains(raw, []byte(`"error"`)) {
				t.Fatalf("HTTP %d %s: want %d, a JSON-RPC error and no hidden tool", resp.StatusCode, raw, tc.status)
			}
		})
	}
	t.Run("upstream down", func(t *testing.T) {
		up := httptest.NewServer(http.NotFoundHandler())
		u, _ := url.Parse(up.URL)
		up.Close()
		g, err := gateway.New(gateway.Options{Decider: env.Service, Resource: coretest.Resource, Upstream: u})
		if err != nil {
			t.Fatal(err)
		}
		gs := httptest.NewServer(g)
		defer gs.Close()
		resp, out := post(t, gs.URL, "", "", list)
		if resp.StatusCode != http.StatusBadGateway || out["error"] == nil {
			t.Fatalf("HTTP %d %v, want 502 with a JSON-RPC error", resp.StatusCode, out)
		}
	})
}

// TestGatewayHeaderMismatch: Mcp-Method and Mcp-Name (MCP 2026-07-28) that
// contradict the body are refused with HeaderMismatch (-32020) before the
// upstream is asked, and each refusal is one audit event (deny, the
// mismatch as its reason); matching ones, plain or Base64, pass.
func TestGatewayHeaderMismatch(t *testing.T) {
	audit := &auditLog{}
	f := newFixtureWith(t, true, coretest.Options{Auditor: audit})
	call := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"lookup_product","arguments":{}}}`
	tests := []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"matching", map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "lookup_product"}, http.StatusOK},
		{"matching in Base64", map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "=?base64?bG9va3VwX3Byb2R1Y3Q=?="}, http.StatusOK},
		{"other method", map[string]string{"Mcp-Method": "tools/list"}, http.StatusBadRequest},
		{"other name", map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "generate_qr_url"}, http.StatusBadRequest},
		{"bad Base64", map[string]string{"Mcp-Name": "=?base64?%%%?="}, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, f.endpoint, strings.NewReader(call))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			f.up.mu.Lock()
			upBefore := len(f.up.headers)
			f.up.mu.Unlock()
			audited := audit.count()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.status == http.StatusBadRequest {
				if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(raw, []byte(`"code":-32020`)) {
					t.Fatalf("HTTP %d %s, want 400 with -32020", resp.StatusCode, raw)
				}
				f.up.mu.Lock()
				upAfter := len(f.up.headers)
				f.up.mu.Unlock()
				if upAfter != upBefore {
					t.Fatal("the upstream was asked")
				}
				audit.mu.Lock()
				defer audit.mu.Unlock()
				if len(audit.events) != audited+1 {
					t.Fatalf("%d audit events for the refusal, want 1", len(audit.events)-audited)
				}
				if ev := audit.events[audited]; ev.Outcome != "deny" || !strings.HasPrefix(ev.Reason, "header mismatch: the Mcp-") {
					t.Fatalf("audited %s %q", ev.Outcome, ev.Reason)
				}
				return
			}
			if bytes.Contains(raw, []byte(`-32020`)) {
				t.Fatalf("matching headers refused: HTTP %d %s", resp.StatusCode, raw)
			}
		})
	}
}

// TestGatewayCaseVariantKeys: a message with a key that encoding/json
// would take for a member only up to case ("Params" beside "params") is
// refused before a decision and never reaches the upstream: the go-sdk and
// JSON.parse read keys exactly, so the upstream would run another request
// than the one decided (here the step-up tool, decided as the public one).
func TestGatewayCaseVariantKeys(t *testing.T) {
	f := newFixture(t, true)
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{}},"Params":{"name":"lookup_product"}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"generate_qr_url","NAME":"lookup_product","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","Method":"tools/list","params":{"name":"generate_qr_url"}}`,
	} {
		t.Run(body, func(t *testing.T) {
			f.up.mu.Lock()
			before := len(f.up.headers)
			f.up.mu.Unlock()
			resp, out := post(t, f.endpoint, "", "", body)
			e, _ := out["error"].(map[string]any)
			if resp.StatusCode != http.StatusBadRequest || e == nil || e["code"] != float64(-32600) || !strings.Contains(fmt.Sprint(e["message"]), "only in case") {
				t.Fatalf("HTTP %d %v, want 400 with -32600 naming the key", resp.StatusCode, out)
			}
			f.up.mu.Lock()
			after := len(f.up.headers)
			f.up.mu.Unlock()
			if after != before {
				t.Fatal("the ambiguous message reached the upstream")
			}
		})
	}
}

// TestGatewayConcurrencyLimit: beyond MaxConcurrent POSTs in progress the
// gateway answers 503 with Retry-After at once, and serves again when one
// finishes.
func TestGatewayConcurrencyLimit(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	entered, release := make(chan struct{}, 1), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	g, err := gateway.New(gateway.Options{Decider: env.Service, Resource: coretest.Resource, Upstream: u, MaxConcurrent: 1})
	if err != nil {
		t.Fatal(err)
	}
	gs := httptest.NewServer(g)
	defer gs.Close()
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_product"}}`
	first := make(chan int, 1)
	go func() {
		resp, err := http.Post(gs.URL, "application/json", strings.NewReader(call))
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-entered // the first POST holds the only slot
	resp, out := post(t, gs.URL, "", "", call)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || out["error"] == nil {
		t.Fatalf("over the limit: HTTP %d %v, want 503 with Retry-After and a JSON-RPC error", resp.StatusCode, out)
	}
	close(release)
	if code := <-first; code != http.StatusOK {
		t.Fatalf("the first POST: HTTP %d", code)
	}
	if resp, _ := post(t, gs.URL, "", "", call); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the slot was freed: HTTP %d", resp.StatusCode)
	}
}

// TestGatewaySSEPrimingEvent: a list answered as an SSE stream that opens
// with a priming event (an id and empty data, MCP 2025-11-25) is relayed
// with the priming event untouched and the list filtered; a stream cut for
// an unfilterable event carries the error for the list request's id, so
// that the client's request fails at once. (Found by the real-client suite
// with server-everything.)
func TestGatewaySSEPrimingEvent(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	list := `{"jsonrpc":"2.0","id":"l-1","method":"tools/list"}`
	tools := `{"jsonrpc":"2.0","id":"l-1","result":{"tools":[{"name":"lookup_product","inputSchema":{"type":"object"}},{"name":"internal_debug","inputSchema":{"type":"object"}}]}}`
	for _, tc := range []struct {
		name, stream string
		want, not    []string
	}{
		{"priming event first", "id: prime-1\ndata: \n\nevent: message\nid: ev-2\ndata: " + tools + "\n\n",
			[]string{"id: prime-1\ndata: \n\n", "id: ev-2\n", "lookup_product", `"cacheScope":"private"`}, []string{"internal_debug", `"id":null`}},
		{"garbage event during the list", "event: message\ndata: not json\n\n",
			[]string{`"id":"l-1"`, `"error"`}, []string{`"id":null`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, tc.stream)
			}))
			defer up.Close()
			u, _ := url.Parse(up.URL)
			g, err := gateway.New(gateway.Options{Decider: env.Service, Resource: coretest.Resource, Upstream: u})
			if err != nil {
				t.Fatal(err)
			}
			gs := httptest.NewServer(g)
			defer gs.Close()
			resp, err := http.Post(gs.URL, "application/json", strings.NewReader(list))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, w := range tc.want {
				if !bytes.Contains(raw, []byte(w)) {
					t.Errorf("the stream lacks %q:\n%s", w, raw)
				}
			}
			for _, n := range tc.not {
				if bytes.Contains(raw, []byte(n)) {
					t.Errorf("the stream holds %q:\n%s", n, raw)
				}
			}
		})
	}
}
