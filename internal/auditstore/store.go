// Package auditstore copies the audit stream into SQL (table audit_events,
// one row per decision id, and audit_checkpoints) with a durable JetStream
// pull consumer, exactly once: a batch is inserted in one transaction
// (idempotent on the id), committed, then acked. It answers queries
// (Query) and read-only SQL (ReadOnlySQL) for `pdp audit query|sql`, and
// streams the exact message bytes (Raw) for the chain verifier.
//
// Two databases: SQLite (modernc.org/sqlite, pure Go, a file: the
// embedded default) and PostgreSQL (pgx v5), with one schema and the same
// queries. Several store processes may write into one PostgreSQL
// database: rows are keyed by the event id.
package auditstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	// DefaultFile is the SQLite file of the store in a data directory.
	DefaultFile     = "audit.db"
	DefaultConsumer = "pdp-audit-store"
	// DefaultBatch: batches of 4,000 ingest about twice as fast as
	// batches of 1,000 (fewer commits, each index page written once
	// for more rows); see docs/performance.md.
	DefaultBatch   = 4000
	DefaultMaxWait = 100 * time.Millisecond
	// DefaultAckWait is how long a batch delivered to a store that
	// neither acks it nor says it is still working on it stays with that
	// store: after a store process dies, what it had fetched is delivered
	// again after this long.
	DefaultAckWait = time.Minute
)

// Config configures a Store.
type Config struct {
	// DB names the database: a file path or sqlite:PATH (SQLite), or a
	// postgres:// URL (PostgreSQL, pgx).
	DB string
	// Stream and Prefix name the audit stream and its subject prefix
	// ("" = auditsink's defaults).
	Stream, Prefix string
	// Consumer is the durable consumer name ("" = DefaultConsumer).
	Consumer string
	// Batch is the most messages per transaction ("" = DefaultBatch).
	Batch int
	// Retention, when > 0, deletes rows older than it periodically.
	Retention time.Duration
	// AckWait is the consumer's ack wait (0 = DefaultAckWait): the delay
	// before the batch of a store that died is redelivered. Keep it above
	// 5s, the longest wait between retries of a failing write, or a batch
	// is redelivered (harmlessly: rows are keyed by id) while retried.
	AckWait time.Duration
	Logger  *slog.Logger
}

// Stats counts what the consumer did.
type Stats struct {
	Rows, Checkpoints, Malformed, Batches, InsertErrors uint64
	// Lag is the number of stream messages not yet delivered to the
	// store, as of the last fetch.
	Lag uint64
	// DuplicateBatches counts PostgreSQL batches that held an event
	// stored already (a redelivery) and were written again with INSERT
	// ... ON CONFLICT DO NOTHING instead of COPY.
	DuplicateBatches uint64
}

// Store is the SQL audit store.
type Store struct {
	cfg                                Config
	d                                  dialect
	target                             string // the file or the URL
	db                                 *sql.DB
	rows, cps, malformed, batches, lag atomic.Uint64
	insertErrors, duplicateBatches     atomic.Uint64
}

// Open opens the store named by cfg.DB, creating its schema when it is
// missing.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	d, target, err := parseDB(cfg.DB)
	if err != nil {
		return nil, err
	}
	if cfg.Consumer == "" {
		cfg.Consumer = DefaultConsumer
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
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
	db, err := sql.Open(d.driver, d.dsn(target, false))
	if err != nil {
		return nil, fmt.Errorf("auditstore: open %s: %w", redactDB(cfg.DB), err)
	}
	if d.name == "sqlite" {
		db.SetMaxOpenConns(1) // one writer
	} else {
		db.SetMaxOpenConns(4)
	}
	if err := d.createSchema(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("auditstore: schema in %s: %w", redactDB(cfg.DB), err)
	}
	return &Store{cfg: cfg, d: d, target: target, db: db}, nil
}

// redactDB hides the password of a PostgreSQL URL, for errors and logs.
func redactDB(db string) string {
	if u, err := url.Parse(db); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
	}
	return db
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Rows: s.rows.Load(), Checkpoints: s.cps.Load(), Malformed: s.malformed.Load(),
		Batches: s.batches.Load(), Lag: s.lag.Load(), InsertErrors: s.insertErrors.Load(),
		DuplicateBatches: s.duplicateBatches.Load()}
}

// Target names the database for logs: the file, or the URL without its
// password.
func (s *Store) Target() string { return redactDB(s.cfg.DB) }

// Dialect is "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.d.name }

// Register registers the store's metrics with reg:
// mcp_pdp_audit_store_{rows,checkpoints,malformed,batches,insert_errors}_total
// and the gauge mcp_pdp_audit_store_lag (messages of the stream not yet
// stored).
func (s *Store) Register(reg prometheus.Registerer) error {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mcp_pdp_audit_store_" + name + "_total", Help: help},
			func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		counter("rows", "Audit events written into the SQL store (a redelivered event is not counted twice).", &s.rows),
		counter("checkpoints", "Audit chain checkpoints written into the SQL store.", &s.cps),
		counter("malformed", "Messages of the audit stream skipped because they are not audit events.", &s.malformed),
		counter("batches", "Transactions committed by the audit store.", &s.batches),
		counter("insert_errors", "Failed database writes (the batch is retried, unacked).", &s.insertErrors),
		counter("duplicate_batches", "PostgreSQL batches with an event stored already, written again with INSERT ... ON CONFLICT DO NOTHING instead of COPY.", &s.duplicateBatches),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcp_pdp_audit_store_lag", Help: "Messages of the audit stream not yet in the SQL store, as of the last fetch."},
			func() float64 { return float64(s.lag.Load()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("auditstore: metrics: %w", err)
		}
	}
	return nil
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
// the batch is retried with backoff and nothing is acked. The next batch
// is fetched while one is written; when ctx ends, what was fetched and not
// written is handed back (nak) for redelivery.
func (s *Store) Run(ctx context.Context, js jetstream.JetStream) error {
	var cons jetstream.Consumer
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		var err error
		cons, err = js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, jetstream.ConsumerConfig{
			Durable:       s.cfg.Consumer,
			AckPolicy:     jetstream.AckExplicitPolicy,
			FilterSubject: s.cfg.Prefix + ".>",
			AckWait:       s.cfg.AckWait,
			MaxAckPending: -1,
		})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			// An operator error, not an outage: say so, keep trying.
			s.cfg.Logger.Warn("audit store: the audit stream does not exist (yet)", "stream", s.cfg.Stream, "wait", wait)
		} else {
			s.cfg.Logger.Warn("audit store: cannot create its consumer, retrying", "consumer", s.cfg.Consumer, "stream", s.cfg.Stream, "err", err, "wait", wait)
		}
		sleep(ctx, wait)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() { defer wg.Done(); s.retain(ctx) }()
	// The next batch is fetched and decoded while this one is written:
	// the database is not idle during fetches.
	batches := make(chan []item)
	go func() { defer wg.Done(); s.fetchLoop(ctx, cons, batches) }()
	for items := range batches {
		if !s.write(ctx, items) {
			// Stopped before the batch was written: handed back to
			// JetStream (redelivered now, to another store or after a
			// restart), like what was fetched after it.
			nak(items)
			for rest := range batches {
				nak(rest)
			}
			return nil
		}
		for _, it := range items {
			_ = it.msg.Ack()
		}
	}
	return nil
}

// write inserts items, retrying with backoff while the database fails; it
// returns false when ctx ended first.
func (s *Store) write(ctx context.Context, items []item) bool {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := s.insert(ctx, items)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.insertErrors.Add(1)
		s.cfg.Logger.Warn("audit store: database write failed; the batch is kept unacked and retried", "db", redactDB(s.cfg.DB), "err", err, "rows", len(items), "wait", wait)
		sleep(ctx, wait)
		inProgress(items) // not redelivered while we wait
	}
}

// fetchLoop fetches and decodes batches into out until ctx ends, then
// closes out.
func (s *Store) fetchLoop(ctx context.Context, cons jetstream.Consumer, out chan<- []item) {
	defer close(out)
	for ctx.Err() == nil {
		items, err := s.fetch(cons)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.cfg.Logger.Warn("audit store: fetch", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if len(items) == 0 {
			continue
		}
		if !s.handOver(ctx, items, out) {
			nak(items)
			return
		}
	}
}

// handOver sends items to out, telling JetStream that they are in
// progress while the writer is busy with the batch before (a failing
// database may hold it for long); false when ctx ended first.
func (s *Store) handOver(ctx context.Context, items []item, out chan<- []item) bool {
	t := time.NewTicker(s.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case out <- items:
			return true
		case <-t.C:
			inProgress(items)
		case <-ctx.Done():
			return false
		}
	}
}

// fetch fetches one batch and decodes it; malformed messages are counted,
// terminated and left out.
func (s *Store) fetch(cons jetstream.Consumer) ([]item, error) {
	batch, err := cons.Fetch(s.cfg.Batch, jetstream.FetchMaxWait(DefaultMaxWait))
	if err != nil {
		return nil, err
	}
	cpPrefix := s.cfg.Prefix + ".$chain."
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
	return items, nil
}

func inProgress(items []item) {
	for _, it := range items {
		_ = it.msg.InProgress()
	}
}

func nak(items []item) {
	for _, it := range items {
		_ = it.msg.Nak()
	}
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

const eventColumns = `id, time_us, time, pdp, pep, resource, resource_key, method, target,
 outcome, http_status, reason, sub, client_id, "grant", issuer, token_fingerprint, token_validation,
 unverified_sub, unverified_client_id, unverified_iss, policy_revision, retry_of, latency_us,
 chain, seq, prev, stream_seq, raw`

const nEventColumns = 29

// appendEventColumns appends the values of e's columns, in eventColumns'
// order, without stream_seq and raw (the last two).
func appendEventColumns(args []any, e *auditsink.Event) []any {
	var u auditsink.Unverified
	if e.Unverified != nil {
		u = *e.Unverified
	}
	return append(args, e.ID, e.Time.UnixMicro(), e.Time.UTC().Format(time.RFC3339Nano), e.PDP, e.PEP,
		e.Resource, e.ResourceKey, e.Method, e.Target, e.Outcome, e.HTTPStatus, e.Reason, e.Subject, e.ClientID,
		e.Grant, e.Issuer, e.TokenFingerprint, e.TokenValidation, u.Subject, u.ClientID, u.Issuer,
		e.PolicyRevision, e.RetryOf, e.LatencyMicros, e.Chain, int64(e.Seq), e.Prev)
}

// rowsPerInsert bounds the rows of one INSERT statement (29 parameters a
// row: far below SQLite's and PostgreSQL's limits).
const rowsPerInsert = 200

// insertSQL is the INSERT of n rows into table with cols columns each,
// idempotent on the id: ON CONFLICT (id) DO NOTHING on PostgreSQL, OR
// IGNORE on SQLite (which then needs no statement journal for a
// multi-row INSERT: no row can abort the statement).
func (s *Store) insertSQL(table, columns string, cols, n int) string {
	row := "(?" + strings.Repeat(",?", cols-1) + ")"
	var b strings.Builder
	if s.d.name == "sqlite" {
		b.WriteString("INSERT OR IGNORE INTO " + table + " (" + columns + ") VALUES ")
	} else {
		b.WriteString("INSERT INTO " + table + " (" + columns + ") VALUES ")
	}
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	if s.d.name != "sqlite" {
		b.WriteString(" ON CONFLICT(id) DO NOTHING")
	}
	return s.d.rebind(b.String())
}

// insert writes items in one transaction: on PostgreSQL with COPY
// (copyInsert) unless the batch holds an id stored already; otherwise
// events in multi-row INSERTs, then checkpoints. A row whose id is there already is left as it is (a
// redelivery after a crash between commit and ack).
func (s *Store) insert(ctx context.Context, items []item) error {
	if s.d.name == "postgres" {
		n, c, err := s.copyInsert(ctx, items)
		if err == nil {
			s.rows.Add(n)
			s.cps.Add(c)
			s.batches.Add(1)
			return nil
		}
		if !errors.Is(err, errDuplicate) {
			return err
		}
		s.duplicateBatches.Add(1)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n, c uint64
	args := make([]any, 0, rowsPerInsert*nEventColumns)
	rows := 0
	flush := func() error {
		if rows == 0 {
			return nil
		}
		r, err := tx.ExecContext(ctx, s.insertSQL("audit_events", eventColumns, nEventColumns, rows), args...)
		if err != nil {
			return err
		}
		k, _ := r.RowsAffected()
		n += uint64(k)
		args, rows = args[:0], 0
		return nil
	}
	for _, it := range items {
		if it.cp != nil {
			continue
		}
		args = appendEventColumns(args, it.ev)
		args = append(args, int64(it.streamSeq), it.raw)
		if rows++; rows == rowsPerInsert {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	cpSQL := s.insertSQL("audit_checkpoints", "id, chain, seq, time_us, stream_seq, raw", 6, 1)
	for _, it := range items {
		if it.cp == nil {
			continue
		}
		r, err := tx.ExecContext(ctx, cpSQL, it.cp.ID, it.cp.Chain, int64(it.cp.Seq), it.cp.Time.UnixMicro(), int64(it.streamSeq), it.raw)
		if err != nil {
			return err
		}
		k, _ := r.RowsAffected()
		c += uint64(k)
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
	r, err := s.db.ExecContext(ctx, s.d.rebind(`DELETE FROM audit_events WHERE time_us < ?`), t.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("auditstore: retention: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, s.d.rebind(`DELETE FROM audit_checkpoints WHERE time_us < ?`), t.UnixMicro()); err != nil {
		return 0, fmt.Errorf("auditstore: retention: %w", err)
	}
	return r.RowsAffected()
}
