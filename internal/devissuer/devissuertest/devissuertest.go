// Package devissuertest runs a devissuer.Issuer behind an httptest server,
// for tests anywhere in the project:
//
//	srv := devissuertest.New(t, "ES256")
//	tok := srv.Mint(t, devissuer.MintOptions{Subject: "alice", Audience: []string{resource}})
//	// configure the code under test with Issuer srv.URL (discovery works)
//	// or JWKSURI srv.Issuer.JWKSURI().
package devissuertest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// Server is a running development issuer.
type Server struct {
	*devissuer.Issuer
	// URL is the issuer URL (the server's base URL).
	URL string
	// HTTP is the underlying test server (closed by t.Cleanup).
	HTTP *httptest.Server

	requests atomic.Int64
}

// New starts an issuer for alg ("" = ES256) whose issuer URL is the test
// server's URL. The server is closed when the test ends.
func New(tb testing.TB, alg string) *Server {
	tb.Helper()
	hs := httptest.NewUnstartedServer(nil)
	url := "http://" + hs.Listener.Addr().(*net.TCPAddr).String()
	iss, err := devissuer.New(url, alg)
	if err != nil {
		hs.Close()
		tb.Fatalf("devissuertest: %v", err)
	}
	s := &Server{Issuer: iss, URL: url, HTTP: hs}
	h := iss.Handler()
	hs.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h.ServeHTTP(w, r)
	})
	hs.Start()
	tb.Cleanup(hs.Close)
	return s
}

// Requests returns how many HTTP requests the server has received.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Mint mints a token or fails the test.
func (s *Server) Mint(tb testing.TB, o devissuer.MintOptions) string {
	tb.Helper()
	tok, err := s.Issuer.Mint(o)
	if err != nil {
		tb.Fatalf("devissuertest: mint: %v", err)
	}
	return tok
}
