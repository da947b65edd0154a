// Package ratelimit is the PDP's per-replica token buckets, keyed by
// caller: the catalog's `rate: {limit: 10, per: 1m, burst: 20, by: client}`.
//
// # Semantics
//
// A Rule is a token bucket: it holds at most Burst tokens (0 = Limit),
// starts full, and gains Limit tokens every Per, evenly (one every
// Per/Limit, fractions included: 3 per second is one every 333333333.33…
// ns, counted exactly, not rounded). A call takes a token (Limiter.Take);
// without one it is denied, consumes nothing, and learns the exact wait
// until one is there (Result.RetryAfter; RetryAfterSeconds rounds it up
// for an HTTP Retry-After). So a caller may make Burst calls at once, then
// Limit per Per for ever. The arithmetic is in integers, exact to the
// nanosecond, and allocates nothing for a key already held.
//
// A bucket is named by a key the caller builds (say
// "tool:generate_qr|client:abc"): the package does not interpret keys, so
// whatever must not share a bucket (two tools, two rules) must differ in
// the key. A key seen with another rule (a reloaded catalog) keeps the
// whole tokens it had, at most the new burst; a full bucket is full under
// the new rule.
//
// # Per replica
//
// The buckets live in the memory of one PDP replica, with no network on
// the decision path. N replicas behind a load balancer therefore allow up
// to N times the limit (each caller up to N × Burst at once, then
// N × Limit per Per), and a restart forgets every bucket (they start full
// again). Exact limits across replicas are the business of package quota.
//
// # Refunds
//
// Take before anything that may still refuse the call would count calls
// that never happened. The intended order is: the policy decides; if it
// allows, Take; if the call carries several rules, Take each in turn and
// Refund those already taken when one is denied. Refund gives a token
// back (never beyond the burst).
//
// # Memory
//
// A Limiter holds at most Options.MaxKeys buckets, so that callers minting
// identities cannot grow it. A bucket that has filled up again is
// indistinguishable from a new one, so it may be dropped without changing
// any answer: every new key first drops the full buckets among the least
// recently used few. If the bound is still reached, the least recently
// used bucket goes anyway (Stats.Evicted): that one forgets its debt, and
// its caller may get up to a burst early. The bound is kept per lock shard
// (MaxKeys / shards each), so evictions may start a little before MaxKeys
// keys are held in all.
//
// # Time
//
// The clock (Options.Now, time.Now by default) is read as a duration since
// New: with time.Now that is the monotonic clock, immune to wall-clock
// steps. A clock that goes back anyway (a fake one) never mints tokens
// nor takes any: each bucket stands still until the clock passes again
// the latest reading it saw (that of its lock shard).
package ratelimit
