package auditstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // the PostgreSQL driver ("pgx")
	_ "modernc.org/sqlite"             // the SQLite driver ("sqlite")
)

// dialect is what differs between SQLite and PostgreSQL: the driver, the
// column type of the raw bytes, the placeholders, how the schema is
// created and how a read-only connection is had. Every query is written
// once, with ? placeholders.
type dialect struct {
	name   string // "sqlite" or "postgres"
	driver string
	blob   string // BLOB or BYTEA
	// numbered placeholders ($1, $2, ...) instead of ?
	numbered bool
}

var (
	sqliteDialect   = dialect{name: "sqlite", driver: "sqlite", blob: "BLOB"}
	postgresDialect = dialect{name: "postgres", driver: "pgx", blob: "BYTEA", numbered: true}
)

// parseDB reads Config.DB: a postgres:// or postgresql:// URL (or a
// "postgres:" prefixed key=value DSN) is PostgreSQL; "sqlite:PATH" or a
// bare path is an SQLite file.
func parseDB(db string) (dialect, string, error) {
	switch {
	case db == "":
		return dialect{}, "", fmt.Errorf("auditstore: db: empty (a file path, sqlite:PATH or postgres://...)")
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		return postgresDialect, db, nil
	case strings.HasPrefix(db, "postgres:"):
		return postgresDialect, strings.TrimPrefix(db, "postgres:"), nil
	case strings.HasPrefix(db, "sqlite:"):
		p := strings.TrimPrefix(db, "sqlite:")
		if p == "" {
			return dialect{}, "", fmt.Errorf("auditstore: db %q: no path after sqlite:", db)
		}
		return sqliteDialect, p, nil
	case strings.Contains(db, "://"):
		return dialect{}, "", fmt.Errorf("auditstore: db %q: not a database this store writes (a file path, sqlite:PATH or postgres://...)", redactDB(db))
	default:
		return sqliteDialect, db, nil
	}
}

// dsn is the driver's data source for the database; readOnly asks for a
// connection that cannot write (SQLite: mode=ro and query_only; for
// PostgreSQL the read-only transaction of readOnlyTx does it).
func (d dialect) dsn(target string, readOnly bool) string {
	if d.name == "postgres" {
		return target
	}
	if readOnly {
		return "file:" + target + "?mode=ro&_pragma=query_only(1)&_pragma=busy_timeout(10000)"
	}
	// temp_store: the statement journal of a multi-row INSERT in a
	// transaction in memory, not in a temporary file (write syscalls for
	// every page); cache_size: 64 MiB of pages, so that a batch's dirty
	// index pages are not spilled to the WAL before its commit;
	// wal_autocheckpoint: a checkpoint every 8,192 pages (32 MiB) instead
	// of 1,000, so a hot index page is copied back once per several
	// batches, not once per batch.
	return "file:" + target + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)" +
		"&_pragma=temp_store(MEMORY)&_pragma=cache_size(-65536)&_pragma=wal_autocheckpoint(8192)"
}

// rebind turns the ? placeholders of q into $1, $2, ... for PostgreSQL.
// Queries here never hold a literal ?.
func (d dialect) rebind(q string) string {
	if !d.numbered || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// schema is the DDL, one statement per element.
func (d dialect) schema() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS audit_events (
  id TEXT PRIMARY KEY,
  time_us BIGINT NOT NULL,
  time TEXT NOT NULL,
  pdp TEXT, pep TEXT, resource TEXT, resource_key TEXT, method TEXT, target TEXT,
  outcome TEXT, http_status INTEGER, reason TEXT, sub TEXT, client_id TEXT, "grant" TEXT,
  issuer TEXT, token_fingerprint TEXT, token_validation TEXT,
  unverified_sub TEXT, unverified_client_id TEXT, unverified_iss TEXT,
  policy_revision TEXT, retry_of TEXT, latency_us BIGINT,
  chain TEXT, seq BIGINT, prev TEXT, stream_seq BIGINT,
  raw ` + d.blob + ` NOT NULL
)`,
		`CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events(time_us)`,
		`CREATE INDEX IF NOT EXISTS audit_events_target_time ON audit_events(target, time_us)`,
		`CREATE INDEX IF NOT EXISTS audit_events_sub_time ON audit_events(sub, time_us)`,
		`CREATE INDEX IF NOT EXISTS audit_events_client_time ON audit_events(client_id, time_us)`,
		`CREATE INDEX IF NOT EXISTS audit_events_outcome_time ON audit_events(outcome, time_us)`,
		`CREATE INDEX IF NOT EXISTS audit_events_resource_time ON audit_events(resource, time_us)`,
		`CREATE INDEX IF NOT EXISTS audit_events_fingerprint ON audit_events(token_fingerprint)`,
		`CREATE INDEX IF NOT EXISTS audit_events_chain_seq ON audit_events(chain, seq)`,
		`CREATE TABLE IF NOT EXISTS audit_checkpoints (
  id TEXT PRIMARY KEY, chain TEXT, seq BIGINT, time_us BIGINT, stream_seq BIGINT, raw ` + d.blob + ` NOT NULL
)`,
	}
}

// createSchema creates the tables and indexes if they are missing. On
// PostgreSQL several store processes may start at once against one
// database: an advisory lock held for the transaction serializes them
// (CREATE ... IF NOT EXISTS alone races on the catalog).
func (d dialect) createSchema(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if d.name == "postgres" {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7263847261)`); err != nil {
			return err
		}
	}
	for _, st := range d.schema() {
		if _, err := tx.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(st)[0]+" "+strings.Fields(st)[5], err)
		}
	}
	return tx.Commit()
}
