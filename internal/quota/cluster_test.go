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
		c := mustNew(t, nc, Config{})
		r.counters = append(r.counters, c)
		runSettle(t, c)
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
		// The stream's leader stopped once 30 calls are in: the takes
		// whose acknowledgement was lost are refused and settled, and the
		// window still allows exactly 100.
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
		// of them are counted when the quorum is back; settling takes them
		// back, and the window still allows exactly 100.
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
// every 20 ms each (settling every failed take as refused), calls disrupt
// once 30 calls are allowed, runs on until 64 denials after disrupt or
// 30 s, waits until every failed take is settled, then spends what is
// left of the quota from one replica, and checks: exactly 100 allowed in
// all, and the count, read through replica reader, is 100.
func (r *replicas) disrupted(t *testing.T, rule Rule, now time.Time, key string, disrupt func() string, reader int) {
	t.Helper()
	var ta tally
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 32 {
		c := r.counters[g%3]
		wg.Go(func() {
			for !stop.Load() {
				res, err := c.Take(context.Background(), rule, key, now)
				c.Settle(err, false)
				ta.add(res, err)
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
	allowed, denied, unavailable, maybe := ta.allowed.Load(), ta.denied.Load(), ta.unavailable.Load(), ta.maybe.Load()
	if allowed > 100 {
		t.Fatalf("over-allow: %d calls allowed of 100", allowed)
	}

	waitFor(t, "every failed take settled", 40*time.Second, func() bool {
		var n int64
		for _, c := range r.counters {
			n += c.Stats().Unsettled
		}
		return n == 0
	})
	var lost, settled, revertFailed int64
	for _, c := range r.counters {
		st := c.Stats()
		lost, settled, revertFailed = lost+st.SettleLost, settled+st.Settled, revertFailed+st.RevertFailed
	}
	// What the run left of the quota, spent through the reader.
	c := r.counters[reader]
	late := 0
	for deadline := time.Now().Add(30 * time.Second); ; {
		res, err := c.Take(context.Background(), rule, key, now)
		if err != nil {
			c.Settle(err, false)
			if time.Now().After(deadline) {
				t.Fatalf("the quota cannot be spent after the disruption: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !res.Allowed {
			break
		}
		late++
	}
	waitFor(t, "the last takes settled", 40*time.Second, func() bool { return c.Stats().Unsettled == 0 })
	var used int64
	waitFor(t, "a read of the count", 30*time.Second, func() bool {
		var err error
		used, err = c.Used(context.Background(), rule, key, now)
		return err == nil
	})
	t.Logf("%s after %d allowed; %v later: allowed %d, denied %d, unavailable %d (%d maybe applied), failed reverts %d, settled %d, lost %d; then %d allowed; final count %d",
		what, at, spent.Round(time.Millisecond), allowed, denied, unavailable, maybe, revertFailed, settled, lost, late, used)
	if lost != 0 {
		t.Fatalf("%d failed takes could not be settled", lost)
	}
	if total := allowed + int64(late); total != 100 || used != 100 {
		t.Fatalf("%d calls allowed in all (%d during the run, %d after it), count %d: want exactly 100 and 100", total, allowed, late, used)
	}
}

// runSettle runs c's settling until the test ends.
func runSettle(t testing.TB, c *Counter) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
