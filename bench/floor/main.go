// Command floor is the floor of the load benchmark (make loadbench): a plain
// Go net/http server that decodes the /v1/decide JSON body and writes a fixed
// JSON decision. No PDP can answer faster over HTTP on the same machine, so
// mcp-pdp's throughput is reported as a fraction of it. With --jwks it also
// verifies the request's bearer token (RS256, lestrrat-go/jwx v3) on every
// request, without caching: the floor of a PDP that verifies every token.
//
// It is a benchmark fixture, not part of the product.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// request mirrors the body of POST /v1/decide (pep.Request).
type request struct {
	Resource      string          `json:"resource"`
	Authorization string          `json:"authorization,omitempty"`
	Message       json.RawMessage `json:"message"`
	Result        json.RawMessage `json:"result,omitempty"`
}

// answer is a decision shaped like mcp-pdp's allow answer.
var answer = []byte(`{"decision_id":"floor00000000000000000","allow":true,"outcome":"allow","http_status":200,"required_scopes":["qr:generate"],"missing_scopes":[],"reason":"step_up access","policy_revision":"floor"}`)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address (loopback)")
	jwksURL := flag.String("jwks", "", "verify every bearer token against the JWKS at this URL (empty: no verification)")
	issuer := flag.String("issuer", "", "required iss when verifying")
	audience := flag.String("audience", "", "required aud when verifying")
	flag.Parse()

	var set jwk.Set
	if *jwksURL != "" {
		var err error
		if set, err = fetchJWKS(*jwksURL); err != nil {
			log.Fatalf("floor: %v", err)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("floor: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("POST /v1/decide", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req request
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if set != nil && req.Authorization != "" {
			raw, ok := strings.CutPrefix(req.Authorization, "Bearer ")
			if !ok {
				http.Error(w, "not a bearer token", http.StatusBadRequest)
				return
			}
			if _, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithValidate(true),
				jwt.WithIssuer(*issuer), jwt.WithAudience(*audience)); err != nil {
				http.Error(w, "invalid token: "+err.Error(), http.StatusUnauthorized)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	fmt.Fprintf(os.Stderr, "floor serving on %s (verify tokens: %v)\n", ln.Addr(), set != nil)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("floor: %v", err)
	}
}

func fetchJWKS(url string) (jwk.Set, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return jwk.Parse(b)
}
