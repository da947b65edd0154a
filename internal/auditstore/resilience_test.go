package auditstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/pgtest"
	"github.com/nats-io/nats.go/jetstream"
)

// publisher publishes event(0), event(1), ... every interval from its own
// goroutine until stop, which returns how many it published.
type publisher struct {
	n      atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error // the first publish error, read after wg.Wait
}

func startPublisher(t testing.TB, js jetstream.JetStream, interval time.Duration) *publisher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &publisher{cancel: cancel}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// Not cancelled by stop: a publish under way is finished and
			// counted, so that n is exactly what the stream holds.
			i := int(p.n.Load())
			pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := js.Publish(pctx, "mcp.audit.r.tools_call.x", event(i), jetstream.WithMsgID(fmt.Sprintf("dec-%04d", i)))
			pcancel()
			if err != nil {
				p.err = fmt.Errorf("publish event %d: %w", i, err)
				return
			}
			p.n.Add(1)
		}
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends the publisher and returns how many events it published; it
// fails t if a publish failed.
func (p *publisher) stop(t testing.TB) int {
	t.Helper()
	p.cancel()
	p.wg.Wait()
	if p.err != nil {
		t.Fatal(p.err)
	}
	return int(p.n.Load())
}

// PostgreSQL stopped for 30 s while events keep coming: the store retries
// (counting insert errors), acks nothing it has not written, and once the
// database is back every event is stored exactly once.
func TestPostgresDownUnderLoad(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t)
	db := pg.NewDatabase(t)
	_, js := setup(t)
	st, _ := runStore(t, js, db)
	pub := startPublisher(t, js, 2*time.Millisecond)
	testkit.WaitFor(t, "rows before the outage", func() bool { return st.Stats().Rows >= 200 })

	pg.Stop()
	down := st.Stats()
	time.Sleep(30 * time.Second)
	during := st.Stats()
	if during.Rows != down.Rows {
		t.Fatalf("rows went from %d to %d while PostgreSQL was stopped", down.Rows, during.Rows)
	}
	if during.InsertErrors == 0 {
		t.Fatal("no insert error counted while PostgreSQL was stopped")
	}
	pg.Restart()
	time.Sleep(time.Second) // events keep coming after the restart too
	n := pub.stop(t)
	t.Logf("published %d events; %d rows before the outage, %d insert errors during it", n, down.Rows, during.InsertErrors)
	testkit.WaitFor(t, fmt.Sprintf("%d rows", n), func() bool { return st.Stats().Rows >= uint64(n) })
	time.Sleep(200 * time.Millisecond) // a redelivery would add nothing
	rows, ids := rowCounts(t, st)
	if rows != int64(n) || ids != int64(n) || st.Stats().Rows != uint64(n) {
		t.Fatalf("COUNT(*) = %d, COUNT(DISTINCT id) = %d, Stats().Rows = %d; want %d", rows, ids, st.Stats().Rows, n)
	}
	if n <= int(down.Rows)+1000 {
		t.Fatalf("only %d events published, %d before the outage: the outage saw no load", n, down.Rows)
	}
}

// syncLog is a slog text handler's output, safe to read while the store
// writes it.
func syncLog() (*slog.Logger, *lockedBuffer) {
	var b lockedBuffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

// Malformed messages in the stream are counted, logged with their stream
// sequence, terminated (never redelivered) and skipped; the store keeps
// storing the events around them.
func TestMalformedSkipped(t *testing.T) {
	t.Parallel()
	bad := []struct {
		name, subject, data string
	}{
		{"not json", "mcp.audit.r.tools_call.x", "not json"},
		{"truncated", "mcp.audit.r.tools_call.x", `{"id":"dec-9000","time":`},
		{"no id", "mcp.audit.r.tools_call.x", `{"outcome":"allow","target":"t"}`},
		{"empty id", "mcp.audit.r.tools_call.x", `{"id":""}`},
		{"an array", "mcp.audit.r.tools_call.x", `[1,2,3]`},
		{"checkpoint without id", "mcp.audit.$chain.c1", `{"chain":"c1","seq":3}`},
		{"checkpoint not json", "mcp.audit.$chain.c1", "\x00\x01"},
	}
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			db := be.start(t)(t)
			_, js := setup(t)
			log, logs := syncLog()
			st, stop := runStoreConfig(t, js, Config{DB: db, Batch: 4, Logger: log})
			publishMany(t, js, 0, 10)
			seqs := map[string]uint64{}
			for i, m := range bad {
				seqs[m.name] = publish(t, js, m.subject, []byte(m.data))
				publishMany(t, js, 10+i, 11+i) // a good one after each
			}
			publishMany(t, js, 100, 110)
			want := uint64(10 + len(bad) + 10)
			testkit.WaitFor(t, fmt.Sprintf("%d rows", want), func() bool { return st.Stats().Rows == want })
			if got := st.Stats().Malformed; got != uint64(len(bad)) {
				t.Fatalf("Malformed = %d, want %d", got, len(bad))
			}
			lines := strings.Split(logs.String(), "\n")
			for _, m := range bad {
				line := fmt.Sprintf("stream_seq=%d ", seqs[m.name])
				found := false
				for _, l := range lines {
					if strings.Contains(l, "malformed message skipped") && strings.Contains(l, line) && strings.Contains(l, "subject="+m.subject) {
						found = true
					}
				}
				if !found {
					t.Errorf("%s: no log line naming %q:\n%s", m.name, line, logs)
				}
			}
			if rows, ids := rowCounts(t, st); rows != int64(want) || ids != int64(want) {
				t.Fatalf("rows %d, ids %d, want %d", rows, ids, want)
			}
			stop()
			// They were terminated: a restarted store does not see them again.
			st, _ = runStoreConfig(t, js, Config{DB: db, Batch: 4})
			publishMany(t, js, 200, 201)
			testkit.WaitFor(t, "the next event", func() bool { return st.Stats().Rows == 1 })
			if m := st.Stats().Malformed; m != 0 {
				t.Fatalf("after a restart, %d malformed messages again: they were not terminated", m)
			}
		})
	}
}

// Two stores on one PostgreSQL database, sharing the durable consumer
// (two `pdp audit store` processes for availability), opened at once:
// every event is stored once, both stores take part.
func TestTwoStoresOneDatabase(t *testing.T) {
	t.Parallel()
	const n = 5000
	pg := pgtest.Start(t)
	db := pg.NewDatabase(t)
	_, js := setup(t)
	stores := make([]*Store, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), Config{DB: db, Batch: 50})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("store %d: open (at the same time as the other): %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	ctx, cancel := context.WithCancel(context.Background())
	for _, st := range stores {
		wg.Add(1)
		go func() { defer wg.Done(); _ = st.Run(ctx, js) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	publishMany(t, js, 0, n/2)
	testkit.WaitFor(t, "rows", func() bool { return stores[0].Stats().Rows+stores[1].Stats().Rows > 0 })
	publishMany(t, js, n/2, n)
	want := uint64(n)
	testkit.WaitFor(t, fmt.Sprintf("%d rows", want), func() bool { return stores[0].Stats().Rows+stores[1].Stats().Rows >= want })
	time.Sleep(200 * time.Millisecond)
	rows, ids := rowCounts(t, stores[0])
	a, b := stores[0].Stats().Rows, stores[1].Stats().Rows
	t.Logf("store 0 wrote %d rows, store 1 %d", a, b)
	if rows != int64(want) || ids != int64(want) || a+b != want {
		t.Fatalf("COUNT(*) = %d, COUNT(DISTINCT id) = %d, rows written %d + %d; want %d", rows, ids, a, b, want)
	}
	if a == 0 || b == 0 {
		t.Fatalf("one store did all the work (%d, %d): the consumer is not shared", a, b)
	}
}
