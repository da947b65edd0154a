package dpop

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ReplayCache remembers the proofs a [Verifier] accepted, so that each is
// accepted once (RFC 9449 §11.1). Implementations are safe for concurrent
// use.
type ReplayCache interface {
	// Claim records key (a SHA-256 digest) for owner until `until` and
	// reports false when it was already recorded, unless for the same
	// non-empty owner (the HTTP request whose decisions share one proof).
	// An error means the cache could not answer; the proof must then be
	// refused (fail closed).
	Claim(ctx context.Context, key [32]byte, owner string, until time.Time) (fresh bool, err error)
}

// holdLimiter is implemented by caches that forget entries after a fixed
// time whatever `until` says (a KV bucket's TTL): [New] refuses a window
// that such a cache cannot cover.
type holdLimiter interface {
	maxHold() time.Duration
}

// DefaultMemoryReplayEntries is the bound of a [MemoryReplay] made with
// max <= 0. An entry costs about 100 bytes.
const DefaultMemoryReplayEntries = 100_000

// MemoryReplay is a bounded in-process [ReplayCache] for one replica. It
// keeps each key until its `until` and sweeps the expired ones (those that
// expire first) when a key is claimed. When it holds max unexpired keys, it
// refuses new ones with [ErrReplayCacheFull] rather than forget one that
// may still be replayed (fail closed). It is safe for concurrent use.
type MemoryReplay struct {
	mu      sync.Mutex
	max     int
	entries map[[32]byte]*replayEntry
	byUntil replayHeap
	now     func() time.Time
}

type replayEntry struct {
	key   [32]byte
	owner string
	until int64 // unix nanoseconds
	index int   // in byUntil
}

// NewMemoryReplay returns an empty cache of at most max keys
// ([DefaultMemoryReplayEntries] when max <= 0).
func NewMemoryReplay(max int) *MemoryReplay {
	if max <= 0 {
		max = DefaultMemoryReplayEntries
	}
	return &MemoryReplay{max: max, entries: make(map[[32]byte]*replayEntry), now: time.Now}
}

// Claim implements [ReplayCache]. It never waits and never fails but when
// full ([ErrReplayCacheFull]).
func (m *MemoryReplay) Claim(_ context.Context, key [32]byte, owner string, until time.Time) (bool, error) {
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	if e, ok := m.entries[key]; ok {
		return owner != "" && e.owner == owner, nil
	}
	if len(m.entries) >= m.max {
		return false, fmt.Errorf("%w (%d entries, the first expires in %s)", ErrReplayCacheFull,
			len(m.entries), time.Duration(m.byUntil[0].until-now).Round(time.Millisecond))
	}
	e := &replayEntry{key: key, owner: owner, until: until.UnixNano()}
	m.entries[key] = e
	heap.Push(&m.byUntil, e)
	return true, nil
}

// Len returns the number of unexpired keys held.
func (m *MemoryReplay) Len() int {
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	return len(m.entries)
}

// forget removes key (a claim whose proof was finally refused elsewhere).
func (m *MemoryReplay) forget(key [32]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[key]; ok {
		heap.Remove(&m.byUntil, e.index)
		delete(m.entries, key)
	}
}

// sweep drops the entries whose until is before now. m.mu is held.
func (m *MemoryReplay) sweep(now int64) {
	for len(m.byUntil) > 0 && m.byUntil[0].until < now {
		e := heap.Pop(&m.byUntil).(*replayEntry)
		delete(m.entries, e.key)
	}
}

// replayHeap is a min-heap of entries by until.
type replayHeap []*replayEntry

func (h replayHeap) Len() int           { return len(h) }
func (h replayHeap) Less(i, j int) bool { return h[i].until < h[j].until }
func (h replayHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *replayHeap) Push(x any) {
	e := x.(*replayEntry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *replayHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return e
}

// LayeredReplay asks a replica's [MemoryReplay] first, then a cache shared
// by all replicas (a [KVReplay]): a proof replayed to the same replica is
// refused without a round trip, one replayed to another replica by the
// shared cache. When the memory cache is full, the shared cache alone
// decides; when the shared cache fails, the memory claim is withdrawn and
// the error returned.
type LayeredReplay struct {
	local  *MemoryReplay
	shared ReplayCache
}

// NewLayeredReplay combines local (per replica) and shared (all replicas).
func NewLayeredReplay(local *MemoryReplay, shared ReplayCache) (*LayeredReplay, error) {
	if local == nil || shared == nil {
		return nil, errors.New("dpop: a layered replay cache needs a memory cache and a shared cache")
	}
	return &LayeredReplay{local: local, shared: shared}, nil
}

// Claim implements [ReplayCache].
func (l *LayeredReplay) Claim(ctx context.Context, key [32]byte, owner string, until time.Time) (bool, error) {
	fresh, err := l.local.Claim(ctx, key, owner, until)
	switch {
	case err != nil && !errors.Is(err, ErrReplayCacheFull):
		return false, err
	case err == nil && !fresh:
		return false, nil
	}
	claimed := err == nil
	fresh, err = l.shared.Claim(ctx, key, owner, until)
	if err != nil {
		if claimed {
			l.local.forget(key)
		}
		return false, err
	}
	return fresh, nil
}

func (l *LayeredReplay) maxHold() time.Duration {
	if h, ok := l.shared.(holdLimiter); ok {
		return h.maxHold()
	}
	return 0
}
