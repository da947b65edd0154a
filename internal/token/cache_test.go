package token

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/devissuer"
)

func TestCacheHit(t *testing.T) {
	cache := NewCache(0)
	e := newEnv(t, "ES256", cache)
	raw := e.mint(t, devissuer.MintOptions{})
	a := mustVerify(t, e.v, raw)
	b := mustVerify(t, e.v, raw)
	if a != b {
		t.Fatal("second verification not served from the cache")
	}
	if cache.Hits() != 1 || cache.Misses() != 1 || cache.Len() != 1 {
		t.Fatalf("hits=%d misses=%d len=%d", cache.Hits(), cache.Misses(), cache.Len())
	}
	// The cached path still needs nothing from the network.
	e.idp.setMode("500")
	if c := mustVerify(t, e.v, raw); c != a {
		t.Fatal("miss")
	}
}

func TestCacheExpiredNotServed(t *testing.T) {
	cache := NewCache(0)
	e := newEnv(t, "ES256", cache)
	raw := e.mint(t, devissuer.MintOptions{TTL: time.Hour})
	mustVerify(t, e.v, raw)
	e.clock.advance(time.Hour + time.Second) // past exp, within skew
	// Not served from the cache (the entry expired at exp); the full check
	// still accepts it thanks to the skew, and does not re-cache it.
	mustVerify(t, e.v, raw)
	if cache.Hits() != 0 {
		t.Fatalf("served an expired entry (%d hits)", cache.Hits())
	}
	if cache.Len() != 0 {
		t.Fatalf("expired entry kept or re-added (len %d)", cache.Len())
	}
	e.clock.advance(time.Minute)
	_, err := e.v.Verify(context.Background(), raw)
	wantErr(t, err, CodeInvalidToken, descExpired)
}

func TestCacheMaxTTL(t *testing.T) {
	cache := NewCacheWithConfig(CacheConfig{MaxTTL: time.Minute})
	e := newEnv(t, "ES256", cache)
	raw := e.mint(t, devissuer.MintOptions{TTL: time.Hour})
	a := mustVerify(t, e.v, raw)
	e.clock.advance(2 * time.Minute)
	if b := mustVerify(t, e.v, raw); b == a {
		t.Fatal("entry served beyond MaxTTL")
	}
}

func TestCacheResourcesDoNotShare(t *testing.T) {
	cache := NewCache(0)
	e := newEnv(t, "ES256", cache)
	const other = "https://other.example.com/mcp"
	v2, err := NewVerifier(Config{Resource: other, Issuer: e.iss.IssuerURL(), JWKSURI: e.idp.jwksURI()}, e.keys, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	onlyFirst := e.mint(t, devissuer.MintOptions{})
	mustVerify(t, e.v, onlyFirst)
	_, err = v2.Verify(context.Background(), onlyFirst)
	wantErr(t, err, CodeInvalidToken, "audience mismatch: token is not for "+other)

	both := e.mint(t, devissuer.MintOptions{Audience: []string{testResource, other}})
	a := mustVerify(t, e.v, both)
	b := mustVerify(t, v2, both)
	if a == b {
		t.Fatal("two resources share a cache entry")
	}
	if cache.Len() != 3 {
		t.Fatalf("len %d, want 3", cache.Len())
	}
	// Same resource, different issuer configuration: separate too.
	v3, err := NewVerifier(Config{Resource: testResource, Issuer: "https://elsewhere.example.com", JWKSURI: e.idp.jwksURI()}, e.keys, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v3.Verify(context.Background(), onlyFirst)
	wantErr(t, err, CodeInvalidToken, descIssuerMismatch)
}

func testKey(i int) cacheKey {
	return cacheKey{sum: sha256.Sum256(fmt.Appendf(nil, "token-%d", i)), scope: 1}
}

func TestCacheBounded(t *testing.T) {
	for _, max := range []int{1, 10, 100, 1024, 5000} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			c := NewCache(max)
			now := time.Now().UnixNano()
			cl := &Claims{}
			for i := range 10 * max {
				k := testKey(i)
				c.put(&k, cl, now+int64(time.Hour)+int64(i), now)
				if c.Len() > max {
					t.Fatalf("len %d > %d after %d puts", c.Len(), max, i+1)
				}
			}
			// The most recent entry is always present.
			k := testKey(10*max - 1)
			if c.get(&k, now) != cl {
				t.Fatal("latest entry missing")
			}
		})
	}
}

func TestCacheEvictsExpiredFirst(t *testing.T) {
	c := NewCache(2)
	now := time.Now().UnixNano()
	k1, k2, k3 := testKey(1), testKey(2), testKey(3)
	c.put(&k1, &Claims{}, now+int64(time.Second), now)
	c.put(&k2, &Claims{}, now+int64(time.Hour), now)
	// Random-2 sampling may pick the same entry twice, so run it a few times.
	evictedLongLived := 0
	for range 50 {
		c.put(&k3, &Claims{}, now+int64(time.Hour), now)
		if c.get(&k2, now) == nil {
			evictedLongLived++
		}
		c.Purge()
		c.put(&k1, &Claims{}, now+int64(time.Second), now)
		c.put(&k2, &Claims{}, now+int64(time.Hour), now)
	}
	if evictedLongLived > 40 {
		t.Fatalf("the long-lived entry was evicted %d/50 times", evictedLongLived)
	}
}

func TestCacheGetPut(t *testing.T) {
	c := NewCache(10)
	now := time.Now().UnixNano()
	k := testKey(1)
	if c.get(&k, now) != nil {
		t.Fatal("empty cache hit")
	}
	cl := &Claims{Subject: "a"}
	c.put(&k, cl, now+10, now)
	if c.get(&k, now+9) != cl {
		t.Fatal("miss before expiry")
	}
	if c.get(&k, now+10) != nil {
		t.Fatal("hit at expiry")
	}
	if c.Len() != 0 {
		t.Fatal("expired entry not removed on read")
	}
	c.put(&k, cl, now-1, now) // already expired: not stored
	if c.Len() != 0 {
		t.Fatal("stored an expired entry")
	}
	other := k
	other.scope = 2
	c.put(&k, cl, now+100, now)
	if c.get(&other, now) != nil {
		t.Fatal("scope ignored")
	}
	c.Purge()
	if c.Len() != 0 || c.get(&k, now) != nil {
		t.Fatal("purge")
	}
}

func TestCacheConcurrent(t *testing.T) {
	c := NewCache(2048)
	now := time.Now().UnixNano()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 5000 {
				k := testKey(g*100000 + i%3000)
				if c.get(&k, now) == nil {
					c.put(&k, &Claims{}, now+int64(time.Hour), now)
				}
			}
		})
	}
	wg.Wait()
	if c.Len() > 2048 {
		t.Fatalf("len %d", c.Len())
	}
	if c.Hits()+c.Misses() != 16*5000 {
		t.Fatalf("hits %d + misses %d", c.Hits(), c.Misses())
	}
}

func TestVerifyCachedNoAllocs(t *testing.T) {
	e := newEnv(t, "ES256", NewCache(0))
	raw := e.mint(t, devissuer.MintOptions{})
	mustVerify(t, e.v, raw)
	ctx := context.Background()
	if n := testing.AllocsPerRun(200, func() { _, _ = e.v.Verify(ctx, raw) }); n > 0 {
		t.Fatalf("%v allocs on the cached path", n)
	}
}
