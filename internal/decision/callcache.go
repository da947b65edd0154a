package decision

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// callCache answers repeated single-target decisions (tools/call,
// prompts/get, ...) without building the Rego input: it is keyed on the
// request's strings and on the identity of the token's key term, which a
// Token builds once per policy (termFor, keyTermFor). Two requests with
// equal keys have equal inputs, so they have the same decision; a request
// it does not know goes to the input-keyed resultCache, which also finds
// equal tokens that are different objects. It is small and emptied when
// full: a session repeats a handful of keys.
type callCache struct {
	mu sync.Mutex
	m  map[callKey]*Result
}

// callCacheSize bounds the entries; the cache is emptied when it is full.
const callCacheSize = 4096

type callKey struct {
	resource, method, target string
	token                    *ast.Term // nil: anonymous
	args                     string    // raw JSON arguments, when the policy reads them
	tool                     *ToolMeta // what the list said of the tool (Input.TargetMeta), by identity
}

func newCallCache() *callCache { return &callCache{m: make(map[callKey]*Result)} }

func (c *callCache) get(k callKey) *Result {
	c.mu.Lock()
	r := c.m[k]
	c.mu.Unlock()
	return r
}

func (c *callCache) put(k callKey, r *Result) {
	c.mu.Lock()
	if len(c.m) >= callCacheSize {
		clear(c.m)
	}
	c.m[k] = r
	c.mu.Unlock()
}

// callKeyFor returns the call cache key of in, or false when in is not a
// single-target request the call cache can key (lists, arguments given as
// a Rego value, a revoked caller). in.Class is not part of the key: it must be
// ClassifyMethod(in.Method).
func (p *Policy) callKeyFor(in *Input, keyTok *ast.Term) (callKey, bool) {
	if in.Class.Operation == OpList || in.Arguments != nil || in.Revoked != nil || in.Budget != nil {
		return callKey{}, false
	}
	k := callKey{resource: in.Resource, method: in.Method, target: in.Target, tool: in.TargetMeta}
	if in.Token != nil {
		k.token = keyTok
	}
	if p.readsArgs {
		k.args = string(in.RawArguments)
	}
	return k, true
}
