package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/policies"
)

// TestOversizedBodies: a 10 MB body is refused with 413 whether or not it
// announces its length, without reading it all.
func TestOversizedBodies(t *testing.T) {
	e := newHEnv(t, hopts{api: func(o *api.Options) { o.MaxBodyBytes = 1 << 20 }})
	big := bytes.Repeat([]byte("a"), 10<<20)
	tests := []struct {
		name    string
		body    func() io.Reader
		chunked bool
	}{
		{"10 MB with Content-Length", func() io.Reader { return bytes.NewReader(big) }, false},
		{"10 MB chunked", func() io.Reader { return io.MultiReader(bytes.NewReader(big)) }, true},
		{"1 MB + 1 byte chunked", func() io.Reader { return io.MultiReader(bytes.NewReader(big[:1<<20+1])) }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hreq, _ := http.NewRequest(http.MethodPost, e.url+"/v1/decide", tc.body())
			hreq.Header.Set("Content-Type", "application/json")
			if tc.chunked != (hreq.ContentLength <= 0) {
				t.Fatalf("content length %d", hreq.ContentLength)
			}
			resp, err := e.client.Do(hreq)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&out)
			if resp.StatusCode != 413 || out["error"] != "request_too_large" {
				t.Fatalf("HTTP %d %v", resp.StatusCode, out)
			}
		})
	}
	// The server is still fine.
	if resp, _ := e.decide(t, nil, req("", call("ping", nil))); resp.StatusCode != 200 {
		t.Fatalf("after: %d", resp.StatusCode)
	}
}

// TestDeeplyNestedJSON: 100k levels of nesting anywhere in the request are a
// 400 (or an invalid-params deny for arguments), never a stack blow-up.
func TestDeeplyNestedJSON(t *testing.T) {
	e := newHEnv(t, hopts{api: func(o *api.Options) { o.MaxBodyBytes = 1 << 20 }})
	const depth = 100_000
	arrays := strings.Repeat("[", depth) + strings.Repeat("]", depth)
	objects := strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
	open := strings.Repeat("[", depth)
	msg := func(params string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + params + `}`
	}
	tests := []struct {
		name, body string
		status     int
		errCode    string // API error, or "" for a 200 deny
	}{
		{"body", arrays, 400, "invalid_json"},
		{"body, unterminated", open, 400, "invalid_json"},
		{"message", `{"resource":"` + resource + `","message":` + arrays + `}`, 400, "invalid_json"},
		{"params", `{"resource":"` + resource + `","message":` + msg(objects) + `}`, 400, "invalid_json"},
		{"arguments", `{"resource":"` + resource + `","message":` + msg(`{"name":"lookup_product","arguments":{"x":`+arrays+`}}`) + `}`, 400, "invalid_json"},
		{"id", `{"resource":"` + resource + `","message":{"jsonrpc":"2.0","method":"ping","id":` + arrays + `}}`, 400, "invalid_json"},
		{"list result", `{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1,"method":"tools/list"},"result":{"tools":[{"name":"a","inputSchema":` + objects + `}]}}`, 400, "invalid_json"},
		// Deep but within encoding/json's limit: decoded, then refused or decided.
		{"arguments 5000 deep", `{"resource":"` + resource + `","message":` + msg(`{"name":"lookup_product","arguments":{"x":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000)+`}}`) + `}`, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := e.decide(t, nil, []byte(tc.body))
			if resp.StatusCode != tc.status {
				t.Fatalf("HTTP %d %v, want %d", resp.StatusCode, out, tc.status)
			}
			if tc.errCode != "" && out["error"] != tc.errCode {
				t.Fatalf("error %v, want %s", out, tc.errCode)
			}
			if tc.errCode == "" && out["decision_id"] == nil {
				t.Fatalf("no decision: %v", out)
			}
		})
	}
}

// TestHugeResultList: 100k tools are refused by the default body limit;
// with a limit that admits them, the answer comes back bounded by the
// decision budget: filtered, or a deny if the budget ran out.
func TestHugeResultList(t *testing.T) {
	body := listBody(100_000)
	t.Run("default limit", func(t *testing.T) {
		e := newHEnv(t, hopts{api: func(o *api.Options) { o.MaxBodyBytes = 1 << 20 }})
		if resp, out := e.decide(t, nil, body); resp.StatusCode != 413 {
			t.Fatalf("HTTP %d %v", resp.StatusCode, out)
		}
	})
	t.Run("admitted", func(t *testing.T) {
		e := newHEnv(t, hopts{
			api:  func(o *api.Options) { o.MaxBodyBytes = int64(len(body)) },
			core: func(o *core.Options) { o.DecisionTimeout = 2 * time.Second },
		})
		resp, out := e.decide(t, nil, body)
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP %d %v", resp.StatusCode, out)
		}
		switch out["outcome"] {
		case "filtered":
			// The demo catalog hides unknown tools from anonymous callers.
			tools := out["result"].(map[string]any)["tools"].([]any)
			if len(tools) > 100_000 {
				t.Fatalf("%d tools", len(tools))
			}
		case "deny":
			if !strings.HasPrefix(out["reason"].(string), "decision failed:") {
				t.Fatalf("deny %v", out["reason"])
			}
		default:
			t.Fatalf("outcome %v", out["outcome"])
		}
	})
}

// TestTokenCacheBounded: many distinct valid tokens keep the verified-token
// cache at its bound, and every one of them is still verified correctly.
func TestTokenCacheBounded(t *testing.T) {
	const bound, n = 16, 300
	e := newHEnv(t, hopts{cacheSize: bound})
	for i := range n {
		tok := e.mint(t, devissuer.MintOptions{Subject: fmt.Sprintf("user-%d", i), Scopes: []string{"qr:generate"}})
		_, out := e.decide(t, nil, req(tok, call("generate_qr_url", nil)))
		if out["allow"] != true {
			t.Fatalf("token %d: %v", i, out)
		}
		if l := e.cache.Len(); l > bound {
			t.Fatalf("cache holds %d entries, bound %d", l, bound)
		}
	}
	// Garbage tokens are never cached.
	for i := range 50 {
		e.decide(t, nil, req(fmt.Sprintf("Bearer eyJ%d.eyJ.sig", i), call("ping", nil)))
	}
	if l := e.cache.Len(); l > bound {
		t.Fatalf("cache holds %d entries", l)
	}
}

// TestRunawayPolicyDeniesThroughAPI: a policy that loops or explodes is
// stopped by the evaluation budget; the PEP gets a deny with the reason,
// and the PDP keeps answering.
func TestRunawayPolicyDeniesThroughAPI(t *testing.T) {
	policies := map[string]string{
		"long loop": `package mcp.authz

decision := {"allow": count([x | some x in numbers.range(1, 100000000); x % 7 == 0]) > 0}
`,
		"combinatorial explosion": `package mcp.authz

decision := {"allow": count([y | some i in numbers.range(1, 2000); some j in numbers.range(1, 2000); some k in numbers.range(1, 2000); y := i * j * k]) > 0}
`,
	}
	for name, src := range policies {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := decision.Load(context.Background(), decision.Source{Path: dir}, decision.Options{CacheSize: -1})
			if err != nil {
				t.Fatal(err)
			}
			e := newHEnv(t, hopts{core: func(o *core.Options) {
				o.Engine = decision.NewEngine(p)
				o.DecisionTimeout = 100 * time.Millisecond
			}})
			bodies := map[string]any{
				"call": req(e.mint(t, devissuer.MintOptions{Scopes: []string{"qr:generate"}}), call("generate_qr_url", nil)),
				"list": json.RawMessage(listBody(3)),
			}
			for kind, body := range bodies {
				raw, _ := json.Marshal(body)
				resp, out := e.decide(t, nil, raw)
				if resp.StatusCode != 200 || out["allow"] != false || out["outcome"] != "deny" || out["http_status"] != float64(503) {
					t.Fatalf("%s: HTTP %d %v", kind, resp.StatusCode, out)
				}
				if r, _ := out["reason"].(string); !strings.HasPrefix(r, "decision failed: policy evaluation stopped") {
					t.Fatalf("%s: reason %q", kind, r)
				}
				if rpc, _ := out["jsonrpc_error"].(map[string]any); rpc == nil || rpc["code"] != float64(-32603) {
					t.Fatalf("%s: jsonrpc_error %v", kind, out["jsonrpc_error"])
				}
			}
			e.audit.mu.Lock()
			defer e.audit.mu.Unlock()
			if len(e.audit.events) != 2 || !strings.HasPrefix(e.audit.events[0].Reason, "decision failed: policy evaluation stopped") {
				t.Fatalf("audit events %+v", e.audit.events)
			}
		})
	}
}

// jwksServer serves a dev issuer's JWKS and can be told to misbehave.
type jwksServer struct {
	iss  *devissuer.Issuer
	url  string
	mode atomic.Value // string
	hits atomic.Int64
}

func newJWKSServer(t *testing.T) *jwksServer {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	s := &jwksServer{url: "http://" + hs.Listener.Addr().(*net.TCPAddr).String()}
	iss, err := devissuer.New(s.url, "ES256")
	if err != nil {
		t.Fatal(err)
	}
	s.iss = iss
	s.mode.Store("")
	good := iss.Handler()
	hs.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		switch s.mode.Load().(string) {
		case "down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "garbage":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"!!","y":"??"}`))
		case "huge":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"keys":[`))
			chunk := bytes.Repeat([]byte(`{"kty":"oct","k":"AAAA"},`), 4096)
			for range 1000 { // ~100 MB unless the client stops reading
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "drip": // headers at once, then a byte now and then: only the fetch timeout stops it
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			for {
				if _, err := w.Write([]byte(" ")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		case "redirect loop":
			http.Redirect(w, r, r.URL.String(), http.StatusFound)
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		default:
			good.ServeHTTP(w, r)
		}
	})
	hs.Start()
	t.Cleanup(hs.Close)
	return s
}

// TestJWKSMisbehavingThroughAPI: with the key endpoint down, slow,
// dripping, redirecting in a loop, returning garbage or a huge body, a token
// is refused (fail closed: 503 deny) within the fetch timeout; keys fetched
// before keep verifying; a storm of unknown kids causes at most one fetch
// per min_refetch_interval.
func TestJWKSMisbehavingThroughAPI(t *testing.T) {
	keysCfg := token.KeySetsConfig{FetchTimeout: 300 * time.Millisecond, MaxBodyBytes: 64 << 10, MinRefetchInterval: time.Second}
	mint := func(t *testing.T, s *jwksServer, o devissuer.MintOptions) string {
		o.Audience, o.Subject, o.Scopes = []string{resource}, "alice", []string{"qr:generate"}
		tok, err := s.iss.Mint(o)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	for _, mode := range []string{"down", "garbage", "huge", "slow", "drip", "redirect loop"} {
		t.Run(mode+"/cold", func(t *testing.T) {
			s := newJWKSServer(t)
			s.mode.Store(mode)
			e := newHEnv(t, hopts{issuer: s.url, jwksURI: s.url + devissuer.JWKSPath, keys: keysCfg})
			_, out := e.decide(t, nil, req(mint(t, s, devissuer.MintOptions{}), call("generate_qr_url", nil)))
			// Not the client's fault: deny as unavailable, not a 401 that
			// would send it to re-authorize.
			r, _ := out["reason"].(string)
			if out["allow"] != false || out["outcome"] != "deny" || out["http_status"] != float64(503) || !strings.Contains(r, "signing keys unavailable") {
				t.Fatalf("%v", out)
			}
		})
		t.Run(mode+"/warm", func(t *testing.T) {
			s := newJWKSServer(t)
			e := newHEnv(t, hopts{issuer: s.url, jwksURI: s.url + devissuer.JWKSPath, keys: keysCfg})
			if _, out := e.decide(t, nil, req(mint(t, s, devissuer.MintOptions{}), call("generate_qr_url", nil))); out["allow"] != true {
				t.Fatalf("warm-up: %v", out)
			}
			s.mode.Store(mode)
			// New tokens signed with the cached key verify.
			for i := range 5 {
				if _, out := e.decide(t, nil, req(mint(t, s, devissuer.MintOptions{}), call("generate_qr_url", nil))); out["allow"] != true {
					t.Fatalf("token %d with cached keys: %v", i, out)
				}
			}
			// A storm of unknown kids: refused, and at most one fetch per
			// MinRefetchInterval while it lasts (redirects are not followed).
			before, stormStart := s.hits.Load(), time.Now()
			var wg sync.WaitGroup
			var allowed atomic.Int64
			for i := range 100 {
				tok := mint(t, s, devissuer.MintOptions{Kid: fmt.Sprintf("storm-%d", i)})
				wg.Go(func() {
					_, out := e.decide(t, nil, req(tok, call("generate_qr_url", nil)))
					if out["allow"] != false {
						allowed.Add(1)
					}
				})
			}
			wg.Wait()
			if allowed.Load() != 0 {
				t.Fatalf("%d unknown-kid tokens allowed", allowed.Load())
			}
			perFetch := int64(1)
			allowedFetches := 1 + int64(time.Since(stormStart)/keysCfg.MinRefetchInterval)
			if n := s.hits.Load() - before; n > allowedFetches*perFetch {
				t.Fatalf("%d JWKS requests for 100 unknown kids in %v, want at most %d fetches", n, time.Since(stormStart), allowedFetches)
			}
			if _, out := e.decide(t, nil, req(mint(t, s, devissuer.MintOptions{}), call("generate_qr_url", nil))); out["allow"] != true {
				t.Fatalf("after the storm: %v", out)
			}
		})
	}
}

// TestHostileArgumentsDoNotPinMemory: a client (anonymous, through any
// legitimate PEP) sends calls with large, always different arguments. What
// the PDP keeps afterwards must not grow with them, whether or not the
// policy reads the arguments.
//
// KNOWN ISSUE for policies that read input.tool.arguments (skipped until
// fixed in internal/decision): the decision cache weighs a call as one unit
// whatever the size of its arguments, and keeps the whole input; ~0.8 MiB
// stays per 0.5 MB request. Set PDP_TEST_KNOWN_ISSUES=1 to run that case.
// (The default policy does not read arguments: they are left out of its
// input and cache key.)
func TestHostileArgumentsDoNotPinMemory(t *testing.T) {
	readsArgs := `package mcp.authz

decision := {"allow": true, "reason": "arguments read"} if {
	count(object.keys(input.tool.arguments)) >= 0
}
`
	tests := []struct {
		name   string
		policy string // "" = the default policy
		known  bool
	}{
		{"default policy", "", false},
		{"policy reading the arguments", readsArgs, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.known && os.Getenv("PDP_TEST_KNOWN_ISSUES") == "" {
				t.Skip("known issue: the decision cache does not weigh call arguments (see the comment); PDP_TEST_KNOWN_ISSUES=1 runs it")
			}
			o := hopts{api: func(o *api.Options) { o.MaxBodyBytes = 1 << 20 }}
			if tc.policy != "" {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(tc.policy), 0o600); err != nil {
					t.Fatal(err)
				}
				p, err := decision.Load(context.Background(), decision.Source{Path: dir})
				if err != nil {
					t.Fatal(err)
				}
				o.core = func(co *core.Options) { co.Engine = decision.NewEngine(p) }
			}
			e := newHEnv(t, o)
			body := func(i int) []byte {
				var b strings.Builder
				b.WriteString(`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_product","arguments":{"q":[`)
				for j := range 5000 {
					if j > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, `"%d-%d-%s"`, i, j, strings.Repeat("x", 90))
				}
				b.WriteString(`]}}}}`)
				return []byte(b.String())
			}
			heap := func() uint64 {
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms)
				return ms.HeapAlloc
			}
			before := heap()
			const n = 200 // 100 MB of arguments in all
			for i := range n {
				if resp, out := e.decide(t, nil, body(i)); resp.StatusCode != 200 || out["allow"] != true {
					t.Fatalf("request %d: %d %v", i, resp.StatusCode, out)
				}
			}
			if grew := int64(heap()) - int64(before); grew > 32<<20 {
				t.Fatalf("%d MiB kept after %d calls with distinct 0.5 MB arguments", grew>>20, n)
			}
		})
	}
}

// TestTokenCacheBoundsRetainedClaims: many distinct valid tokens keep no
// more than limits.token_cache_size verified tokens' worth of memory.
//
// KNOWN ISSUE, skipped until fixed in internal/core: the core's token memo
// (policy view of each *token.Claims, 10000 entries, cleared when full)
// also keeps the Claims alive after the token cache evicted them, whatever
// token_cache_size says; in a soak it shows as a sawtooth of up to ~60 MiB
// with a period of 10000 new tokens. Set PDP_TEST_KNOWN_ISSUES=1 to run it.
func TestTokenCacheBoundsRetainedClaims(t *testing.T) {
	if os.Getenv("PDP_TEST_KNOWN_ISSUES") == "" {
		t.Skip("known issue: the core's token memo is not bounded by the token cache (see the comment); PDP_TEST_KNOWN_ISSUES=1 runs it")
	}
	// Without the decision cache, which keeps inputs by design (16384 entries).
	pol, err := decision.Load(context.Background(), decision.Source{FS: policies.FS}, decision.Options{CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := newHEnv(t, hopts{cacheSize: 16, core: func(o *core.Options) { o.Engine = decision.NewEngine(pol) }})
	toks := make([]string, 3000)
	for i := range toks {
		toks[i] = e.mint(t, devissuer.MintOptions{Subject: fmt.Sprintf("user-%d", i), Scopes: []string{"qr:generate"},
			Extra: map[string]any{"pad": fmt.Sprintf("%02000d", i)}})
	}
	heap := func() int64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	for i, tok := range toks {
		if _, out := e.decide(t, nil, req(tok, call("generate_qr_url", nil))); out["allow"] != true {
			t.Fatalf("token %d: %v", i, out)
		}
	}
	if grew := heap() - before; grew > 4<<20 {
		t.Fatalf("%d MiB kept for %d distinct tokens with a token cache of 16", grew>>20, len(toks))
	}
}
