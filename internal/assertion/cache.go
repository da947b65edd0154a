package assertion

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultCacheEntries bounds a Cache.
const DefaultCacheEntries = 4096

// Cache hands out signed assertions for claims, signing each set of
// claims once for half the assertion's lifetime: signing (ECDSA, EdDSA)
// is the dearest step of a forwarded request, and a caller's identity
// does not change between its requests. The claims it caches carry no
// DecisionID (that would make each unique); callers send the decision id
// beside the assertion. It is safe for concurrent use.
type Cache struct {
	s   *Signer
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[string]cached
}

type cached struct {
	token   string
	refresh time.Time // sign anew from here on
}

// NewCache returns a cache of s's assertions holding at most max claim
// sets (0 = DefaultCacheEntries); when full, it starts over.
func NewCache(s *Signer, max int) *Cache {
	if max <= 0 {
		max = DefaultCacheEntries
	}
	return &Cache{s: s, max: max, now: time.Now, m: map[string]cached{}}
}

// Sign returns an assertion for c (c.DecisionID must be empty): a cached
// one while it has more than half of its lifetime left, else a new one.
func (c *Cache) Sign(cl Claims) (string, error) {
	key := cacheKey(&cl)
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Before(e.refresh) {
		return e.token, nil
	}
	tok, err := c.s.Sign(cl)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[key] = cached{token: tok, refresh: now.Add(c.s.ttl / 2)}
	c.mu.Unlock()
	return tok, nil
}

// cacheKey is every claim that goes into an assertion, each prefixed by
// its length, so that no two claim sets share a key.
func cacheKey(c *Claims) string {
	var b strings.Builder
	add := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	add(c.Subject)
	add(c.ClientID)
	add(c.Grant)
	add(c.Audience)
	add(c.DecisionID)
	b.WriteString(strconv.Itoa(len(c.Scopes)))
	for _, s := range c.Scopes {
		add(s)
	}
	b.WriteString(strconv.Itoa(len(c.Act)))
	for _, a := range c.Act {
		add(a.Subject)
		add(a.ClientID)
	}
	return b.String()
}
