// Package auditstore copies the audit stream into SQL (table audit_events,
// one row per decision id, and audit_checkpoints) with a durable JetStream
// pull consumer, exactly once: a batch is inserted in one transaction
// (idempotent on the id), committed, then acked. It answers queries
// (Query) and read-only SQL (ReadOnlySQL) for `pdp audit query|sql`, and
// streams the exact message bytes (Raw) for the chain verifier.
//
// Only SQLite (modernc.org/sqlite, a file) is implemented so far.
package auditstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite" // the SQLite driver
)

// Defaults of Config.
const (
	DefaultConsumer = "pdp-audit-store"
	DefaultBatch    = 1000
	DefaultMaxWait  = 100 * time.Millisecond
)

// Config configures a Store.
type Config struct {
	// Path is the SQLite database file.
	Path string
	// Stream and Prefix name the audit stream and its subject prefix
	// ("" = auditsink's defaults).
	Stream, Prefix string
	// Consumer is the durable consumer name ("" = DefaultConsumer).
	Consumer string
	// Batch is the most messages per transaction ("" = DefaultBatch).
	Batch int
	// Retention, when > 0, deletes rows older than it periodically.
	Retention time.Duration
	Logger    *slog.Logger
}

// Stats counts what the consumer did.
type Stats struct {
	Rows, Checkpoints, Malformed, Batches uint64
	Lag                                   uint64
}

// Store is the SQL audit store.
type Store struct {
	cfg                                Config
	db                                 *sql.DB
	rows, cps, malformed, batches, lag atomic.Uint64
}

const schema = `
CREATE TABLE IF NOT EXISTS audit_events (
  id TEXT PRIMARY KEY,
  time_us BIGINT NOT NULL,
  time TEXT NOT NULL,
  pdp TEXT, pep TEXT, resource TEXT, resource_key TEXT, method TEXT, target TEXT,
  outcome TEXT, http_status INTEGER, reason TEXT, sub TEXT, client_id TEXT, "grant" TEXT,
  issuer TEXT, token_fingerprint TEXT, token_validation TEXT,
  unverified_sub TEXT, unverified_client_id TEXT, unverified_iss TEXT,
  policy_revision TEXT, retry_of TEXT, latency_us BIGINT,
  chain TEXT, seq BIGINT, prev TEXT, stream_seq BIGINT,
  raw BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events(time_us);
CREATE INDEX IF NOT EXISTS audit_events_target_time ON audit_events(target, time_us);
CREATE INDEX IF NOT EXISTS audit_events_sub_time ON audit_events(sub, time_us);
CREATE INDEX IF NOT EXISTS audit_events_client_time ON audit_events(client_id, time_us);
CREATE INDEX IF NOT EXISTS audit_events_outcome_time ON audit_events(outcome, time_us);
CREATE INDEX IF NOT EXISTS audit_events_resource_time ON audit_events(resource, time_us);
CREATE INDEX IF NOT EXISTS audit_events_chain_seq ON audit_events(chain, seq);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  id TEXT PRIMARY KEY, chain TEXT, seq BIGINT, time_us BIGINT, stream_seq BIGINT, raw BLOB NOT NULL
);
`

// Open opens (creating it and its schema) the SQLite store at cfg.Path.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("auditstore: path: empty")
	}
	if cfg.Consumer == "" {
		cfg.Consumer = DefaultConsumer
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Stream == "" {
		cfg.Stream = auditsink.DefaultStream
	}
	if cfg.Prefix == "" {
		cfg.Prefix = auditsink.DefaultSubjectPrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := sql.Open("sqlite", "file:"+cfg.Path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("auditstore: open %s: %w", cfg.Path, err)
	}
	db.SetMaxOpenConns(1) // one writer
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("auditstore: schema in %s: %w", cfg.Path, err)
	}
	return &Store{cfg: cfg, db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Rows: s.rows.Load(), Checkpoints: s.cps.Load(), Malformed: s.malformed.Load(), Batches: s.batches.Load(), Lag: s.lag.Load()}
}

type item struct {
	msg       jetstream.Msg
	streamSeq uint64
	ev        *auditsink.Event
	cp        *checkpoint
	raw       []byte
}

type checkpoint struct {
	ID    string    `json:"id"`
	Chain string    `json:"chain"`
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
}

// Run consumes the stream into the database until ctx ends. A batch is
// acked only after its transaction committed; while the database fails,
// the batch is retried with backoff and nothing is acked.
func (s *Store) Run(ctx context.Context, js jetstream.JetStream) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       s.cfg.Consumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		FilterSubject: s.cfg.Prefix + ".>",
		AckWait:       time.Minute,
		MaxAckPending: -1,
	})
	if err != nil {
		return fmt.Errorf("auditstore: consumer %s on %s: %w", s.cfg.Consumer, s.cfg.Stream, err)
	}
	go s.retain(ctx)
	cpPrefix := s.cfg.Prefix + ".$chain."
	for ctx.Err() == nil {
		batch, err := cons.Fetch(s.cfg.Batch, jetstream.FetchMaxWait(DefaultMaxWait))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.cfg.Logger.Warn("audit store: fetch", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		var items []item
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			it := item{msg: m, raw: m.Data()}
			if md != nil {
				it.streamSeq = md.Sequence.Stream
				s.lag.Store(md.NumPending)
			}
			if strings.HasPrefix(m.Subject(), cpPrefix) {
				var cp checkpoint
				if json.Unmarshal(it.raw, &cp) != nil || cp.ID == "" {
					s.bad(m, it.streamSeq)
					continue
				}
				it.cp = &cp
			} else {
				var ev auditsink.Event
				if json.Unmarshal(it.raw, &ev) != nil || ev.ID == "" {
					s.bad(m, it.streamSeq)
					continue
				}
				it.ev = &ev
			}
			items = append(items, it)
		}
		if len(items) == 0 {
			continue
		}
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			err := s.insert(ctx, items)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil // unacked: redelivered
			}
			s.cfg.Logger.Warn("audit store: insert, retrying", "err", err, "wait", wait)
			sleep(ctx, wait)
		}
		for _, it := range items {
			_ = it.msg.Ack()
		}
	}
	return nil
}

func (s *Store) bad(m jetstream.Msg, seq uint64) {
	s.malformed.Add(1)
	s.cfg.Logger.Warn("audit store: malformed message skipped", "stream_seq", seq, "subject", m.Subject())
	_ = m.Term()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

const insertEvent = `INSERT INTO audit_events (id, time_us, time, pdp, pep, resource, resource_key, method, target,
 outcome, http_status, reason, sub, client_id, "grant", issuer, token_fingerprint, token_validation,
 unverified_sub, unverified_client_id, unverified_iss, policy_revision, retry_of, latency_us,
 chain, seq, prev, stream_seq, raw)
 VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING`

const insertCheckpoint = `INSERT INTO audit_checkpoints (id, chain, seq, time_us, stream_seq, raw) VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING`

func (s *Store) insert(ctx context.Context, items []item) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n, c uint64
	for _, it := range items {
		if it.cp != nil {
			r, err := tx.ExecContext(ctx, insertCheckpoint, it.cp.ID, it.cp.Chain, int64(it.cp.Seq), it.cp.Time.UnixMicro(), int64(it.streamSeq), it.raw)
			if err != nil {
				return err
			}
			k, _ := r.RowsAffected()
			c += uint64(k)
			continue
		}
		e := it.ev
		var u auditsink.Unverified
		if e.Unverified != nil {
			u = *e.Unverified
		}
		r, err := tx.ExecContext(ctx, insertEvent, e.ID, e.Time.UnixMicro(), e.Time.UTC().Format(time.RFC3339Nano), e.PDP, e.PEP,
			e.Resource, e.ResourceKey, e.Method, e.Target, e.Outcome, e.HTTPStatus, e.Reason, e.Subject, e.ClientID,
			e.Grant, e.Issuer, e.TokenFingerprint, e.TokenValidation, u.Subject, u.ClientID, u.Issuer,
			e.PolicyRevision, e.RetryOf, e.LatencyMicros, e.Chain, int64(e.Seq), e.Prev, int64(it.streamSeq), it.raw)
		if err != nil {
			return err
		}
		k, _ := r.RowsAffected()
		n += uint64(k)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.rows.Add(n)
	s.cps.Add(c)
	s.batches.Add(1)
	return nil
}

func (s *Store) retain(ctx context.Context) {
	if s.cfg.Retention <= 0 {
		return
	}
	for {
		if _, err := s.DeleteBefore(ctx, time.Now().Add(-s.cfg.Retention)); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("audit store: retention", "err", err)
		}
		sleep(ctx, time.Hour)
		if ctx.Err() != nil {
			return
		}
	}
}

// DeleteBefore deletes the events and checkpoints older than t.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	r, err := s.db.ExecContext(ctx, `DELETE FROM audit_events WHERE time_us < ?`, t.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("auditstore: retention: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM audit_checkpoints WHERE time_us < ?`, t.UnixMicro()); err != nil {
		return 0, fmt.Errorf("auditstore: retention: %w", err)
	}
	return r.RowsAffected()
}

// Raw calls fn with the exact bytes of every stored event (ordered by
// chain, seq) and then of every checkpoint (ordered by chain, seq), for
// the chain verifier. raw is only valid during fn.
func (s *Store) Raw(ctx context.Context, fn func(raw []byte) error) error {
	for _, q := range []string{`SELECT raw FROM audit_events ORDER BY chain, seq`, `SELECT raw FROM audit_checkpoints ORDER BY chain, seq`} {
		rows, err := s.db.QueryContext(ctx, q)
		if err != nil {
			return fmt.Errorf("auditstore: raw: %w", err)
		}
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				rows.Close()
				return fmt.Errorf("auditstore: raw: %w", err)
			}
			if err := fn(b); err != nil {
				rows.Close()
				return err
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("auditstore: raw: %w", err)
		}
	}
	return nil
}
