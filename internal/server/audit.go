package server

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/auditstore"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/quota"
)

// DefaultSpoolDir is audit.spool_dir's default, under the data directory.
const DefaultSpoolDir = "spool"

// DefaultSigningKey is audit.checkpoint.signing_key's default, under the
// data directory (generated when missing, its public key next to it).
const DefaultSigningKey = "audit-signing.key"

// startAudit connects to NATS (starting the embedded server when
// audit.nats.url is "embedded") and opens the audit sink.
func (s *Server) startAudit(ctx context.Context, reg prometheus.Registerer) error {
	cfg := s.cfg
	ac := cfg.Audit
	natsURL := ac.NATS.URL
	var inProcess nats.InProcessConnProvider
	if natsURL == config.NATSEmbedded {
		users, err := embeddedUsers(cfg)
		if err != nil {
			return fmt.Errorf("audit: embedded NATS users: %w", err)
		}
		ns, err := natsembed.Start(ctx, natsembed.Options{
			StoreDir: filepath.Join(cfg.DataDir, "nats"), Port: natsembed.RandomPort,
			Logger: s.log.With("component", "nats"), Users: users,
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
	seed := ac.NATS.NKeySeed
	if s.nats != nil {
		seed = natsembed.SeedFile(cfg.DataDir, natsembed.RolePDP)
	}
	nc, err := auditsink.Connect(ctx, natsURL, auditsink.ConnectOptions{
		Name: "mcp-pdp " + cfg.Instance, CredsFile: ac.NATS.Credentials, NKeySeedFile: seed,
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
	keyPath := ac.Checkpoint.SigningKey
	var key ed25519.PrivateKey
	if keyPath == "" {
		keyPath = filepath.Join(cfg.DataDir, DefaultSigningKey)
		var created bool
		if key, created, err = auditsink.LoadOrCreateSigningKey(keyPath); err == nil && created {
			s.log.Info("audit checkpoint signing key created: give its public key to whoever verifies the audit",
				"key", keyPath, "public_key", auditsink.PublicKeyPath(keyPath), "key_id", auditsink.KeyID(key.Public().(ed25519.PublicKey)))
		}
	} else {
		key, err = auditsink.LoadSigningKey(keyPath)
	}
	if err != nil {
		return fmt.Errorf("audit.checkpoint.signing_key: %w", err)
	}
	s.sink, err = auditsink.New(ctx, auditsink.Config{
		Mode:   ac.Mode,
		Stream: ac.Stream, SubjectPrefix: ac.SubjectPrefix, Replicas: ac.Replicas,
		MaxAge: ac.MaxAge.D(), DuplicateWindow: ac.DuplicateWindow.D(), QueueSize: ac.QueueSize,
		SkipStreamSetup: !ac.ManagesStream(),
		SigningKey:      key, CheckpointEvery: ac.Checkpoint.Every, CheckpointInterval: ac.Checkpoint.Interval.D(),
		SpoolDir: spool, PDP: cfg.Instance, Logger: s.log.With("component", "audit"), Registerer: reg,
	}, nc)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// embeddedUsers are the users of the embedded NATS, one per role (see
// natsembed.Roles), with their seeds in the data directory:
//   - pdp publishes audit events and uses the JetStream API (its key-value
//     buckets, the dev audit store's consumer), but may not delete or purge
//     a stream or a message;
//   - reader (`pdp audit`) may read streams and key-value buckets: create
//     consumers, get messages, ack; it publishes nothing into them;
//   - admin may do everything (`pdp revoke`).
//
// docs/audit.md gives the same accounts for an external NATS.
func embeddedUsers(cfg *config.Config) ([]*server.NkeyUser, error) {
	pubs, err := natsembed.EnsureUserSeeds(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	prefix := cfg.Audit.SubjectPrefix
	if prefix == "" {
		prefix = auditsink.DefaultSubjectPrefix
	}
	inbox := &server.SubjectPermission{Allow: []string{"_INBOX.>"}}
	noErase := []string{"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>"}
	return []*server.NkeyUser{
		{Nkey: pubs[natsembed.RolePDP], Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{
				Allow: []string{prefix + ".>", quota.DefaultPrefix + ".>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>"},
				Deny:  noErase,
			},
			Subscribe: inbox,
		}},
		{Nkey: pubs[natsembed.RoleReader], Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{
				Allow: []string{"$JS.API.INFO", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
					"$JS.API.CONSUMER.>", "$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>", "$JS.ACK.>", "$JS.FC.>"},
			},
			Subscribe: inbox,
		}},
		{Nkey: pubs[natsembed.RoleAdmin]},
	}, nil
}

// startAuditStore runs the SQL audit store in the PDP's process (audit.store,
// on by default in dev mode) over the audit's NATS connection: `pdp audit
// query` then answers from <data_dir>/audit.db with no set-up. The store
// stops (stopAuditStore) after the sink has flushed, before the connection
// closes.
func (s *Server) startAuditStore(ctx context.Context, reg prometheus.Registerer) error {
	sc := s.cfg.Audit.Store
	db := sc.DB
	if db == "" {
		db = filepath.Join(s.cfg.DataDir, auditstore.DefaultFile)
	}
	log := s.log.With("component", "audit-store")
	st, err := auditstore.Open(ctx, auditstore.Config{
		DB: db, Stream: s.cfg.Audit.Stream, Prefix: s.cfg.Audit.SubjectPrefix,
		Retention: sc.Retention.D(), Logger: log,
	})
	if err != nil {
		return fmt.Errorf("audit.store: %w", err)
	}
	if err := st.Register(reg); err != nil {
		st.Close()
		return fmt.Errorf("audit.store: metrics: %w", err)
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		st.Close()
		return fmt.Errorf("audit.store: %w", err)
	}
	sctx, cancel := context.WithCancel(s.bg)
	done := make(chan struct{})
	s.wg.Go(func() {
		defer close(done)
		defer st.Close()
		if err := st.Run(sctx, js); err != nil {
			log.Error("audit store stopped", "err", err)
		}
	})
	s.stopStore = func() { cancel(); <-done }
	log.Info("audit store in process: pdp audit query reads it", "db", st.Target())
	return nil
}
