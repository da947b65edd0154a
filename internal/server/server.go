// Package server builds one running PDP from its configuration and owns its
// lifecycle: the listener (TLS files reloaded as they change), the policy and
// its reloader, the signing keys, the decision core, the HTTP API and the
// audit pipeline (embedded NATS, the sink and its spool).
//
// New wires everything; Run serves until its context ends, then shuts down;
// Close releases what New built. Every goroutine the server starts is
// counted and awaited by Close. Shutdown has two budgets, one after the
// other: the HTTP drain (Options.DrainTimeout) lets requests under way
// finish, then the audit flush (Options.FlushTimeout) hands queued events to
// NATS; events not acknowledged by then stay on the spool and are replayed
// at the next start.
//
// cmd/pdp parses flags and calls this package; nothing here reads flags or
// environment variables.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/assertion"
	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/gateway"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/revoke"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/internal/tracing"
)

// Shutdown budgets used when Options leaves them zero.
const (
	// DefaultDrainTimeout bounds how long Run waits for HTTP requests under
	// way to finish after its context ends.
	DefaultDrainTimeout = 10 * time.Second
	// DefaultFlushTimeout bounds how long Close waits for queued audit
	// events to be acknowledged by NATS; the rest stay on the spool.
	DefaultFlushTimeout = 10 * time.Second
)

// HTTP server defaults, used when the limits keys are zero.
const (
	// DefaultReadTimeout is limits.read_timeout's default, also the header
	// read timeout.
	DefaultReadTimeout = 10 * time.Second
	// DefaultWriteTimeout is limits.write_timeout's default.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultIdleTimeout is limits.idle_timeout's default.
	DefaultIdleTimeout = 2 * time.Minute
)

// maxHeaderBytes bounds the request header of the HTTP API.
const maxHeaderBytes = 64 << 10

// Options are the parts of a running PDP that do not come from the
// configuration file.
type Options struct {
	// Dev runs development mode: a fresh dev token issuer served by the PDP
	// under /dev/ and, when the configuration has no resources, one
	// resource at <base URL>/mcp whose tokens that issuer signs. Its key
	// and resource are written under the data directory for `pdp token`.
	Dev bool
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Listener, when set, is served instead of a listener on cfg.Listen.
	Listener net.Listener
	// NoListener builds the decision pipeline without any HTTP listener:
	// Run must not be called, Handler and Core serve in-process (pdp eval).
	NoListener bool
	// WrapHandler, when set, wraps the HTTP API's handler (bench/pdpprof
	// adds net/http/pprof in front of it).
	WrapHandler func(http.Handler) http.Handler
	// DrainTimeout is the HTTP drain budget of Run (default DefaultDrainTimeout).
	DrainTimeout time.Duration
	// FlushTimeout is the audit flush budget of Close (default DefaultFlushTimeout).
	FlushTimeout time.Duration
	// GatewayListener, when set, is served instead of a listener on
	// gateway.listen (tests).
	GatewayListener net.Listener
	// DevResources, in dev mode, are the resources the dev issuer's tokens
	// are for, instead of the PDP's own <base>/mcp: MCP servers of your own
	// with a PEP (pep.Middleware) that asks this PDP.
	DevResources []string
	// DevUpstream, in dev mode, puts the dev resource behind the gateway:
	// it is served at <gateway URL>/mcp and forwarded to this upstream
	// (pdp gateway --dev). gateway.listen must be set.
	DevUpstream *config.Upstream
	// DevProtect, with DevUpstream, makes these tools step-up tools needing
	// the mapped scope; every other name of the upstream is public.
	DevProtect map[string]string
	// Version is the PDP's version (pdp's main.version), exported as the
	// version label of pdp_build_info; empty: the module version the Go
	// toolchain stamped in the binary, else "unknown".
	Version string
}

// Server is one running PDP.
type Server struct {
	cfg  *config.Config
	opts Options
	log  *slog.Logger
	// tracing exports the decisions' spans; nil without tracing.endpoint.
	tracing *tracing.Tracing

	ln   net.Listener
	base string
	tls  *listenerTLS
	http *http.Server

	gwLn   net.Listener // the gateway's, when a resource has an upstream
	gwBase string
	gwTLS  *listenerTLS
	gwHTTP *http.Server
	// asserter signs the gateway's identity assertions.
	asserter *assertion.Signer
	gateways []*gateway.Gateway

	iss        *devissuer.Issuer
	policyData map[string]any // merged under data.mcp (dev gateway)
	engine     *decision.Engine
	keys       *token.KeySets
	cache      *token.Cache
	core       *core.Service
	api        *api.Server
	nats       *natsembed.Server
	nc         *nats.Conn
	sink       *auditsink.Sink
	stopStore  func() // the in-process audit store (audit.store), or nil
	// revocations watches the revocation bucket; nil when off.
	revocations     *revoke.Watcher
	stopRevocations func()

	bg   context.Context // background work; canceled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup // every goroutine started by the server

	closeOnce sync.Once
	closeErr  error
}

// New builds a PDP from cfg, a configuration that config.Load (or
// config.Default followed by Override) has validated; in dev mode New adds
// the dev resource and validates. It opens the
// listener, loads and compiles the policy (start-up fails when it cannot be
// served: there is no last good policy yet), starts the embedded NATS and
// the audit sink when audit is on, and starts watching the policy. ctx
// bounds the start only; background work lives until Close.
func New(ctx context.Context, cfg *config.Config, opts Options) (s *Server, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = DefaultFlushTimeout
	}
	if opts.Dev && opts.NoListener {
		return nil, errors.New("server: dev mode serves its issuer over HTTP and needs a listener")
	}
	if opts.DevUpstream != nil && (!opts.Dev || cfg.Gateway.Listen == "") {
		return nil, errors.New("server: a dev upstream needs dev mode and gateway.listen")
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	s = &Server{cfg: cfg, opts: opts, log: opts.Logger, bg: bg, stop: stop}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if !opts.NoListener {
		if err := s.listen(); err != nil {
			return s, err
		}
	}
	if !opts.NoListener && (s.gatewayResources() > 0 || opts.DevUpstream != nil) {
		if err := s.listenGateway(); err != nil {
			return s, err
		}
	}
	if opts.Dev {
		if s.iss, err = s.setupDev(); err != nil {
			return s, err
		}
	}
	if err := s.wire(ctx); err != nil {
		return s, err
	}
	if !opts.NoListener {
		var h http.Handler = s.api
		if opts.WrapHandler != nil {
			h = opts.WrapHandler(h)
		}
		read := cmp.Or(cfg.Limits.ReadTimeout.D(), DefaultReadTimeout)
		s.http = &http.Server{
			Handler:           h,
			ReadHeaderTimeout: read,
			ReadTimeout:       read,
			WriteTimeout:      cmp.Or(cfg.Limits.WriteTimeout.D(), DefaultWriteTimeout),
			IdleTimeout:       cmp.Or(cfg.Limits.IdleTimeout.D(), DefaultIdleTimeout),
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		if s.tls != nil {
			s.http.TLSConfig = s.tls.Config()
		}
	}
	if s.gwLn != nil {
		h, err := s.wireGateway()
		if err != nil {
			return s, err
		}
		s.gwHTTP = &http.Server{
			Handler:           h,
			ReadHeaderTimeout: cmp.Or(cfg.Limits.ReadTimeout.D(), DefaultReadTimeout),
			// No WriteTimeout: SSE answers and the server's stream last as
			// long as the upstream keeps them; the gateway bounds idle streams.
			IdleTimeout:    cmp.Or(cfg.Limits.IdleTimeout.D(), DefaultIdleTimeout),
			MaxHeaderBytes: maxHeaderBytes,
			ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		if s.gwTLS != nil {
			s.gwHTTP.TLSConfig = s.gwTLS.Config()
		}
	}
	return s, nil
}

// listen opens the listener and refuses exposed set-ups without PEP
// authentication.
func (s *Server) listen() error {
	cfg := s.cfg
	s.ln = s.opts.Listener
	if s.ln == nil {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
		s.ln = ln
	}
	scheme := "http://"
	if cfg.TLS.Enabled() {
		scheme = "https://"
	}
	s.base = scheme + s.ln.Addr().String()
	if !isLoopback(s.ln.Addr()) && !cfg.Auth.Enabled() && !cfg.Insecure {
		return fmt.Errorf("listen %s: refusing a non-loopback address without PEP authentication; configure auth.api_keys or auth.mtls, or set insecure: true to override (see docs/security.md)", cfg.Listen)
	}
	if !isLoopback(s.ln.Addr()) && len(cfg.Auth.APIKeys) > 0 && !cfg.TLS.Enabled() {
		s.log.Warn("API keys are accepted over plain HTTP on a non-loopback address: anyone on the path can read them; configure tls (see docs/security.md)", "listen", cfg.Listen)
	}
	if cfg.TLS.Enabled() {
		t, err := newListenerTLS(cfg.TLS, cfg.Auth.MTLS, len(cfg.Auth.APIKeys) > 0, s.log.With("component", "tls"))
		if err != nil {
			return err
		}
		s.tls = t
	}
	return nil
}

func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// goBackground runs fn as a goroutine owned by the server: Close waits for it.
func (s *Server) goBackground(fn func(ctx context.Context)) {
	s.wg.Go(func() { fn(s.bg) })
}

// URL is the base URL the PDP serves on (http:// or https:// and the
// listener's address); empty without a listener.
func (s *Server) URL() string { return s.base }

// GatewayURL is the gateway's base URL; empty without a gateway.
func (s *Server) GatewayURL() string { return s.gwBase }

// Handler is the HTTP API (routes, limits, PEP authentication), without
// Options.WrapHandler.
func (s *Server) Handler() http.Handler { return s.api }

// Core is the decision core, for in-process decisions.
func (s *Server) Core() *core.Service { return s.core }

// Engine holds the active policy; a swap takes effect for the next decision.
func (s *Server) Engine() *decision.Engine { return s.engine }

// DevIssuer is the dev token issuer in dev mode, else nil.
func (s *Server) DevIssuer() *devissuer.Issuer { return s.iss }

// Run serves HTTP until ctx ends or the listener fails, then drains
// requests under way (Options.DrainTimeout) and closes the server (audit
// flush within Options.FlushTimeout). It returns nil after a shutdown that
// ctx asked for.
func (s *Server) Run(ctx context.Context) error {
	if s.http == nil {
		return errors.New("server: Run needs a listener (the server was built with NoListener)")
	}
	errc := make(chan error, 1)
	go func() {
		if s.tls != nil {
			errc <- s.http.ServeTLS(s.ln, "", "")
			return
		}
		errc <- s.http.Serve(s.ln)
	}()
	gwErrc := make(chan error, 1)
	if s.gwHTTP != nil {
		go func() {
			if s.gwTLS != nil {
				gwErrc <- s.gwHTTP.ServeTLS(s.gwLn, "", "")
				return
			}
			gwErrc <- s.gwHTTP.Serve(s.gwLn)
		}()
		s.log.Info("mcp-pdp gateway serving", "addr", s.gwBase)
	}
	p := s.engine.Policy()
	s.log.Info("mcp-pdp serving", "addr", s.base, "dev", s.opts.Dev, "policy", p.Source(), "revision", p.Revision())
	for _, r := range s.cfg.Resources {
		s.log.Info("protected resource", "uri", r.URI, "issuer", r.Issuer)
	}
	var err, gwErr error
	served, gwServed := false, s.gwHTTP == nil
	select {
	case err = <-errc:
		served = true
	case gwErr = <-gwErrc:
		gwServed = true
	case <-ctx.Done():
	}
	drain, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
	defer cancel()
	if s.gwHTTP != nil {
		// MCP clients first (their requests end in decisions), then PEPs.
		if serr := s.gwHTTP.Shutdown(drain); serr != nil {
			s.log.Warn("gateway shutdown: streams still open were cut", "budget", s.opts.DrainTimeout, "err", serr)
			_ = s.gwHTTP.Close()
		}
		if !gwServed {
			gwErr = <-gwErrc
		}
	}
	if serr := s.http.Shutdown(drain); serr != nil {
		s.log.Warn("http shutdown: requests still under way were cut", "budget", s.opts.DrainTimeout, "err", serr)
	}
	if !served {
		err = <-errc
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if errors.Is(gwErr, http.ErrServerClosed) {
		gwErr = nil
	}
	return errors.Join(err, gwErr, s.Close())
}

// Close stops everything New started, in reverse order, and waits for the
// server's goroutines: the audit sink flushes to NATS (or the spool) within
// Options.FlushTimeout, then the NATS connection and the embedded server
// stop, then background work (policy watching, key refresh and warm-up,
// key fetches under way) is canceled and awaited. It is safe to call more than once; Run calls it.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.http != nil {
			// Run has drained already; this only matters without Run.
			_ = s.http.Close()
		} else if s.ln != nil {
			_ = s.ln.Close()
		}
		if s.gwHTTP != nil {
			_ = s.gwHTTP.Close()
		} else if s.gwLn != nil {
			_ = s.gwLn.Close()
		}
		for _, g := range s.gateways {
			// Stdio children: their process groups are stopped.
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
			if err := g.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("gateway close: %w", err))
			}
			cancel()
		}
		if s.sink != nil {
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.FlushTimeout)
			if err := s.sink.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("audit close: %w", err))
			}
			cancel()
		}
		if s.tracing != nil {
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.FlushTimeout)
			if err := s.tracing.Shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		if s.stopStore != nil {
			s.stopStore()
		}
		if s.stopRevocations != nil {
			s.stopRevocations()
		}
		if s.nc != nil {
			s.nc.Close()
		}
		if s.nats != nil {
			_ = natsembed.RemoveURLFile(s.cfg.DataDir)
			s.nats.Shutdown()
		}
		s.stop()
		s.wg.Wait()
		if s.keys != nil {
			s.keys.Close() // key fetches under way
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
