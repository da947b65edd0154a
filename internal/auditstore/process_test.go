package auditstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The store as a separate process: the test binary re-executed with
// helperEnv set runs a Store (helperMain) instead of the tests, until it
// is killed or gets SIGTERM.
const (
	helperEnv      = "AUDITSTORE_TEST_HELPER" // "store"
	helperNATSEnv  = "AUDITSTORE_TEST_NATS"   // the NATS URL
	helperDBEnv    = "AUDITSTORE_TEST_DB"     // Config.DB
	helperBatchEnv = "AUDITSTORE_TEST_BATCH"  // Config.Batch
	helperAckWait  = 2 * time.Second
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "store" {
		if err := helperMain(); err != nil {
			fmt.Fprintln(os.Stderr, "store process:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperMain runs a store as `pdp audit store` would, logging to stderr.
func helperMain() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	nc, err := nats.Connect(os.Getenv(helperNATSEnv), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	batch, _ := strconv.Atoi(os.Getenv(helperBatchEnv))
	// What a killed process had fetched comes back after AckWait: short,
	// so that the test does not wait out the default minute.
	st, err := Open(ctx, Config{DB: os.Getenv(helperDBEnv), Batch: batch, AckWait: helperAckWait,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Run(ctx, js)
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader in
// different goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// storeProcess is a running store process.
type storeProcess struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
	err    error // cmd.Wait's, set before done is closed
}

// startStoreProcess starts a store process consuming natsURL into db. It
// is killed when the test ends, if still running.
func startStoreProcess(t testing.TB, natsURL, db string, batch int) *storeProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=store", helperNATSEnv+"="+natsURL, helperDBEnv+"="+db,
		helperBatchEnv+"="+strconv.Itoa(batch))
	p := &storeProcess{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the store process: %v", err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

// kill SIGKILLs the process and waits for it.
func (p *storeProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// exited reports whether the process ended (by itself, or killed).
func (p *storeProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end (SIGTERM) and fails t unless it exits
// cleanly in time.
func (p *storeProcess) stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM the store process: %v\n%s", err, p.stderr)
	}
	select {
	case <-p.done:
	case <-time.After(testkit.WaitTimeout):
		p.kill()
		t.Fatalf("the store process did not exit on SIGTERM\n%s", p.stderr)
	}
	if p.err != nil {
		t.Fatalf("the store process: %v\n%s", p.err, p.stderr)
	}
}

// publishMany publishes event(i) for i in [from, to) with async publishes
// and waits for every ack.
func publishMany(t testing.TB, js jetstream.JetStream, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, to-from)
	for i := from; i < to; i++ {
		f, err := js.PublishAsync("mcp.audit.r.tools_call.x", event(i), jetstream.WithMsgID(fmt.Sprintf("dec-%04d", i)))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		futures = append(futures, f)
		// A window of 1000 unacked (the client stalls at 4000).
		if (i-from)%1000 == 999 || i == to-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				t.Fatalf("publishing events %d-%d: no acks within %v", from, to-1, testkit.WaitTimeout)
			}
		}
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publish %s: %v", f.Msg().Header.Get(jetstream.MsgIDHeader), err)
		}
	}
}

// rowCounts returns COUNT(*) and COUNT(DISTINCT id) of the events.
func rowCounts(t testing.TB, st *Store) (rows, ids int64) {
	t.Helper()
	if err := st.db.QueryRowContext(context.Background(), `SELECT COUNT(*), COUNT(DISTINCT id) FROM audit_events`).Scan(&rows, &ids); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return rows, ids
}

// waitRows waits until st holds at least n events, polling every 50ms (a
// COUNT under the race detector is slow: polling faster would slow the
// store down), and fails t after testkit.WaitTimeout. p, when not nil,
// must not exit meanwhile.
func waitRows(t testing.TB, st *Store, n int64, p *storeProcess) {
	t.Helper()
	deadline := time.Now().Add(testkit.WaitTimeout)
	for {
		var rows int64
		if err := st.db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM audit_events`).Scan(&rows); err != nil {
			t.Fatalf("count rows: %v", err)
		}
		if rows >= n {
			return
		}
		if p != nil && p.exited() {
			t.Fatalf("the store process exited: %v\n%s", p.err, p.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d rows (%d)", n, rows)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inTransaction reports whether another session of st's PostgreSQL
// database is inside a transaction.
func inTransaction(t testing.TB, st *Store) bool {
	t.Helper()
	var n int
	err := st.db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL`).Scan(&n)
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	return n > 0
}

// A store process SIGKILLed while it writes, twice, then started again:
// every event is stored exactly once, none lost, none doubled, and the
// consumer has nothing left to deliver or to be acked.
func TestKillMidBatch(t *testing.T) {
	t.Parallel()
	n := int64(20000)
	if raceEnabled {
		n = 5000 // the same kills, in a quarter of the events
	}
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			db := be.start(t)(t)
			srv, js := setup(t)
			publishMany(t, js, 0, int(n))
			// The test's own view of the database (it creates the schema).
			view, err := Open(context.Background(), Config{DB: db})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { view.Close() })

			var last int64
			for round, killAt := range []int64{n / 8, n / 2} {
				p := startStoreProcess(t, srv.URL(), db, 500)
				// Kill it when it is in the middle of the stream, writing.
				waitRows(t, view, killAt, p)
				// Now it is between batches or in one: on PostgreSQL, wait
				// until its transaction is open (it shows in
				// pg_stat_activity); on SQLite, a random moment within a
				// batch's time.
				if view.Dialect() == "postgres" {
					testkit.WaitFor(t, "an open transaction of the store process", func() bool { return inTransaction(t, view) })
				} else {
					time.Sleep(time.Duration(rand.IntN(20_000)) * time.Microsecond)
				}
				p.kill()
				r, ids := rowCounts(t, view)
				t.Logf("round %d: killed with %d rows", round, r)
				if r >= n {
					t.Fatalf("round %d: all %d rows were stored before the kill: the kill did not hit the ingest (publish more)", round, r)
				}
				if r != ids || r < last {
					t.Fatalf("round %d: %d rows, %d distinct ids, %d rows before", round, r, ids, last)
				}
				last = r
			}
			p := startStoreProcess(t, srv.URL(), db, 500)
			waitRows(t, view, n, p)
			// Nothing pending, nothing unacked: the stream is consumed.
			cons, err := js.Consumer(context.Background(), auditsink.DefaultStream, DefaultConsumer)
			if err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, "the consumer to be acked up", func() bool {
				info, err := cons.Info(context.Background())
				return err == nil && info.NumPending == 0 && info.NumAckPending == 0
			})
			p.stop(t)
			rows, ids := rowCounts(t, view)
			if rows != n || ids != n {
				t.Fatalf("COUNT(*) = %d, COUNT(DISTINCT id) = %d; want both %d", rows, ids, n)
			}
			// And they are the published ones: event(i) has seq i+1.
			var seqs, sum int64
			if err := view.db.QueryRowContext(context.Background(), `SELECT COUNT(DISTINCT seq), SUM(seq) FROM audit_events`).Scan(&seqs, &sum); err != nil {
				t.Fatal(err)
			}
			if seqs != n || sum != n*(n+1)/2 {
				t.Fatalf("%d distinct seqs summing to %d, want seqs 1-%d (sum %d)", seqs, sum, n, n*(n+1)/2)
			}
		})
	}
}
