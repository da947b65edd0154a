package quota

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/natsembed"
)

// replicas are three PDP replicas on a 3-node cluster: each its own
// connection, first to its own node, and its own Counter.
type replicas struct {
	cl       *natsembed.Cluster
	conns    []*nats.Conn
	counters []*Counter
	js       jetstream.JetStream
}

func startReplicas(t *testing.T) *replicas {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := natsembed.StartCluster(ctx, natsembed.ClusterOptions{BaseDir: t.TempDir(), Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Shutdown)
	urls := strings.Split(cl.ClientURLs(), ",")
	r := &replicas{cl: cl}
	for i := range 3 {
		order := append(slices.Clone(urls[i:]), urls[:i]...)
		nc := connect(t, strings.Join(order, ","), nats.DontRandomize())
		r.conns = append(r.conns, nc)
		r.counters = append(r.counters, mustNew(t, nc, Config{}))
	}
	r.js = newJS(t, r.conns[0])
	ensure(t, r.js, Config{Replicas: 3})
	return r
}

// leader is the index of the counter stream's leader.
func (r *replicas) leader(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := r.js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info := str.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("no stream leader: %+v", info.Cluster)
	}
	if n := len(info.Cluster.Replicas); n != 2 {
		t.Fatalf("stream with %d followers, want 2", n)
	}
	return r.cl.Index(info.Cluster.Leader)
}

// tally counts the answers of concurrent takes.
type tally struct {
	allowed, denied, unavailable, maybe atomic.Int64
	mu                                  sync.Mutex
	remaining                           []int
}

func (ta *tally) add(res Result, err error) {
	var ue *UnavailableError
	switch {
	case errors.As(err, &ue):
		ta.unavailable.Add(1)
		if ue.MaybeApplied {
			ta.maybe.Add(1)
		}
	case err != nil:
		panic(err)
	case res.Allowed:
		ta.allowed.Add(1)
		ta.mu.Lock()
		ta.remaining = append(ta.remaining, res.Remaining)
		ta.mu.Unlock()
	default:
		ta.denied.Add(1)
	}
}

// TestCluster: three replicas on a real 3-node JetStream cluster (stream
// replicas 3) share one quota.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster")
	}
	r := startReplicas(t)
	rule := Rule{Limit: 100, Period: Day, Location: mustLoad(t, "Europe/Berlin")}
	now := time.Now()

	t.Run("exact", func(t *testing.T) {
		// 32 goroutines over the three replicas, 256 takes on one key: 100
		// allowed, each total 1..100 handed out once, every denial reverted.
		const key = "tool:generate_qr|sub:alice"
		var ta tally
		var wg sync.WaitGroup
		for g := range 32 {
			c := r.counters[g%3]
			wg.Go(func() {
				for range 8 {
					ta.add(c.Take(context.Background(), rule, key, now))
				}
			})
		}
		wg.Wait()
		if a, d, u := ta.allowed.Load(), ta.denied.Load(), ta.unavailable.Load(); a != 100 || d != 156 || u != 0 {
			t.Fatalf("allowed %d, denied %d, unavailable %d; want 100, 156, 0", a, d, u)
		}
		slices.Sort(ta.remaining)
		for i, rem := range ta.remaining {
			if rem != i {
				t.Fatalf("remaining values %v: not each of 0..99 once", ta.remaining)
			}
		}
		for i, c := range r.counters {
			if used, err := c.Used(context.Background(), rule, key, now); err != nil || used != 100 {
				t.Fatalf("replica %d reads %d, %v; want 100", i, used, err)
			}
		}
		var reverts int64
		for _, c := range r.counters {
			reverts += c.Stats().RevertFailed
		}
		if reverts != 0 {
			t.Fatalf("%d failed reverts", reverts)
		}
	})

	t.Run("leader killed", func(t *testing.T) {
		// The stream's leader stopped once 30 calls are in: never more
		// than 100 allowed; the count may exceed the allowed calls by the
		// takes whose acknowledgement was lost.
		leader := r.leader(t)
		name := r.cl.Server(leader).Name()
		r.disrupted(t, rule, now, "tool:generate_qr|sub:bob", func() string {
			r.cl.Stop(leader)
			return "stream leader " + name + " stopped"
		}, (leader+1)%3)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.cl.Restart(ctx, leader); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("quorum lost", func(t *testing.T) {
		// Two of the three nodes stopped for a second, then one back: the
		// leader left alone cannot commit, its takes time out, and some
		// of them may be counted when the quorum is back.
		leader := r.leader(t)
		a, b := (leader+1)%3, (leader+2)%3
		r.disrupted(t, rule, now, "tool:generate_qr|sub:carol", func() string {
			r.cl.Stop(a)
			r.cl.Stop(b)
			time.Sleep(time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := r.cl.Restart(ctx, a); err != nil {
				t.Error(err)
			}
			return "two followers stopped for 1 s, one restarted"
		}, leader)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.cl.Restart(ctx, b); err != nil {
			t.Fatal(err)
		}
	})
}

// disrupted runs 32 goroutines taking on key through the three replicas,
// every 20 ms each, calls disrupt once 30 calls are allowed, runs on until
// the quota is spent (64 denials after disrupt) or 30 s have passed, then
// reads the count through replica reader and checks: never more than 100
// allowed, and a count of at least the allowed calls and at most those
// and the takes that may have been applied.
func (r *replicas) disrupted(t *testing.T, rule Rule, now time.Time, key string, disrupt func() string, reader int) {
	t.Helper()
	var ta tally
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 32 {
		c := r.counters[g%3]
		wg.Go(func() {
			for !stop.Load() {
				ta.add(c.Take(context.Background(), rule, key, now))
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	waitFor(t, "30 allowed calls", 20*time.Second, func() bool { return ta.allowed.Load() >= 30 })
	at := ta.allowed.Load()
	t0 := time.Now()
	what := disrupt()
	deniedAt := ta.denied.Load()
	deadline := time.Now().Add(30 * time.Second)
	for ta.denied.Load()-deniedAt < 64 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	spent := time.Since(t0)

	var used int64
	waitFor(t, "a read of the count", 30*time.Second, func() bool {
		var err error
		used, err = r.counters[reader].Used(context.Background(), rule, key, now)
		return err == nil
	})
	var revertFailed int64
	for _, c := range r.counters {
		revertFailed += c.Stats().RevertFailed
	}
	allowed, denied, unavailable, maybe := ta.allowed.Load(), ta.denied.Load(), ta.unavailable.Load(), ta.maybe.Load()
	t.Logf("%s after %d allowed; %v later: allowed %d, denied %d, unavailable %d (%d maybe applied), failed reverts %d; final count %d",
		what, at, spent.Round(time.Millisecond), allowed, denied, unavailable, maybe, revertFailed, used)
	if allowed > 100 {
		t.Fatalf("over-allow: %d calls allowed of 100", allowed)
	}
	if used < allowed {
		t.Fatalf("the count %d is below the %d allowed calls", used, allowed)
	}
	if used-allowed > maybe+revertFailed {
		t.Fatalf("the count %d exceeds the allowed calls %d by more than the takes that may have been applied (%d) and the failed reverts (%d)",
			used, allowed, maybe, revertFailed)
	}
	if denied-deniedAt < 64 {
		t.Fatalf("the quota was not spent within 30 s: %d allowed", allowed)
	}
	if allowed < 100 {
		t.Logf("exactness lost: %d calls of the budget went to takes whose acknowledgement was lost or whose revert failed", 100-allowed)
	}
}
