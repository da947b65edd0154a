package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/auditstore"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/natsembed"
)

const auditStoreUsage = `Usage:
  pdp audit store [--db DB] [--batch N] [--retention 400d] [--metrics-addr ADDR] [NATS flags]
  pdp audit query [filters] [--by COLS] [--format table|jsonl|csv] [--limit N] [--db DB]
  pdp audit sql 'SELECT ...' [--format table|jsonl|csv] [--db DB]

store  runs a durable JetStream consumer that writes every audit event into
       the SQL table audit_events (one row per decision id) and every
       checkpoint into audit_checkpoints, committing in batches and acking
       after the commit; it runs until interrupted. Several store processes
       may share one PostgreSQL database.
query  answers the usual questions without SQL.
sql    runs one read-only SELECT.

DB: a file or sqlite:PATH (SQLite), or postgres://user@host/db (PostgreSQL).
Default: <data-dir>/audit.db, the store of a dev server (pdp serve --dev).

Filters: --tool T, --outcome O[,O...], --denied, --subject S, --client C,
         --resource R, --method M, --decision ID, --since T, --until T
         (a duration before now like 90d, an RFC 3339 time or a date).
Grouped counts: --by client,outcome (tool, outcome, subject, client,
         resource, method, pdp, pep, reason, issuer, grant).
`

// storeFlagSet is the flag set of one of `pdp audit store|query|sql`.
func storeFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditStoreUsage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlagsOnly parses args, which must be flags only; when it returns
// false the command exits with code (0 after -h, 2 on a usage error).
func parseFlagsOnly(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code, false
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", fs.Name(), pos)
		return 2, false
	}
	return 0, true
}

// storeDBFlag defines --db and returns a function giving the database
// named by it, or the data directory's default file.
func storeDBFlag(fs *flag.FlagSet) func() string {
	db := fs.String("db", "", "audit store database: a file, sqlite:PATH or postgres://... (default: <data-dir>/audit.db)")
	dataDir := fs.String("data-dir", config.DefaultDataDir, "data directory of a dev server (its default store)")
	return func() string { return resolveStoreDB(*db, *dataDir) }
}

// resolveStoreDB is db, or the default file of dataDir when db is "" or
// "default".
func resolveStoreDB(db, dataDir string) string {
	if db == "" || db == "default" {
		return filepath.Join(dataDir, auditstore.DefaultFile)
	}
	return db
}

// runAuditStore implements `pdp audit store`.
func runAuditStore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := storeFlagSet("pdp audit store", stderr)
	var nf natsFlags
	nf.register(fs, "pdp audit store")
	db := fs.String("db", "", "audit store database: a file, sqlite:PATH or postgres://... (default: <data-dir>/audit.db)")
	batch := fs.Int("batch", auditstore.DefaultBatch, "most events per transaction")
	consumer := fs.String("consumer", auditstore.DefaultConsumer, "durable consumer name (one per database)")
	retention := fs.String("retention", "", "delete rows older than this (e.g. 400d); default: keep every row")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9464)")
	if code, ok := parseFlagsOnly(fs, args, stdout, stderr); !ok {
		return code
	}
	var keep time.Duration
	if *retention != "" {
		d, err := config.ParseDuration(*retention)
		if err != nil || d <= 0 {
			fmt.Fprintf(stderr, "pdp audit store: --retention %q: a positive duration like 400d or 720h\n", *retention)
			return 2
		}
		keep = d
	}
	if *batch <= 0 || *batch > 100000 {
		fmt.Fprintf(stderr, "pdp audit store: --batch %d: between 1 and 100000\n", *batch)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "audit-store")
	st, err := auditstore.Open(ctx, auditstore.Config{
		DB: resolveStoreDB(*db, nf.dataDir), Stream: nf.stream, Prefix: nf.prefix,
		Consumer: *consumer, Batch: *batch, Retention: keep, Logger: log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "pdp audit store: %v\n", err)
		return 1
	}
	defer st.Close()
	nc, js, err := nf.connect(ctx, natsembed.RoleReader, func(o *auditsink.ConnectOptions) {
		o.Logger = log
	})
	if err != nil {
		fmt.Fprintf(stderr, "pdp audit store: %v\n", err)
		return 1
	}
	defer nc.Close()
	if *metricsAddr != "" {
		stop, err := serveStoreMetrics(*metricsAddr, st, log)
		if err != nil {
			fmt.Fprintf(stderr, "pdp audit store: --metrics-addr: %v\n", err)
			return 1
		}
		defer stop()
	}
	log.Info("audit store running", "db", st.Target(), "dialect", st.Dialect(), "stream", nf.stream, "consumer", *consumer)
	if err := st.Run(ctx, js); err != nil {
		fmt.Fprintf(stderr, "pdp audit store: %v\n", err)
		return 1
	}
	s := st.Stats()
	log.Info("audit store stopped", "rows", s.Rows, "checkpoints", s.Checkpoints, "malformed", s.Malformed)
	return 0
}

// serveStoreMetrics serves the store's metrics on addr until stop is
// called.
func serveStoreMetrics(addr string, st *auditstore.Store, log *slog.Logger) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	if err := st.Register(reg); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server", "err", err)
		}
	}()
	log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// runAuditQuery implements `pdp audit query`.
func runAuditQuery(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := storeFlagSet("pdp audit query", stderr)
	db := storeDBFlag(fs)
	var q auditstore.Query
	fs.StringVar(&q.Tool, "tool", "", "target: tool or prompt name, or resource URI")
	outcome := fs.String("outcome", "", "allow, deny, challenge, filtered (comma-separated for several)")
	fs.BoolVar(&q.Denied, "denied", false, "the refusals: deny, challenge and limited outcomes")
	fs.StringVar(&q.Subject, "subject", "", "token subject (sub): the user")
	fs.StringVar(&q.Client, "client", "", "client_id: the agent or app")
	fs.StringVar(&q.Resource, "resource", "", "resource key")
	fs.StringVar(&q.Method, "method", "", "MCP method, e.g. tools/call")
	fs.StringVar(&q.DecisionID, "decision", "", "one decision id")
	since := fs.String("since", "", "start: duration ago (90d, 24h), RFC 3339 time or date (default: the beginning)")
	until := fs.String("until", "", "end (exclusive): duration ago, RFC 3339 time or date (default: now)")
	by := fs.String("by", "", "group and count by these columns, comma-separated (e.g. client,outcome)")
	fs.IntVar(&q.Limit, "limit", 0, "at most this many rows (0: all)")
	format := fs.String("format", "table", "table, jsonl or csv")
	if code, ok := parseFlagsOnly(fs, args, stdout, stderr); !ok {
		return code
	}
	if err := checkFormat(*format); err != nil {
		fmt.Fprintf(stderr, "pdp audit query: %v\n", err)
		return 2
	}
	now := time.Now()
	var err error
	if q.Since, err = parseTimeArg(*since, now); err != nil {
		fmt.Fprintf(stderr, "pdp audit query: --since: %v\n", err)
		return 2
	}
	if q.Until, err = parseTimeArg(*until, now); err != nil {
		fmt.Fprintf(stderr, "pdp audit query: --until: %v\n", err)
		return 2
	}
	if *outcome != "" {
		for _, o := range strings.Split(*outcome, ",") {
			if o = strings.TrimSpace(o); o != "" {
				q.Outcomes = append(q.Outcomes, o)
			}
		}
	}
	if *by != "" {
		q.By = strings.Split(*by, ",")
	}
	return withStore(ctx, "pdp audit query", db(), stderr, func(st *auditstore.Store) (*auditstore.Result, error) {
		return st.Query(ctx, q)
	}, *format, stdout)
}

// runAuditSQL implements `pdp audit sql`.
func runAuditSQL(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := storeFlagSet("pdp audit sql", stderr)
	db := storeDBFlag(fs)
	format := fs.String("format", "table", "table, jsonl or csv")
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "pdp audit sql: want one SELECT statement as the argument, e.g. pdp audit sql 'SELECT outcome, COUNT(*) FROM audit_events GROUP BY outcome'\n")
		return 2
	}
	if err := checkFormat(*format); err != nil {
		fmt.Fprintf(stderr, "pdp audit sql: %v\n", err)
		return 2
	}
	stmt := pos[0]
	return withStore(ctx, "pdp audit sql", db(), stderr, func(st *auditstore.Store) (*auditstore.Result, error) {
		return st.ReadOnlySQL(ctx, stmt)
	}, *format, stdout)
}

func checkFormat(f string) error {
	switch f {
	case "table", "jsonl", "csv":
		return nil
	}
	return fmt.Errorf("--format %q: table, jsonl or csv", f)
}

// withStore opens the store db, which must exist (no store is created by
// a query), runs do and writes its result.
func withStore(ctx context.Context, name, db string, stderr io.Writer, do func(*auditstore.Store) (*auditstore.Result, error), format string, stdout io.Writer) int {
	if !strings.Contains(db, "://") && !strings.HasPrefix(db, "postgres:") {
		if path := strings.TrimPrefix(db, "sqlite:"); !fileExists(path) {
			fmt.Fprintf(stderr, "%s: no audit store at %s (run `pdp audit store`, or `pdp serve --dev`, or pass --db)\n", name, path)
			return 1
		}
	}
	st, err := auditstore.Open(ctx, auditstore.Config{DB: db})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	defer st.Close()
	res, err := do(st)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	if err := writeResult(stdout, res, format); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

// writeResult writes res as an aligned table, JSON lines (one object per
// row, keyed by column) or CSV with a header.
func writeResult(w io.Writer, res *auditstore.Result, format string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	switch format {
	case "jsonl":
		enc := json.NewEncoder(bw)
		for _, r := range res.Rows {
			obj := make(map[string]any, len(r))
			for i, c := range res.Columns {
				obj[c] = r[i]
			}
			if err := enc.Encode(obj); err != nil {
				return err
			}
		}
	case "csv":
		cw := csv.NewWriter(bw)
		if err := cw.Write(res.Columns); err != nil {
			return err
		}
		rec := make([]string, len(res.Columns))
		for _, r := range res.Rows {
			for i, v := range r {
				rec[i] = auditstore.Cell(v)
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	default:
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(res.Columns, "\t")))
		for _, r := range res.Rows {
			cells := make([]string, len(r))
			for i, v := range r {
				cells[i] = truncRunes(oneLine(auditstore.Cell(v)), 60)
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// verifyStore checks the chains of the events in the store db (see
// auditstore.Store.Verify).
func verifyStore(ctx context.Context, db, dataDir string, opts auditsink.VerifyOptions) (*auditsink.Report, error) {
	db = resolveStoreDB(db, dataDir)
	st, err := auditstore.Open(ctx, auditstore.Config{DB: db})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	v := auditsink.NewVerifier(opts)
	extra, err := st.Verify(ctx, v)
	if err != nil {
		return nil, err
	}
	rep := v.Report()
	rep.Findings = append(rep.Findings, extra...)
	return rep, nil
}
