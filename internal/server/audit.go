package server

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/natsembed"
)

// DefaultSpoolDir is audit.spool_dir's default, under the data directory.
const DefaultSpoolDir = "spool"

// startAudit connects to NATS (starting the embedded server when
// audit.nats.url is "embedded") and opens the audit sink.
func (s *Server) startAudit(ctx context.Context, reg prometheus.Registerer) error {
	cfg := s.cfg
	ac := cfg.Audit
	natsURL := ac.NATS.URL
	var inProcess nats.InProcessConnProvider
	if natsURL == config.NATSEmbedded {
		ns, err := natsembed.Start(ctx, natsembed.Options{
			StoreDir: filepath.Join(cfg.DataDir, "nats"), Port: natsembed.RandomPort,
			Logger: s.log.With("component", "nats"),
		})
		if err != nil {
			return fmt.Errorf("audit: start embedded NATS: %w", err)
		}
		s.nats = ns
		natsURL = ns.ClientURL()
		inProcess = ns // no socket between the PDP and its own NATS
		if err := natsembed.WriteURLFile(cfg.DataDir, natsURL); err != nil {
			s.log.Warn("cannot write nats.url for `pdp audit`", "err", err)
		}
	}
	nc, err := auditsink.Connect(ctx, natsURL, auditsink.ConnectOptions{
		Name: "mcp-pdp " + cfg.Instance, CredsFile: ac.NATS.Credentials, NKeySeedFile: ac.NATS.NKeySeed,
		TLSCAFile: ac.NATS.TLSCA, TLSCertFile: ac.NATS.TLSCert, TLSKeyFile: ac.NATS.TLSKey,
		RetryOnFailedConnect: true, Logger: s.log.With("component", "nats-client"),
		InProcess: inProcess,
	})
	if err != nil {
		return fmt.Errorf("audit: connect to NATS %s: %w", auditsink.RedactURLs(natsURL), err)
	}
	s.nc = nc
	spool := ac.SpoolDir
	if spool == "" {
		spool = filepath.Join(cfg.DataDir, DefaultSpoolDir)
	}
	s.sink, err = auditsink.New(ctx, auditsink.Config{
		Mode:   ac.Mode,
		Stream: ac.Stream, SubjectPrefix: ac.SubjectPrefix, Replicas: ac.Replicas,
		MaxAge: ac.MaxAge.D(), DuplicateWindow: ac.DuplicateWindow.D(), QueueSize: ac.QueueSize,
		SpoolDir: spool, PDP: cfg.Instance, Logger: s.log.With("component", "audit"), Registerer: reg,
	}, nc)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}
