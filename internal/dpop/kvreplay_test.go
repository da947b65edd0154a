package dpop

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// connect returns a JetStream context on a new connection to srv, closed
// when the test ends.
func connect(t *testing.T, srv *natstest.Server, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(srv.URL(), opts...)
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	return js
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Two verifiers (two replicas: two connections) share one bucket: a proof
// accepted by one is a replay for the other.
func TestKVReplayAcrossVerifiers(t *testing.T) {
	srv := natstest.Start(t)
	ctx := ctxTimeout(t, 30*time.Second)
	ttl := 2 * DefaultWindow
	var verifiers [2]*Verifier
	for i := range verifiers {
		kv, err := NewKVReplay(ctx, connect(t, srv), "dpop_jti", ttl)
		if err != nil {
			t.Fatalf("replica %d: NewKVReplay: %v", i, err)
		}
		if kv.TTL() != ttl {
			t.Fatalf("TTL = %s; want %s", kv.TTL(), ttl)
		}
		if verifiers[i], err = New(Options{Replay: kv}); err != nil {
			t.Fatal(err)
		}
	}
	k := newKey(t, "ES256")
	p := newProof(k)
	p.claims["iat"] = time.Now().Unix()
	c := check(p.build(t), k)
	if _, err := verifiers[0].Verify(ctx, c); err != nil {
		t.Fatalf("replica 0: %v", err)
	}
	_, err := verifiers[1].Verify(ctx, c)
	var de *Error
	if !errors.As(err, &de) || de.Description != descReplayed {
		t.Fatalf("replica 1, the same proof: %v; want %s", err, descReplayed)
	}
	if _, err := verifiers[0].Verify(ctx, c); !errors.As(err, &de) || de.Description != descReplayed {
		t.Fatalf("replica 0 again: %v; want %s", err, descReplayed)
	}
	// A new proof is accepted by the other replica.
	p2 := newProof(k)
	p2.claims["iat"] = time.Now().Unix()
	if _, err := verifiers[1].Verify(ctx, check(p2.build(t), k)); err != nil {
		t.Fatalf("replica 1, a new proof: %v", err)
	}
}

// The layered cache in front of the bucket: replicas each with their own
// memory, sharing the bucket.
func TestLayeredKVReplayAcrossVerifiers(t *testing.T) {
	srv := natstest.Start(t)
	ctx := ctxTimeout(t, 30*time.Second)
	var verifiers [2]*Verifier
	for i := range verifiers {
		kv, err := NewKVReplay(ctx, connect(t, srv), "dpop_jti", 2*DefaultWindow)
		if err != nil {
			t.Fatal(err)
		}
		l, err := NewLayeredReplay(NewMemoryReplay(100), kv)
		if err != nil {
			t.Fatal(err)
		}
		if verifiers[i], err = New(Options{Replay: l}); err != nil {
			t.Fatal(err)
		}
	}
	k := newKey(t, "EdDSA")
	p := newProof(k)
	p.claims["iat"] = time.Now().Unix()
	c := check(p.build(t), k)
	if _, err := verifiers[1].Verify(ctx, c); err != nil {
		t.Fatal(err)
	}
	for i, v := range verifiers {
		var de *Error
		if _, err := v.Verify(ctx, c); !errors.As(err, &de) || de.Description != descReplayed {
			t.Fatalf("replica %d: %v; want %s", i, err, descReplayed)
		}
	}
}

// The bucket's TTL must cover 2 × window, both when a bucket exists with a
// shorter one and when the verifier's window is longer.
func TestKVReplayTTL(t *testing.T) {
	srv := natstest.Start(t)
	ctx := ctxTimeout(t, 30*time.Second)
	js := connect(t, srv)
	short, err := NewKVReplay(ctx, js, "dpop_short", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Replay: short}); err == nil || !strings.Contains(err.Error(), "2 × window") {
		t.Fatalf("New with a 1 min bucket and a 5 min window: %v; want an error", err)
	}
	if _, err := New(Options{Replay: short, Window: 30 * time.Second}); err != nil {
		t.Fatalf("New with a 1 min bucket and a 30 s window: %v", err)
	}
	l, _ := NewLayeredReplay(NewMemoryReplay(1), short)
	if _, err := New(Options{Replay: l}); err == nil {
		t.Fatal("New with a layered cache over a 1 min bucket: want an error")
	}
	// The bucket exists with 1 min: asking for 10 min is refused.
	if _, err := NewKVReplay(ctx, js, "dpop_short", 10*time.Minute); err == nil || !strings.Contains(err.Error(), "TTL") {
		t.Fatalf("NewKVReplay over a shorter bucket: %v; want an error", err)
	}
	// A bucket without TTL would never forget.
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "dpop_forever"}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewKVReplay(ctx, js, "dpop_forever", time.Minute); err == nil {
		t.Fatal("NewKVReplay over a bucket without TTL: want an error")
	}
	// A claim past the TTL is refused rather than forgotten early.
	if _, err := short.Claim(ctx, digest(1), "", time.Now().Add(2*time.Minute)); err == nil {
		t.Fatal("Claim beyond the bucket TTL: want an error")
	}
	if _, err := NewKVReplay(ctx, js, "dpop_zero", 0); err == nil {
		t.Fatal("NewKVReplay with TTL 0: want an error")
	}
}

// The NATS server stops: Verify fails with an error that is not an *Error
// (the caller answers 503), and works again once the server is back.
//
// With the client's reconnect buffer (the default), the claim made while
// disconnected may be sent after the reconnect (when JetStream is ready
// for it by then): the proof refused with 503 then counts as used, the
// safe side. Without the buffer, it is still fresh after the restart.
// Either way, it is accepted at most once.
func TestKVReplayDown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []nats.Option
		mayBeUsed bool // the refused proof may count as used after the restart
	}{
		{name: "reconnect buffer", mayBeUsed: true},
		{name: "no reconnect buffer", opts: []nats.Option{nats.ReconnectBufSize(-1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.Start(t)
			ctx := ctxTimeout(t, 60*time.Second)
			kv, err := NewKVReplay(ctx, connect(t, srv, tc.opts...), "dpop_jti", 2*DefaultWindow)
			if err != nil {
				t.Fatal(err)
			}
			v, err := New(Options{Replay: kv})
			if err != nil {
				t.Fatal(err)
			}
			k := newKey(t, "ES256")
			fresh := func() Check {
				p := newProof(k)
				p.claims["iat"] = time.Now().Unix()
				return check(p.build(t), k)
			}
			if _, err := v.Verify(ctx, fresh()); err != nil {
				t.Fatal(err)
			}

			srv.Stop()
			old := fresh()
			short, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = v.Verify(short, old)
			cancel()
			var de *Error
			if err == nil || errors.As(err, &de) {
				t.Fatalf("Verify with NATS down: %v; want an infrastructure error, not *Error", err)
			}
			t.Logf("with NATS down: %v", err)

			srv.Restart()
			// A new proof is accepted once the connection is back.
			deadline := time.Now().Add(20 * time.Second)
			c := fresh()
			for {
				attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err = v.Verify(attempt, c)
				cancel()
				if err == nil {
					break
				}
				if errors.As(err, &de) {
					t.Fatalf("after the restart, a new proof: %v; want acceptance", err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("NATS back, still: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			_, err = v.Verify(ctx, old)
			replayed := errors.As(err, &de) && de.Description == descReplayed
			if err != nil && !(tc.mayBeUsed && replayed) {
				t.Fatalf("after the restart, the proof refused during the outage: %v; want acceptance", err)
			}
			t.Logf("after the restart, the proof refused during the outage: %v", err)
			if _, err := v.Verify(ctx, old); !errors.As(err, &de) || de.Description != descReplayed {
				t.Fatalf("the proof once more: %v; want %s", err, descReplayed)
			}
		})
	}
}

// BenchmarkKVReplayClaim is one claim of a new key in the bucket of an
// embedded NATS server on the same machine (one round trip, file storage).
func BenchmarkKVReplayClaim(b *testing.B) {
	srv := natstest.Start(b)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	kv, err := NewKVReplay(ctx, js, "dpop_bench", 2*DefaultWindow)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if fresh, err := kv.Claim(ctx, digest(i), "", time.Now().Add(DefaultWindow)); !fresh || err != nil {
			b.Fatal(fresh, err)
		}
		i++
	}
}

// TestReplayOwner: the decisions of one HTTP request (one owner) may
// present its proof again, on every cache; another request, or none, may
// not.
func TestReplayOwner(t *testing.T) {
	srv := natstest.Start(t)
	ctx := ctxTimeout(t, 20*time.Second)
	kv, err := NewKVReplay(ctx, connect(t, srv), "dpop_owner", 2*DefaultWindow)
	if err != nil {
		t.Fatal(err)
	}
	layered, err := NewLayeredReplay(NewMemoryReplay(100), kv)
	if err != nil {
		t.Fatal(err)
	}
	kv2, err := NewKVReplay(ctx, connect(t, srv), "dpop_owner2", 2*DefaultWindow)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]ReplayCache{"memory": NewMemoryReplay(100), "kv": kv2, "layered": layered} {
		t.Run(name, func(t *testing.T) {
			until := time.Now().Add(time.Minute)
			for i, step := range []struct {
				key   byte
				owner string
				fresh bool
			}{
				{1, "req-a", true},  // first use
				{1, "req-a", true},  // the same request's next decision
				{1, "req-b", false}, // another request: a replay
				{1, "", false},      // no request named: a replay
				{2, "", true},
				{2, "", false}, // without an owner, once
				{2, "req-a", false},
			} {
				fresh, err := c.Claim(ctx, digest(int(step.key)), step.owner, until)
				if err != nil || fresh != step.fresh {
					t.Fatalf("step %d (key %d, owner %q): fresh %v, %v; want %v", i, step.key, step.owner, fresh, err, step.fresh)
				}
			}
		})
	}
}
