// Command pdpprof serves mcp-pdp's /v1/decide exactly as `pdp serve
// --config` does (internal/server: the same wiring, policy, token
// verification, audit on an embedded NATS JetStream or a nats:// URL) and
// adds net/http/pprof under /debug/pprof/, so that the load benchmark can
// take a CPU profile of the decision path under load (make
// loadbench-profile). It is a benchmark fixture, not part of the product.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/server"
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
	// A CPU profile is one response that lasts as long as the profile.
	cfg.Limits.WriteTimeout = config.Duration(max(cfg.Limits.WriteTimeout.D(), 10*time.Minute))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := server.New(ctx, cfg, server.Options{Logger: log, WrapHandler: withPprof})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "pdpprof serving on %s\n", s.URL())
	return s.Run(ctx)
}

// withPprof serves net/http/pprof under /debug/pprof/ and h elsewhere.
func withPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.Handle("/", h)
	return mux
}
