package decision

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// ListMemoKey is what decides a list apart from its items: the resource,
// the method, and the identity of the token's key term (as the call cache
// keys it). Two lists with equal keys, decided by one Policy, and equal
// result bytes have the same filtered result.
type ListMemoKey struct {
	resource, method string
	token            *ast.Term // nil: anonymous
}

// listMemo remembers filtered lists by key and result bytes (a layer in
// front of the result cache, for the list filter, which owns the values).
// It is bounded by the bytes of the results it holds and emptied when
// full: a server answers the same list to every caller, and a caller
// repeats it.
type listMemo struct {
	mu    sync.Mutex
	m     map[ListMemoKey]map[string]any
	bytes int
}

// maxListMemoBytes bounds the list results a listMemo holds.
const maxListMemoBytes = 8 << 20

// ListMemoKeyFor returns the memo key of the list request in, or false
// when this policy memoizes nothing (its caches are off, or it is not
// deterministic), in is not a list, or its caller is revoked.
func (p *Policy) ListMemoKeyFor(in *Input) (ListMemoKey, bool) {
	if p.lists == nil || in.Class.Operation != OpList || in.Revoked != nil {
		return ListMemoKey{}, false
	}
	k := ListMemoKey{resource: in.Resource, method: in.Method}
	if in.Token != nil {
		_, k.token = p.tokenTerms(in)
	}
	return k, true
}

// ListMemo returns what ListMemoPut stored for k and result.
func (p *Policy) ListMemo(k ListMemoKey, result []byte) (any, bool) {
	p.lists.mu.Lock()
	defer p.lists.mu.Unlock()
	v, ok := p.lists.m[k][string(result)]
	if ok {
		p.cache.hits.Add(1)
	}
	return v, ok
}

// ListMemoPut stores v for k and result (a copy of result is kept).
func (p *Policy) ListMemoPut(k ListMemoKey, result []byte, v any) {
	if len(result) > maxListMemoBytes/16 {
		return
	}
	l := p.lists
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bytes+len(result) > maxListMemoBytes {
		clear(l.m)
		l.bytes = 0
	}
	inner := l.m[k]
	if inner == nil {
		inner = map[string]any{}
		l.m[k] = inner
	}
	if _, ok := inner[string(result)]; !ok {
		inner[string(result)] = v
		l.bytes += len(result)
	}
}
