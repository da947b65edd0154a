package ratelimit

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock the test moves; safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// interval is one token's interval of r rounded up to the nanosecond:
// the wait after a take that emptied the bucket.
func interval(r Rule) time.Duration {
	return (r.Per + time.Duration(r.Limit) - 1) / time.Duration(r.Limit)
}

func burstOf(r Rule) int {
	if r.Burst == 0 {
		return r.Limit
	}
	return r.Burst
}

// takeN takes n times at the current instant and returns the allowed count.
func takeN(l *Limiter, r Rule, key string, n int) int {
	allowed := 0
	for range n {
		if l.Take(r, key).Allowed {
			allowed++
		}
	}
	return allowed
}

var edgeRules = []struct {
	name string
	rule Rule
}{
	{"burst = limit (0)", Rule{Limit: 10, Per: time.Minute}},
	{"burst > limit", Rule{Limit: 10, Per: time.Minute, Burst: 20}},
	{"burst < limit", Rule{Limit: 10, Per: time.Second, Burst: 3}},
	{"burst 1", Rule{Limit: 1, Per: time.Second, Burst: 1}},
	{"fractional interval", Rule{Limit: 3, Per: time.Second}},
	{"fractional interval, burst > limit", Rule{Limit: 7, Per: 100 * time.Millisecond, Burst: 9}},
	{"one per nanosecond", Rule{Limit: 1, Per: time.Nanosecond, Burst: 5}},
	{"one per leap year", Rule{Limit: 1, Per: MaxPer, Burst: 2}},
	{"a billion per second", Rule{Limit: MaxLimit, Per: time.Second, Burst: MaxLimit}},
}

// TestBucketEdges: exactly burst takes at once, with remaining counting
// down; then denied with the exact wait; denied a nanosecond before it,
// allowed at it; a denial consumes nothing.
func TestBucketEdges(t *testing.T) {
	for _, c := range edgeRules {
		t.Run(c.name, func(t *testing.T) {
			clk := newFakeClock()
			l := New(Options{Now: clk.Now})
			burst := burstOf(c.rule)
			n := min(burst, 5000) // a billion takes would take too long
			for i := range n {
				r := l.Take(c.rule, "k")
				if !r.Allowed || r.Remaining != burst-1-i || r.RetryAfter != 0 {
					t.Fatalf("take %d of a burst of %d: %+v, want allowed with %d remaining", i+1, burst, r, burst-1-i)
				}
			}
			if n < burst {
				return
			}
			wait := interval(c.rule)
			for range 3 { // denials consume nothing: the wait does not grow
				r := l.Take(c.rule, "k")
				if r.Allowed || r.RetryAfter != wait || r.Remaining != 0 {
					t.Fatalf("take %d: %+v, want denied with RetryAfter %v", burst+1, r, wait)
				}
			}
			if wait > 1 {
				clk.Advance(wait - 1)
				if r := l.Take(c.rule, "k"); r.Allowed || r.RetryAfter != 1 {
					t.Fatalf("a nanosecond before the wait: %+v, want denied with RetryAfter 1ns", r)
				}
				clk.Advance(1)
			} else {
				clk.Advance(wait)
			}
			if r := l.Take(c.rule, "k"); !r.Allowed || r.Remaining != 0 {
				t.Fatalf("after RetryAfter: %+v, want allowed with 0 remaining", r)
			}
			if r := l.Take(c.rule, "k"); r.Allowed {
				t.Fatalf("a second take after RetryAfter: %+v, want denied", r)
			}
		})
	}
}

// TestRefill: an emptied bucket gains limit tokens per per (at most its
// burst), fractions carried over exactly from one step to the next.
func TestRefill(t *testing.T) {
	for _, c := range edgeRules {
		if burstOf(c.rule) > 5000 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			clk := newFakeClock()
			l := New(Options{Now: clk.Now})
			burst := burstOf(c.rule)
			takeN(l, c.rule, "k", burst)

			// A whole period: limit tokens, at most the burst.
			clk.Advance(c.rule.Per)
			if got, want := takeN(l, c.rule, "k", burst+1), min(c.rule.Limit, burst); got != want {
				t.Fatalf("after per: %d takes allowed, want %d", got, want)
			}

			// Ten steps of a third of the period each: the fractions add
			// up to 10/3 periods' worth of tokens, taken as they come.
			takeN(l, c.rule, "k", burst+1)
			step := c.rule.Per / 3
			allowed := 0
			for range 10 {
				clk.Advance(step)
				allowed += takeN(l, c.rule, "k", burst+1)
			}
			// Tokens gained over 10 steps: floor(10·step·limit/per), when
			// none is lost to the cap: a step's gain plus the fraction
			// left over (under 1) fits in the burst.
			gain := new(big.Int).Mul(big.NewInt(int64(10*step)), big.NewInt(int64(c.rule.Limit)))
			gain.Quo(gain, big.NewInt(int64(c.rule.Per)))
			fits := new(big.Int).Mul(big.NewInt(int64(step)), big.NewInt(int64(c.rule.Limit))).Cmp(
				new(big.Int).Mul(big.NewInt(int64(burst-1)), big.NewInt(int64(c.rule.Per)))) <= 0
			if fits && int64(allowed) != gain.Int64() {
				t.Fatalf("over 10 steps of %v: %d takes allowed, want %d", step, allowed, gain.Int64())
			}
		})
	}
}

// TestFractionalRefill: 3 per second is a token every 333333333⅓ ns; the
// thirds add up, so the third token comes at exactly 1s, not 999999999ns
// nor 1000000002ns.
func TestFractionalRefill(t *testing.T) {
	rule := Rule{Limit: 3, Per: time.Second}
	clk := newFakeClock()
	l := New(Options{Now: clk.Now})
	takeN(l, rule, "k", burstOf(rule))
	var at time.Duration
	for i := 1; i <= 3; i++ {
		r := l.Take(rule, "k")
		if r.Allowed {
			t.Fatalf("token %d: allowed before its time", i)
		}
		clk.Advance(r.RetryAfter)
		at += r.RetryAfter
		// The exact instant of token i is i·Per/Limit; the wait is that
		// rounded up to the nanosecond from where the clock is.
		want := (time.Duration(i)*rule.Per + time.Duration(rule.Limit) - 1) / time.Duration(rule.Limit)
		if at != want {
			t.Fatalf("token %d at %v, want %v", i, at, want)
		}
		if r := l.Take(rule, "k"); !r.Allowed {
			t.Fatalf("token %d: denied after its RetryAfter: %+v", i, r)
		}
	}
	if at != rule.Per {
		t.Fatalf("3 tokens took %v, want %v", at, rule.Per)
	}
}

// TestClockBackwards: a clock going back mints no tokens and takes none:
// the bucket stands still until the clock passes its latest reading.
func TestClockBackwards(t *testing.T) {
	rule := Rule{Limit: 2, Per: time.Second, Burst: 4}
	wait := interval(rule)
	for _, back := range []time.Duration{time.Nanosecond, time.Second, time.Hour, 200 * 365 * 24 * time.Hour} {
		t.Run(back.String(), func(t *testing.T) {
			clk := newFakeClock()
			l := New(Options{Now: clk.Now})
			takeN(l, rule, "k", burstOf(rule))
			l.Take(rule, "k2")
			clk.Advance(wait / 2) // half a token, seen by a denied take
			if r := l.Take(rule, "k"); r.Allowed {
				t.Fatalf("half a token: allowed")
			}
			clk.Advance(-back)
			r := l.Take(rule, "k")
			if r.Allowed {
				t.Fatalf("after the clock went back %v: allowed", back)
			}
			if r.RetryAfter != wait-wait/2 {
				t.Fatalf("after the clock went back %v: RetryAfter %v, want %v (the half token already there)", back, r.RetryAfter, wait-wait/2)
			}
			clk.Advance(back) // back where it was: still nothing new
			if r2 := l.Take(rule, "k"); r2.Allowed || r2.RetryAfter != r.RetryAfter {
				t.Fatalf("clock back at its latest reading: %+v, want denied with RetryAfter %v", r2, r.RetryAfter)
			}
			clk.Advance(r.RetryAfter)
			if got := takeN(l, rule, "k", burstOf(rule)); got != 1 {
				t.Fatalf("after RetryAfter past the latest reading: %d allowed, want 1", got)
			}
			// A bucket full again, one token taken, then the clock goes
			// back: it holds what it had, no more.
			clk.Advance(time.Hour)
			l.Take(rule, "k2")
			clk.Advance(-back)
			if got := takeN(l, rule, "k2", burstOf(rule)+1); got != burstOf(rule)-1 {
				t.Fatalf("after the clock went back: %d allowed, want %d", got, burstOf(rule)-1)
			}
		})
	}
}

// model is a token bucket in exact rational arithmetic, written the
// obvious way: the reference the Limiter must agree with.
type model struct {
	rule   Rule
	tokens *big.Rat
	last   int64
}

func ratInt(n int64) *big.Rat { return new(big.Rat).SetInt64(n) }

func floorRat(x *big.Rat) int64 {
	return new(big.Int).Quo(x.Num(), x.Denom()).Int64() // x >= 0
}

// advance refills the bucket to now under m.rule; now never goes back.
func (m *model) advance(now int64) {
	if m.last == math.MinInt64 { // the first reading: the bucket is full
		m.last = now
	}
	if now <= m.last {
		return
	}
	gain := new(big.Rat).SetFrac(
		new(big.Int).Mul(big.NewInt(now-m.last), big.NewInt(int64(m.rule.Limit))),
		big.NewInt(int64(m.rule.Per)))
	m.tokens.Add(m.tokens, gain)
	if b := ratInt(int64(burstOf(m.rule))); m.tokens.Cmp(b) > 0 {
		m.tokens = b
	}
	m.last = now
}

// setRule switches rules: whole tokens kept, at most the new burst; a
// full bucket is full.
func (m *model) setRule(r Rule) {
	if m.tokens == nil || m.tokens.Cmp(ratInt(int64(burstOf(m.rule)))) == 0 {
		m.tokens = ratInt(int64(burstOf(r)))
	} else {
		m.tokens = ratInt(min(floorRat(m.tokens), int64(burstOf(r))))
	}
	m.rule = r
}

func (m *model) take(now int64) Result {
	m.advance(now)
	if m.tokens.Cmp(ratInt(1)) >= 0 {
		m.tokens.Sub(m.tokens, ratInt(1))
		return Result{Allowed: true, Remaining: int(floorRat(m.tokens))}
	}
	// (1 - tokens) × per / limit, rounded up.
	w := new(big.Rat).Sub(ratInt(1), m.tokens)
	w.Mul(w, new(big.Rat).SetFrac64(int64(m.rule.Per), int64(m.rule.Limit)))
	q, r := new(big.Int).QuoRem(w.Num(), w.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return Result{RetryAfter: time.Duration(q.Int64())}
}

func (m *model) refund(now int64) {
	m.advance(now)
	m.tokens.Add(m.tokens, ratInt(1))
	if b := ratInt(int64(burstOf(m.rule))); m.tokens.Cmp(b) > 0 {
		m.tokens = b
	}
}

// TestAgainstModel: random rules (fractional intervals, bursts above and
// below the limit), random clock moves (back too), takes, refunds and
// rule changes; the Limiter answers exactly as the rational model.
func TestAgainstModel(t *testing.T) {
	pers := []time.Duration{time.Nanosecond, 7, 1000, time.Millisecond, 333 * time.Millisecond, time.Second, time.Minute, 7 * time.Hour, MaxPer}
	randRule := func(rng *rand.Rand) Rule {
		for {
			r := Rule{Limit: 1 + rng.IntN(40), Per: pers[rng.IntN(len(pers))], Burst: rng.IntN(50)}
			if rng.IntN(10) == 0 {
				r.Limit = 1 + rng.IntN(MaxLimit)
				r.Burst = rng.IntN(MaxLimit)
			}
			if r.Validate() == nil {
				return r
			}
		}
	}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 18))
		clk := newFakeClock()
		l := New(Options{Now: clk.Now})
		m := &model{last: math.MinInt64}
		rule := randRule(rng)
		m.setRule(rule)
		var now int64
		latest := int64(math.MinInt64)
		for step := range 400 {
			switch k := rng.IntN(20); {
			case k == 0:
				rule = randRule(rng)
				m.advance(latest)
				m.setRule(rule)
			case k < 3:
				d := -rng.Int64N(int64(interval(rule))*3 + 1)
				now += d
				clk.Advance(time.Duration(d))
			case k < 10:
				d := rng.Int64N(int64(interval(rule))*2 + 1)
				now += d
				clk.Advance(time.Duration(d))
			}
			latest = max(latest, now)
			if rng.IntN(8) == 0 {
				l.Refund(rule, "k")
				m.refund(latest)
				continue
			}
			got, want := l.Take(rule, "k"), m.take(latest)
			if got != want {
				t.Fatalf("seed %d step %d, rule %+v, clock %d (latest %d): Take = %+v, model %+v", seed, step, rule, now, latest, got, want)
			}
		}
	}
}

// TestRefund: a refund gives one token back, never beyond the burst; a
// refund that fills the bucket drops it (exact), one to an absent key does
// nothing.
func TestRefund(t *testing.T) {
	rule := Rule{Limit: 5, Per: time.Minute, Burst: 3}
	clk := newFakeClock()
	l := New(Options{Now: clk.Now})
	burst := burstOf(rule)

	l.Refund(rule, "absent")
	if n := l.Stats().Keys; n != 0 {
		t.Fatalf("a refund to an absent key made %d buckets", n)
	}
	if got := takeN(l, rule, "absent", burst+1); got != burst {
		t.Fatalf("after a refund to an absent key: %d allowed, want %d", got, burst)
	}

	takeN(l, rule, "k", burst)
	l.Refund(rule, "k")
	if r := l.Take(rule, "k"); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("after a refund to an empty bucket: %+v, want allowed with 0 remaining", r)
	}
	if r := l.Take(rule, "k"); r.Allowed {
		t.Fatalf("a second take after one refund: %+v, want denied", r)
	}

	for range burst + 5 {
		l.Refund(rule, "k")
	}
	before := l.Stats()
	if got := takeN(l, rule, "k", burst+5); got != burst {
		t.Fatalf("after %d refunds: %d allowed, want the burst %d", burst+5, got, burst)
	}
	if before.Keys != 1 || before.Expired == 0 {
		t.Fatalf("a refunded-to-full bucket: stats %+v, want it dropped (only \"absent\" held, Expired > 0)", before)
	}
}

// TestRuleChange: a key taken under one rule and then another keeps its
// whole tokens, at most the new burst; a full one is full under the new.
func TestRuleChange(t *testing.T) {
	small := Rule{Limit: 1, Per: time.Hour, Burst: 2}
	large := Rule{Limit: 1, Per: time.Hour, Burst: 10}
	clk := newFakeClock()
	l := New(Options{Now: clk.Now})

	if got := takeN(l, large, "k", 3); got != 3 { // 7 left
		t.Fatalf("%d of 3 allowed", got)
	}
	if got := takeN(l, small, "k", 10); got != burstOf(small) {
		t.Fatalf("7 tokens under a burst of %d: %d allowed, want %d", burstOf(small), got, burstOf(small))
	}
	if got := takeN(l, large, "k", 10); got != 0 {
		t.Fatalf("an empty bucket under a larger burst: %d allowed, want 0 (not refilled by the change)", got)
	}

	l.Take(small, "full")
	clk.Advance(small.Per) // full again under small
	if got := takeN(l, large, "full", 20); got != burstOf(large) {
		t.Fatalf("a full bucket under a larger burst: %d allowed, want %d", got, burstOf(large))
	}
}

// TestConcurrentTakes: goroutines taking from one key under a frozen clock
// get exactly the burst between them; other keys are independent.
func TestConcurrentTakes(t *testing.T) {
	rule := Rule{Limit: 10, Per: time.Minute, Burst: 500}
	clk := newFakeClock()
	l := New(Options{Now: clk.Now, MaxKeys: 1 << 16})
	const goroutines, each = 64, 40
	var shared atomic.Int64
	own := make([]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			key := fmt.Sprintf("own-%d", g)
			for range each {
				if l.Take(rule, "shared").Allowed {
					shared.Add(1)
				}
				if l.Take(rule, key).Allowed {
					own[g]++
				}
				if g%4 == 0 {
					l.Stats()
				}
			}
		})
	}
	wg.Wait()
	if got, want := shared.Load(), int64(min(burstOf(rule), goroutines*each)); got != want {
		t.Fatalf("%d goroutines × %d takes on one key: %d allowed, want the burst %d", goroutines, each, got, want)
	}
	for g, n := range own {
		if want := min(burstOf(rule), each); n != want {
			t.Fatalf("goroutine %d's own key: %d allowed, want %d", g, n, want)
		}
	}
}

// TestMemoryBound: 10 × MaxKeys distinct keys (a caller minting subjects)
// under a frozen clock, so that no bucket is full again: the Limiter holds
// at most MaxKeys throughout, evicts the rest, and its heap stops growing
// once it holds MaxKeys.
func TestMemoryBound(t *testing.T) {
	const maxKeys = 20_000
	rule := Rule{Limit: 1, Per: time.Hour, Burst: 5}
	clk := newFakeClock()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	l := New(Options{Now: clk.Now, MaxKeys: maxKeys})
	var atMax uint64
	for i := range 10 * maxKeys {
		l.Take(rule, fmt.Sprintf("tool:generate_qr|client:attacker-%09d", i))
		if (i+1)%(maxKeys/4) == 0 {
			if st := l.Stats(); st.Keys > maxKeys {
				t.Fatalf("after %d keys: %d held, more than MaxKeys %d", i+1, st.Keys, maxKeys)
			}
		}
		if i+1 == 2*maxKeys { // every shard full and churning
			atMax = heap()
		}
	}
	end := heap()
	st := l.Stats()
	runtime.KeepAlive(l)
	if st.Keys > maxKeys || st.Keys < maxKeys*9/10 {
		t.Fatalf("%d keys held, want at most MaxKeys %d (and close to it)", st.Keys, maxKeys)
	}
	if st.Evicted != uint64(10*maxKeys-st.Keys) || st.Expired != 0 {
		t.Fatalf("stats %+v: want every dropped bucket evicted (none full again under a frozen clock)", st)
	}
	perKey := float64(int64(atMax)-int64(base)) / maxKeys
	t.Logf("heap: %.0f bytes per bucket held at %d keys; %d bytes more after %d more keys",
		perKey, maxKeys, int64(end)-int64(atMax), 8*maxKeys)
	if perKey > 1024 {
		t.Errorf("%.0f bytes per bucket, want under 1 KiB", perKey)
	}
	if grow := int64(end) - int64(atMax); grow > int64(atMax-base)/4 {
		t.Errorf("the heap grew by %d bytes over %d more keys at the bound (from %d): not bounded", grow, 8*maxKeys, atMax-base)
	}
}

// TestIdleExpiry: buckets full again are dropped as new keys come, not
// evicted; a bucket in debt outlives a flood of keys that refill, and a
// dropped key starts again as a new one.
func TestIdleExpiry(t *testing.T) {
	const maxKeys = 1000
	short := Rule{Limit: 1, Per: time.Millisecond, Burst: 1}
	long := Rule{Limit: 1, Per: time.Hour, Burst: 2}
	clk := newFakeClock()
	l := New(Options{Now: clk.Now, MaxKeys: maxKeys})

	takeN(l, long, "victim", burstOf(long)) // in debt for hours
	for i := range 10 * maxKeys {
		l.Take(short, fmt.Sprintf("flood-%d", i))
		clk.Advance(short.Per / 10) // each bucket is full again 10 keys later
	}
	st := l.Stats()
	if st.Keys > maxKeys || st.Evicted != 0 || st.Expired == 0 {
		t.Fatalf("stats %+v: want at most %d held, none evicted, the full ones expired", st, maxKeys)
	}
	if r := l.Take(long, "victim"); r.Allowed {
		t.Fatalf("the bucket in debt was forgotten during the flood: %+v", r)
	}

	// Idle long enough, every flood bucket is full: the next keys drop
	// them (all: fewer than a scan per shard), the victim stays.
	clk.Advance(time.Minute)
	const late = 32
	for i := range late {
		l.Take(short, fmt.Sprintf("late-%d", i))
	}
	if st := l.Stats(); st.Keys != late+1 || st.Evicted != 0 {
		t.Fatalf("stats %+v: want the %d late keys and the victim held, none evicted", st, late)
	}
	if r := l.Take(short, "flood-0"); !r.Allowed || r.Remaining != burstOf(short)-1 {
		t.Fatalf("an expired key: %+v, want allowed as a new one", r)
	}
}

// TestEvictionOrder: at the bound, with no bucket full, the least
// recently used goes; a key just used stays.
func TestEvictionOrder(t *testing.T) {
	rule := Rule{Limit: 1, Per: time.Hour, Burst: 3}
	clk := newFakeClock()
	l := New(Options{Now: clk.Now, MaxKeys: 3}) // one shard
	for _, k := range []string{"a", "b", "c"} {
		l.Take(rule, k)
	}
	l.Take(rule, "a") // b is now the least recently used
	l.Take(rule, "d") // evicts b
	if st := l.Stats(); st.Keys != 3 || st.Evicted != 1 {
		t.Fatalf("stats %+v, want 3 held, 1 evicted", st)
	}
	for _, c := range []struct { // b last: its insertion evicts d
		key  string
		want int
	}{{"a", burstOf(rule) - 3}, {"c", burstOf(rule) - 2}, {"b", burstOf(rule) - 1}} {
		if r := l.Take(rule, c.key); r.Remaining != c.want {
			t.Errorf("key %s: %+v, want %d remaining", c.key, r, c.want)
		}
	}
}

// TestNewShards: MaxKeys splits exactly over the shards.
func TestNewShards(t *testing.T) {
	for _, maxKeys := range []int{-1, 0, 1, 2, 255, 256, 513, 1000, 16_384, DefaultMaxKeys, 1 << 24} {
		l := New(Options{MaxKeys: maxKeys})
		want := maxKeys
		if want <= 0 {
			want = DefaultMaxKeys
		}
		total := 0
		for i := range l.shards {
			if l.shards[i].max < 1 {
				t.Fatalf("MaxKeys %d: shard %d holds %d", maxKeys, i, l.shards[i].max)
			}
			total += l.shards[i].max
		}
		if total != want || len(l.shards) > maxShards || len(l.shards)&(len(l.shards)-1) != 0 {
			t.Fatalf("MaxKeys %d: %d shards holding %d in all, want %d", maxKeys, len(l.shards), total, want)
		}
	}
}

// TestTakeAllocs: a take on a held key allocates nothing.
func TestTakeAllocs(t *testing.T) {
	l := New(Options{})
	rule := Rule{Limit: MaxLimit, Per: time.Second, Burst: MaxLimit}
	key := "tool:generate_qr|client:abc"
	l.Take(rule, key)
	if n := testing.AllocsPerRun(1000, func() { l.Take(rule, key) }); n != 0 {
		t.Fatalf("Take on a held key: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { l.Refund(rule, key) }); n != 0 {
		t.Fatalf("Refund: %v allocations, want 0", n)
	}
}

// TestRealClock: with time.Now, a bucket empties and refills.
func TestRealClock(t *testing.T) {
	l := New(Options{})
	rule := Rule{Limit: 1, Per: 20 * time.Millisecond, Burst: 2}
	takeN(l, rule, "k", 2)
	r := l.Take(rule, "k")
	if r.Allowed || r.RetryAfter <= 0 || r.RetryAfter > rule.Per {
		t.Fatalf("an empty bucket: %+v, want denied within %v", r, rule.Per)
	}
	time.Sleep(r.RetryAfter)
	if r := l.Take(rule, "k"); !r.Allowed {
		t.Fatalf("after RetryAfter on the real clock: %+v, want allowed", r)
	}
}
