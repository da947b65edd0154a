package core

import (
	"slices"
	"sync"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/pep"
)

// tokenMemo remembers, per verified token, the policy view of its claims
// and the pep.Caller allowed answers carry. The verified-token cache hands
// out the same *token.Claims for the same token, so building both once per
// token (not once per request) saves most of the input construction and
// keeps the caller off the per-request allocations. Bounded: when full, one
// entry (chosen by map order, effectively at random) makes room, so memory
// stays level.
type tokenMemo struct {
	mu  sync.Mutex
	m   map[*token.Claims]memoEntry
	max int
}

// memoEntry is what tokenMemo keeps of one token; both values are shared
// by every request with that token and never modified.
type memoEntry struct {
	tok    *decision.Token
	caller *pep.Caller
}

func newTokenMemo(max int) *tokenMemo {
	return &tokenMemo{m: make(map[*token.Claims]memoEntry), max: max}
}

// get returns the policy view and the caller of c.
func (t *tokenMemo) get(c *token.Claims) (*decision.Token, *pep.Caller, error) {
	t.mu.Lock()
	v, ok := t.m[c]
	t.mu.Unlock()
	if ok {
		return v.tok, v.caller, nil
	}
	tok, err := policyToken(c)
	if err != nil {
		return nil, nil, err
	}
	v = memoEntry{tok: tok, caller: callerOf(c)}
	t.mu.Lock()
	for k := range t.m {
		if len(t.m) < t.max {
			break
		}
		delete(t.m, k)
	}
	t.m[c] = v
	t.mu.Unlock()
	return v.tok, v.caller, nil
}

// callerOf is the caller an allowed answer names for verified claims: the
// identity claims, never the token. Its slices are copies, so a PEP that
// changes its Caller cannot change the cached claims.
func callerOf(c *token.Claims) *pep.Caller {
	out := &pep.Caller{
		Subject:  c.Subject,
		ClientID: c.ClientID,
		Scopes:   slices.Clone(c.Scopes),
		Grant:    c.Grant,
		Issuer:   c.Issuer,
	}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	if !c.ExpiresAt.IsZero() {
		out.ExpiresAt = c.ExpiresAt.Unix()
	}
	if len(c.Act) > 0 {
		out.Act = make([]pep.Actor, len(c.Act))
		for i, a := range c.Act {
			out.Act[i] = pep.Actor{Subject: a.Subject, ClientID: a.ClientID}
		}
	}
	return out
}
