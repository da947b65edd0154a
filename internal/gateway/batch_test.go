package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/gateway"
	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
)

// Batches are MCP 2025-03-26: the go-sdk server takes them with that
// protocol version only.
const (
	batchVersion    = "2025-03-26"
	batchInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
)

// byID indexes the JSON-RPC responses of an answer by their raw id,
// failing on a second response to one id.
func byID(t *testing.T, a *answer) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, m := range a.msgs {
		if _, isReq := m["method"]; isReq {
			continue
		}
		id, _ := json.Marshal(m["id"])
		if out[string(id)] != nil {
			t.Fatalf("two responses to id %s: %q", id, a.raw)
		}
		out[string(id)] = m
	}
	return out
}

func errorCode(m map[string]any) float64 {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(float64)
	return c
}

// TestGatewayBatch: a 2025-03-26 batch through the gateway to the real
// go-sdk server, answered as JSON and as SSE: every message is decided,
// the refused requests are answered by the gateway (a step-up tool's
// challenge, a hidden tool unknown), the allowed ones are forwarded as one
// batch, the list inside is filtered, and every request gets exactly one
// answer.
func TestGatewayBatch(t *testing.T) {
	for _, jsonAnswers := range []bool{true, false} {
		t.Run(fmt.Sprintf("json=%v", jsonAnswers), func(t *testing.T) {
			f := newFixture(t, jsonAnswers)
			h := http.Header{"Mcp-Protocol-Version": {batchVersion}}
			init := exchange(t, http.MethodPost, f.endpoint, h, batchInitialize)
			sid := init.header.Get("Mcp-Session-Id")
			if init.status != http.StatusOK || sid == "" {
				t.Fatalf("initialize: HTTP %d %q", init.status, init.raw)
			}
			h.Set("Mcp-Session-Id", sid)
			if a := exchange(t, http.MethodPost, f.endpoint, h, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); a.status != http.StatusAccepted {
				t.Fatalf("initialized: HTTP %d %q", a.status, a.raw)
			}
			body := `[
				{"jsonrpc":"2.0","id":10,"method":"tools/list"},
				{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"lookup_product","arguments":{}}},
				{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{}}},
				{"jsonrpc":"2.0","id":"13","method":"tools/call","params":{"name":"internal_debug","arguments":{}}},
				{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}},
				{"jsonrpc":"2.0","id":14}
			]`
			a := exchange(t, http.MethodPost, f.endpoint, h, body)
			if a.status != http.StatusOK {
				t.Fatalf("batch: HTTP %d %q", a.status, a.raw)
			}
			if bytes.Contains(a.raw, []byte(`"name":"internal_debug"`)) {
				t.Fatalf("the hidden tool leaked: %q", a.raw)
			}
			got := byID(t, a)
			if len(got) != 5 {
				t.Fatalf("%d responses %q, want 5 (4 requests and the malformed message)", len(got), a.raw)
			}
			var list struct {
				Tools      []struct{ Name string }
				CacheScope string
			}
			if r, _ := json.Marshal(got["10"]["result"]); json.Unmarshal(r, &list) != nil || len(list.Tools) != 2 || list.CacheScope != "private" {
				t.Errorf("the list %v: want the two tools the caller may see, cacheScope private", got["10"])
			}
			if r, _ := json.Marshal(got["11"]["result"]); !bytes.Contains(r, []byte("ran lookup_product")) {
				t.Errorf("the public call: %v", got["11"])
			}
			// Anonymous: the step-up tool's challenge in band (the batch as a
			// whole was answered 200), the hidden tool unknown.
			if got["12"]["error"] == nil && got["12"]["result"] == nil {
				t.Errorf("the step-up call was not answered by the gateway: %v", got["12"])
			}
			if r, _ := json.Marshal(got["12"]); bytes.Contains(r, []byte("ran generate_qr_url")) {
				t.Errorf("the step-up tool ran anonymously: %v", got["12"])
			}
			if errorCode(got[`"13"`]) != -32602 {
				t.Errorf("the hidden tool: %v, want -32602", got[`"13"`])
			}
			if errorCode(got["null"]) != -32600 {
				t.Errorf("the malformed message: %v, want -32600 with id null", got["null"])
			}
			if f.up.sawAuthorization() {
				t.Fatal("the upstream received an Authorization header")
			}
		})
	}
}

// TestGatewayBatchRefusals: batches refused as a whole, and a batch with
// nothing allowed answered with the challenge at the HTTP level.
func TestGatewayBatchRefusals(t *testing.T) {
	f := newFixture(t, true)
	call := `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{}}}`
	many := make([]string, gateway.MaxBatch+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i)
	}
	tests := []struct {
		name   string
		hdr    http.Header
		body   string
		status int
		code   float64
	}{
		{"empty", nil, `[]`, http.StatusBadRequest, -32600},
		{"two requests with one id", nil, `[` + fmt.Sprintf(call, 1) + `,` + fmt.Sprintf(call, 1) + `]`, http.StatusBadRequest, -32600},
		{"too many messages", nil, `[` + strings.Join(many, ",") + `]`, http.StatusRequestEntityTooLarge, -32600},
		{"Mcp-Method on a batch", http.Header{"Mcp-Method": {"tools/call"}}, `[` + fmt.Sprintf(call, 1) + `]`, http.StatusBadRequest, -32020},
		{"nothing allowed: the challenge", nil, `[` + fmt.Sprintf(call, 1) + `,` + fmt.Sprintf(call, 2) + `]`, http.StatusUnauthorized, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := exchange(t, http.MethodPost, f.endpoint, tc.hdr, tc.body)
			if a.status != tc.status || a.rpcError() == nil {
				t.Fatalf("HTTP %d %q, want %d with a JSON-RPC error", a.status, a.raw, tc.status)
			}
			if tc.code != 0 && errorCode(a.rpcError()) != tc.code {
				t.Fatalf("error %v, want code %v", a.rpcError(), tc.code)
			}
			if tc.status == http.StatusUnauthorized {
				if !strings.Contains(a.header.Get("WWW-Authenticate"), `scope="qr:generate"`) || len(byID(t, a)) != 2 {
					t.Fatalf("WWW-Authenticate %q, answers %q: want the challenge and both requests answered", a.header.Get("WWW-Authenticate"), a.raw)
				}
			}
		})
	}
}

// TestGatewayBatchHostileUpstream: the upstream's answer to a forwarded
// batch is held to the batch: a response to an id that was not forwarded
// (a list under a forged id) is dropped, a forwarded request it does not
// answer gets an error, and nothing unfiltered passes, in JSON and SSE.
func TestGatewayBatchHostileUpstream(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	forged := fullList("99") // an unfiltered list under an id never sent
	tests := []struct {
		name string
		bad  func(w http.ResponseWriter)
	}{
		{"JSON", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `[`+forged+`,`+fullList("3")+`]`)
		}},
		{"SSE, one event each", func(w http.ResponseWriter) {
			startSSE(w)
			writeFlush(w, sseEvent(forged))
			writeFlush(w, sseEvent(fullList("3")))
		}},
		{"SSE, one event with the array", func(w http.ResponseWriter) {
			startSSE(w)
			writeFlush(w, sseEvent(`[`+forged+`,`+fullList("3")+`]`))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newHostileUpstream(t, func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) { tc.bad(w) })
			endpoint := hostileGateway(t, env, up.URL, nil)
			a := exchange(t, http.MethodPost, endpoint, nil, `[`+hListReq+`,`+hCallReq+`]`)
			if bytes.Contains(a.raw, []byte(hiddenTool)) {
				t.Fatalf("the hidden tool leaked: %q", a.raw)
			}
			got := byID(t, a)
			if len(got) != 2 || !filteredList(a, "3") {
				t.Fatalf("answers %q: want the filtered list and one more", a.raw)
			}
			if errorCode(got["4"]) != -32603 {
				t.Fatalf("the unanswered call: %v, want -32603", got["4"])
			}
			assertUsable(t, endpoint)
		})
	}
}

// TestGatewayBatchStdio: a batch to a stdio upstream: the allowed
// requests are sent to the session's child concurrently, a refused one is
// answered by the gateway, and the answers come back as one JSON array.
func TestGatewayBatchStdio(t *testing.T) {
	env := coretest.New(t, linesPolicy(t))
	endpoint, _ := stdioGateway(t, env, stdio.Options{Command: []string{"lines"}}, nil)
	a := exchange(t, http.MethodPost, endpoint, nil, `[
		{"jsonrpc":"2.0","id":1,"method":"echo","params":{"n":1}},
		{"jsonrpc":"2.0","id":2,"method":"echo","params":{"n":2}},
		{"jsonrpc":"2.0","id":3,"method":"not_in_the_catalog"}
	]`)
	if a.status != http.StatusOK {
		t.Fatalf("HTTP %d %q", a.status, a.raw)
	}
	got := byID(t, a)
	if len(got) != 3 || got["1"]["result"] == nil || got["2"]["result"] == nil || got["3"]["error"] == nil {
		t.Fatalf("answers %q: want results for 1 and 2, an error for 3", a.raw)
	}
}
