package api_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/token"
)

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
			e := newServer(t, serverOptions{issuer: s.url, jwksURI: s.url + devissuer.JWKSPath, keys: keysCfg})
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
			e := newServer(t, serverOptions{issuer: s.url, jwksURI: s.url + devissuer.JWKSPath, keys: keysCfg})
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
