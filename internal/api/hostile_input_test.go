package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
)

// TestOversizedBodies: a 10 MB body is refused with 413 whether or not it
// announces its length, without reading it all.
func TestOversizedBodies(t *testing.T) {
	e := newServer(t, serverOptions{api: func(o *api.Options) { o.MaxBodyBytes = 1 << 20 }})
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
	e := newServer(t, serverOptions{api: func(o *api.Options) { o.MaxBodyBytes = 1 << 20 }})
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
		e := newServer(t, serverOptions{api: func(o *api.Options) { o.MaxBodyBytes = 1 << 20 }})
		if resp, out := e.decide(t, nil, body); resp.StatusCode != 413 {
			t.Fatalf("HTTP %d %v", resp.StatusCode, out)
		}
	})
	t.Run("admitted", func(t *testing.T) {
		e := newServer(t, serverOptions{
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
			o := serverOptions{api: func(o *api.Options) { o.MaxBodyBytes = 1 << 20 }}
			if tc.policy != "" {
				p := coretest.PolicyFiles(t, map[string]string{"authz.rego": tc.policy})
				o.core = func(co *core.Options) { co.Engine = decision.NewEngine(p) }
			}
			e := newServer(t, o)
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
