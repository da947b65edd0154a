package token

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCacheEntries is the size of a Cache created with maxEntries <= 0.
const DefaultCacheEntries = 10000

// Cache is a bounded cache of verified tokens, shared by verifiers and safe
// for concurrent use. Entries are keyed by the SHA-256 of the raw token plus
// the verifier's configuration (so different resources, issuers or audiences
// never share an entry), and expire at the token's exp (checked on every
// read; the clock skew is not added). When full, inserting evicts the entry
// with the earlier expiry among two sampled at random (O(1)).
//
// Only successful verifications are cached. The cached *Claims is shared:
// callers must not modify it.
type Cache struct {
	shards   []cacheShard
	mask     uint32
	perShard int
	maxTTL   time.Duration
}

// CacheConfig configures NewCacheWithConfig.
type CacheConfig struct {
	// MaxEntries bounds the cache; <= 0 = DefaultCacheEntries.
	MaxEntries int
	// MaxTTL, if > 0, also bounds how long an entry is served after it was
	// verified (e.g. to limit how long a token signed by a key that has since
	// been removed from the JWKS keeps being accepted). 0 = until exp.
	MaxTTL time.Duration
}

type cacheKey struct {
	sum   [32]byte
	scope uint64
}

type cacheEntry struct {
	key     cacheKey
	claims  *Claims
	expires int64 // unix nanoseconds
}

type cacheShard struct {
	mu      sync.RWMutex
	idx     map[cacheKey]int32
	entries []cacheEntry
	hits    atomic.Uint64
	misses  atomic.Uint64
	_       [56]byte // pads a shard to 128 bytes on 64-bit platforms (false sharing)
}

// NewCache returns a cache holding at most maxEntries tokens
// (maxEntries <= 0 = DefaultCacheEntries).
func NewCache(maxEntries int) *Cache {
	return NewCacheWithConfig(CacheConfig{MaxEntries: maxEntries})
}

// NewCacheWithConfig returns a cache configured by cfg.
func NewCacheWithConfig(cfg CacheConfig) *Cache {
	n := cfg.MaxEntries
	if n <= 0 {
		n = DefaultCacheEntries
	}
	shards := 1
	if n >= 1024 {
		shards = 16
	}
	c := &Cache{
		shards:   make([]cacheShard, shards),
		mask:     uint32(shards - 1),
		perShard: n / shards,
		maxTTL:   max(cfg.MaxTTL, 0),
	}
	for i := range c.shards {
		c.shards[i].idx = make(map[cacheKey]int32)
	}
	return c
}

func (c *Cache) shard(k *cacheKey) *cacheShard {
	return &c.shards[uint32(k.sum[0])&c.mask]
}

// get returns the cached claims, or nil if absent or expired at now.
func (c *Cache) get(k *cacheKey, now int64) *Claims {
	s := c.shard(k)
	s.mu.RLock()
	i, ok := s.idx[*k]
	var cl *Claims
	var exp int64
	if ok {
		cl, exp = s.entries[i].claims, s.entries[i].expires
	}
	s.mu.RUnlock()
	if !ok {
		s.misses.Add(1)
		return nil
	}
	if now >= exp {
		s.misses.Add(1)
		s.mu.Lock()
		if i, ok := s.idx[*k]; ok && now >= s.entries[i].expires {
			s.removeAt(i)
		}
		s.mu.Unlock()
		return nil
	}
	s.hits.Add(1)
	return cl
}

// put stores claims until expires (unix ns).
func (c *Cache) put(k *cacheKey, cl *Claims, expires, now int64) {
	if c.maxTTL > 0 {
		expires = min(expires, now+int64(c.maxTTL))
	}
	if expires <= now {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.idx[*k]; ok {
		s.entries[i].claims, s.entries[i].expires = cl, expires
		return
	}
	for len(s.entries) >= c.perShard && len(s.entries) > 0 {
		a := rand.IntN(len(s.entries))
		b := rand.IntN(len(s.entries))
		if s.entries[b].expires < s.entries[a].expires {
			a = b
		}
		s.removeAt(int32(a))
	}
	if c.perShard == 0 {
		return
	}
	s.idx[*k] = int32(len(s.entries))
	s.entries = append(s.entries, cacheEntry{key: *k, claims: cl, expires: expires})
}

// removeAt deletes entries[i] by moving the last entry into its place.
func (s *cacheShard) removeAt(i int32) {
	last := int32(len(s.entries) - 1)
	delete(s.idx, s.entries[i].key)
	if i != last {
		s.entries[i] = s.entries[last]
		s.idx[s.entries[i].key] = i
	}
	s.entries[last] = cacheEntry{}
	s.entries = s.entries[:last]
}

// Len returns the number of entries (expired ones not yet evicted included).
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}

// Hits returns the number of lookups answered from the cache.
func (c *Cache) Hits() uint64 {
	var n uint64
	for i := range c.shards {
		n += c.shards[i].hits.Load()
	}
	return n
}

// Misses returns the number of lookups not answered from the cache
// (absent or expired).
func (c *Cache) Misses() uint64 {
	var n uint64
	for i := range c.shards {
		n += c.shards[i].misses.Load()
	}
	return n
}
