package ratelimit

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// never is a rule no benchmark exhausts: a billion tokens a second.
var never = Rule{Limit: MaxLimit, Per: time.Second, Burst: MaxLimit}

// BenchmarkTake: a take on a held key, allowed, on the real clock.
func BenchmarkTake(b *testing.B) {
	l := New(Options{})
	key := "tool:generate_qr|client:abc"
	l.Take(never, key)
	b.ReportAllocs()
	for b.Loop() {
		if !l.Take(never, key).Allowed {
			b.Fatal("denied")
		}
	}
}

// BenchmarkTakeFixedClock: BenchmarkTake without the cost of reading the
// clock (time.Now is most of it): the package's own share.
func BenchmarkTakeFixedClock(b *testing.B) {
	t0 := time.Now()
	l := New(Options{Now: func() time.Time { return t0 }})
	key := "tool:generate_qr|client:abc"
	l.Take(never, key)
	b.ReportAllocs()
	for b.Loop() {
		if !l.Take(never, key).Allowed {
			b.Fatal("denied")
		}
	}
}

// BenchmarkTimeNow: the clock read BenchmarkTake includes, for reference.
func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		_ = time.Now()
	}
}

// BenchmarkTakeDenied: a take on an empty bucket (frozen clock).
func BenchmarkTakeDenied(b *testing.B) {
	clk := newFakeClock()
	l := New(Options{Now: clk.Now})
	rule := Rule{Limit: 1, Per: time.Hour}
	key := "tool:generate_qr|client:abc"
	l.Take(rule, key)
	b.ReportAllocs()
	for b.Loop() {
		if l.Take(rule, key).Allowed {
			b.Fatal("allowed")
		}
	}
}

// BenchmarkTakeParallel: every goroutine its own held key (callers spread
// over the shards), on the real clock.
func BenchmarkTakeParallel(b *testing.B) {
	l := New(Options{})
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := fmt.Sprintf("tool:generate_qr|client:%d", next.Add(1))
		l.Take(never, key)
		for pb.Next() {
			if !l.Take(never, key).Allowed {
				b.Error("denied")
				return
			}
		}
	})
}

// BenchmarkTakeParallelOneKey: every goroutine on the same key: one lock.
func BenchmarkTakeParallelOneKey(b *testing.B) {
	l := New(Options{})
	key := "tool:generate_qr|client:abc"
	l.Take(never, key)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !l.Take(never, key).Allowed {
				b.Error("denied")
				return
			}
		}
	})
}

// BenchmarkTakeNewKeys: a new key every take, at the bound: an insertion
// and an eviction each (the flood of minted callers).
func BenchmarkTakeNewKeys(b *testing.B) {
	const maxKeys = 100_000
	keys := make([]string, 4*maxKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("tool:generate_qr|client:attacker-%09d", i)
	}
	l := New(Options{MaxKeys: maxKeys})
	rule := Rule{Limit: 1, Per: time.Hour}
	for _, k := range keys[:maxKeys] {
		l.Take(rule, k)
	}
	b.ReportAllocs()
	i := maxKeys
	for b.Loop() {
		l.Take(rule, keys[i%len(keys)])
		i++
	}
}
