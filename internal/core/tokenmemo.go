package core

import (
	"sync"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/token"
)

// tokenMemo remembers the policy view of verified tokens. The verified-token
// cache hands out the same *token.Claims for the same token, so building the
// Rego value of its claims once per token (not once per request) saves most
// of the input construction. Bounded: when full, one entry (chosen by map
// order, effectively at random) makes room, so memory stays level.
type tokenMemo struct {
	mu  sync.Mutex
	m   map[*token.Claims]*decision.Token
	max int
}

func newTokenMemo(max int) *tokenMemo {
	return &tokenMemo{m: make(map[*token.Claims]*decision.Token), max: max}
}

func (t *tokenMemo) get(c *token.Claims) (*decision.Token, error) {
	t.mu.Lock()
	v, ok := t.m[c]
	t.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := policyToken(c)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	for k := range t.m {
		if len(t.m) < t.max {
			break
		}
		delete(t.m, k)
	}
	t.m[c] = v
	t.mu.Unlock()
	return v, nil
}
