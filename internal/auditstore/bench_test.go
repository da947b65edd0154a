package auditstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Benchmarks of the store, on SQLite and PostgreSQL (skipped, like the
// tests, when PostgreSQL is not installed). The targets: ingest at least
// 20,000 events/s; a query over 1,000,000 stored rows within 100 ms;
// Verify of 1,000,000 rows within 30 s. Run them with
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 1800s ./internal/auditstore

// benchIngestEvents are published into the stream once per backend, then
// consumed by a fresh store (its own consumer and database) per iteration.
const benchIngestEvents = 100_000

// publishBench publishes n events as benchEvent makes them (ids as PDPs
// make them; random tools, clients, subjects and tokens: index inserts all
// over those trees, as real decisions make them), 1,000 unacked at most.
func publishBench(tb testing.TB, js jetstream.JetStream, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r := rand.New(rand.NewPCG(3, 4))
	ids := newBenchIDs()
	now := time.Now().Round(0)
	for i := range n {
		ev := benchEvent(i, n, now, r, ids)
		raw, err := json.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := js.PublishAsync("mcp.audit.demo.tools_call."+ev.Outcome, raw, jetstream.WithMsgID(ev.ID)); err != nil {
			tb.Fatalf("publish %d: %v", i, err)
		}
		if i%1000 == 999 || i == n-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				tb.Fatal("publishing: no acks")
			}
		}
	}
}

// BenchmarkIngest measures events/s through the real consumer: a real
// JetStream stream, fetched, inserted and committed in batches of
// DefaultBatch, then acked.
func BenchmarkIngest(b *testing.B) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) { benchIngest(b, be, 0) })
	}
}

// BenchmarkIngestInto1M is BenchmarkIngest into a store that holds
// benchRows rows already (indexes larger than the page cache, as in a
// store that has run for a while).
func BenchmarkIngestInto1M(b *testing.B) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) { benchIngest(b, be, benchRows) })
	}
}

// benchIngest times the ingest of benchIngestEvents events into a new
// database of be holding preload rows.
func benchIngest(b *testing.B, be backend, preload int) {
	newDB := be.start(b)
	_, js := setup(b)
	publishBench(b, js, benchIngestEvents)
	var elapsed time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		st, err := Open(context.Background(), Config{DB: newDB(b), Consumer: fmt.Sprintf("bench-%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		if preload > 0 {
			loadRows(b, st, preload, time.Now().Round(0))
			st.rows.Store(0)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		b.StartTimer()
		start := time.Now()
		go func() { defer wg.Done(); _ = st.Run(ctx, js) }()
		for st.Stats().Rows < benchIngestEvents {
			time.Sleep(time.Millisecond)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		cancel()
		wg.Wait()
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchIngestEvents*b.N)/elapsed.Seconds(), "events/s")
}

// benchRows is the size of the store the query and verify benchmarks run
// on.
const benchRows = 1_000_000

// benchTools is the number of tools the benchmark's events call.
const benchTools = 50

// benchIDs makes decision ids as PDPs make them (core.Service.newID): NUIDs
// from a pool of generators, each a random prefix and an increasing
// sequence, so the id key has a few points where rows are inserted, one
// per generator (here 8: four replicas of two cores each), not one per
// row.
type benchIDs struct{ gens []*nuid.NUID }

func newBenchIDs() *benchIDs {
	b := &benchIDs{}
	for range 8 {
		b.gens = append(b.gens, nuid.New())
	}
	return b
}

func (b *benchIDs) next(r *rand.Rand) string { return b.gens[r.IntN(len(b.gens))].Next() }

// benchEvent is event i of n: times spread evenly over the year before
// now; tool (of benchTools), client (of 20), subject (of 1,000), token
// and outcome drawn from r, independently of each other.
func benchEvent(i, n int, now time.Time, r *rand.Rand, ids *benchIDs) *auditsink.Event {
	const year = 365 * 24 * time.Hour
	outcomes := []string{auditsink.OutcomeAllow, auditsink.OutcomeAllow, auditsink.OutcomeDeny, auditsink.OutcomeChallenge}
	ev := &auditsink.Event{
		ID:     ids.next(r),
		Time:   now.Add(-year + time.Duration(int64(year)/int64(n)*int64(i))),
		Schema: auditsink.SchemaVersion, PDP: "pdp-1", PEP: "gateway-1",
		Resource: "https://mcp.example.com/mcp", ResourceKey: "demo", Method: "tools/call",
		Target: fmt.Sprintf("tool_%02d", r.IntN(benchTools)), Outcome: outcomes[r.IntN(len(outcomes))], HTTPStatus: 200,
		RequiredScopes: []string{"tools:call"}, Reason: "policy", Subject: fmt.Sprintf("user-%04d", r.IntN(1000)),
		ClientID: fmt.Sprintf("client-%02d", r.IntN(20)), Grant: "user", Issuer: "https://issuer.example.com",
		TokenFingerprint: fmt.Sprintf("sha256:%08x", r.IntN(5000)), TokenValidation: "jwt", PolicyRevision: "rev-1",
		LatencyMicros: int64(50 + r.IntN(200)),
	}
	if ev.Outcome == auditsink.OutcomeDeny {
		ev.HTTPStatus, ev.MissingScopes = 403, []string{"tools:call"}
	}
	return ev
}

// loadRows stores n events of one valid chain directly (not through
// NATS): the store's own multi-row INSERTs, 10,000 rows a transaction,
// into the table without its secondary indexes, which are then built
// (the same schema as Open's, faster than maintaining them row by row).
func loadRows(tb testing.TB, st *Store, n int, now time.Time) {
	tb.Helper()
	ctx := context.Background()
	start := time.Now()
	var indexes []string
	for _, stmt := range st.d.schema() {
		if f := strings.Fields(stmt); f[1] == "INDEX" {
			indexes = append(indexes, f[5])
		}
	}
	for _, ix := range indexes {
		if _, err := st.db.ExecContext(ctx, "DROP INDEX "+ix); err != nil {
			tb.Fatal(err)
		}
	}
	// The chain is made in order here; the transactions run on one
	// connection for SQLite (one writer), four for PostgreSQL.
	const perTx = 10_000
	workers := 1
	if st.d.name == "postgres" {
		workers = 4
	}
	batches := make(chan []item, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for items := range batches {
				if err := st.insert(ctx, items); err != nil {
					errs <- err
					for range batches { // drain
					}
					return
				}
			}
		}()
	}
	r := rand.New(rand.NewPCG(1, 2))
	ids := newBenchIDs()
	items := make([]item, 0, perTx)
	var head [32]byte
	for i := range n {
		ev := benchEvent(i, n, now, r, ids)
		ev.Chain, ev.Seq = "bench-chain", uint64(i+1)
		if i > 0 {
			ev.Prev = hex.EncodeToString(head[:])
		}
		raw, err := json.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		head = sha256.Sum256(raw)
		items = append(items, item{ev: ev, raw: raw, streamSeq: uint64(i + 1)})
		if len(items) == perTx || i == n-1 {
			batches <- items
			items = make([]item, 0, perTx)
		}
	}
	close(batches)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatalf("load rows: %v", err)
	}
	loaded := time.Since(start)
	if err := st.d.createSchema(ctx, st.db); err != nil {
		tb.Fatalf("build the indexes: %v", err)
	}
	if _, err := st.db.ExecContext(ctx, "ANALYZE"); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("%s: %d rows loaded in %v, indexed and analyzed in %v more", st.Dialect(), n,
		loaded.Round(time.Millisecond), (time.Since(start) - loaded).Round(time.Millisecond))
}

// benchStore opens a store on a new database of be with benchRows rows,
// closed when tb ends.
func benchStore(tb testing.TB, be backend, now time.Time) *Store {
	tb.Helper()
	st, err := Open(context.Background(), Config{DB: be.start(tb)(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	loadRows(tb, st, benchRows, now)
	return st
}

// BenchmarkQueryToolSince90d times `pdp audit query --tool T --since 90d`
// over benchRows rows (a year, benchTools tools: about 4,900 rows match),
// and the same grouped by client and outcome.
func BenchmarkQueryToolSince90d(b *testing.B) {
	now := time.Now().Round(0)
	for _, be := range backends() {
		// Loaded once per backend, outside the timed sub-benchmarks
		// (which the testing package may run several times).
		st := benchStore(b, be, now)
		q := Query{Tool: "tool_07", Since: now.Add(-90 * 24 * time.Hour)}
		want := 0
		b.Run(be.name, func(b *testing.B) {
			for b.Loop() {
				r, err := st.Query(context.Background(), q)
				if err != nil {
					b.Fatal(err)
				}
				want = len(r.Rows)
			}
			b.ReportMetric(float64(want), "rows")
		})
		if want < 4000 || want > 6000 {
			b.Fatalf("the query returned %d rows, want about %d", want, benchRows/benchTools*90/365)
		}
		b.Run(be.name+"/by_client_outcome", func(b *testing.B) {
			gq := q
			gq.By = []string{"client", "outcome"}
			groups := 0
			for b.Loop() {
				r, err := st.Query(context.Background(), gq)
				if err != nil {
					b.Fatal(err)
				}
				groups = len(r.Rows)
			}
			if groups == 0 {
				b.Fatal("no groups")
			}
			b.ReportMetric(float64(groups), "groups")
		})
	}
}

// BenchmarkVerify times Store.Verify over benchRows rows of one valid
// chain: every raw event to the chain verifier, every row's columns
// checked against its bytes. The verification must find nothing.
func BenchmarkVerify(b *testing.B) {
	now := time.Now().Round(0)
	for _, be := range backends() {
		st := benchStore(b, be, now)
		b.Run(be.name, func(b *testing.B) {
			for b.Loop() {
				v := auditsink.NewVerifier(auditsink.VerifyOptions{})
				findings, err := st.Verify(context.Background(), v)
				if err != nil {
					b.Fatal(err)
				}
				if rep := v.Report(); len(findings) > 0 || !rep.OK() || rep.Chains[0].Events != benchRows {
					b.Fatalf("store findings %v\n%s", findings, auditsink.FormatReport(rep))
				}
			}
			b.ReportMetric(float64(benchRows), "rows")
		})
	}
}
