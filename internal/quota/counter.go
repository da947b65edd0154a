package quota

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Counter takes calls against quotas kept in the counter stream. It is
// safe for concurrent use; every PDP replica has its own, on its own
// connection, and they count together.
type Counter struct {
	nc      *nats.Conn
	stream  string
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	obs     *observedSet
	brk     breaker
	stats   stats

	// Settling: the message ids' prefix (unique to this Counter), the
	// next id, the queue Run works through, and how long after its
	// first send a message may still be sent again (within the
	// stream's duplicate window).
	idPrefix    string
	ids         atomic.Uint64
	settleQ     chan *settleOp
	resendUntil time.Duration

	// The increments' values, shared read-only by every message.
	incr, decr, zero []string
}

// New returns a Counter publishing on nc to the counters of cfg (Stream,
// Prefix, Timeout, MaxObserved, Logger; the stream itself is
// EnsureStream's business). It does no I/O.
func New(nc *nats.Conn, cfg Config) (*Counter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, fmt.Errorf("quota: stream %s: no NATS connection", cfg.Stream)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("quota: message id prefix: %w", err)
	}
	return &Counter{
		nc:          nc,
		stream:      cfg.Stream,
		prefix:      cfg.Prefix,
		timeout:     cfg.Timeout,
		log:         cfg.Logger,
		obs:         newObservedSet(cfg.MaxObserved),
		brk:         breaker{cooldown: max(cfg.Cooldown, 0)},
		idPrefix:    "q" + hex.EncodeToString(rnd[:]) + "-",
		settleQ:     make(chan *settleOp, cfg.MaxUnsettled),
		resendUntil: cfg.Duplicates * 3 / 4,
		incr:        []string{"+1"},
		decr:        []string{"-1"},
		zero:        []string{"+0"},
	}, nil
}

// The ADR-49 counter increment (a signed integer), and the message id
// JetStream deduplicates by within the stream's duplicate window.
const (
	incrHeader  = "Nats-Incr"
	msgIDHeader = "Nats-Msg-Id"
)

// newID returns a message id no other message of this Counter (or,
// with overwhelming odds, of another) has.
func (c *Counter) newID() string {
	return c.idPrefix + strconv.FormatUint(c.ids.Add(1), 36)
}

// Result is the answer of Take. With an error it still carries Limit
// and Reset (for a Retry-After on a call denied because the counters were
// out of reach).
type Result struct {
	// Allowed: the call was within the quota and is counted.
	Allowed bool
	// Limit is the rule's limit.
	Limit int
	// Remaining is how many more calls the window allows after this one
	// (0 when denied), as of this call's increment.
	Remaining int
	// Used is the window's total after this call (after the revert when
	// denied), across all replicas.
	Used int64
	// Reset is the end of the window, when the quota starts again at 0.
	Reset time.Time
}

// ErrUnavailable is wrapped by every error of Take, Refund and Used that
// comes from the counters being out of reach: NATS disconnected, no
// acknowledgement within the timeout, or the stream refusing the message.
// The caller decides what such a call gets (the resource's
// on_counter_unavailable: deny by default, or allow and record).
var ErrUnavailable = errors.New("quota: counter unavailable")

// UnavailableError is the error of a counter operation that got no total
// back. errors.Is(err, ErrUnavailable) holds for it.
type UnavailableError struct {
	// Op is "take", "revert" (of a denied take), "refund", "refund
	// undo" (of one below 0) or "read" (Used).
	Op string
	// Stream and Subject name the counter.
	Stream, Subject string
	// MaybeApplied: the increment was sent and may have been counted
	// (an acknowledgement that does not come does not mean the message
	// was not stored). A Take that fails so may have consumed one call
	// of the budget: an over-count, never an over-allow. False when the
	// message was never sent or the stream refused it.
	MaybeApplied bool
	// Err is the cause.
	Err error

	// The take's message, for Settle: its counter, increment and id, and
	// when it was first sent (zero: never). Nil for other operations.
	take *step
	c    *Counter
}

// Error names the operation, subject, stream and cause.
func (e *UnavailableError) Error() string {
	maybe := ""
	if e.MaybeApplied {
		maybe = " (the increment may have been applied)"
	}
	return fmt.Sprintf("quota: %s on %s (stream %s): counter unavailable: %v%s", e.Op, e.Subject, e.Stream, e.Err, maybe)
}

// Unwrap gives ErrUnavailable and the cause.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// Take counts one call of key against rule in the window holding now, if
// the quota allows it. Call it after the policy allowed the call: a
// denied call consumes nothing.
//
// An allowed call costs one round trip: the increment (Nats-Incr: +1)
// returns the new total of the key's counter in its acknowledgement. A
// total above the limit denies the call and is reverted (Nats-Incr: -1,
// a second round trip, bounded by the timeout even when ctx is done), so
// that a denial leaves the budget as it was.
//
// Exactness. JetStream applies the increments of one subject one after
// the other on the stream's leader, so every total comes back once: of
// the calls of a window, those seeing totals 1..Limit are allowed and no
// other. A denied call's +1 and -1 may interleave with other calls, and
// then those see a total raised by the pending reverts; but a first
// denial only happens when the allowed calls already are at the limit
// (with no reverts pending, its total is the number of allowed calls plus
// one), so without refunds nothing is denied that would have fit and N
// concurrent calls allow exactly min(N, Limit). A Refund racing a denial
// at the limit can under-allow: a call arriving after the refund but
// before the denial's revert sees the revert's +1 and is denied though
// one call of the budget is free (at most one such call per revert in
// flight; the budget is right again when the reverts land). Nothing ever
// over-allows: a call is allowed only when its own +1 made a total within
// the limit.
//
// Failures. The error is an *UnavailableError (ErrUnavailable) when NATS
// is disconnected (at once, nothing sent), when no acknowledgement comes
// within the timeout (MaybeApplied: the +1 may still have been counted,
// an over-count by one, never an over-allow, until the caller's Settle
// puts it right), when the
// stream refuses the message, or, for Config.Cooldown after a timeout,
// at once with ErrCircuitOpen (nothing sent). That last bounds the
// over-count of an outage: a stream leader that lost its quorum keeps
// taking increments it cannot commit, and commits them all when the
// quorum is back, so every call sent into the outage would be counted
// although it was answered with an error; with the breaker those are the
// calls in flight when it opened and one probe per cooldown. A failed
// revert (Stats.RevertFailed; logged) is settled as Settle settles a
// take: sent again under its id until the stream answers. An invalid rule is an error
// wrapping ErrInvalidRule.
func (c *Counter) Take(ctx context.Context, rule Rule, key string, now time.Time) (Result, error) {
	if err := rule.Validate(); err != nil {
		return Result{}, err
	}
	res := Result{Limit: rule.Limit, Reset: rule.end(now)}
	subj := c.subject(rule, key, now)
	id := c.newID()
	sent := time.Now()
	total, seq, err := c.add(ctx, "take", subj, c.incr, id, false)
	if err != nil {
		c.stats.unavailable.Add(1)
		var ue *UnavailableError
		if errors.As(err, &ue) {
			ue.c = c
			ue.take = &step{subj: subj, delta: c.incr, id: id}
			if ue.MaybeApplied {
				c.stats.maybeApplied.Add(1)
				ue.take.sent = sent
			}
		}
		return res, err
	}
	limit := int64(rule.Limit)
	if total <= limit {
		c.stats.allowed.Add(1)
		c.obs.put(subj, seq, total, res.Reset, now)
		// A total below 0 (refunds without takes) shows no more than the
		// limit as remaining.
		res.Allowed, res.Remaining, res.Used = true, int(min(limit-total, limit)), total
		return res, nil
	}
	c.stats.denied.Add(1)
	// Revert even when the caller's context is done: a denial that stays
	// counted takes a call from the budget.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	rid := c.newID()
	rsent := time.Now()
	after, seq2, err := c.add(rctx, "revert", subj, c.decr, rid, true)
	if err != nil {
		c.stats.revertFailed.Add(1)
		rev := step{subj: subj, delta: c.decr, id: rid}
		var ue *UnavailableError
		if errors.As(err, &ue) && ue.MaybeApplied {
			rev.sent = rsent
		}
		if c.enqueue(&settleOp{steps: []step{rev}}) {
			c.log.Warn("quota: the revert of a denied call failed; it is sent again until the counters answer", "err", err)
		} else {
			c.log.Warn("quota: the revert of a denied call failed, and too many are waiting to be settled; the window counts one call too many", "err", err)
		}
		c.obs.put(subj, seq, total, res.Reset, now)
		res.Used = total
		return res, nil
	}
	c.obs.put(subj, seq2, after, res.Reset, now)
	res.Used = after
	return res, nil
}

// ErrOverRefund is wrapped by the error of a Refund that would bring a
// counter below zero (no counted call to give back, or the window's
// counter is gone): the refund is undone.
var ErrOverRefund = errors.New("quota: refund without a counted call")

// Refund gives back one call of key counted by Take in the window holding
// at (the time passed to that Take), for a call that did not happen after
// all (the PEP reported it failed). Call it at most once per allowed
// Take: the counters cannot tell a refund from a second one. A refund
// that would bring the counter below 0 is undone and returns an error
// wrapping ErrOverRefund. A refund that gets no acknowledgement is not
// retried (it may have been applied; a second one could over-allow): the
// error is an *UnavailableError, and the call stays counted at worst.
func (c *Counter) Refund(ctx context.Context, rule Rule, key string, at time.Time) error {
	return c.RefundOnce(ctx, rule, key, at, c.newID())
}

// ErrAlreadyRefunded is the error of a RefundOnce whose id the stream
// already had within its duplicate window: the call was given back then.
var ErrAlreadyRefunded = errors.New("quota: already refunded")

// RefundOnce is Refund under the message id id (e.g. derived from the
// decision's id), so that the same refund asked again within the stream's
// duplicate window is applied once: the second gets ErrAlreadyRefunded.
func (c *Counter) RefundOnce(ctx context.Context, rule Rule, key string, at time.Time, id string) error {
	if err := rule.Validate(); err != nil {
		return err
	}
	subj := c.subject(rule, key, at)
	total, seq, err := c.add(ctx, "refund", subj, c.decr, id, false)
	if errors.Is(err, errDuplicate) {
		return fmt.Errorf("%w: %s on %s (stream %s)", ErrAlreadyRefunded, id, subj, c.stream)
	}
	if err != nil {
		return err
	}
	if total < 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		if _, _, err := c.add(rctx, "refund undo", subj, c.incr, c.newID(), true); err != nil {
			return fmt.Errorf("%w on %s (stream %s), and undoing it failed: %w", ErrOverRefund, subj, c.stream, err)
		}
		return fmt.Errorf("%w on %s (stream %s)", ErrOverRefund, subj, c.stream)
	}
	c.stats.refunded.Add(1)
	c.obs.put(subj, seq, total, rule.end(at), at)
	return nil
}

// Used reads the total of key in the window holding now, across all
// replicas, as the stream's leader has it (a Nats-Incr of +0: a write,
// linearizable with the takes, on the same permission). A counter never
// taken reads 0.
func (c *Counter) Used(ctx context.Context, rule Rule, key string, now time.Time) (int64, error) {
	if err := rule.Validate(); err != nil {
		return 0, err
	}
	subj := c.subject(rule, key, now)
	total, seq, err := c.add(ctx, "read", subj, c.zero, c.newID(), false)
	if err != nil {
		return 0, err
	}
	c.obs.put(subj, seq, total, rule.end(now), now)
	return total, nil
}

// Observed is the budget of key left in the window holding now as this
// replica last saw it (its latest Take, Refund or Used of that key), with
// no round trip: approximate, as other replicas take from it too. ok is
// false when this replica has not seen the key in that window (or forgot
// it: it remembers at most Config.MaxObserved keys).
func (c *Counter) Observed(rule Rule, key string, now time.Time) (remaining int, ok bool) {
	used, ok := c.ObservedUsed(rule, key, now)
	if !ok {
		return 0, false
	}
	return int(max(int64(rule.Limit)-used, 0)), true
}

// ObservedUsed is Observed as the window's total rather than what is left
// of the rule's limit (which it does not depend on).
func (c *Counter) ObservedUsed(rule Rule, key string, now time.Time) (used int64, ok bool) {
	if rule.Validate() != nil {
		return 0, false
	}
	var buf [subjectBuf]byte
	subj := c.appendSubject(buf[:0], rule, key, now)
	return c.obs.get(subj, now)
}

// Subject is the counter subject of key under rule in the window holding
// now: "<prefix>.<window id>.<hash>", the hash the first 16 bytes of the
// SHA-256 of the zone's name and the key in hex, so that any key is a
// valid subject token and keys of different zones do not meet.
func (c *Counter) Subject(rule Rule, key string, now time.Time) string {
	return c.subject(rule, key, now)
}

// Stats are a Counter's tallies since New.
type Stats struct {
	// Allowed and Denied count Take's answers.
	Allowed, Denied int64
	// Unavailable counts Takes that failed with ErrUnavailable, and
	// MaybeApplied those of them whose increment may have been counted.
	Unavailable, MaybeApplied int64
	// RevertFailed counts denials whose revert failed: each may leave
	// the window counting one call too many.
	RevertFailed int64
	// Refunded counts refunds applied.
	Refunded int64
	// FailedFast counts operations not sent because the breaker was
	// open (ErrCircuitOpen; see Config.Cooldown); they are also counted
	// in Unavailable when they were takes.
	FailedFast int64
	// CircuitOpen: the breaker holds requests back now.
	CircuitOpen bool
	// Observed is the number of totals remembered for Observed.
	Observed int
	// Unsettled is the number of failed takes and reverts waiting to
	// be settled (Settle, Run); Settled counts those settled, and
	// SettleLost those given up (the queue full, or the counters out of
	// reach for longer than the duplicate window allows): each may
	// leave its window one call off.
	Unsettled, Settled, SettleLost int64
}

type stats struct {
	allowed, denied, unavailable, maybeApplied, revertFailed, refunded, failedFast atomic.Int64
	unsettled, settled, settleLost                                                 atomic.Int64
}

// Stats returns the tallies.
func (c *Counter) Stats() Stats {
	return Stats{
		Allowed: c.stats.allowed.Load(), Denied: c.stats.denied.Load(),
		Unavailable: c.stats.unavailable.Load(), MaybeApplied: c.stats.maybeApplied.Load(),
		RevertFailed: c.stats.revertFailed.Load(), Refunded: c.stats.refunded.Load(),
		FailedFast: c.stats.failedFast.Load(), CircuitOpen: c.brk.open(),
		Observed:  c.obs.len(),
		Unsettled: c.stats.unsettled.Load(), Settled: c.stats.settled.Load(), SettleLost: c.stats.settleLost.Load(),
	}
}

// subjectBuf fits a subject with a prefix of up to ~60 bytes on the stack.
const subjectBuf = 128

func (c *Counter) subject(rule Rule, key string, now time.Time) string {
	var buf [subjectBuf]byte
	return string(c.appendSubject(buf[:0], rule, key, now))
}

// hashDomain separates the counters' key hashes from any other SHA-256
// use and from later layouts.
const hashDomain = "mcp-pdp quota v1\x00"

func (c *Counter) appendSubject(b []byte, rule Rule, key string, now time.Time) []byte {
	loc := rule.location()
	b = append(b, c.prefix...)
	b = append(b, '.')
	b = rule.appendID(b, now)
	b = append(b, '.')
	// The hash input on the stack for usual keys.
	var in [256]byte
	h := append(in[:0], hashDomain...)
	h = append(h, loc.String()...)
	h = append(h, 0)
	h = append(h, key...)
	sum := sha256.Sum256(h)
	return hex.AppendEncode(b, sum[:16])
}

// pubAck is the JetStream publish acknowledgement, with the counter's
// total in val (ADR-49).
type pubAck struct {
	Stream    string              `json:"stream"`
	Seq       uint64              `json:"seq"`
	Val       string              `json:"val"`
	Duplicate bool                `json:"duplicate"`
	Error     *jetstream.APIError `json:"error"`
}

// parseCounterAck reads the total and sequence of a counter stream's
// acknowledgement laid out exactly as nats-server writes it:
// {"stream":"S","seq":5,"val":"3"}, maybe with "domain" after the stream,
// with no allocation. Anything else (an error, another layout) is not ok,
// for encoding/json to read.
func parseCounterAck(b []byte) (total int64, seq uint64, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"stream":`))
	if !ok {
		return 0, 0, false
	}
	if rest, ok = skipString(rest); !ok {
		return 0, 0, false
	}
	if after, found := bytes.CutPrefix(rest, []byte(`,"domain":`)); found {
		if rest, ok = skipString(after); !ok {
			return 0, 0, false
		}
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"seq":`)); !ok {
		return 0, 0, false
	}
	seq, n := parseDigits(rest)
	if n == 0 {
		return 0, 0, false
	}
	if rest, ok = bytes.CutPrefix(rest[n:], []byte(`,"val":"`)); !ok {
		return 0, 0, false
	}
	neg := len(rest) > 0 && rest[0] == '-'
	if neg {
		rest = rest[1:]
	}
	u, n := parseDigits(rest)
	if n == 0 || string(rest[n:]) != `"}` || u > 1<<62 {
		return 0, 0, false
	}
	total = int64(u)
	if neg {
		total = -total
	}
	return total, seq, true
}

// skipString skips the JSON string at the start of b.
func skipString(b []byte) ([]byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, false
	}
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return b[i+1:], true
		}
	}
	return nil, false
}

// parseDigits reads the decimal digits at the start of b (at most 19,
// so that they fit), returning the value and how many there were.
func parseDigits(b []byte) (uint64, int) {
	var v uint64
	n := 0
	for n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	if n < len(b) && b[n] >= '0' && b[n] <= '9' {
		return 0, 0 // too long
	}
	return v, n
}

// noRespondersWait is the pause before sending again a message that found
// no stream listening (a stream electing a leader): nothing received it,
// so sending it again cannot count it twice.
const noRespondersWait = 20 * time.Millisecond

// errDuplicate is add's error for a message the stream had already
// stored under its id (no total comes back): Settle's sign that a resent
// message was applied the first time.
var errDuplicate = errors.New("quota: the stream already has this message id")

// add publishes the increment delta on subj under the message id id and
// returns the new total and the message's stream sequence, within
// c.timeout and ctx. Unless always, it sends nothing while the breaker is
// open. A message the stream already had (a resent id) is errDuplicate,
// with its sequence.
func (c *Counter) add(ctx context.Context, op, subj string, delta []string, id string, always bool) (int64, uint64, error) {
	fail := func(maybe bool, err error) (int64, uint64, error) {
		return 0, 0, &UnavailableError{Op: op, Stream: c.stream, Subject: subj, MaybeApplied: maybe, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return fail(false, err)
	}
	// Not connected: fail now rather than have the message wait in the
	// reconnect buffer and be counted, unanswered, on reconnection.
	if !c.nc.IsConnected() {
		return fail(false, fmt.Errorf("nats: not connected (%s)", c.nc.Status()))
	}
	if !always {
		ok, probe := c.brk.admit(time.Now())
		if !ok {
			c.stats.failedFast.Add(1)
			return fail(false, ErrCircuitOpen)
		}
		if probe {
			defer c.brk.probed()
		}
	}
	parent := ctx
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	msg := &nats.Msg{Subject: subj, Header: nats.Header{incrHeader: delta, msgIDHeader: {id}}}
	var resp *nats.Msg
	var err error
	for {
		resp, err = c.nc.RequestMsgWithContext(ctx, msg)
		if !errors.Is(err, nats.ErrNoResponders) {
			break
		}
		t := time.NewTimer(noRespondersWait)
		select {
		case <-ctx.Done():
			t.Stop()
			if parent.Err() == nil {
				c.brk.trip(time.Now())
			}
			return fail(false, fmt.Errorf("no stream takes the subject: %w", nats.ErrNoResponders))
		case <-t.C:
		}
	}
	if err != nil {
		if parent.Err() == nil { // not the caller giving up
			c.brk.trip(time.Now())
		}
		return fail(true, err)
	}
	c.brk.reset() // an answer: the stream is in reach
	if total, seq, ok := parseCounterAck(resp.Data); ok {
		return total, seq, nil
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return fail(true, fmt.Errorf("unreadable acknowledgement %q: %w", resp.Data, err))
	}
	if ack.Error != nil {
		return fail(false, ack.Error)
	}
	if ack.Duplicate {
		return 0, ack.Seq, errDuplicate
	}
	if ack.Val == "" {
		// Stored by a stream that is not a counter stream.
		return fail(true, fmt.Errorf("stream %s acknowledged without a total: not a counter stream (allow_msg_counter)", ack.Stream))
	}
	total, err := strconv.ParseInt(ack.Val, 10, 64)
	if err != nil {
		return fail(true, fmt.Errorf("total %q: %w", ack.Val, err))
	}
	return total, ack.Seq, nil
}

// ErrCircuitOpen is the cause (within an *UnavailableError) of a Take,
// Refund or Used that sent nothing because a recent one got no answer in
// time: see Config.Cooldown.
var ErrCircuitOpen = errors.New("quota: the counters did not answer recently; not sending until the cooldown has passed")

// breaker stops sending increments after one got no answer in time, for a
// cooldown, then lets one through (the probe) until one is answered. A
// take that times out may still be counted later (a leader that lost its
// quorum commits its pending increments when the quorum is back), so
// sending every call of an outage into it would let the outage use up the
// budget; with the breaker at most the calls in flight when it opened and
// one probe per cooldown can.
type breaker struct {
	cooldown  time.Duration // 0: never opens
	openUntil atomic.Int64  // Unix ns; 0 = closed
	probing   atomic.Bool
}

// admit reports whether a request may go, and whether it is the probe (then
// probed must follow).
func (b *breaker) admit(now time.Time) (ok, probe bool) {
	u := b.openUntil.Load()
	if u == 0 {
		return true, false
	}
	if now.UnixNano() < u || !b.probing.CompareAndSwap(false, true) {
		return false, false
	}
	return true, true
}

func (b *breaker) probed() { b.probing.Store(false) }

func (b *breaker) trip(now time.Time) {
	if b.cooldown > 0 {
		b.openUntil.Store(now.Add(b.cooldown).UnixNano())
	}
}

func (b *breaker) reset() {
	if b.openUntil.Load() != 0 {
		b.openUntil.Store(0)
	}
}

// open reports whether the breaker holds requests back.
func (b *breaker) open() bool { return b.openUntil.Load() != 0 }
