package decision

import (
	"maps"
	"slices"
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

// ReadsArguments reports whether a rule may read call arguments
// (input.tool.arguments, input.target.arguments, or input as a whole).
func (p *Policy) ReadsArguments() bool { return p.readsArgs }

// readsArguments is a conservative static check over the modules: it is
// false only when every reference to input names a path that cannot reach
// the call arguments. Imports of input, input as a whole, dynamic keys
// (input[x], input.tool[x]) and input.tool / input.target as values all
// count as reading them.
func readsArguments(modules []*ast.Module) bool { return anyInputRef(modules, refReadsArguments) }

// readsItems is readsArguments for input.items (list methods): false only
// when no rule can read it (the default policy reads input.names).
func readsItems(modules []*ast.Module) bool {
	return anyInputRef(modules, func(r ast.Ref) bool {
		if len(r) < 2 {
			return true
		}
		k, ok := r[1].Value.(ast.String)
		return !ok || k == "items"
	})
}

// anyInputRef reports whether reads holds for a reference into input in
// the modules. An import of input, or input used as a value (a bare Var:
// x := input, walk(input)), counts as every read.
func anyInputRef(modules []*ast.Module, reads func(ast.Ref) bool) bool {
	found := false
	for _, m := range modules {
		for _, imp := range m.Imports {
			if r, ok := imp.Path.Value.(ast.Ref); ok && r.HasPrefix(ast.InputRootRef) {
				return true
			}
		}
		ast.NewGenericVisitor(func(x any) bool {
			if found {
				return true
			}
			switch x := x.(type) {
			case ast.Ref:
				if x.HasPrefix(ast.InputRootRef) {
					found = reads(x)
					return true // the head var is not a bare input
				}
			case ast.Var:
				found = x.Equal(ast.InputRootDocument.Value)
			}
			return found
		}).Walk(m)
		if found {
			return true
		}
	}
	return false
}

func refReadsArguments(r ast.Ref) bool {
	if len(r) < 2 {
		return true
	}
	k, ok := r[1].Value.(ast.String)
	if !ok {
		return true
	}
	if k != "tool" && k != "target" {
		return false
	}
	if len(r) < 3 {
		return true
	}
	f, ok := r[2].Value.(ast.String)
	return !ok || f == "arguments"
}

// ReadClaims reports which token claims the policy's rules can read: all
// (true, nil) or only the named ones (false, names). Unread claims are left
// out of input.token.claims.
func (p *Policy) ReadClaims() (all bool, names []string) {
	if p.claimKeys == nil {
		return true, nil
	}
	for _, k := range p.claimKeys.names {
		names = append(names, string(k.Value.(ast.String)))
	}
	return false, names
}

// claimKeys is the set of claim names a policy reads, as Rego string terms.
type claimKeys struct {
	names []*ast.Term
}

// claimsRead is a conservative static check over the modules: it returns
// the claims a rule can read through input.token.claims.<name>, or nil when
// a rule may read any claim: an import of input, input, input.token or
// input.token.claims as a value (passed to a function, iterated, walked),
// or a dynamic key at any of those levels.
func claimsRead(modules []*ast.Module) *claimKeys {
	names := map[string]bool{}
	all := anyInputRef(modules, func(r ast.Ref) bool {
		name, ok := refClaim(r)
		if ok && name != "" {
			names[name] = true
		}
		return !ok
	})
	if all {
		return nil
	}
	keys := &claimKeys{}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		keys.names = append(keys.names, ast.StringTerm(n))
	}
	return keys
}

// refClaim classifies a reference into input: ok with name "" when it
// cannot reach a claim, ok with a name when it reads that one claim, not ok
// when it may read any.
func refClaim(r ast.Ref) (name string, ok bool) {
	key := func(i int) (string, bool) {
		if len(r) <= i {
			return "", false
		}
		s, ok := r[i].Value.(ast.String)
		return string(s), ok
	}
	k, ok := key(1)
	if !ok {
		return "", false // input or input[x]
	}
	if k != "token" {
		return "", true
	}
	if k, ok = key(2); !ok {
		return "", false // input.token or input.token[x]
	}
	if k != "claims" {
		return "", true
	}
	if k, ok = key(3); !ok {
		return "", false // input.token.claims or input.token.claims[x]
	}
	return k, true
}

// SubjectKeyed reports whether the policy reads the token's subject only
// as a key into data, so that its cached decisions are shared among
// subjects the lookups treat alike (see subjectLookups).
func (p *Policy) SubjectKeyed() bool { return p.subjects != nil }
