package quota

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// relay stands between a Counter (prefix "relay", which no stream takes)
// and the real counter stream: it forwards each message, headers and all,
// to the stream's subject, and then answers, drops the acknowledgement,
// or drops the message itself, as set per increment.
type relay struct {
	mu   sync.Mutex
	mode map[string]string // "+1"/"-1" -> "answer", "lose ack", "drop"
	seen map[string]int    // message id -> times forwarded
}

func (r *relay) set(delta, mode string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode[delta] = mode
}

func startRelay(t *testing.T, peer *nats.Conn) *relay {
	t.Helper()
	r := &relay{mode: map[string]string{"+1": "answer", "-1": "answer", "+0": "answer"}, seen: map[string]int{}}
	sub, err := peer.Subscribe("relay.>", func(m *nats.Msg) {
		r.mu.Lock()
		mode := r.mode[m.Header.Get(incrHeader)]
		if mode != "drop" {
			r.seen[m.Header.Get(msgIDHeader)]++
		}
		r.mu.Unlock()
		if mode == "drop" {
			return
		}
		out := &nats.Msg{Subject: DefaultPrefix + strings.TrimPrefix(m.Subject, "relay"), Header: m.Header}
		ack, err := peer.RequestMsg(out, 5*time.Second)
		if err != nil {
			t.Errorf("relay to the stream: %v", err)
			return
		}
		if mode == "answer" {
			_ = m.Respond(ack.Data)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := peer.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSettle: a take whose acknowledgement is lost, or that is lost
// itself, counts once when its call was allowed and not at all when it
// was refused, once settled against the real stream; a denial's revert
// that got no answer is settled without being asked; and a take resent
// under its id is stored once (the stream's deduplication).
func TestSettle(t *testing.T) {
	srv := natstest.Start(t)
	nc := connect(t, srv.URL())
	ensure(t, newJS(t, nc), Config{})
	peer := connect(t, srv.URL())
	r := startRelay(t, peer)
	truth := mustNew(t, nc, Config{}) // reads the stream's totals directly
	rule := Rule{Limit: 3, Period: Day}
	now := time.Now()

	tests := []struct {
		name    string
		mode    string // of the failed take's +1
		counted bool
		want    int64 // the count after two allowed calls and the failed one
	}{
		{"ack lost, call refused", "lose ack", false, 2},
		{"ack lost, call allowed", "lose ack", true, 3},
		{"take lost, call refused", "drop", false, 2},
		{"take lost, call allowed", "drop", true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, nc, Config{Prefix: "relay", Timeout: 150 * time.Millisecond, Cooldown: -1})
			runSettle(t, c)
			key := "settle:" + tt.name
			for range 2 {
				if res, err := c.Take(context.Background(), rule, key, now); err != nil || !res.Allowed {
					t.Fatalf("%+v, %v", res, err)
				}
			}
			r.set("+1", tt.mode)
			_, err := c.Take(context.Background(), rule, key, now)
			var ue *UnavailableError
			if !errors.As(err, &ue) || !ue.MaybeApplied {
				t.Fatalf("take with the %s: %v", tt.mode, err)
			}
			r.set("+1", "lose ack") // the counters stay unanswering a while
			if !c.Settle(err, tt.counted) {
				t.Fatal("nothing to settle")
			}
			time.Sleep(300 * time.Millisecond)
			if st := c.Stats(); st.Unsettled != 1 || st.Settled != 0 {
				t.Fatalf("settled while the counters do not answer: %+v", st)
			}
			r.set("+1", "answer")
			waitFor(t, "the take settled", 10*time.Second, func() bool { return c.Stats().Unsettled == 0 })
			if st := c.Stats(); st.Settled != 1 || st.SettleLost != 0 {
				t.Fatalf("stats %+v", st)
			}
			if used, err := truth.Used(context.Background(), rule, key, now); err != nil || used != tt.want {
				t.Fatalf("count %d, %v; want %d", used, err, tt.want)
			}
			r.mu.Lock()
			resent := r.seen[ue.take.id]
			r.mu.Unlock()
			if tt.mode == "lose ack" && resent < 2 {
				t.Fatalf("the take was forwarded %d times: the test did not resend an applied take", resent)
			}
		})
	}

	t.Run("revert lost", func(t *testing.T) {
		c := mustNew(t, nc, Config{Prefix: "relay", Timeout: 150 * time.Millisecond, Cooldown: -1})
		runSettle(t, c)
		r.set("+1", "answer")
		const key = "settle:revert"
		for range 3 {
			if res, err := c.Take(context.Background(), rule, key, now); err != nil || !res.Allowed {
				t.Fatalf("%+v, %v", res, err)
			}
		}
		r.set("-1", "lose ack")
		if res, err := c.Take(context.Background(), rule, key, now); err != nil || res.Allowed {
			t.Fatalf("over the quota: %+v, %v", res, err)
		}
		if st := c.Stats(); st.RevertFailed != 1 || st.Unsettled != 1 {
			t.Fatalf("stats %+v", st)
		}
		r.set("-1", "answer")
		waitFor(t, "the revert settled", 10*time.Second, func() bool { return c.Stats().Unsettled == 0 })
		if used, err := truth.Used(context.Background(), rule, key, now); err != nil || used != 3 {
			t.Fatalf("count %d, %v; want 3 (the denial reverted once)", used, err)
		}
	})

	t.Run("nothing to settle", func(t *testing.T) {
		c := mustNew(t, nc, Config{Prefix: "relay"})
		if c.Settle(nil, true) || c.Settle(errors.New("other"), false) {
			t.Fatal("settled what is not a failed take")
		}
		other := mustNew(t, nc, Config{Prefix: "relay"})
		r.set("+1", "drop")
		_, err := other.Take(context.Background(), rule, "settle:other", now)
		r.set("+1", "answer")
		if c.Settle(err, true) {
			t.Fatal("settled another Counter's take")
		}
		// A take never sent and refused: nothing was counted.
		srv2 := natstest.Start(t)
		nc2 := connect(t, srv2.URL())
		c2 := mustNew(t, nc2, Config{})
		srv2.Stop()
		waitFor(t, "the disconnection", 5*time.Second, func() bool { return !nc2.IsConnected() })
		_, err = c2.Take(context.Background(), rule, "k", now)
		var ue *UnavailableError
		if !errors.As(err, &ue) || ue.MaybeApplied || c2.Settle(err, false) {
			t.Fatalf("a take never sent, refused: %v", err)
		}
		if !c2.Settle(err, true) || c2.Stats().Unsettled != 1 {
			t.Fatalf("a take never sent, allowed, is to be counted: %+v", c2.Stats())
		}
	})

	t.Run("queue full", func(t *testing.T) {
		c := mustNew(t, nc, Config{Prefix: "relay", Timeout: 50 * time.Millisecond, Cooldown: -1, MaxUnsettled: 2})
		r.set("+1", "lose ack")
		defer r.set("+1", "answer")
		for i := range 3 {
			_, err := c.Take(context.Background(), rule, "settle:full", now)
			if ok := c.Settle(err, false); ok != (i < 2) {
				t.Fatalf("settle %d: %v", i, ok)
			}
		}
		if st := c.Stats(); st.Unsettled != 2 || st.SettleLost != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestRefundOnce: a refund under an id is applied once; the same id again
// is ErrAlreadyRefunded and changes nothing.
func TestRefundOnce(t *testing.T) {
	_, _, c := single(t, Config{})
	ctx := context.Background()
	rule := Rule{Limit: 5, Period: Day}
	now := time.Now()
	for range 2 {
		if res, err := c.Take(ctx, rule, "k", now); err != nil || !res.Allowed {
			t.Fatalf("%+v, %v", res, err)
		}
	}
	if err := c.RefundOnce(ctx, rule, "k", now, "refund-d1"); err != nil {
		t.Fatal(err)
	}
	if err := c.RefundOnce(ctx, rule, "k", now, "refund-d1"); !errors.Is(err, ErrAlreadyRefunded) {
		t.Fatalf("the same refund again: %v", err)
	}
	if used, err := c.Used(ctx, rule, "k", now); err != nil || used != 1 {
		t.Fatalf("used %d, %v; want 1", used, err)
	}
}
