// Command pdpprof serves mcp-pdp's /v1/decide exactly as `pdp serve
// --config` wires it (the same packages: internal/decision, token, core,
// api, and with audit.enabled the async audit sink on an embedded NATS
// JetStream or a nats:// URL) and adds net/http/pprof under /debug/pprof/, so that the
// load benchmark can take a CPU profile of the decision path under load
// (make loadbench-profile). It is a benchmark fixture, not part of the
// product: keep its wiring in step with cmd/pdp/serve.go newApp.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/token"
)

func main() {
	cfgPath := flag.String("config", "", "mcp-pdp configuration file (audit: the embedded NATS, or a nats:// URL without credentials)")
	flag.Parse()
	if err := run(*cfgPath); err != nil {
		fmt.Fprintln(os.Stderr, "pdpprof:", err)
		os.Exit(1)
	}
}

func run(cfgPath string) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	src := decision.Source{Path: cfg.Policy.Path}
	pol, err := decision.Load(ctx, src, decision.Options{CacheSize: cfg.Policy.DecisionCacheSize})
	if err != nil {
		return err
	}
	engine := decision.NewEngine(pol)
	keys := token.NewKeySets(token.KeySetsConfig{
		RefreshInterval:    cfg.JWKS.RefreshInterval.D(),
		MinRefetchInterval: cfg.JWKS.MinRefetchInterval.D(),
		FetchTimeout:       cfg.JWKS.FetchTimeout.D(),
		MaxBodyBytes:       cfg.JWKS.MaxBodyBytes,
		Logger:             log,
	})
	go keys.Run(ctx)
	cache := token.NewCache(cfg.Limits.TokenCacheSize)
	var resources []*core.Resource
	for _, r := range cfg.Resources {
		v, err := token.NewVerifier(token.Config{
			Resource: r.URI, Issuer: r.Issuer, Audiences: r.Audiences, JWKSURI: r.JWKSURI,
			Algorithms: r.Algorithms, ClockSkew: r.ClockSkew.D(),
		}, keys, cache, log)
		if err != nil {
			return err
		}
		if err := v.Warm(ctx); err != nil {
			return err
		}
		md := r.ResourceMetadataURL
		if md == "" {
			if md, err = stepup.MetadataURL(r.URI); err != nil {
				return err
			}
		}
		resources = append(resources, &core.Resource{
			URI: r.URI, Key: r.Key, Verifier: v,
			Challenge: stepup.Resource{URI: r.URI, MetadataURL: md, Strategy: stepup.Strategy(r.ChallengeScopes), ScopesSupported: r.ScopesSupported},
		})
	}
	var auditor core.Auditor
	if cfg.Audit.IsEnabled() {
		sink, closeAudit, err := startAudit(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer closeAudit()
		auditor = sink
	}
	svc, err := core.New(core.Options{Engine: engine, Resources: resources, Auditor: auditor, DecisionTimeout: cfg.Limits.DecisionTimeout.D(), Logger: log})
	if err != nil {
		return err
	}
	h := api.New(api.Options{Core: svc, MaxBodyBytes: cfg.Limits.MaxBodyBytes, Registry: prometheus.NewRegistry(), Logger: log})

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.Handle("/", h)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: mux, ReadHeaderTimeout: cfg.Limits.ReadTimeout.D(), ReadTimeout: cfg.Limits.ReadTimeout.D(),
		IdleTimeout: cfg.Limits.IdleTimeout.D(), MaxHeaderBytes: 64 << 10,
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Fprintf(os.Stderr, "pdpprof serving on %s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startAudit is cmd/pdp/serve.go startAudit for an embedded NATS, or a
// NATS server at a plain nats:// URL (no credentials or TLS).
func startAudit(ctx context.Context, cfg *config.Config, log *slog.Logger) (*auditsink.Sink, func(), error) {
	ac := cfg.Audit
	var ns *natsembed.Server
	url := ac.NATS.URL
	co := auditsink.ConnectOptions{Name: "pdpprof", RetryOnFailedConnect: true, Logger: log}
	if url == "embedded" {
		var err error
		ns, err = natsembed.Start(ctx, natsembed.Options{StoreDir: filepath.Join(cfg.DataDir, "nats"), Port: natsembed.RandomPort, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		url, co.InProcess = ns.ClientURL(), ns
	}
	shutdown := func() {
		if ns != nil {
			ns.Shutdown()
		}
	}
	nc, err := auditsink.Connect(ctx, url, co)
	if err != nil {
		shutdown()
		return nil, nil, err
	}
	spool := ac.SpoolDir
	if spool == "" {
		spool = filepath.Join(cfg.DataDir, "spool")
	}
	sink, err := auditsink.New(ctx, auditsink.Config{
		Enabled: true, Mode: ac.Mode, OnFailure: ac.OnFailure,
		Stream: ac.Stream, SubjectPrefix: ac.SubjectPrefix, Replicas: ac.Replicas,
		MaxAge: ac.MaxAge.D(), DuplicateWindow: ac.DuplicateWindow.D(), QueueSize: ac.QueueSize,
		SpoolDir: spool, PDP: cfg.Instance, Logger: log, Registerer: prometheus.NewRegistry(),
	}, nc)
	if err != nil {
		nc.Close()
		shutdown()
		return nil, nil, err
	}
	return sink, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sink.Close(cctx)
		nc.Close()
		shutdown()
	}, nil
}
