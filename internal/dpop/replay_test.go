package dpop

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func digest(i int) [32]byte { return sha256.Sum256(fmt.Appendf(nil, "key-%d", i)) }

func TestMemoryReplayBound(t *testing.T) {
	ctx := context.Background()
	now := testNow
	m := newTestMemory(3, func() time.Time { return now })
	claim := func(i int, until time.Duration) (bool, error) {
		return m.Claim(ctx, digest(i), "", testNow.Add(until))
	}
	for i, until := range []time.Duration{3 * time.Minute, time.Minute, 2 * time.Minute} {
		if fresh, err := claim(i, until); !fresh || err != nil {
			t.Fatalf("claim %d: %v, %v", i, fresh, err)
		}
	}
	if fresh, err := claim(1, time.Hour); fresh || err != nil {
		t.Fatalf("second claim of 1: %v, %v; want a replay", fresh, err)
	}
	// Full of unexpired entries: refuse, do not forget.
	if fresh, err := claim(3, time.Minute); fresh || !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("claim when full: %v, %v; want ErrReplayCacheFull", fresh, err)
	}
	for i := range 3 {
		if fresh, _ := claim(i, time.Hour); fresh {
			t.Fatalf("key %d was forgotten", i)
		}
	}
	// The entry that expires first goes first.
	now = testNow.Add(time.Minute + time.Second)
	if fresh, err := claim(3, 10*time.Minute); !fresh || err != nil {
		t.Fatalf("claim after the first expiry: %v, %v", fresh, err)
	}
	if fresh, err := claim(1, 10*time.Minute); fresh || !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("key 1 again: %v, %v; want full (2 and 0 unexpired, 3 new)", fresh, err)
	}
	if got := m.Len(); got != 3 {
		t.Fatalf("Len = %d; want 3", got)
	}
	// Entries live until their until, inclusive.
	now = testNow.Add(2 * time.Minute)
	if fresh, _ := claim(2, time.Hour); fresh {
		t.Fatal("key 2 forgotten at its until")
	}
	now = testNow.Add(time.Hour)
	if got := m.Len(); got != 0 {
		t.Fatalf("Len after every until = %d; want 0", got)
	}
	if fresh, err := claim(0, 2*time.Hour); !fresh || err != nil {
		t.Fatalf("claim after expiry: %v, %v", fresh, err)
	}
}

func TestMemoryReplayForget(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(10, func() time.Time { return testNow })
	for i := range 5 {
		if _, err := m.Claim(ctx, digest(i), "", testNow.Add(time.Duration(5-i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	m.forget(digest(2))
	m.forget(digest(99)) // absent: nothing
	if got := m.Len(); got != 4 {
		t.Fatalf("Len = %d; want 4", got)
	}
	if fresh, _ := m.Claim(ctx, digest(2), "", testNow.Add(time.Minute)); !fresh {
		t.Fatal("a forgotten key is still claimed")
	}
	// The heap still orders what is left.
	m.now = func() time.Time { return testNow.Add(3*time.Minute + time.Second) }
	if got := m.Len(); got != 2 { // keys 0 (5 min) and 1 (4 min)
		t.Fatalf("Len = %d; want 2", got)
	}
}

// Many goroutines claiming the same keys: each key is fresh exactly once.
func TestMemoryReplayConcurrent(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryReplay(0)
	var fresh atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 500 {
				ok, err := m.Claim(ctx, digest(i), "", time.Now().Add(time.Minute))
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					fresh.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := fresh.Load(); got != 500 {
		t.Fatalf("%d fresh claims of 500 keys", got)
	}
}

// failingCache is a shared cache that cannot answer (the KV case is
// tested against a stopped NATS server in kvreplay_test.go).
type failingCache struct{ calls int }

func (f *failingCache) Claim(context.Context, [32]byte, string, time.Time) (bool, error) {
	f.calls++
	return false, errors.New("shared cache down")
}

func TestLayeredReplay(t *testing.T) {
	ctx := context.Background()
	clock := func() time.Time { return testNow }
	until := testNow.Add(time.Minute)
	if _, err := NewLayeredReplay(nil, NewMemoryReplay(1)); err == nil {
		t.Fatal("NewLayeredReplay(nil, …): want an error")
	}

	shared := newTestMemory(10, clock)
	local := newTestMemory(2, clock)
	l, err := NewLayeredReplay(local, shared)
	if err != nil {
		t.Fatal(err)
	}
	if fresh, err := l.Claim(ctx, digest(1), "", until); !fresh || err != nil {
		t.Fatalf("first claim: %v, %v", fresh, err)
	}
	if fresh, err := l.Claim(ctx, digest(1), "", until); fresh || err != nil {
		t.Fatalf("replay: %v, %v", fresh, err)
	}
	// Claimed on another replica (only in the shared cache).
	if _, err := shared.Claim(ctx, digest(2), "", until); err != nil {
		t.Fatal(err)
	}
	if fresh, err := l.Claim(ctx, digest(2), "", until); fresh || err != nil {
		t.Fatalf("replay through another replica: %v, %v", fresh, err)
	}
	// The local cache is full now (1 and 2): the shared cache decides alone.
	if fresh, err := l.Claim(ctx, digest(3), "", until); !fresh || err != nil {
		t.Fatalf("claim with the local cache full: %v, %v", fresh, err)
	}
	if fresh, err := l.Claim(ctx, digest(3), "", until); fresh || err != nil {
		t.Fatalf("replay with the local cache full: %v, %v", fresh, err)
	}

	// The shared cache fails: the error is returned and the local claim
	// withdrawn, so that the proof is not called a replay once it is back.
	down := &failingCache{}
	local2 := newTestMemory(10, clock)
	l2, _ := NewLayeredReplay(local2, down)
	if fresh, err := l2.Claim(ctx, digest(4), "", until); fresh || err == nil {
		t.Fatalf("shared down: %v, %v; want an error", fresh, err)
	}
	if local2.Len() != 0 {
		t.Fatal("the local claim was kept after the shared cache failed")
	}
	// A local replay needs no round trip.
	if _, err := local2.Claim(ctx, digest(5), "", until); err != nil {
		t.Fatal(err)
	}
	calls := down.calls
	if fresh, err := l2.Claim(ctx, digest(5), "", until); fresh || err != nil || down.calls != calls {
		t.Fatalf("local replay: %v, %v, %d shared calls", fresh, err, down.calls-calls)
	}
}
