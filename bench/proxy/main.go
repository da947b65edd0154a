// Command proxy is the floor of the load benchmark's gateway series (make
// loadbench, -what gateway): Go's net/http/httputil.ReverseProxy in front of
// the upstream, no decision, nothing added. Whatever a proxy does per
// request, it does at least this; the gateway's throughput is reported as
// a fraction of it. The request path is kept (POST /mcp and /sse go to the
// upstream's /mcp and /sse); SSE answers are flushed event by event
// (ReverseProxy does so for text/event-stream).
//
// It is a benchmark fixture, not part of the product.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

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
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.Serve(ln))
}
