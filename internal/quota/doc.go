// Package quota is the PDP's calendar-window quotas, counted exactly
// across replicas: the catalog's `quota: {limit: 100, per: day, by: sub}`.
//
// # Windows
//
// A quota allows Rule.Limit calls in each fixed calendar window (Hour,
// Day, Month) of the wall clock in the rule's time zone, and starts at 0
// in the next one: no sliding, no sweep. Window computes a window's
// bounds; a day is 23 or 25 hours when the clocks change, a month 28 to
// 31 days, and an hour follows the local clock with its UTC offset (the
// hour the clocks fall back over is two windows; with a half-hour change,
// as on Lord Howe Island, an hour around it is cut to 30 minutes).
//
// # Counters
//
// Every key (built by the caller, e.g. "tool:generate_qr|sub:alice") and
// window has a counter: a subject "<prefix>.<window id>.<key hash>" of a
// JetStream counter stream (ADR-49, allow_msg_counter, nats-server 2.12 or
// later) that EnsureStream creates. A message with the header
// "Nats-Incr: +1" adds one to its subject's total, and the stream's leader
// answers with the new total in the acknowledgement ("val"). Take is that
// one round trip: a total within the limit allows the call; a total above
// it denies the call and is reverted with "Nats-Incr: -1", so that a
// denial consumes nothing. Because the leader applies the increments of a
// subject in order, every total is handed out once, and all replicas
// together allow exactly Limit calls a window (see Take for the
// reasoning, and for the under-allow a Refund racing a denial can cause).
// The stream keeps one message per subject and drops it MaxAge after its
// last change, longer than any window: old windows vanish on their own.
//
// # When the counters are out of reach
//
// Take, Refund and Used fail with an *UnavailableError (ErrUnavailable)
// when NATS is disconnected (at once), when no acknowledgement comes
// within Config.Timeout (250 ms by default) or the caller's context, or
// when the stream refuses the message. The caller maps that to the
// resource's on_counter_unavailable (deny by default, or allow and
// record). An acknowledgement that does not come does not mean the
// increment was not applied (UnavailableError.MaybeApplied). Every
// increment carries a message id (Nats-Msg-Id), so the caller settles such
// a take (Counter.Settle, worked through by Counter.Run): it is sent again
// under its id until the stream answers (the stream stores an id once
// within its duplicate window, Config.Duplicates), and for a refused call
// taken back with a -1 of its own; an allowed call is counted once. The
// windows then count exactly the calls that were allowed; until then a
// budget may look smaller by the calls being settled, and nothing is ever
// let through beyond the limit. After such a timeout a Counter sends
// nothing for Config.Cooldown (the calls fail at once with
// ErrCircuitOpen), then one probe, so that an outage does not send every
// call made during it into a leader that cannot commit.
//
// # Fixed windows
//
// A Rule with Every counts in fixed windows of that length from the Unix
// epoch instead of calendar windows: the PDP's rates shared by the
// replicas (`rate: {..., shared: true}`).
//
// # Observed totals
//
// Each Counter remembers the latest total it saw per key and window (at
// most Config.MaxObserved), so that the policy may see an approximate
// remaining budget with no round trip (Counter.Observed).
package quota
