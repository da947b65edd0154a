package auditstore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
	"github.com/mcp-pdp/pdp/internal/testkit/pgtest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// backend is a database the store runs on. start prepares it for one
// (sub)test and returns where to get fresh, empty databases from.
type backend struct {
	name  string
	start func(t testing.TB) dbSource
}

// dbSource returns a new empty database's Config.DB.
type dbSource func(t testing.TB) string

// backends are SQLite (a file of the test's temporary directory) and
// PostgreSQL (a server of the test, pgtest; skipped when PostgreSQL is not
// installed, unless PDP_REQUIRE_POSTGRES=1).
func backends() []backend {
	return []backend{
		{name: "sqlite", start: func(t testing.TB) dbSource {
			dir := t.TempDir()
			n := 0
			return func(testing.TB) string {
				n++
				return filepath.Join(dir, fmt.Sprintf("audit-%d.db", n))
			}
		}},
		{name: "postgres", start: func(t testing.TB) dbSource { return pgtest.Start(t).NewDatabase }},
	}
}

// setup starts a JetStream server with the audit stream.
func setup(t testing.TB) (*natstest.Server, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, auditsink.StreamConfig(auditsink.Config{Stream: auditsink.DefaultStream, SubjectPrefix: auditsink.DefaultSubjectPrefix})); err != nil {
		t.Fatal(err)
	}
	return srv, js
}

func event(i int) []byte {
	outs := []string{"allow", "deny", "challenge", "filtered"}
	return fmt.Appendf(nil, `{"id":"dec-%04d","time":"2026-03-%02dT10:00:00Z","schema":"mcp-pdp.audit/v1","pdp":"p","resource":"https://r","resource_key":"r","method":"tools/call","target":"tool%d","outcome":%q,"http_status":200,"sub":"user%d","client_id":"client%d","latency_us":7,"chain":"c1","seq":%d,"prev":"x"}`,
		i, 1+i%28, i%3, outs[i%4], i%5, i%2, i+1)
}

// publish publishes one message and returns its stream sequence.
func publish(t testing.TB, js jetstream.JetStream, subj string, data []byte) uint64 {
	t.Helper()
	ack, err := js.Publish(context.Background(), subj, data)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// runStore runs a store on db with batches of 50; stop ends it and closes
// the store.
func runStore(t testing.TB, js jetstream.JetStream, db string) (*Store, func()) {
	t.Helper()
	return runStoreConfig(t, js, Config{DB: db, Batch: 50})
}

func runStoreConfig(t testing.TB, js jetstream.JetStream, cfg Config) (*Store, func()) {
	t.Helper()
	st, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = st.Run(ctx, js) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait(); st.Close() }) }
	t.Cleanup(stop)
	return st, stop
}

func count(t testing.TB, st *Store) int64 {
	t.Helper()
	r, err := st.ReadOnlySQL(context.Background(), "SELECT COUNT(*) FROM audit_events")
	if err != nil {
		t.Fatal(err)
	}
	return r.Rows[0][0].(int64)
}

func TestIngestRestartMalformedQuery(t *testing.T) {
	t.Parallel()
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			testIngestRestartMalformedQuery(t, be.start(t)(t))
		})
	}
}

func testIngestRestartMalformedQuery(t *testing.T, path string) {
	_, js := setup(t)
	for i := range 100 {
		publish(t, js, "mcp.audit.r.tools_call.x", event(i))
	}
	publish(t, js, "mcp.audit.r.tools_call.x", []byte("not json"))
	publish(t, js, "mcp.audit.$chain.c1", []byte(`{"schema":"mcp-pdp.audit.checkpoint/v1","id":"cp-1","chain":"c1","seq":100,"time":"2026-03-02T00:00:00Z","sig":"s"}`))
	st, stop := runStore(t, js, path)
	testkit.WaitFor(t, "100 rows", func() bool { return st.Stats().Rows == 100 && st.Stats().Checkpoints == 1 })
	if st.Stats().Malformed != 1 {
		t.Fatalf("malformed = %d, want 1", st.Stats().Malformed)
	}
	stop()
	// restart, republish duplicates (as a redelivery would): no doubles
	for i := 90; i < 120; i++ {
		publish(t, js, "mcp.audit.r.tools_call.x", event(i))
	}
	st, stop = runStore(t, js, path)
	defer stop()
	testkit.WaitFor(t, "120 rows", func() bool { return count(t, st) == 120 })
	time.Sleep(200 * time.Millisecond)
	if n := count(t, st); n != 120 {
		t.Fatalf("rows = %d, want 120", n)
	}
	// the redelivered ten are not counted as written; on PostgreSQL the
	// batch that held them fell back from COPY to INSERT ... ON CONFLICT
	if got := st.Stats(); got.Rows != 20 || (st.Dialect() == "postgres") != (got.DuplicateBatches > 0) {
		t.Fatalf("after the redelivery: %+v, want 20 rows written (and duplicate batches on postgres only)", got)
	}
	r, err := st.ReadOnlySQL(context.Background(), "SELECT raw, target, outcome, sub, seq FROM audit_events WHERE id = 'dec-0007'")
	if err != nil || len(r.Rows) != 1 {
		t.Fatal(err, r)
	}
	if got := r.Rows[0]; got[0] != string(event(7)) || got[1] != "tool1" || got[2] != "filtered" || got[3] != "user2" || got[4] != int64(8) {
		t.Fatalf("row = %v", got)
	}
	ctx := context.Background()
	cases := []struct {
		name string
		q    Query
		want int
	}{
		{"all", Query{}, 120},
		{"tool", Query{Tool: "tool0"}, 40},
		{"outcome", Query{Outcomes: []string{"allow"}}, 30},
		{"denied", Query{Denied: true}, 60},
		{"subject", Query{Subject: "user1"}, 24},
		{"client", Query{Client: "client1"}, 60},
		{"decision", Query{DecisionID: "dec-0003"}, 1},
		{"method", Query{Method: "tools/call"}, 120},
		{"resource none", Query{Resource: "https://other"}, 0},
		{"since until", Query{Since: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}, 5},
		{"limit", Query{Limit: 3}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := st.Query(ctx, c.q)
			if err != nil || len(r.Rows) != c.want {
				t.Fatalf("%+v: %d rows, %v; want %d", c.q, len(r.Rows), err, c.want)
			}
		})
	}
	g, err := st.Query(ctx, Query{By: []string{"client", "outcome"}})
	if err != nil || len(g.Rows) != 4 || g.Columns[2] != "count" {
		t.Fatalf("grouped: %v %v", g, err)
	}
	if _, err := st.Query(ctx, Query{By: []string{"raw; DROP"}}); err == nil {
		t.Fatal("bad group column accepted")
	}
	for _, bad := range []string{"INSERT INTO audit_events(id) VALUES('x')", "DELETE FROM audit_events", "DROP TABLE audit_events",
		"SELECT 1; DELETE FROM audit_events", "ATTACH DATABASE 'x.db' AS x", "WITH x AS (SELECT 1) DELETE FROM audit_events"} {
		if _, err := st.ReadOnlySQL(ctx, bad); err == nil {
			t.Errorf("ReadOnlySQL(%q) accepted", bad)
		}
	}
	if n := count(t, st); n != 120 {
		t.Fatalf("rows after refused SQL = %d", n)
	}
	// retention: only when asked
	n, err := st.DeleteBefore(ctx, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC))
	if err != nil || n != 5 {
		t.Fatalf("DeleteBefore: %d %v", n, err)
	}
}
