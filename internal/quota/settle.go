package quota

import (
	"context"
	"errors"
	"time"
)

// A take that failed may or may not have been counted: its
// acknowledgement did not come (MaybeApplied), or it was never sent. What
// it should have done depends on the call's answer, which the caller
// decides: a call refused because the counters were out of reach must
// not count, one allowed uncounted (on_counter_unavailable: allow) must
// count once. Settle makes it so once the counters answer again, with
// JetStream's deduplication: every increment carries a message id
// (Nats-Msg-Id), and a message sent again under its id within the
// stream's duplicate window is stored at most once. So the take is sent
// again under its id until it is acknowledged (stored now, or "duplicate":
// it had been), and for a refused call a -1 under an id of its own
// follows, sent again likewise. A denial's revert that got no answer is
// settled the same way, without being asked. The window then counts
// exactly the calls that were allowed.

// step is one increment to make certain: sent under id until the stream
// acknowledges it, or given up resendUntil after its first send (later,
// the stream may have forgotten the id and a resend could count twice).
type step struct {
	subj  string
	delta []string
	id    string
	sent  time.Time // first sent; zero: never sent, nothing to forget
}

// settleOp is steps to make, in order.
type settleOp struct {
	steps []step
}

// Settle says what became of a call whose Take failed with err (an
// *UnavailableError of this Counter): counted, the call was allowed and
// must count once (on_counter_unavailable: allow); not counted, it was
// refused and must not count. Run then makes the counter so, in the
// background, as soon as the counters answer (see the comment above).
// It returns false when there is nothing to settle (err is not such an
// error, or the call was refused and its take never sent), or when
// Config.MaxUnsettled operations already wait (then the call may count
// one too many, or an allowed one not at all: Stats.SettleLost).
func (c *Counter) Settle(err error, counted bool) bool {
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.take == nil || ue.c != c {
		return false
	}
	t := *ue.take
	switch {
	case counted:
		return c.enqueue(&settleOp{steps: []step{t}})
	case t.sent.IsZero():
		return false // never sent: nothing was counted
	default:
		// Make sure it is counted once, then take it back: a -1 alone
		// could give back a call that was never counted.
		return c.enqueue(&settleOp{steps: []step{t, {subj: t.subj, delta: c.decr, id: c.newID()}}})
	}
}

func (c *Counter) enqueue(op *settleOp) bool {
	select {
	case c.settleQ <- op:
		c.stats.unsettled.Add(1)
		return true
	default:
		c.stats.settleLost.Add(1)
		return false
	}
}

// The pause between resends while the counters do not answer.
const (
	settleFirstWait = 50 * time.Millisecond
	settleMaxWait   = 2 * time.Second
)

// Run settles the operations Settle (and failed reverts) queue, one after
// the other, until ctx is done. Every Counter whose takes may fail needs
// one Run going; the operations still queued when it returns are lost
// (Stats.Unsettled).
func (c *Counter) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case op := <-c.settleQ:
			c.settle(ctx, op)
		}
	}
}

func (c *Counter) settle(ctx context.Context, op *settleOp) {
	defer c.stats.unsettled.Add(-1)
	for i := range op.steps {
		s := &op.steps[i]
		wait := settleFirstWait
		for {
			if !s.sent.IsZero() && time.Since(s.sent) > c.resendUntil {
				c.stats.settleLost.Add(1)
				c.log.Warn("quota: a counter could not be settled within the stream's duplicate window; it may count one call too many or too few",
					"subject", s.subj, "msg_id", s.id)
				return
			}
			sent := time.Now()
			_, _, err := c.add(ctx, "settle", s.subj, s.delta, s.id, true)
			if err == nil || errors.Is(err, errDuplicate) {
				break
			}
			var ue *UnavailableError
			if errors.As(err, &ue) && ue.MaybeApplied && s.sent.IsZero() {
				s.sent = sent
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(2*wait, settleMaxWait)
		}
	}
	c.stats.settled.Add(1)
}
