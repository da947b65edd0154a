package ratelimit

import (
	"hash/maphash"
	"math/bits"
	"strings"
	"sync"
	"time"
)

// DefaultMaxKeys is Options.MaxKeys when it is not set.
const DefaultMaxKeys = 100_000

const (
	// maxShards bounds the lock shards; minShardKeys is the fewest keys a
	// shard holds, so that the per-shard bound stays close to MaxKeys.
	maxShards    = 64
	minShardKeys = 256
	// expireScan is how many of the least recently used buckets an
	// insertion looks at for full ones to drop.
	expireScan = 8
	// maxInstant bounds the clock's readings (±146 years from New), so
	// that an instant plus MaxFill cannot overflow.
	maxInstant = 1 << 62
	// none is the nil index of the slot lists.
	none = -1
)

// Options configures a Limiter.
type Options struct {
	// MaxKeys bounds the buckets held (0 or negative = DefaultMaxKeys):
	// a bucket costs about 110 bytes plus its key (TestMemoryBound: 158
	// with a 38-byte key), so the default is some 16 MB at most.
	MaxKeys int
	// Now is the clock (nil = time.Now). Tests set a fake one; a clock
	// that goes back freezes the buckets until it passes again the
	// latest reading they saw.
	Now func() time.Time
}

// Result is the outcome of Limiter.Take.
type Result struct {
	// Allowed: the call may proceed; a token was taken.
	Allowed bool
	// RetryAfter, when denied, is the exact wait (rounded up to the
	// nanosecond) until a token is available; 0 when allowed.
	RetryAfter time.Duration
	// Remaining is the whole tokens left after the take (0 when denied).
	Remaining int
}

// Stats describes a Limiter's memory, for metrics.
type Stats struct {
	// Keys is the buckets held now, at most MaxKeys.
	Keys int
	// Expired counts the buckets dropped because they were full again:
	// exact, a full bucket is a new one.
	Expired uint64
	// Evicted counts the buckets dropped, not full, to stay within
	// MaxKeys: each may have let its caller up to a burst early.
	Evicted uint64
}

// Limiter holds token buckets keyed by caller, within a memory bound. It
// is safe for concurrent use.
type Limiter struct {
	now    func() time.Time
	epoch  time.Time
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

// New returns an empty Limiter.
func New(opts Options) *Limiter {
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	n := 1
	for n*2 <= maxShards && n*2*minShardKeys <= maxKeys {
		n *= 2
	}
	l := &Limiter{
		now:    opts.Now,
		seed:   maphash.MakeSeed(),
		mask:   uint64(n - 1),
		shards: make([]shard, n),
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.epoch = l.now()
	for i := range l.shards {
		s := &l.shards[i]
		s.max = maxKeys / n
		if i < maxKeys%n {
			s.max++
		}
		s.index = make(map[string]int32)
		s.head, s.tail, s.free = none, none, none
		s.last = -maxInstant
	}
	return l
}

// Take takes one token from the bucket of rule and key, creating it (full)
// if needed, and reports whether the call may proceed. A denied take
// consumes nothing. The key is opaque: callers build it, e.g.
// "tool:generate_qr|client:abc", and must put in it whatever tells two
// rules apart, since one key has one bucket. The key need not outlive the
// call (a string over a reused buffer is fine): a bucket keeps a copy. When a key's rule changes
// (a reload), its bucket keeps its whole tokens, at most the new burst (a
// full bucket is full under the new rule).
//
// A rule Validate refuses denies, with RetryAfter 0.
func (l *Limiter) Take(rule Rule, key string) Result {
	rt, ok := rule.derive()
	if !ok {
		return Result{}
	}
	now := l.clock()
	s := l.shard(key)
	s.mu.Lock()
	now = s.advance(now)
	i, found := s.index[key]
	if found {
		s.touch(i)
	} else {
		i = s.insert(key, now)
	}
	e := &s.slots[i]
	if !found || !e.sameRule(&rt) {
		e.reset(&rt, now)
	}
	r := e.take(&rt, now)
	s.mu.Unlock()
	return r
}

// Refund gives back one token to the bucket of rule and key, as if a Take
// had not happened: for a call a later check refused after its Take was
// allowed (say, a second rule denied). A bucket never holds more than
// its burst: a refund to a full (or absent) bucket is lost.
func (l *Limiter) Refund(rule Rule, key string) {
	rt, ok := rule.derive()
	if !ok {
		return
	}
	now := l.clock()
	s := l.shard(key)
	s.mu.Lock()
	now = s.advance(now)
	if i, found := s.index[key]; found {
		e := &s.slots[i]
		if !e.sameRule(&rt) {
			e.reset(&rt, now)
		}
		e.full, e.frac = sub(e.full, e.frac, rt.tq, rt.tr, rt.limit)
		if e.isFull(now) {
			s.remove(i)
			s.expired++
		}
	}
	s.mu.Unlock()
}

// Stats reports the buckets held and dropped so far.
func (l *Limiter) Stats() Stats {
	var st Stats
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		st.Keys += len(s.index)
		st.Expired += s.expired
		st.Evicted += s.evicted
		s.mu.Unlock()
	}
	return st
}

// clock is the time since New in nanoseconds, within ±maxInstant.
func (l *Limiter) clock() int64 {
	d := int64(l.now().Sub(l.epoch))
	return min(max(d, -maxInstant), maxInstant)
}

func (l *Limiter) shard(key string) *shard {
	return &l.shards[maphash.String(l.seed, key)&l.mask]
}

// shard is a lock and the buckets of the keys hashed to it: slots indexed
// by key, linked from the most (head) to the least (tail) recently used,
// the unused ones in a free list.
type shard struct {
	mu      sync.Mutex
	index   map[string]int32
	slots   []entry
	head    int32
	tail    int32
	free    int32
	max     int
	last    int64 // the latest clock reading
	expired uint64
	evicted uint64
	_       [40]byte // a shard per cache line pair: no false sharing
}

// entry is one bucket: the instant it is full again, full + frac/limit
// ns (0 <= frac < limit), under the rule it was computed with.
type entry struct {
	key        string
	full, frac int64
	limit, per int64
	burst      int64
	prev, next int32
}

// advance makes the shard's time monotonic: a reading before the latest
// one is the latest one, so a clock going back neither mints tokens nor
// takes them; time stands still until it catches up.
func (s *shard) advance(now int64) int64 {
	if now < s.last {
		return s.last
	}
	s.last = now
	return now
}

func (e *entry) sameRule(rt *rate) bool {
	return e.limit == rt.limit && e.per == rt.per && e.burst == rt.burst
}

// isFull: the bucket holds its burst at now.
func (e *entry) isFull(now int64) bool {
	return e.full < now || (e.full == now && e.frac == 0)
}

// reset puts e under rt, keeping the whole tokens it holds at now under
// its own rule (none for a new entry: it is set full), at most rt's burst.
func (e *entry) reset(rt *rate, now int64) {
	missing := int64(0)
	if e.limit != 0 && !e.isFull(now) {
		tokens := e.burst - ceilTokens(e.full-now, e.frac, e.limit, e.per)
		missing = rt.burst - min(max(tokens, 0), rt.burst)
	}
	f := missing * rt.tr // < MaxLimit², fits
	e.full = now + missing*rt.tq + f/rt.limit
	e.frac = f % rt.limit
	e.limit, e.per, e.burst = rt.limit, rt.per, rt.burst
}

// take is the token bucket as a theoretical arrival time (GCRA): the
// bucket is full at e.full; a token moves that one interval later, from
// now if it had passed; the take is allowed if it is then at most a burst
// of intervals ahead of now.
func (e *entry) take(rt *rate, now int64) Result {
	ns, frac := e.full, e.frac
	if ns < now { // full: e.full + e.frac/limit < now
		ns, frac = now, 0
	}
	ns, frac = add(ns, frac, rt.tq, rt.tr, rt.limit)
	ahead := ns - now
	if ahead > rt.bq || (ahead == rt.bq && frac > rt.br) {
		// Denied. A take is allowed again when ahead (which stands still
		// meanwhile) is one burst: after ahead - burst × interval.
		w, wf := sub(ahead, frac, rt.bq, rt.br, rt.limit)
		if wf > 0 {
			w++
		}
		return Result{RetryAfter: time.Duration(w)}
	}
	e.full, e.frac = ns, frac
	return Result{Allowed: true, Remaining: int(rt.burst - ceilTokens(ahead, frac, rt.limit, rt.per))}
}

// add is (ns + frac/limit) + (dq + dr/limit), normalised.
func add(ns, frac, dq, dr, limit int64) (int64, int64) {
	ns, frac = ns+dq, frac+dr
	if frac >= limit {
		ns, frac = ns+1, frac-limit
	}
	return ns, frac
}

// sub is (ns + frac/limit) - (dq + dr/limit), normalised.
func sub(ns, frac, dq, dr, limit int64) (int64, int64) {
	ns, frac = ns-dq, frac-dr
	if frac < 0 {
		ns, frac = ns-1, frac+limit
	}
	return ns, frac
}

// ceilTokens is how many tokens, rounded up, the span ns + frac/limit
// (0 <= it <= a burst of intervals) is worth: (ns × limit + frac) / per,
// in 128 bits since ns × limit may not fit in 64.
func ceilTokens(ns, frac, limit, per int64) int64 {
	hi, lo := bits.Mul64(uint64(ns), uint64(limit))
	lo, carry := bits.Add64(lo, uint64(frac), 0)
	hi += carry
	q, r := bits.Div64(hi, lo, uint64(per)) // q <= burst: no overflow
	if r != 0 {
		q++
	}
	return int64(q)
}

// touch moves slot i to the head of the list.
func (s *shard) touch(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.pushFront(i)
}

// insert makes a slot for key at the head of the list, after dropping
// the full buckets among the least recently used ones and, if the shard
// is still at its bound, the least recently used bucket.
func (s *shard) insert(key string, now int64) int32 {
	for i, n := s.tail, 0; i != none && n < expireScan; n++ {
		prev := s.slots[i].prev
		if s.slots[i].isFull(now) {
			s.remove(i)
			s.expired++
		}
		i = prev
	}
	if len(s.index) >= s.max {
		s.remove(s.tail)
		s.evicted++
	}
	var i int32
	if s.free != none {
		i = s.free
		s.free = s.slots[i].next
	} else {
		if len(s.slots) == cap(s.slots) {
			grown := make([]entry, len(s.slots), min(max(2*cap(s.slots), 16), s.max))
			copy(grown, s.slots)
			s.slots = grown
		}
		i = int32(len(s.slots))
		s.slots = append(s.slots, entry{})
	}
	kept := strings.Clone(key) // not the caller's buffer: key does not escape
	s.slots[i] = entry{key: kept}
	s.index[kept] = i
	s.pushFront(i)
	return i
}

// remove drops slot i: out of the index and the list, into the free list.
func (s *shard) remove(i int32) {
	delete(s.index, s.slots[i].key)
	s.unlink(i)
	s.slots[i] = entry{next: s.free}
	s.free = i
}

func (s *shard) unlink(i int32) {
	e := &s.slots[i]
	if e.prev != none {
		s.slots[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next != none {
		s.slots[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
}

func (s *shard) pushFront(i int32) {
	e := &s.slots[i]
	e.prev, e.next = none, s.head
	if s.head != none {
		s.slots[s.head].prev = i
	} else {
		s.tail = i
	}
	s.head = i
}
