package decision

import (
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A policy whose rules call no non-deterministic built-in (time.now_ns,
// http.send, rand.intn, uuid.rfc4122, ...) is a pure function of its input
// and its data. Data is fixed per Policy, so such a policy's results can be
// memoized by input: resultCache maps the input value, as far as the policy
// can read it, to its Result (layer 5 of "Caching" in the package
// documentation). A hit costs building and hashing the input plus one
// comparison, instead of an evaluation. A new Policy (reload) starts with
// an empty cache.

const cacheShards = 16

// tokenWeight is the weight of a token's claims in a cache entry;
// projectedTokenWeight when the input holds only the claims the policy
// reads (claimsRead).
const (
	tokenWeight          = 8
	projectedTokenWeight = 2
)

// The cache is bounded by weight, not entries: an entry weighs one unit
// plus one per list item plus tokenWeight when a token is present, so a
// few large tools/list inputs or many one-off tokens cannot hold more
// memory than intended (roughly 200-1000 bytes per unit).
type resultCache struct {
	shards  [cacheShards]cacheShard
	perMax  int // weight units per shard
	hits    atomic.Uint64
	misses  atomic.Uint64
	entries atomic.Int64
}

type cacheShard struct {
	mu     sync.Mutex
	m      map[uint64]cacheEntry
	order  []uint64 // insertion order (FIFO) for eviction
	weight int
}

type cacheEntry struct {
	input  ast.Value
	result *Result
	weight int
}

func newResultCache(max int) *resultCache {
	per := max / cacheShards
	if per < 1 {
		per = 1
	}
	c := &resultCache{perMax: per}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]cacheEntry)
	}
	return c
}

func (c *resultCache) get(h uint64, input ast.Value) *Result {
	s := &c.shards[h%cacheShards]
	s.mu.Lock()
	e, ok := s.m[h]
	s.mu.Unlock()
	if ok && keyEqual(e.input, input) {
		c.hits.Add(1)
		return e.result
	}
	c.misses.Add(1)
	return nil
}

// keyEqual reports whether two inputs are equal, as Compare would, but
// without sorting the new input's sets and objects: OPA compares them in
// sorted order, and sorting the thousand names of a list costs more than
// looking each one up. a is the cached input (sorted once, then kept), b
// the new one.
func keyEqual(a, b ast.Value) bool {
	switch x := a.(type) {
	case ast.Set:
		y, ok := b.(ast.Set)
		if !ok || x.Len() != y.Len() {
			return false
		}
		return !x.Until(func(t *ast.Term) bool { return !y.Contains(t) })
	case ast.Object:
		y, ok := b.(ast.Object)
		if !ok || x.Len() != y.Len() {
			return false
		}
		return !x.Until(func(k, v *ast.Term) bool {
			w := y.Get(k)
			return w == nil || !keyEqual(v.Value, w.Value)
		})
	default:
		return a.Compare(b) == 0
	}
}

func (c *resultCache) put(h uint64, input ast.Value, r *Result, weight int) {
	if weight > c.perMax {
		return // larger than a whole shard: not worth keeping
	}
	s := &c.shards[h%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[h]; ok {
		s.weight -= old.weight
		delete(s.m, h)
		c.entries.Add(-1)
		// its slot in order is skipped when it comes up (not in m, or re-added)
	}
	for s.weight+weight > c.perMax && len(s.order) > 0 {
		victim := s.order[0]
		s.order = s.order[1:]
		if e, ok := s.m[victim]; ok {
			s.weight -= e.weight
			delete(s.m, victim)
			c.entries.Add(-1)
		}
	}
	s.m[h] = cacheEntry{input: input, result: r, weight: weight}
	s.order = append(s.order, h)
	s.weight += weight
	c.entries.Add(1)
	if cap(s.order) > 4*c.perMax+64 {
		s.order = append([]uint64(nil), s.order...) // drop the consumed prefix
	}
}

// CacheStats are the decision cache counters of a policy.
type CacheStats struct {
	Enabled      bool
	Hits, Misses uint64
	Entries      int64
}

// CacheStats reports the decision cache of this policy.
func (p *Policy) CacheStats() CacheStats {
	if p.cache == nil {
		return CacheStats{}
	}
	return CacheStats{Enabled: true, Hits: p.cache.hits.Load(), Misses: p.cache.misses.Load(), Entries: p.cache.entries.Load()}
}
