package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/assertion"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/gateway"
	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/policies"
)

// The hostile-upstream tests: every upstream here is a real HTTP server on
// loopback (or a real child process) that misbehaves on purpose. Each case
// asserts what a client must see: a JSON-RPC error with a sensible HTTP
// status, never a list the caller may not see (the default policy hides
// internal_debug), no hang (every wait is bounded), and a gateway that
// answers the next good request.

const (
	// hiddenTool is hidden from everyone by the default policy: its name
	// in anything a client receives is a leak.
	hiddenTool = "internal_debug"
	// hostileWait bounds every client request of these tests: reaching it
	// means the gateway hangs.
	hostileWait = 15 * time.Second

	hListReq  = `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`
	hCallReq  = `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"lookup_product","arguments":{}}}`
	hProgress = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":0.5}}`
	// afterID marks the follow-up requests that every hostile upstream
	// answers well.
	afterID = `"after"`
)

// fullList is the upstream's unfiltered tools/list result for id: one
// public tool and the hidden one.
func fullList(id string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"result":{"tools":[` +
		`{"name":"lookup_product","inputSchema":{"type":"object"}},` +
		`{"name":"` + hiddenTool + `","inputSchema":{"type":"object"}}]}}`
}

// callResult is a tools/call result for id.
func callResult(id string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"ran lookup_product"}]}}`
}

// sseEvent frames one SSE message event.
func sseEvent(data string) string { return "event: message\ndata: " + data + "\n\n" }

// hostileUpstream is a real HTTP upstream that answers the follow-up
// requests (id "after") well and every other request with bad, recording
// the headers of every request it receives.
type hostileUpstream struct {
	*httptest.Server
	// stop is closed when the test ends, to free handlers that hang.
	stop chan struct{}

	mu      sync.Mutex
	headers []http.Header
	bad     int // requests handed to bad
}

func newHostileUpstream(t *testing.T, bad func(w http.ResponseWriter, r *http.Request, stop <-chan struct{})) *hostileUpstream {
	t.Helper()
	u := &hostileUpstream{stop: make(chan struct{})}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(body, &m)
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		if string(m.ID) != afterID {
			u.bad++
		}
		u.mu.Unlock()
		if string(m.ID) == afterID {
			w.Header().Set("Content-Type", "application/json")
			if m.Method == "tools/list" {
				_, _ = io.WriteString(w, fullList(afterID))
				return
			}
			_, _ = io.WriteString(w, callResult(afterID))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		bad(w, r, u.stop)
	}))
	t.Cleanup(u.Close)
	t.Cleanup(func() { close(u.stop) }) // runs before Close
	return u
}

func (u *hostileUpstream) badRequests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bad
}

// hostileGateway serves a gateway in front of upstream for the default
// policy, with o edited by edit, and returns its MCP endpoint.
func hostileGateway(t *testing.T, env *coretest.Env, upstream string, edit func(*gateway.Options)) string {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	o := gateway.Options{Decider: env.Service, Resource: coretest.Resource, Upstream: u}
	if edit != nil {
		edit(&o)
	}
	g, err := gateway.New(o)
	if err != nil {
		t.Fatal(err)
	}
	gs := httptest.NewServer(g)
	t.Cleanup(gs.Close)
	return gs.URL + "/mcp"
}

// answer is what a client received for one request.
type answer struct {
	status int
	header http.Header
	raw    []byte
	// msgs are the JSON-RPC messages received: the JSON body, or the data
	// of each SSE event (read as the SSE specification says).
	msgs []map[string]any
}

// exchange sends one request to the gateway and reads the whole answer,
// failing the test if that takes longer than hostileWait (a hang).
func exchange(t *testing.T, method, endpoint string, hdr http.Header, body string) *answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: no answer: %v", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("%s: the answer did not end within %v: the gateway hangs (read so far: %q)", method, hostileWait, raw)
	}
	a := &answer{status: resp.StatusCode, header: resp.Header, raw: raw}
	var datas [][]byte
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		datas = sseData(raw)
	} else if len(bytes.TrimSpace(raw)) > 0 {
		datas = [][]byte{raw}
	}
	for _, d := range datas {
		var m map[string]any
		var batch []map[string]any
		switch {
		case json.Unmarshal(d, &m) == nil:
			a.msgs = append(a.msgs, m)
		case json.Unmarshal(d, &batch) == nil: // a batch's answers
			a.msgs = append(a.msgs, batch...)
		}
	}
	return a
}

// sseData returns the data of each event of an SSE stream that a client
// following the SSE specification dispatches: CR, LF and CRLF end lines,
// a leading BOM is dropped, data lines are joined with LF, and an event
// not ended by a blank line is not dispatched.
func sseData(stream []byte) [][]byte {
	stream = bytes.TrimPrefix(stream, []byte("\xEF\xBB\xBF"))
	var out [][]byte
	var data []byte
	has := false
	for len(stream) > 0 {
		i := bytes.IndexAny(stream, "\r\n")
		if i < 0 {
			break // an unterminated line: the stream ended mid-event
		}
		line := stream[:i]
		if stream[i] == '\r' && i+1 < len(stream) && stream[i+1] == '\n' {
			i++
		}
		stream = stream[i+1:]
		if len(line) == 0 {
			if has {
				out = append(out, data)
			}
			data, has = nil, false
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		if string(name) == "data" {
			if has {
				data = append(data, '\n')
			}
			data = append(data, value...)
			has = true
		}
	}
	return out
}

// rpcError returns the first JSON-RPC error the client received, or nil.
func (a *answer) rpcError() map[string]any {
	for _, m := range a.msgs {
		if e, ok := m["error"].(map[string]any); ok && e["code"] != nil {
			return m
		}
	}
	return nil
}

// sameID reports whether the id of m is id (raw JSON).
func sameID(m map[string]any, id string) bool {
	got, _ := json.Marshal(m["id"])
	var want any
	_ = json.Unmarshal([]byte(id), &want)
	w, _ := json.Marshal(want)
	return bytes.Equal(got, w)
}

// filteredList reports whether the client received the filtered list (the
// public tool only) as the answer to request id.
func filteredList(a *answer, id string) bool {
	for _, m := range a.msgs {
		if !sameID(m, id) || m["result"] == nil {
			continue
		}
		b, _ := json.Marshal(m["result"])
		var r struct{ Tools []struct{ Name string } }
		if json.Unmarshal(b, &r) == nil && len(r.Tools) == 1 && r.Tools[0].Name == "lookup_product" {
			return true
		}
	}
	return false
}

// assertUsable checks that the gateway answers a good list request (the
// upstream answers it well) with the filtered list.
func assertUsable(t *testing.T, endpoint string) {
	t.Helper()
	a := exchange(t, http.MethodPost, endpoint, nil, `{"jsonrpc":"2.0","id":"after","method":"tools/list"}`)
	if a.status != http.StatusOK || !bytes.Contains(a.raw, []byte("lookup_product")) || bytes.Contains(a.raw, []byte(hiddenTool)) {
		t.Fatalf("the gateway is not usable after the failure: HTTP %d %s", a.status, a.raw)
	}
}

// hangUntilGone blocks until the gateway gives up on the request or the
// test ends.
func hangUntilGone(r *http.Request, stop <-chan struct{}) {
	select {
	case <-r.Context().Done():
	case <-stop:
	}
}

// startSSE sends the headers of an SSE answer and flushes them.
func startSSE(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
}

// writeFlush writes s and flushes it to the gateway.
func writeFlush(w http.ResponseWriter, s string) {
	_, _ = io.WriteString(w, s)
	_ = http.NewResponseController(w).Flush()
}

// killConn closes the connection under the handler, mid-answer.
func killConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// TestGatewayHostileUpstreams: HTTP upstreams that hang, die mid-stream,
// frame SSE badly or answer with errors. For each, the client gets a
// JSON-RPC error answering its request with a sensible status, no hidden
// tool name, no hang, and the gateway answers the next request.
func TestGatewayHostileUpstreams(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	secret := fullList("3")
	tests := []struct {
		name string
		body string // the client's request (id 3: a list, id 4: a call)
		bad  func(w http.ResponseWriter, r *http.Request, stop <-chan struct{})
		edit func(*gateway.Options)
		// status is the HTTP status the client must get; with 200 the
		// answer is an SSE stream whose error event answers the request.
		status int
		// listOK: the list filtered for the caller is a right answer too
		// (the upstream's framing is odd but can be read safely).
		listOK bool
	}{
		{
			name: "hangs before answering a list", body: hListReq,
			bad:    func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) { hangUntilGone(r, stop) },
			edit:   func(o *gateway.Options) { o.ResponseTimeout = 200 * time.Millisecond },
			status: http.StatusGatewayTimeout,
		},
		{
			name: "hangs before answering a call", body: hCallReq,
			bad:    func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) { hangUntilGone(r, stop) },
			edit:   func(o *gateway.Options) { o.ResponseTimeout = 200 * time.Millisecond },
			status: http.StatusGatewayTimeout,
		},
		{
			name: "goes silent mid-stream during a list", body: hListReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, sseEvent(hProgress))
				hangUntilGone(r, stop)
			},
			edit:   func(o *gateway.Options) { o.IdleStreamTimeout = 300 * time.Millisecond },
			status: http.StatusOK,
		},
		{
			name: "killed mid-stream during a list", body: hListReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, sseEvent(hProgress))
				killConn(w)
			},
			status: http.StatusOK,
		},
		{
			name: "killed mid-stream during a call", body: hCallReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, sseEvent(hProgress))
				killConn(w)
			},
			status: http.StatusOK,
		},
		{
			name: "JSON answer cut mid-body during a call", body: hCallReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", "4096")
				w.WriteHeader(http.StatusOK)
				writeFlush(w, callResult("4")[:20])
				killConn(w)
			},
			status: http.StatusBadGateway,
		},
		{
			name: "JSON answer over MaxResponseBytes during a call", body: hCallReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, strings.Replace(callResult("4"), "ran lookup_product", strings.Repeat("x", 4<<10), 1))
			},
			edit:   func(o *gateway.Options) { o.MaxResponseBytes = 1 << 10 },
			status: http.StatusBadGateway,
		},
		{
			name: "killed before any byte of the answer", body: hCallReq,
			bad:    func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) { killConn(w) },
			status: http.StatusBadGateway,
		},
		{
			name: "SSE event over MaxResponseBytes during a list", body: hListReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, sseEvent(hProgress))
				big := strings.Replace(secret, `"result":{`, `"result":{"pad":"`+strings.Repeat("x", 4<<10)+`",`, 1)
				writeFlush(w, sseEvent(big))
			},
			edit:   func(o *gateway.Options) { o.MaxResponseBytes = 1 << 10 },
			status: http.StatusOK,
		},
		{
			name: "SSE event over MaxResponseBytes during a call", body: hCallReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, sseEvent(strings.Replace(callResult("4"), "ran lookup_product", strings.Repeat("x", 4<<10), 1)))
			},
			edit:   func(o *gateway.Options) { o.MaxResponseBytes = 1 << 10 },
			status: http.StatusOK,
		},
		{
			name: "JSON list answer with both an error and the unfiltered result", body: hListReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, strings.Replace(secret, `"result":`, `"error":{"code":-32000,"message":"x"},"result":`, 1))
			},
			status: http.StatusBadGateway,
		},
		{
			name: "SSE list answer with both an error and the unfiltered result", body: hListReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, sseEvent(strings.Replace(secret, `"result":`, `"error":{"code":-32000,"message":"x"},"result":`, 1)))
			},
			status: http.StatusOK,
		},
		{
			name: "an event that is not JSON-RPC before the list", body: hListReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, sseEvent(hProgress))
				writeFlush(w, "data: garbage "+hiddenTool+" {\n\n")
				writeFlush(w, sseEvent(secret))
			},
			status: http.StatusOK,
		},
		{
			name: "SSE list whose last line has no line ending", body: hListReq, listOK: true,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, "event: message\ndata: "+secret)
			},
			status: http.StatusOK,
		},
		{
			name: "SSE list with bare CR line endings", body: hListReq, listOK: true,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, "event: message\rdata: "+secret+"\r\r")
			},
			status: http.StatusOK,
		},
		{
			name: "SSE list after a byte order mark", body: hListReq, listOK: true,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, "\xEF\xBB\xBFdata: "+secret+"\n\n")
			},
			status: http.StatusOK,
		},
		{
			name: "SSE list answered with the id 3.0", body: hListReq, listOK: true,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, sseEvent(fullList("3.0")))
			},
			status: http.StatusOK,
		},
		{
			name: "SSE list answered with the id \"3\"", body: hListReq, listOK: true,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, sseEvent(fullList(`"3"`)))
			},
			status: http.StatusOK,
		},
		{
			name: "SSE list answered inside a JSON-RPC batch", body: hListReq, listOK: true,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, sseEvent("["+secret+"]"))
			},
			status: http.StatusOK,
		},
		{
			name: "HTTP 500 with a text body", body: hCallReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				http.Error(w, "internal server error", http.StatusInternalServerError)
			},
			status: http.StatusInternalServerError,
		},
		{
			name: "HTTP 500 carrying the unfiltered list", body: hListReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = io.WriteString(w, secret)
			},
			status: http.StatusInternalServerError,
		},
		{
			name: "HTTP 404 session not found", body: hListReq,
			bad: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":3,"error":{"code":-32001,"message":"session not found"}}`)
			},
			status: http.StatusNotFound,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newHostileUpstream(t, tc.bad)
			endpoint := hostileGateway(t, env, up.URL, tc.edit)
			a := exchange(t, http.MethodPost, endpoint, nil, tc.body)
			id := "3"
			if tc.body == hCallReq {
				id = "4"
			}
			t.Run("no hidden tool", func(t *testing.T) {
				if bytes.Contains(a.raw, []byte(hiddenTool)) {
					t.Fatalf("the client received the hidden tool: %q", a.raw)
				}
			})
			t.Run("JSON-RPC error", func(t *testing.T) {
				if tc.listOK && filteredList(a, id) {
					return
				}
				if a.status != tc.status {
					t.Fatalf("HTTP %d %q, want %d", a.status, a.raw, tc.status)
				}
				e := a.rpcError()
				if e == nil {
					t.Fatalf("HTTP %d %q: no JSON-RPC error", a.status, a.raw)
				}
				if code := e["error"].(map[string]any)["code"]; tc.status/100 != 4 && code != float64(-32603) {
					t.Fatalf("error %v, want -32603 (internal error) for a failing upstream", e)
				}
				if !sameID(e, id) {
					t.Fatalf("error %v: want the id %s of the client's request", e, id)
				}
			})
			t.Run("usable afterwards", func(t *testing.T) { assertUsable(t, endpoint) })
			if up.badRequests() != 1 {
				t.Fatalf("the upstream got %d hostile requests, want 1 (no retries)", up.badRequests())
			}
		})
	}
}

// TestGatewayUpstream404WithGoSDK: the real go-sdk server answers an
// unknown session with 404; the gateway relays the 404 so that clients
// re-initialize, and a new session works.
func TestGatewayUpstream404WithGoSDK(t *testing.T) {
	f := newFixture(t, true)
	a := exchange(t, http.MethodPost, f.endpoint, http.Header{"Mcp-Session-Id": {"no-such-session"}}, hListReq)
	if a.status != http.StatusNotFound {
		t.Fatalf("unknown upstream session: HTTP %d %q, want 404", a.status, a.raw)
	}
	if bytes.Contains(a.raw, []byte(hiddenTool)) {
		t.Fatalf("the 404 carried the hidden tool: %q", a.raw)
	}
	t.Run("JSON-RPC error body", func(t *testing.T) {
		if a.rpcError() == nil {
			t.Fatalf("404 body %q: want a JSON-RPC error", a.raw)
		}
	})
	again := exchange(t, http.MethodPost, f.endpoint, nil, initialize)
	if again.status != http.StatusOK || again.header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("re-initialize after the 404: HTTP %d %q", again.status, again.raw)
	}
}

// TestGatewaySSEFraming: SSE framings a correct upstream may use are read
// as the SSE specification says, and the list inside is filtered: CRLF
// line endings, data split over several lines (joined with LF), comments
// and unknown fields between events.
func TestGatewaySSEFraming(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	secret := fullList("3")
	half := strings.Index(secret, `"result"`)
	tests := []struct {
		name, stream string
	}{
		{"CRLF line endings", "event: message\r\ndata: " + secret + "\r\n\r\n"},
		{"CRLF with other events", "id: 1\r\ndata: " + hProgress + "\r\n\r\nid: 2\r\nevent: message\r\ndata: " + secret + "\r\n\r\n"},
		{"data over several lines", "event: message\ndata: " + secret[:half] + "\ndata: " + secret[half:] + "\n\n"},
		{"data over several lines with CRLF", "event: message\r\ndata:" + secret[:half] + "\r\ndata:" + secret[half:] + "\r\n\r\n"},
		{"comments and unknown fields between events", ": keep-alive\n\nbogus line\n\nfoo: bar\n\n" + sseEvent(hProgress) + ":\n\n" + sseEvent(secret)},
		{"blank lines before the first event", "\n\n\r\n" + sseEvent(secret)},
		{"byte order mark before an event field", "\xEF\xBB\xBF" + sseEvent(secret)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newHostileUpstream(t, func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				startSSE(w)
				writeFlush(w, tc.stream)
			})
			endpoint := hostileGateway(t, env, up.URL, nil)
			a := exchange(t, http.MethodPost, endpoint, nil, hListReq)
			if bytes.Contains(a.raw, []byte(hiddenTool)) {
				t.Fatalf("the client received the hidden tool: %q", a.raw)
			}
			var list *struct {
				Tools      []struct{ Name string }
				CacheScope string
			}
			for _, m := range a.msgs {
				if sameID(m, "3") && m["result"] != nil {
					b, _ := json.Marshal(m["result"])
					_ = json.Unmarshal(b, &list)
				}
			}
			if a.status != http.StatusOK || list == nil || len(list.Tools) != 1 || list.Tools[0].Name != "lookup_product" || list.CacheScope != "private" {
				t.Fatalf("HTTP %d %q: want the filtered list (lookup_product only, cacheScope private)", a.status, a.raw)
			}
		})
	}
}

// TestGatewaySSERelayFidelity: the events of an SSE answer that the
// gateway does not filter reach the client byte for byte (id, event,
// retry, comments, CRLF), and in a list answer only the list response's
// data is rewritten, its other fields kept.
func TestGatewaySSERelayFidelity(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	prefix := ": stream opened\n\n" +
		"retry: 1500\n\n" +
		"id: ev-1\nevent: message\ndata: " + hProgress + "\n\n" +
		"id: ev-2\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"roots/list\"}\r\n\r\n" +
		"id: ev-3\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"x\"}}\n\n"
	suffix := "id: ev-5\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"

	t.Run("call answer byte-identical", func(t *testing.T) {
		stream := prefix + "id: ev-4\nevent: custom\ndata: not json at all\n\n" + "id: ev-5\nretry: 10\nevent: message\ndata: " + callResult("4") + "\n\n"
		up := newHostileUpstream(t, func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
			startSSE(w)
			for _, part := range strings.SplitAfter(stream, "\n\n") {
				writeFlush(w, part) // event by event, as a live stream
			}
		})
		endpoint := hostileGateway(t, env, up.URL, nil)
		a := exchange(t, http.MethodPost, endpoint, nil, hCallReq)
		if a.status != http.StatusOK || string(a.raw) != stream {
			t.Fatalf("HTTP %d, the client got\n%q\nwant the upstream's stream\n%q", a.status, a.raw, stream)
		}
	})
	t.Run("list answer filtered in place", func(t *testing.T) {
		listEvent := "id: ev-4\nevent: message\ndata: " + fullList("3") + "\n\n"
		up := newHostileUpstream(t, func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
			startSSE(w)
			for _, part := range strings.SplitAfter(prefix+listEvent+suffix, "\n\n") {
				writeFlush(w, part)
			}
		})
		endpoint := hostileGateway(t, env, up.URL, nil)
		a := exchange(t, http.MethodPost, endpoint, nil, hListReq)
		got := string(a.raw)
		if a.status != http.StatusOK || !strings.HasPrefix(got, prefix) || !strings.HasSuffix(got, suffix) {
			t.Fatalf("HTTP %d, the client got\n%q\nwant the events around the list untouched", a.status, got)
		}
		middle := strings.TrimSuffix(strings.TrimPrefix(got, prefix), suffix)
		data, ok := strings.CutPrefix(middle, "id: ev-4\nevent: message\ndata: ")
		if !ok || !strings.HasSuffix(data, "\n\n") || strings.Count(data, "\n") != 2 {
			t.Fatalf("list event %q: want its id and event fields kept and one data line", middle)
		}
		var resp struct {
			ID     int `json:"id"`
			Result struct {
				Tools      []struct{ Name string }
				CacheScope string
			}
		}
		if err := json.Unmarshal([]byte(data), &resp); err != nil || resp.ID != 3 || len(resp.Result.Tools) != 1 ||
			resp.Result.Tools[0].Name != "lookup_product" || resp.Result.CacheScope != "private" {
			t.Fatalf("list event data %q (%v): want the filtered list", data, err)
		}
	})
}

// upstreamAsserter adapts the real assertion signer to the gateway.
type upstreamAsserter struct{ s *assertion.Signer }

func (a upstreamAsserter) Assert(c *pep.Caller) (string, error) {
	claims := assertion.Claims{Audience: "https://upstream.test"}
	if c != nil {
		claims.Subject, claims.ClientID, claims.Scopes = c.Subject, c.ClientID, c.Scopes
	}
	return a.s.Sign(claims)
}

// TestGatewayNeverForwardsCredentials: whatever the client sends, the
// upstream never sees its Authorization header, its cookies or a forged
// identity assertion, on any kind of request (request, notification,
// client response, GET, DELETE); with an asserter it sees the gateway's
// own assertion, which verifies, in place of the forged one. Last-Event-ID
// passes.
func TestGatewayNeverForwardsCredentials(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	signer, err := assertion.NewSigner(assertion.Options{Issuer: "https://gateway.test"})
	if err != nil {
		t.Fatal(err)
	}
	const forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
	tok := env.Bearer(t, devissuer.MintOptions{Subject: "alice", ClientID: "demo"})
	for _, withAsserter := range []bool{false, true} {
		t.Run(fmt.Sprintf("asserter %v", withAsserter), func(t *testing.T) {
			var mu sync.Mutex
			var seen []http.Header
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen = append(seen, r.Header.Clone())
				mu.Unlock()
				body, _ := io.ReadAll(r.Body)
				switch {
				case r.Method == http.MethodGet:
					startSSE(w)
					writeFlush(w, sseEvent(hProgress))
				case r.Method == http.MethodDelete:
					w.WriteHeader(http.StatusNoContent)
				case bytes.Contains(body, []byte(`"method":"initialize"`)):
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Mcp-Session-Id", "s-1")
					_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"u","version":"1"}}}`)
				default:
					w.WriteHeader(http.StatusAccepted)
				}
			}))
			t.Cleanup(up.Close)
			endpoint := hostileGateway(t, env, up.URL, func(o *gateway.Options) {
				if withAsserter {
					o.Asserter, o.AssertionHeader = upstreamAsserter{signer}, assertion.Header
				}
			})
			hdr := http.Header{
				"Authorization":  {tok},
				assertion.Header: {forged},
				"Cookie":         {"session=secret"},
			}
			with := func(k, v string) http.Header {
				h := hdr.Clone()
				if k != "" {
					h.Set(k, v)
				}
				return h
			}
			steps := []struct {
				method, body string
				hdr          http.Header
				status       int
			}{
				{http.MethodPost, initialize, with("", ""), http.StatusOK},
				{http.MethodPost, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, with("Mcp-Session-Id", "s-1"), http.StatusAccepted},
				{http.MethodPost, `{"jsonrpc":"2.0","id":"srv-1","result":{"roots":[]}}`, with("Mcp-Session-Id", "s-1"), http.StatusAccepted},
				{http.MethodGet, "", with("Last-Event-Id", "ev-7"), http.StatusOK},
				{http.MethodDelete, "", with("Mcp-Session-Id", "s-1"), http.StatusNoContent},
			}
			steps[3].hdr.Set("Mcp-Session-Id", "s-1")
			for _, s := range steps {
				if a := exchange(t, s.method, endpoint, s.hdr, s.body); a.status != s.status {
					t.Fatalf("%s %s: HTTP %d %q, want %d", s.method, s.body, a.status, a.raw, s.status)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != len(steps) {
				t.Fatalf("the upstream got %d requests, want %d", len(seen), len(steps))
			}
			for i, h := range seen {
				if h.Get("Authorization") != "" || h.Get("Cookie") != "" {
					t.Errorf("request %d reached the upstream with Authorization %q, Cookie %q", i, h.Get("Authorization"), h.Get("Cookie"))
				}
				got := h.Values(assertion.Header)
				switch {
				case slices.Contains(got, forged):
					t.Errorf("request %d reached the upstream with the client's forged assertion", i)
				case !withAsserter && len(got) > 0:
					t.Errorf("request %d: an assertion %q without an asserter", i, got)
				case withAsserter:
					if len(got) != 1 {
						t.Fatalf("request %d: assertions %q, want the gateway's one", i, got)
					}
					c, err := assertion.Verify(got[0], signer.JWKS(), "https://gateway.test", "https://upstream.test", time.Now())
					if err != nil || c.Subject != "alice" {
						t.Errorf("request %d: the gateway's assertion: %+v %v, want alice's", i, c, err)
					}
				}
			}
			if seen[3].Get("Last-Event-Id") != "ev-7" {
				t.Errorf("GET reached the upstream with Last-Event-ID %q, want ev-7", seen[3].Get("Last-Event-Id"))
			}
		})
	}
}

// TestGatewayOversizedClientBody: a body over MaxBodyBytes is refused with
// 413 and a JSON-RPC error, never forwarded, and the next request works.
func TestGatewayOversizedClientBody(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	up := newHostileUpstream(t, func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, callResult("4"))
	})
	endpoint := hostileGateway(t, env, up.URL, func(o *gateway.Options) { o.MaxBodyBytes = 1 << 10 })
	body := `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"lookup_product","arguments":{"q":"` + strings.Repeat("x", 8<<10) + `"}}}`
	a := exchange(t, http.MethodPost, endpoint, nil, body)
	if a.status != http.StatusRequestEntityTooLarge || a.rpcError() == nil {
		t.Fatalf("oversized body: HTTP %d %q, want 413 with a JSON-RPC error", a.status, a.raw)
	}
	if n := up.badRequests(); n != 0 {
		t.Fatalf("the oversized body reached the upstream (%d requests)", n)
	}
	assertUsable(t, endpoint)
}

// linesPolicy is the default policy with a catalog for the stdio test
// server's line mode: its methods echo, hang and crash are public, and so
// are the sdk mode's tools.
func linesPolicy(t *testing.T) coretest.Options {
	return coretest.Options{Policy: policyWithData(t, `mcp:
  default_catalog: lines
  resources: {}
  revoked: {clients: {}, subjects: {}}
  hidden: []
  catalogs:
    lines:
      unknown: {access: deny}
      tools:
        echo: {access: public}
        sum: {access: public}
      prompts: {}
      resources: {}
      resource_templates: {}
      methods:
        echo: {access: public}
        hang: {access: public}
        crash: {access: public}
`)}
}

// policyWithData is the project's default policy (its Rego files) with
// data as its data.yaml.
func policyWithData(tb testing.TB, data string) *decision.Policy {
	tb.Helper()
	files := map[string]string{"data.yaml": data}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".rego" {
			return err
		}
		b, err := policies.FS.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return coretest.PolicyFiles(tb, files)
}

// stdioGateway serves a gateway in front of the stdio test server run with
// args, and returns its endpoint and the gateway (closed when the test
// ends, within a bounded time).
func stdioGateway(t *testing.T, env *coretest.Env, so stdio.Options, edit func(*gateway.Options)) (string, *gateway.Gateway) {
	t.Helper()
	so.Command = append([]string{stdioServer}, so.Command...)
	o := gateway.Options{Decider: env.Service, Resource: coretest.Resource, Stdio: &so}
	if edit != nil {
		edit(&o)
	}
	g, err := gateway.New(o)
	if err != nil {
		t.Fatal(err)
	}
	gs := httptest.NewServer(g)
	t.Cleanup(func() {
		gs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
		defer cancel()
		_ = g.Close(ctx)
	})
	return gs.URL + "/mcp", g
}

const linesEcho = `{"jsonrpc":"2.0","id":9,"method":"echo","params":{"x":1}}`

// TestGatewayStdioHostile: stdio children that exit at once, crash in a
// call or never answer: the client gets a JSON-RPC error with a sensible
// status, in bounded time, and the gateway serves the next request.
func TestGatewayStdioHostile(t *testing.T) {
	env := coretest.New(t, linesPolicy(t))

	t.Run("exits at once", func(t *testing.T) {
		endpoint, _ := stdioGateway(t, env, stdio.Options{Command: []string{"exit", "3"}}, nil)
		for i := range 2 { // and again: the restart is answered too
			a := exchange(t, http.MethodPost, endpoint, nil, initialize)
			if (a.status != http.StatusBadGateway && a.status != http.StatusServiceUnavailable) || a.rpcError() == nil {
				t.Fatalf("request %d: HTTP %d %q, want 502 or 503 with a JSON-RPC error", i, a.status, a.raw)
			}
			if a.status == http.StatusServiceUnavailable && a.header.Get("Retry-After") == "" {
				t.Fatalf("request %d: 503 without Retry-After", i)
			}
		}
	})

	t.Run("crashes in a call", func(t *testing.T) {
		endpoint, _ := stdioGateway(t, env, stdio.Options{Command: []string{"lines"}, RestartBackoff: 10 * time.Millisecond}, nil)
		a := exchange(t, http.MethodPost, endpoint, nil, `{"jsonrpc":"2.0","id":8,"method":"crash"}`)
		if a.status != http.StatusBadGateway || a.rpcError() == nil || !sameID(a.rpcError(), "8") {
			t.Fatalf("crash: HTTP %d %q, want 502 with a JSON-RPC error for id 8", a.status, a.raw)
		}
		// The next request starts a new child.
		a = exchange(t, http.MethodPost, endpoint, nil, linesEcho)
		if a.status != http.StatusOK || a.rpcError() != nil || !bytes.Contains(a.raw, []byte(`"method":"echo"`)) {
			t.Fatalf("echo after the crash: HTTP %d %q", a.status, a.raw)
		}
	})

	t.Run("never answers", func(t *testing.T) {
		endpoint, _ := stdioGateway(t, env, stdio.Options{Command: []string{"lines"}}, func(o *gateway.Options) {
			o.ResponseTimeout = 200 * time.Millisecond
		})
		a := exchange(t, http.MethodPost, endpoint, nil, `{"jsonrpc":"2.0","id":7,"method":"hang"}`)
		if a.status != http.StatusGatewayTimeout || a.rpcError() == nil {
			t.Fatalf("hang: HTTP %d %q, want 504 with a JSON-RPC error", a.status, a.raw)
		}
		a = exchange(t, http.MethodPost, endpoint, nil, linesEcho)
		if a.status != http.StatusOK || a.rpcError() != nil {
			t.Fatalf("echo after the hang: HTTP %d %q", a.status, a.raw)
		}
	})

	t.Run("ignores the end of stdin and SIGTERM", func(t *testing.T) {
		endpoint, g := stdioGateway(t, env, stdio.Options{Command: []string{"stubborn"}, StopGrace: 50 * time.Millisecond}, nil)
		a := exchange(t, http.MethodPost, endpoint, nil, linesEcho)
		if a.status != http.StatusOK || a.rpcError() != nil {
			t.Fatalf("echo: HTTP %d %q", a.status, a.raw)
		}
		ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
		defer cancel()
		if err := g.Close(ctx); err != nil {
			t.Fatalf("Close with a stubborn child: %v", err)
		}
	})
}

// TestGatewayStdioMaxProcesses: with MaxProcesses children running, a new
// session is refused with 503, Retry-After and a JSON-RPC error; once a
// session ends, a new one starts.
func TestGatewayStdioMaxProcesses(t *testing.T) {
	env := coretest.New(t, linesPolicy(t))
	endpoint, _ := stdioGateway(t, env, stdio.Options{Command: []string{"sdk"}, MaxProcesses: 1}, nil)
	first := exchange(t, http.MethodPost, endpoint, nil, initialize)
	sid := first.header.Get("Mcp-Session-Id")
	if first.status != http.StatusOK || sid == "" {
		t.Fatalf("first session: HTTP %d %q", first.status, first.raw)
	}
	for _, body := range []string{initialize, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`} {
		a := exchange(t, http.MethodPost, endpoint, nil, body)
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || a.rpcError() == nil {
			t.Fatalf("a second child: HTTP %d (Retry-After %q) %q, want 503 with Retry-After and a JSON-RPC error",
				a.status, a.header.Get("Retry-After"), a.raw)
		}
		if e := a.rpcError(); !sameID(e, string(mustID(t, body))) {
			t.Fatalf("error %v: want the request's id", e)
		}
	}
	// The first session still works.
	a := exchange(t, http.MethodPost, endpoint, http.Header{"Mcp-Session-Id": {sid}}, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	if a.status != http.StatusOK || !bytes.Contains(a.raw, []byte(`"echo"`)) {
		t.Fatalf("tools/list on the first session: HTTP %d %q", a.status, a.raw)
	}
	if a := exchange(t, http.MethodDelete, endpoint, http.Header{"Mcp-Session-Id": {sid}}, ""); a.status != http.StatusNoContent {
		t.Fatalf("DELETE: HTTP %d %q", a.status, a.raw)
	}
	// The child stops in the background; a new session starts once it is
	// gone (each refusal until then is a 503 with Retry-After).
	deadline := time.Now().Add(hostileWait)
	for {
		a := exchange(t, http.MethodPost, endpoint, nil, initialize)
		if a.status == http.StatusOK {
			break
		}
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || time.Now().After(deadline) {
			t.Fatalf("a new session after DELETE: HTTP %d %q", a.status, a.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustID is the id of a JSON-RPC message.
func mustID(t *testing.T, body string) json.RawMessage {
	t.Helper()
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	return m.ID
}

// TestGatewayReplayedListOnGET: a server that replays earlier answers on
// its GET stream (a client resuming with Last-Event-ID) cannot leak a
// list: the answer to a list request of the session is filtered again,
// a list-shaped answer to a request the gateway never handed on is
// dropped, and other events pass.
func TestGatewayReplayedListOnGET(t *testing.T) {
	env := coretest.New(t, coretest.Options{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Mcp-Session-Id", "s1")
		switch r.Method {
		case http.MethodPost:
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			if bytes.Contains(body, []byte(`"tools/list"`)) {
				_, _ = io.WriteString(w, fullList("3"))
				return
			}
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"x","version":"1"}}}`)
		case http.MethodGet:
			startSSE(w)
			writeFlush(w, "id: e1\n"+sseEvent(fullList("3")))
			writeFlush(w, "id: e2\n"+sseEvent(fullList("99")))
			writeFlush(w, "id: e3\n"+sseEvent(callResult("5")))
			writeFlush(w, sseEvent(hProgress))
			// A list framed with bare CRs: a client reads its fields, the
			// gateway's splitter does not; it must not pass.
			writeFlush(w, "event: message\rdata: "+fullList(`"x"`)+"\r\r\n\n")
		}
	}))
	t.Cleanup(up.Close)
	endpoint := hostileGateway(t, env, up.URL, nil)
	h := http.Header{"Mcp-Session-Id": {"s1"}}
	if a := exchange(t, http.MethodPost, endpoint, nil, initialize); a.status != http.StatusOK {
		t.Fatalf("initialize: HTTP %d %q", a.status, a.raw)
	}
	if a := exchange(t, http.MethodPost, endpoint, h, hListReq); !filteredList(a, "3") {
		t.Fatalf("the list: %q", a.raw)
	}
	a := exchange(t, http.MethodGet, endpoint, h, "")
	if bytes.Contains(a.raw, []byte(hiddenTool)) {
		t.Fatalf("the replayed stream leaked the hidden tool: %q", a.raw)
	}
	if !filteredList(a, "3") {
		t.Fatalf("the replayed list answer was not filtered: %q", a.raw)
	}
	var ids []string
	for _, m := range a.msgs {
		b, _ := json.Marshal(m["id"])
		ids = append(ids, string(b))
	}
	if strings.Join(ids, ",") != "3,5,null" {
		t.Fatalf("events for ids %v, want 3 (filtered), 5 (passed) and the notification; 99 dropped", ids)
	}
	if !bytes.Contains(a.raw, []byte("id: e3")) {
		t.Fatalf("event ids were not kept: %q", a.raw)
	}
}
