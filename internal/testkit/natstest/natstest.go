// Package natstest runs an embedded NATS server with JetStream
// (internal/natsembed) for tests: one call starts it, the end of the test
// stops it, and a test can stop and restart it as an operator would.
package natstest

import (
	"context"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/mcp-pdp/pdp/internal/natsembed"
)

// Server is an embedded NATS server on 127.0.0.1 with its JetStream store
// in a temporary directory. It is not safe for concurrent use: one test
// goroutine stops and restarts it.
type Server struct {
	tb   testing.TB
	opts natsembed.Options
	url  string
	srv  *natsembed.Server
}

// Start starts a server on a random port, or fails the test. It is shut
// down when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{tb: tb, opts: natsembed.Options{StoreDir: filepath.Join(tb.TempDir(), "jetstream"), Port: natsembed.RandomPort}}
	tb.Cleanup(s.Stop)
	s.start()
	s.url = s.srv.ClientURL()
	u, err := url.Parse(s.url)
	if err != nil {
		tb.Fatalf("natstest: client URL %q: %v", s.url, err)
	}
	// Later starts take the same port, so that clients reconnect.
	if s.opts.Port, err = strconv.Atoi(u.Port()); err != nil {
		tb.Fatalf("natstest: client URL %q: %v", s.url, err)
	}
	return s
}

// URL is the client URL (nats://127.0.0.1:port); it stays the same across
// restarts.
func (s *Server) URL() string { return s.url }

// Embedded returns the running server, nil while it is stopped.
func (s *Server) Embedded() *natsembed.Server { return s.srv }

// Stop shuts the server down, as a stopped NATS process; its store stays.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv = nil
	}
}

// Restart starts a stopped server again on the same port and store, or
// fails the test.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.srv != nil {
		s.tb.Fatal("natstest: Restart of a running server")
	}
	s.start()
}

func (s *Server) start() {
	s.tb.Helper()
	srv, err := natsembed.Start(context.Background(), s.opts)
	if err != nil {
		s.tb.Fatalf("natstest: start nats: %v", err)
	}
	s.srv = srv
}
