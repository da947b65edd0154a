package decision

import (
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A policy whose rules call no non-deterministic built-in (time.now_ns,
// http.send, rand.intn, uuid.rfc4122, ...) is a pure function of its input
// and its data. Data is fixed per Policy, so such a policy's results can be
// memoized by input: resultCache maps the exact input value to its Result.
// A hit costs building and hashing the input plus one comparison, instead of
// an evaluation. A new Policy (reload) starts with an empty cache.

const cacheShards = 16

type resultCache struct {
	shards  [cacheShards]cacheShard
	perMax  int
	hits    atomic.Uint64
	misses  atomic.Uint64
	entries atomic.Int64
}

type cacheShard struct {
	mu    sync.Mutex
	m     map[uint64]cacheEntry
	order []uint64 // insertion ring for eviction
	next  int
}

type cacheEntry struct {
	input  ast.Value
	result *Result
}

func newResultCache(max int) *resultCache {
	per := max / cacheShards
	if per < 1 {
		per = 1
	}
	c := &resultCache{perMax: per}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]cacheEntry, per)
		c.shards[i].order = make([]uint64, 0, per)
	}
	return c
}

func (c *resultCache) get(h uint64, input ast.Value) *Result {
	s := &c.shards[h%cacheShards]
	s.mu.Lock()
	e, ok := s.m[h]
	s.mu.Unlock()
	if ok && e.input.Compare(input) == 0 {
		c.hits.Add(1)
		return e.result
	}
	c.misses.Add(1)
	return nil
}

func (c *resultCache) put(h uint64, input ast.Value, r *Result) {
	s := &c.shards[h%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[h]; ok {
		s.m[h] = cacheEntry{input, r}
		return
	}
	if len(s.order) < c.perMax {
		s.order = append(s.order, h)
		c.entries.Add(1)
	} else {
		delete(s.m, s.order[s.next])
		s.order[s.next] = h
		s.next = (s.next + 1) % len(s.order)
	}
	s.m[h] = cacheEntry{input, r}
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

// Deterministic reports whether results may be memoized: no rule calls a
// non-deterministic built-in.
func (p *Policy) Deterministic() bool { return p.nondeterministic == "" }

// nondeterministicCall returns the first non-deterministic built-in the
// modules call, or "".
func nondeterministicCall(modules []*ast.Module) string {
	found := ""
	check := func(ref ast.Ref) {
		if found != "" {
			return
		}
		if bi, ok := ast.BuiltinMap[ref.String()]; ok && bi.Nondeterministic {
			found = ref.String()
		}
	}
	for _, m := range modules {
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if e.IsCall() {
				check(e.Operator())
			}
			return found != ""
		})
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if c, ok := t.Value.(ast.Call); ok && len(c) > 0 {
				if r, ok := c[0].Value.(ast.Ref); ok {
					check(r)
				}
			}
			return found != ""
		})
	}
	return found
}
