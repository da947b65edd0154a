package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/token"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: pdp serve [--config pdp.yaml | --dev] [flags]")
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "configuration file (YAML); see docs/configuration.md")
	dev := fs.Bool("dev", false, "development mode: dev token issuer, demo policy, embedded NATS; no config needed")
	listen := fs.String("listen", "", "listen address (overrides the config; default "+config.DefaultListen+")")
	dataDir := fs.String("data-dir", "", "data directory (overrides the config; default "+config.DefaultDataDir+")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*cfgPath == "") == !*dev {
		fmt.Fprintln(stderr, "pdp serve: give exactly one of --config FILE or --dev")
		return 2
	}
	var cfg *config.Config
	if *cfgPath != "" {
		c, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "pdp serve:", err)
			return 1
		}
		cfg = c
	} else {
		cfg = &config.Config{}
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	cfg.ApplyDefaults()
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "pdp serve:", err)
		return 1
	}
	gc, err := planGC(os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"), cfg.Runtime)
	if err != nil {
		fmt.Fprintln(stderr, "pdp serve:", err)
		return 1
	}
	applyGC(gc, log)
	if err := serve(ctx, cfg, *dev, log, nil); err != nil {
		log.Error("pdp serve stopped", "err", err)
		return 1
	}
	return 0
}

func newLogger(c config.Log, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// serve runs the PDP until ctx is done. When started is not nil it receives
// the base URL once the listener is up (used by tests).
func serve(ctx context.Context, cfg *config.Config, dev bool, log *slog.Logger, started chan<- string) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	base := "http://" + ln.Addr().String()
	if cfg.TLS.Enabled() {
		base = "https://" + ln.Addr().String()
	}
	if !isLoopback(ln.Addr()) && !cfg.Auth.Enabled() && !cfg.Insecure {
		return fmt.Errorf("listen %s: refusing a non-loopback address without PEP authentication; configure auth.api_keys or auth.mtls, or set insecure: true to override (see docs/security.md)", cfg.Listen)
	}
	if !isLoopback(ln.Addr()) && len(cfg.Auth.APIKeys) > 0 && !cfg.TLS.Enabled() {
		log.Warn("API keys are accepted over plain HTTP on a non-loopback address: anyone on the path can read them; configure tls (see docs/security.md)", "listen", cfg.Listen)
	}
	var ltls *listenerTLS
	if cfg.TLS.Enabled() {
		if ltls, err = newListenerTLS(cfg.TLS, cfg.Auth.MTLS, len(cfg.Auth.APIKeys) > 0, log.With("component", "tls")); err != nil {
			return err
		}
	}
	var iss *devissuer.Issuer
	if dev {
		if iss, err = setupDev(cfg, base); err != nil {
			return err
		}
	} else if err := cfg.Validate(); err != nil {
		return err
	}
	a, err := newApp(ctx, cfg, iss, log)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           a.api,
		ReadHeaderTimeout: cfg.Limits.ReadTimeout.D(),
		ReadTimeout:       cfg.Limits.ReadTimeout.D(),
		WriteTimeout:      cfg.Limits.WriteTimeout.D(),
		IdleTimeout:       cfg.Limits.IdleTimeout.D(),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	if ltls != nil {
		srv.TLSConfig = ltls.Config()
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	log.Info("mcp-pdp serving", "addr", base, "dev", dev, "policy", a.engine.Policy().Source(), "revision", a.engine.Policy().Revision())
	for _, r := range cfg.Resources {
		log.Info("protected resource", "uri", r.URI, "issuer", r.Issuer)
	}
	if dev {
		log.Info("dev mode: mint a token with `pdp token --scope qr:generate`", "issuer", iss.IssuerURL())
	}
	if started != nil {
		started <- base
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutdownCtx); serr != nil {
		log.Warn("http shutdown", "err", serr)
	}
	if cerr := a.Close(shutdownCtx); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// setupDev fills cfg for development: one resource at <base>/mcp whose tokens
// come from a fresh dev issuer served by the PDP itself under /dev/.
func setupDev(cfg *config.Config, base string) (*devissuer.Issuer, error) {
	iss, err := devissuer.New(base+"/dev", "ES256")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "dev"), 0o700); err != nil {
		return nil, err
	}
	if err := iss.Save(filepath.Join(cfg.DataDir, devIssuerFile)); err != nil {
		return nil, err
	}
	resource := base + "/mcp"
	if err := os.WriteFile(filepath.Join(cfg.DataDir, devResourceFile), []byte(resource+"\n"), 0o600); err != nil {
		return nil, err
	}
	if len(cfg.Resources) == 0 {
		cfg.Resources = []config.Resource{{
			URI:             resource,
			Issuer:          iss.IssuerURL(),
			JWKSURI:         iss.JWKSURI(),
			ScopesSupported: []string{"qr:generate"},
		}}
	}
	cfg.ApplyDefaults()
	return iss, cfg.Validate()
}

// app is the wired PDP.
type app struct {
	cfg    *config.Config
	log    *slog.Logger
	engine *decision.Engine
	keys   *token.KeySets
	cache  *token.Cache
	core   *core.Service
	api    *api.Server
	nats   *natsembed.Server
	nc     *nats.Conn
	sink   *auditsink.Sink
	stop   context.CancelFunc
}

func newApp(ctx context.Context, cfg *config.Config, iss *devissuer.Issuer, log *slog.Logger) (a *app, err error) {
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	a = &app{cfg: cfg, log: log, stop: stop}
	defer func() {
		if err != nil {
			_ = a.Close(context.Background())
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	pol, watcher, err := loadPolicy(ctx, cfg.Policy, log)
	if err != nil {
		return a, err
	}
	a.engine = decision.NewEngine(pol)
	startPolicyReload(bg, a.engine, watcher, cfg.Policy, reg, log)

	a.keys = token.NewKeySets(token.KeySetsConfig{
		RefreshInterval:    cfg.JWKS.RefreshInterval.D(),
		MinRefetchInterval: cfg.JWKS.MinRefetchInterval.D(),
		FetchTimeout:       cfg.JWKS.FetchTimeout.D(),
		MaxBodyBytes:       cfg.JWKS.MaxBodyBytes,
		Logger:             log.With("component", "jwks"),
	})
	go a.keys.Run(bg)
	// Cached tokens are re-verified at least every 10 minutes, so a key removed
	// from the JWKS stops being trusted within that bound.
	a.cache = token.NewCacheWithConfig(token.CacheConfig{MaxEntries: cfg.Limits.TokenCacheSize, MaxTTL: 10 * time.Minute})
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pdp_token_cache_entries", Help: "Verified tokens cached."}, func() float64 { return float64(a.cache.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pdp_token_cache_hits_total", Help: "Verified-token cache hits."}, func() float64 { return float64(a.cache.Hits()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pdp_token_cache_misses_total", Help: "Verified-token cache misses."}, func() float64 { return float64(a.cache.Misses()) }),
		// The decision cache belongs to the active policy: these restart from
		// zero when a reload swaps it (Prometheus rate() handles the reset).
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pdp_decision_cache_hits_total", Help: "Decisions answered by the active policy's decision cache."}, func() float64 { return float64(a.engine.Policy().CacheStats().Hits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pdp_decision_cache_misses_total", Help: "Decisions the active policy evaluated (cache on, no entry)."}, func() float64 { return float64(a.engine.Policy().CacheStats().Misses) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pdp_decision_cache_entries", Help: "Decisions cached by the active policy."}, func() float64 { return float64(a.engine.Policy().CacheStats().Entries) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pdp_jwks_fetches_total", Help: "JWKS and metadata fetches."}, func() float64 { return float64(a.keys.Stats().Fetches) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pdp_jwks_fetch_errors_total", Help: "Failed JWKS and metadata fetches."}, func() float64 { return float64(a.keys.Stats().FetchErrors) }),
	)

	var resources []*core.Resource
	var docs []api.MetadataDoc
	for _, r := range cfg.Resources {
		v, err := token.NewVerifier(token.Config{
			Resource: r.URI, Issuer: r.Issuer, Audiences: r.Audiences, JWKSURI: r.JWKSURI,
			Algorithms: r.Algorithms, ClockSkew: r.ClockSkew.D(),
		}, a.keys, a.cache, log)
		if err != nil {
			return a, fmt.Errorf("resources[%s]: %w", r.URI, err)
		}
		mdURL := r.ResourceMetadataURL
		if mdURL == "" {
			if mdURL, err = stepup.MetadataURL(r.URI); err != nil {
				return a, err
			}
		}
		path, err := stepup.MetadataPath(r.URI)
		if err != nil {
			return a, err
		}
		u, _ := url.Parse(r.URI)
		docs = append(docs, api.MetadataDoc{Host: u.Host, Path: path, Document: stepup.NewMetadata(r.URI, r.AuthorizationServers, r.ScopesSupported)})
		resources = append(resources, &core.Resource{
			URI: r.URI, Key: r.Key, Verifier: v,
			Challenge: stepup.Resource{
				URI: r.URI, MetadataURL: mdURL, Strategy: stepup.Strategy(r.ChallengeScopes), ScopesSupported: r.ScopesSupported,
			},
			AuditArguments: r.AuditArguments.Enabled, Redact: r.AuditArguments.Redact,
		})
		if iss == nil {
			go func() {
				if err := v.Warm(bg); err != nil {
					log.Warn("signing keys not fetched at start-up; will retry on demand", "resource", r.URI, "err", err)
				}
			}()
		}
	}

	var auditor core.Auditor
	var ready []api.ReadinessCheck
	if cfg.Audit.IsEnabled() {
		if err := a.startAudit(ctx, reg); err != nil {
			return a, err
		}
		auditor = a.sink
		ready = append(ready, a.sink.Healthy)
	} else {
		log.Warn("audit is disabled: decisions are not recorded (not recommended)")
	}
	a.core, err = core.New(core.Options{
		Engine: a.engine, Resources: resources, Auditor: auditor,
		DenyUnaudited:   cfg.Audit.OnFailure == "deny",
		DecisionTimeout: cfg.Limits.DecisionTimeout.D(),
		Logger:          log,
	})
	if err != nil {
		return a, err
	}
	auth := api.PEPAuth{MTLS: cfg.Auth.MTLS.ClientCA != "", AllowedSubjects: cfg.Auth.MTLS.AllowedSubjects}
	for _, k := range cfg.Auth.APIKeys {
		key, err := api.ParseAPIKey(k.Name, k.SHA256)
		if err != nil {
			return a, fmt.Errorf("auth.api_keys: %w", err)
		}
		auth.APIKeys = append(auth.APIKeys, key)
	}
	var mount func(*echo.Echo)
	if iss != nil {
		h := echo.WrapHandler(iss.Handler())
		mount = func(e *echo.Echo) {
			e.GET("/dev/*", h)
			e.GET("/.well-known/oauth-authorization-server/dev", h)
			e.GET("/.well-known/openid-configuration/dev", h)
		}
	}
	a.api = api.New(api.Options{
		Core: a.core, Metadata: docs, MaxBodyBytes: cfg.Limits.MaxBodyBytes, Ready: ready,
		Status: func() map[string]any {
			p := a.engine.Policy()
			if p == nil {
				return nil
			}
			return map[string]any{"policy_revision": p.Revision(), "policy_source": p.Source()}
		},
		Registry: reg, Logger: log, Mount: mount,
		Auth:   auth,
		Limits: api.Limits{RatePerPEP: cfg.Limits.RatePerPEP, RateBurst: cfg.Limits.RateBurst, MaxConcurrent: cfg.Limits.MaxConcurrent},
	})
	return a, nil
}

// startAudit connects to NATS (starting the embedded server when asked) and
// opens the audit sink.
func (a *app) startAudit(ctx context.Context, reg prometheus.Registerer) error {
	ac := a.cfg.Audit
	natsURL := ac.NATS.URL
	var inProcess nats.InProcessConnProvider
	if natsURL == "embedded" {
		s, err := natsembed.Start(ctx, natsembed.Options{
			StoreDir: filepath.Join(a.cfg.DataDir, "nats"), Port: natsembed.RandomPort,
			Logger: a.log.With("component", "nats"),
		})
		if err != nil {
			return fmt.Errorf("audit: start embedded NATS: %w", err)
		}
		a.nats = s
		natsURL = s.ClientURL()
		inProcess = s // no socket between the PDP and its own NATS
		if err := natsembed.WriteURLFile(a.cfg.DataDir, natsURL); err != nil {
			a.log.Warn("cannot write nats.url for `pdp audit`", "err", err)
		}
	}
	nc, err := auditsink.Connect(ctx, natsURL, auditsink.ConnectOptions{
		Name: "mcp-pdp " + a.cfg.Instance, CredsFile: ac.NATS.Credentials, NKeySeedFile: ac.NATS.NKeySeed,
		TLSCAFile: ac.NATS.TLSCA, TLSCertFile: ac.NATS.TLSCert, TLSKeyFile: ac.NATS.TLSKey,
		RetryOnFailedConnect: true, Logger: a.log.With("component", "nats-client"),
		InProcess: inProcess,
	})
	if err != nil {
		return fmt.Errorf("audit: connect to NATS %s: %w", redactURL(natsURL), err)
	}
	a.nc = nc
	spool := ac.SpoolDir
	if spool == "" {
		spool = filepath.Join(a.cfg.DataDir, "spool")
	}
	a.sink, err = auditsink.New(ctx, auditsink.Config{
		Enabled: true, Mode: ac.Mode, OnFailure: ac.OnFailure,
		Stream: ac.Stream, SubjectPrefix: ac.SubjectPrefix, Replicas: ac.Replicas,
		MaxAge: ac.MaxAge.D(), DuplicateWindow: ac.DuplicateWindow.D(), QueueSize: ac.QueueSize,
		SpoolDir: spool, PDP: a.cfg.Instance, Logger: a.log.With("component", "audit"), Registerer: reg,
	}, nc)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// Close stops everything in reverse order; audit events are flushed to NATS
// or the spool before NATS stops.
func (a *app) Close(ctx context.Context) error {
	var errs []error
	if a.sink != nil {
		if err := a.sink.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("audit close: %w", err))
		}
	}
	if a.nc != nil {
		a.nc.Close()
	}
	if a.nats != nil {
		_ = natsembed.RemoveURLFile(a.cfg.DataDir)
		a.nats.Shutdown()
	}
	if a.stop != nil {
		a.stop()
	}
	return errors.Join(errs...)
}
