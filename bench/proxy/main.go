// Command proxy is the floor of the load benchmark's gateway series (make
// loadbench, -what gateway): Go's net/http/httputil.ReverseProxy in front of
// the upstream, no decision, nothing added. Whatever a proxy does per
// request, it does at least this; the gateway's throughput is reported as
// a fraction of it. The request path is kept (POST /mcp and /sse go to the
// upstream's /mcp and /sse); SSE answers are flushed event by event
// (ReverseProxy does so for text/event-stream). The request body is read
// whole before it is forwarded (see buffered), as the gateway does.
//
// It is a benchmark fixture, not part of the product.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

// buffered reads the request body whole before next forwards it. Streamed
// (ReverseProxy's default), the transport's final read of the body, made to
// check its length, can land after the server has closed the body on
// writing the answer's headers; the transport then drops the upstream
// connection and cuts the answer (~1 in 5,000 tools/list answers here,
// "ReverseProxy read error during body copy: use of closed network
// connection"). MCP messages are small and the gateway reads them whole.
func buffered(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		next.ServeHTTP(w, r)
	})
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address (loopback)")
	upstream := flag.String("upstream", "", "the upstream's base URL, e.g. http://127.0.0.1:9000")
	flag.Parse()
	up, err := url.Parse(*upstream)
	if err != nil || up.Host == "" {
		log.Fatalf("proxy: --upstream %q is not a URL", *upstream)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(up) },
		// The same transport settings as the two-hop PEP's and the
		// in-process benchmarks' (internal/gateway/bench_test.go).
		Transport: &http.Transport{Proxy: nil, MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("proxy: %v", err)
	}
	fmt.Fprintf(os.Stderr, "proxy on %s -> %s\n", ln.Addr(), up)
	srv := &http.Server{Handler: buffered(rp), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.Serve(ln))
}
