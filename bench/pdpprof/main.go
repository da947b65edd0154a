// Command pdpprof serves mcp-pdp's /v1/decide exactly as `pdp serve
// --config` wires it (the same packages: internal/decision, token, core,
// api; audit off) and adds net/http/pprof under /debug/pprof/, so that the
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
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/token"
)

func main() {
	cfgPath := flag.String("config", "", "mcp-pdp configuration file (audit is ignored: always off here)")
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
	svc, err := core.New(core.Options{Engine: engine, Resources: resources, DecisionTimeout: cfg.Limits.DecisionTimeout.D(), Logger: log})
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
