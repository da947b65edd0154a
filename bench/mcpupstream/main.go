// Command mcpupstream is the minimal MCP server of the load benchmark's
// gateway series (make loadbench, -what gateway): a stateless Streamable
// HTTP endpoint on plain net/http, as cheap as an MCP server can be, so
// that the rows in front of it (the gateway, httputil.ReverseProxy, a
// two-hop PEP) differ only by what they do themselves.
//
//	POST /mcp   answers as JSON (application/json)
//	POST /sse   answers as one SSE event (text/event-stream)
//	GET  either the server's stream: SSE headers and a comment, then held
//	            open, silent, until the client goes (the idle-stream test)
//	GET  /health 200
//
// It answers initialize, ping, tools/list (the 100 tools of
// bench/internal/mcpbench) and tools/call (a short text) of any tool;
// notifications and responses get 202. No sessions.
//
// It is a benchmark fixture, not part of the product.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mcp-pdp/pdp/bench/internal/mcpbench"
)

// answers are the canned results, each split around the request's id.
type answers struct {
	pre                    []byte
	list, call, init, ping []byte // `,"result":...}`
}

func newAnswers() *answers {
	post := func(result []byte) []byte { return append(append([]byte(`,"result":`), result...), '}') }
	return &answers{
		pre:  []byte(`{"jsonrpc":"2.0","id":`),
		list: post(mcpbench.ListResult()),
		call: post(mcpbench.CallResult()),
		init: post(mcpbench.InitializeResult("mcpupstream")),
		ping: post([]byte(`{}`)),
	}
}

// server serves the endpoint; streams counts the GET streams open.
type server struct {
	a       *answers
	streams atomic.Int64
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/health":
		fmt.Fprintf(w, "ok %d streams\n", s.streams.Load())
	case r.URL.Path != "/mcp" && r.URL.Path != "/sse":
		http.NotFound(w, r)
	case r.Method == http.MethodGet:
		s.stream(w, r)
	case r.Method == http.MethodPost:
		s.post(w, r, r.URL.Path == "/sse")
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusMethodNotAllowed) // no sessions
	default:
		w.Header().Set("Allow", "GET, POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// post answers one JSON-RPC message.
func (s *server) post(w http.ResponseWriter, r *http.Request, sse bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, "not one JSON-RPC message", http.StatusBadRequest)
		return
	}
	if m.ID == nil || m.Method == "" {
		w.WriteHeader(http.StatusAccepted) // a notification or a response
		return
	}
	var post []byte
	switch m.Method {
	case "tools/list":
		post = s.a.list
	case "tools/call":
		post = s.a.call
	case "initialize":
		post = s.a.init
	case "ping":
		post = s.a.ping
	default:
		post = []byte(`,"error":{"code":-32601,"message":"method not found"}}`)
	}
	out := make([]byte, 0, len(s.a.pre)+len(m.ID)+len(post)+24)
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		out = append(out, "event: message\ndata: "...)
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	out = append(append(append(out, s.a.pre...), m.ID...), post...)
	if sse {
		out = append(out, "\n\n"...)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = w.Write(out)
}

// stream holds a GET stream open, silent, until the client goes.
func (s *server) stream(w http.ResponseWriter, r *http.Request) {
	s.streams.Add(1)
	defer s.streams.Add(-1)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(": stream open\n\n"))
	_ = http.NewResponseController(w).Flush()
	<-r.Context().Done()
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address (loopback)")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("mcpupstream: %v", err)
	}
	fmt.Fprintf(os.Stderr, "mcpupstream on %s\n", ln.Addr())
	srv := &http.Server{Handler: &server{a: newAnswers()}, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	log.Fatalf("mcpupstream: %v", srv.Serve(ln))
}
