package quota

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// connect dials url as the PDP would: reconnecting for ever, quickly.
func connect(tb testing.TB, url string, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func newJS(tb testing.TB, nc *nats.Conn) jetstream.JetStream {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

func ensure(tb testing.TB, js jetstream.JetStream, cfg Config) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := EnsureStream(ctx, js, cfg); err != nil {
		tb.Fatalf("EnsureStream: %v", err)
	}
}

func mustNew(tb testing.TB, nc *nats.Conn, cfg Config) *Counter {
	tb.Helper()
	c, err := New(nc, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// single starts an embedded server with the counter stream and returns
// it with a Counter on a connection to it.
func single(tb testing.TB, cfg Config) (*natstest.Server, *nats.Conn, *Counter) {
	tb.Helper()
	srv := natstest.Start(tb)
	nc := connect(tb, srv.URL())
	ensure(tb, newJS(tb, nc), cfg)
	return srv, nc, mustNew(tb, nc, cfg)
}

func waitFor(tb testing.TB, what string, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTake: a quota of 3 allows 3 calls, denies the others without
// counting them, and says what is left and when the window ends.
func TestTake(t *testing.T) {
	_, _, c := single(t, Config{})
	ctx := context.Background()
	ny := mustLoad(t, "America/New_York")
	rule := Rule{Limit: 3, Period: Day, Location: ny}
	now := mustTime(t, "2026-11-01T18:00:00-05:00") // the 25-hour day
	_, end := rule.Window(now)
	want := []struct {
		allowed   bool
		remaining int
		used      int64
	}{{true, 2, 1}, {true, 1, 2}, {true, 0, 3}, {false, 0, 3}, {false, 0, 3}}
	for i, w := range want {
		res, err := c.Take(ctx, rule, "tool:generate_qr|sub:alice", now)
		if err != nil {
			t.Fatalf("take %d: %v", i+1, err)
		}
		if res.Allowed != w.allowed || res.Remaining != w.remaining || res.Used != w.used || res.Limit != 3 || !res.Reset.Equal(end) {
			t.Fatalf("take %d: %+v, want allowed %v remaining %d used %d reset %v", i+1, res, w.allowed, w.remaining, w.used, end)
		}
		if rem, ok := c.Observed(rule, "tool:generate_qr|sub:alice", now); !ok || rem != w.remaining {
			t.Fatalf("take %d: Observed %d %v", i+1, rem, ok)
		}
	}
	if used, err := c.Used(ctx, rule, "tool:generate_qr|sub:alice", now); err != nil || used != 3 {
		t.Fatalf("Used = %d, %v; want 3 (the denials reverted)", used, err)
	}
	if used, err := c.Used(ctx, rule, "tool:generate_qr|sub:bob", now); err != nil || used != 0 {
		t.Fatalf("Used of an untouched key = %d, %v", used, err)
	}
	// A wider limit (a reloaded catalog) continues from the count.
	res, err := c.Take(ctx, Rule{Limit: 5, Period: Day, Location: ny}, "tool:generate_qr|sub:alice", now)
	if err != nil || !res.Allowed || res.Remaining != 1 {
		t.Fatalf("take with limit 5: %+v, %v", res, err)
	}
	st := c.Stats()
	if st.Allowed != 4 || st.Denied != 2 || st.Unavailable != 0 || st.RevertFailed != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := c.Take(ctx, Rule{Limit: 0, Period: Day}, "k", now); !errors.Is(err, ErrInvalidRule) {
		t.Fatalf("invalid rule: %v", err)
	}
}

// TestNewWindow: the next window starts at 0, with no sweep; the old one
// keeps its count.
func TestNewWindow(t *testing.T) {
	_, _, c := single(t, Config{})
	ctx := context.Background()
	kolkata := mustLoad(t, "Asia/Kolkata")
	tests := []struct {
		name string
		p    Period
		now  string
	}{
		{"hour", Hour, "2026-12-04T13:59:59+05:30"},
		{"day", Day, "2026-12-04T23:59:59+05:30"},
		{"month", Month, "2026-12-31T23:59:59+05:30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule := Rule{Limit: 2, Period: tt.p, Location: kolkata}
			now := mustTime(t, tt.now)
			for range 3 {
				if _, err := c.Take(ctx, rule, "k", now); err != nil {
					t.Fatal(err)
				}
			}
			if res, _ := c.Take(ctx, rule, "k", now); res.Allowed {
				t.Fatal("allowed beyond the limit")
			}
			_, end := rule.Window(now)
			next := now.Add(time.Second) // the first second of the next window
			if !next.Equal(end) {
				t.Fatalf("test instant: %v is not the end %v", next, end)
			}
			res, err := c.Take(ctx, rule, "k", next)
			if err != nil || !res.Allowed || res.Remaining != 1 || res.Used != 1 {
				t.Fatalf("first take of the next window: %+v, %v", res, err)
			}
			if _, nextEnd := rule.Window(next); !res.Reset.Equal(nextEnd) {
				t.Fatalf("reset %v, want %v", res.Reset, nextEnd)
			}
			if used, _ := c.Used(ctx, rule, "k", now); used != 2 {
				t.Fatalf("the old window counts %d", used)
			}
			if c.Subject(rule, "k", now) == c.Subject(rule, "k", next) {
				t.Fatal("two windows share a subject")
			}
		})
	}
}

// TestHostileKeys: any key bytes make a valid subject of their own.
func TestHostileKeys(t *testing.T) {
	_, _, c := single(t, Config{})
	ctx := context.Background()
	keys := []string{"", " ", ".", "..", "*", ">", "a.b", "a.*.>", "\x00", "\x00\x00", "tab\there", "line\r\nbreak",
		"\xff\xfe not utf-8", "sub:alice", "sub:alice ", "pdp.quota.>", strings.Repeat("k", 1<<20), strings.Repeat(".", 300)}
	rule := Rule{Limit: 1, Period: Hour}
	now := mustTime(t, "2026-12-04T13:20:00Z")
	tok := regexp.MustCompile(`^pdp\.quota\.2026-12-04T13\+0000\.[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for _, k := range keys {
		subj := c.Subject(rule, k, now)
		if !tok.MatchString(subj) {
			t.Fatalf("key %.20q: subject %q", k, subj)
		}
		if seen[subj] {
			t.Fatalf("key %.20q: subject %q taken by another key", k, subj)
		}
		seen[subj] = true
		res, err := c.Take(ctx, rule, k, now)
		if err != nil || !res.Allowed || res.Used != 1 {
			t.Fatalf("key %.20q: %+v, %v", k, res, err)
		}
	}
	// Zones do not share counters: the same key and hour label in another
	// zone named otherwise is another counter.
	other := Rule{Limit: 1, Period: Hour, Location: time.FixedZone("Etc/UTC-alias", 0)}
	if c.Subject(other, "sub:alice", now) == c.Subject(rule, "sub:alice", now) {
		t.Fatal("two zones share a counter")
	}
}

// TestRefund gives a call back; a refund of nothing is undone.
func TestRefund(t *testing.T) {
	_, _, c := single(t, Config{})
	ctx := context.Background()
	rule := Rule{Limit: 2, Period: Month}
	at := mustTime(t, "2026-12-04T13:20:00Z")
	for range 3 {
		if _, err := c.Take(ctx, rule, "k", at); err != nil {
			t.Fatal(err)
		}
	}
	// Later, in the same window, the PEP reports the first call failed.
	if err := c.Refund(ctx, rule, "k", at); err != nil {
		t.Fatal(err)
	}
	later := at.Add(time.Hour)
	if res, err := c.Take(ctx, rule, "k", later); err != nil || !res.Allowed || res.Remaining != 0 {
		t.Fatalf("take after the refund: %+v, %v", res, err)
	}
	if res, _ := c.Take(ctx, rule, "k", later); res.Allowed {
		t.Fatal("allowed beyond the limit after a refund")
	}
	err := c.Refund(ctx, rule, "never-taken", at)
	if !errors.Is(err, ErrOverRefund) || !strings.Contains(err.Error(), "pdp.quota.2026-12.") {
		t.Fatalf("refund of nothing: %v", err)
	}
	if used, err := c.Used(ctx, rule, "never-taken", at); err != nil || used != 0 {
		t.Fatalf("after the undone refund: %d, %v", used, err)
	}
	if st := c.Stats(); st.Refunded != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRefundRace: refunds racing takes at the limit never over-allow, and
// once the reverts have landed the budget is exactly what the refunds
// gave back (a take may be denied meanwhile: the under-allow Take
// documents).
func TestRefundRace(t *testing.T) {
	_, _, c := single(t, Config{})
	ctx := context.Background()
	rule := Rule{Limit: 20, Period: Day}
	now := mustTime(t, "2026-12-04T13:20:00Z")
	for range 20 {
		if res, err := c.Take(ctx, rule, "k", now); err != nil || !res.Allowed {
			t.Fatalf("fill: %+v, %v", res, err)
		}
	}
	const refunds = 10
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 10 {
				res, err := c.Take(ctx, rule, "k", now)
				if err != nil {
					t.Error(err)
					return
				}
				if res.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	for range refunds {
		wg.Go(func() {
			if err := c.Refund(ctx, rule, "k", now); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	during := allowed.Load()
	if during > refunds {
		t.Fatalf("over-allow: %d takes allowed after %d refunds at the limit", during, refunds)
	}
	after := 0
	for {
		res, err := c.Take(ctx, rule, "k", now)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed {
			break
		}
		after++
	}
	if int(during)+after != refunds {
		t.Fatalf("%d allowed during the race and %d after it, want %d in all", during, after, refunds)
	}
	if used, _ := c.Used(ctx, rule, "k", now); used != 20 {
		t.Fatalf("used %d, want 20", used)
	}
	t.Logf("refunds racing 320 takes at the limit: %d allowed during the race, %d left for after it (transient under-allow)", during, after)
}

// TestUnavailable: with NATS down Take fails at once with ErrUnavailable
// (nothing sent, nothing counted); after a restart the counts go on.
func TestUnavailable(t *testing.T) {
	srv, nc, c := single(t, Config{Timeout: 250 * time.Millisecond})
	ctx := context.Background()
	rule := Rule{Limit: 5, Period: Day}
	now := mustTime(t, "2026-12-04T13:20:00Z")
	for range 2 {
		if res, err := c.Take(ctx, rule, "k", now); err != nil || !res.Allowed {
			t.Fatalf("%+v, %v", res, err)
		}
	}
	srv.Stop()
	waitFor(t, "the disconnection", 5*time.Second, func() bool { return !nc.IsConnected() })
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"take", func() error { _, err := c.Take(ctx, rule, "k", now); return err }},
		{"refund", func() error { return c.Refund(ctx, rule, "k", now) }},
		{"read", func() error { _, err := c.Used(ctx, rule, "k", now); return err }},
	} {
		t0 := time.Now()
		err := op.do()
		elapsed := time.Since(t0)
		var ue *UnavailableError
		if !errors.Is(err, ErrUnavailable) || !errors.As(err, &ue) {
			t.Fatalf("%s with NATS down: %v", op.name, err)
		}
		if ue.MaybeApplied || ue.Op != op.name || !strings.HasPrefix(ue.Subject, "pdp.quota.2026-12-04.") || ue.Stream != DefaultStream {
			t.Fatalf("%s: %+v", op.name, ue)
		}
		if elapsed > 250*time.Millisecond {
			t.Fatalf("%s took %v, beyond the timeout", op.name, elapsed)
		}
		t.Logf("%s with NATS down: %v after %v", op.name, err, elapsed)
	}
	if st := c.Stats(); st.Unavailable != 1 || st.MaybeApplied != 0 {
		t.Fatalf("stats %+v", st)
	}

	srv.Restart()
	waitFor(t, "the reconnection", 10*time.Second, nc.IsConnected)
	var res Result
	maybe := 0
	waitFor(t, "a take after the restart", 10*time.Second, func() bool {
		var err error
		res, err = c.Take(ctx, rule, "k", now)
		var ue *UnavailableError
		if errors.As(err, &ue) && ue.MaybeApplied {
			maybe++
		}
		return err == nil
	})
	if maybe == 0 && (res.Used != 3 || res.Remaining != 2) {
		t.Fatalf("after the restart: %+v, want the third call of the window", res)
	}
	t.Logf("after the restart: %+v (%d takes that may have been applied meanwhile)", res, maybe)
}

// TestAckFailures: what a Take makes of the answers it may get, from peers
// on the bus answering in place of a stream (prefix "fake", which no
// stream takes).
func TestAckFailures(t *testing.T) {
	srv := natstest.Start(t)
	nc := connect(t, srv.URL())
	c := mustNew(t, nc, Config{Prefix: "fake", Timeout: 200 * time.Millisecond})
	peer := connect(t, srv.URL())
	answers := map[string]func(m *nats.Msg){
		"silent": func(*nats.Msg) {},
		"refuses": func(m *nats.Msg) {
			_ = m.Respond([]byte(`{"error":{"code":503,"err_code":10039,"description":"jetstream not enabled"}}`))
		},
		"plain":   func(m *nats.Msg) { _ = m.Respond([]byte(`{"stream":"PLAIN","seq":7}`)) },
		"garbled": func(m *nats.Msg) { _ = m.Respond([]byte(`{"stream":`)) },
		"not int": func(m *nats.Msg) { _ = m.Respond([]byte(`{"stream":"X","seq":7,"val":"1e3"}`)) },
		"counter": func(m *nats.Msg) {
			if m.Header.Get("Nats-Incr") != "+1" {
				_ = m.Respond([]byte(`{"error":{"code":400,"description":"bad incr"}}`))
				return
			}
			_ = m.Respond([]byte(`{"stream":"X","seq":7,"val":"42"}`))
		},
	}
	for name, answer := range answers {
		sub, err := peer.Subscribe("fake."+strings.ReplaceAll(name, " ", "_")+".>", answer)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	if err := peer.Flush(); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		prefix   string
		maybe    bool
		contains string
		minTime  time.Duration
	}{
		{"no answer within the timeout", context.Background(), "fake.silent", true, "deadline exceeded", 200 * time.Millisecond},
		{"the stream refuses", context.Background(), "fake.refuses", false, "jetstream not enabled", 0},
		{"not a counter stream", context.Background(), "fake.plain", true, "not a counter stream", 0},
		{"garbled acknowledgement", context.Background(), "fake.garbled", true, "unreadable acknowledgement", 0},
		{"total not an integer", context.Background(), "fake.not_int", true, `total "1e3"`, 0},
		{"no stream at all", context.Background(), "fake.nobody", false, "no responders", 200 * time.Millisecond},
		{"caller gave up", canceled, "fake.counter", false, "context canceled", 0},
	}
	rule := Rule{Limit: 100, Period: Day}
	now := mustTime(t, "2026-12-04T13:20:00Z")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, nc, Config{Prefix: tt.prefix, Timeout: 200 * time.Millisecond})
			t0 := time.Now()
			_, err := c.Take(tt.ctx, rule, "k", now)
			elapsed := time.Since(t0)
			var ue *UnavailableError
			if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err %v", err)
			}
			if ue.MaybeApplied != tt.maybe || !strings.Contains(err.Error(), tt.contains) || !strings.Contains(err.Error(), tt.prefix+".2026-12-04.") {
				t.Fatalf("err %v (maybe applied %v)", err, ue.MaybeApplied)
			}
			if elapsed < tt.minTime || elapsed > 200*time.Millisecond+150*time.Millisecond {
				t.Fatalf("took %v", elapsed)
			}
		})
	}
	// The caller's own deadline bounds a take further.
	c = mustNew(t, nc, Config{Prefix: "fake.silent", Timeout: 5 * time.Second})
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	t0 := time.Now()
	if _, err := c.Take(short, rule, "k", now); !errors.Is(err, ErrUnavailable) || time.Since(t0) > time.Second {
		t.Fatalf("caller's deadline: %v after %v", err, time.Since(t0))
	}
	// A well-formed counter answer is a total.
	c = mustNew(t, nc, Config{Prefix: "fake.counter"})
	if res, err := c.Take(context.Background(), rule, "k", now); err != nil || !res.Allowed || res.Used != 42 || res.Remaining != 58 {
		t.Fatalf("counter answer: %+v, %v", res, err)
	}
}

// TestObservedBound: a replica remembers at most MaxObserved totals, and
// none of an ended window.
func TestObservedBound(t *testing.T) {
	_, _, c := single(t, Config{MaxObserved: 10})
	ctx := context.Background()
	rule := Rule{Limit: 100, Period: Hour}
	now := mustTime(t, "2026-12-04T13:20:00Z")
	for i := range 50 {
		if _, err := c.Take(ctx, rule, fmt.Sprint("k", i), now); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Stats().Observed; n != 10 {
		t.Fatalf("observed %d keys, want the bound 10", n)
	}
	if rem, ok := c.Observed(rule, "k49", now); !ok || rem != 99 {
		t.Fatalf("latest key: %d %v", rem, ok)
	}
	if _, ok := c.Observed(rule, "k49", now.Add(time.Hour)); ok {
		t.Fatal("a total of an ended window")
	}
	if _, ok := c.Observed(Rule{Limit: 100, Period: Day}, "k49", now); ok {
		t.Fatal("a total of another period")
	}
	if _, ok := c.Observed(Rule{}, "k49", now); ok {
		t.Fatal("an invalid rule observed")
	}
	none := mustNew(t, c.nc, Config{MaxObserved: -1})
	if _, err := none.Take(ctx, rule, "k1", now); err != nil {
		t.Fatal(err)
	}
	if _, ok := none.Observed(rule, "k1", now); ok || none.Stats().Observed != 0 {
		t.Fatal("MaxObserved -1 remembers")
	}
}

func TestNewConfig(t *testing.T) {
	srv := natstest.Start(t)
	nc := connect(t, srv.URL())
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"own names", Config{Stream: "Q", Prefix: "acme.pdp.quota"}, true},
		{"wildcard prefix", Config{Prefix: "pdp.*"}, false},
		{"empty token", Config{Prefix: "pdp..quota"}, false},
		{"trailing dot", Config{Prefix: "pdp."}, false},
		{"space", Config{Prefix: "pdp quota"}, false},
		{"dotted stream", Config{Stream: "PDP.QUOTAS"}, false},
		{"short max age", Config{MaxAge: 31 * 24 * time.Hour}, false},
		{"replicas", Config{Replicas: 6}, false},
		{"negative timeout", Config{Timeout: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(nc, tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New: %v", err)
			}
		})
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Fatal("New without a connection")
	}
}

func BenchmarkTake(b *testing.B) {
	_, _, c := single(b, Config{})
	ctx := context.Background()
	rule := Rule{Limit: MaxLimit, Period: Day, Location: mustLoad(b, "Europe/Berlin")}
	now := time.Now()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if res, err := c.Take(ctx, rule, "tool:generate_qr|sub:alice", now); err != nil || !res.Allowed {
				b.Fatalf("%+v, %v", res, err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if res, err := c.Take(ctx, rule, "tool:generate_qr|sub:alice", now); err != nil || !res.Allowed {
					b.Errorf("%+v, %v", res, err)
					return
				}
			}
		})
	})
}

func BenchmarkObserved(b *testing.B) {
	srv := natstest.Start(b)
	c := mustNew(b, connect(b, srv.URL()), Config{})
	rule := Rule{Limit: 100, Period: Day}
	now := time.Now()
	_, end := rule.Window(now)
	c.obs.put(c.Subject(rule, "tool:generate_qr|sub:alice", now), 1, 5, end, now)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Observed(rule, "tool:generate_qr|sub:alice", now); !ok {
			b.Fatal("not observed")
		}
	}
}

// TestBreaker: after a timeout a Counter sends nothing for the cooldown,
// then one probe at a time, and the first answer closes it.
func TestBreaker(t *testing.T) {
	srv := natstest.Start(t)
	nc := connect(t, srv.URL())
	peer := connect(t, srv.URL())
	var answering atomic.Bool
	var received atomic.Int64
	if _, err := peer.Subscribe("flaky.>", func(m *nats.Msg) {
		received.Add(1)
		if answering.Load() {
			_ = m.Respond([]byte(`{"stream":"X","seq":1,"val":"1"}`))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := peer.Flush(); err != nil {
		t.Fatal(err)
	}
	const timeout, cooldown = 100 * time.Millisecond, 300 * time.Millisecond
	c := mustNew(t, nc, Config{Prefix: "flaky", Timeout: timeout, Cooldown: cooldown})
	ctx := context.Background()
	rule := Rule{Limit: 10, Period: Day}
	now := time.Now()
	take := func() (time.Duration, error) {
		t0 := time.Now()
		_, err := c.Take(ctx, rule, "k", now)
		return time.Since(t0), err
	}

	if _, err := take(); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("first take: %v", err)
	}
	// Open: at once, nothing sent, for every operation.
	for range 5 {
		if d, err := take(); !errors.Is(err, ErrCircuitOpen) || d > 20*time.Millisecond {
			t.Fatalf("take while open: %v after %v", err, d)
		}
	}
	if err := c.Refund(ctx, rule, "k", now); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("refund while open: %v", err)
	}
	if _, err := c.Used(ctx, rule, "k", now); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("read while open: %v", err)
	}
	if n := received.Load(); n != 1 {
		t.Fatalf("%d messages sent, want 1", n)
	}
	if st := c.Stats(); !st.CircuitOpen || st.FailedFast != 7 || st.Unavailable != 6 || st.MaybeApplied != 1 {
		t.Fatalf("stats %+v", st)
	}

	// After the cooldown one probe goes; the others meanwhile fail fast.
	time.Sleep(cooldown)
	var wg sync.WaitGroup
	var probes, fast atomic.Int64
	for range 4 {
		wg.Go(func() {
			_, err := take()
			switch {
			case errors.Is(err, ErrCircuitOpen):
				fast.Add(1)
			case errors.Is(err, ErrUnavailable):
				probes.Add(1)
			}
		})
	}
	wg.Wait()
	if probes.Load() != 1 || fast.Load() != 3 || received.Load() != 2 {
		t.Fatalf("half open: %d probes, %d failed fast, %d sent", probes.Load(), fast.Load(), received.Load())
	}

	// The probe failed: open again. Once the counters answer, the next
	// probe closes it.
	answering.Store(true)
	if _, err := take(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("take right after a failed probe: %v", err)
	}
	time.Sleep(cooldown)
	for i := range 3 {
		if _, err := take(); err != nil {
			t.Fatalf("take %d after the outage: %v", i, err)
		}
	}
	if c.Stats().CircuitOpen {
		t.Fatal("still open")
	}

	// A negative cooldown never holds back.
	answering.Store(false)
	never := mustNew(t, nc, Config{Prefix: "flaky", Timeout: timeout, Cooldown: -1})
	for range 2 {
		if _, err := never.Take(ctx, rule, "k", now); errors.Is(err, ErrCircuitOpen) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("no breaker: %v", err)
		}
	}
	// Nor does a caller giving up.
	giving := mustNew(t, nc, Config{Prefix: "flaky", Timeout: time.Second})
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := giving.Take(short, rule, "k", now); !errors.Is(err, ErrUnavailable) {
		t.Fatal(err)
	}
	if giving.Stats().CircuitOpen {
		t.Fatal("the caller's deadline opened the breaker")
	}
}
