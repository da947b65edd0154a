package quota

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

const (
	// DefaultStream is the name of the counter stream.
	DefaultStream = "PDP_QUOTAS"
	// DefaultPrefix is the subject prefix of the counters: the stream
	// takes "pdp.quota.>".
	DefaultPrefix = "pdp.quota"
	// DefaultMaxAge is how long the stream keeps a counter after its
	// last change: longer than the longest window (MinMaxAge), so that
	// old windows vanish on their own with no sweep.
	DefaultMaxAge = 35 * 24 * time.Hour
	// MinMaxAge is the shortest MaxAge allowed: the longest window (31
	// days and the hour a daylight-saving change may add) with margin. A
	// counter whose last message aged out within its window would start
	// again at 0: an over-allow.
	MinMaxAge = 32 * 24 * time.Hour
	// DefaultTimeout bounds one round trip of Take, Refund and Used.
	DefaultTimeout = 250 * time.Millisecond
	// DefaultCooldown is how long a Counter holds back after a timeout.
	DefaultCooldown = 500 * time.Millisecond
	// DefaultMaxObserved is the default bound on the totals a Counter
	// remembers for Observed.
	DefaultMaxObserved = 10_000
	// DefaultDuplicates is the stream's duplicate window: how long
	// JetStream remembers a message id (one per take: about takes per
	// second × window × 100 bytes of the servers' memory).
	DefaultDuplicates = time.Minute
	// MinDuplicates is the shortest duplicate window allowed: a failed
	// take is settled by sending it again under its id within 3/4 of it.
	MinDuplicates = 10 * time.Second
	// DefaultMaxUnsettled bounds the failed takes waiting to be settled.
	DefaultMaxUnsettled = 10_000
)

// Config configures the counter stream (EnsureStream) and a Counter
// (New). The zero Config is the defaults.
type Config struct {
	// Stream is the counter stream's name. Default DefaultStream.
	Stream string
	// Prefix is the counters' subject prefix, one or more tokens with no
	// wildcards. Default DefaultPrefix. The stream takes Prefix + ".>".
	Prefix string
	// Replicas of the stream, 1 to 5 (3 for a cluster). Default 1.
	Replicas int
	// MaxAge of a counter after its last change, at least MinMaxAge.
	// Default DefaultMaxAge.
	MaxAge time.Duration

	// Timeout bounds each round trip of a Counter (and the caller's
	// context may bound it further). Default DefaultTimeout.
	Timeout time.Duration
	// Cooldown is how long a Counter sends nothing after a round trip
	// got no answer within Timeout (it fails at once with
	// ErrCircuitOpen instead); then one call goes through as a probe,
	// and the first answer ends it. It bounds what an outage takes from
	// the budgets (see Take) and the latency of calls during it.
	// Default DefaultCooldown; negative never holds back.
	Cooldown time.Duration
	// MaxObserved bounds how many totals a Counter remembers for
	// Observed; negative remembers none. Default DefaultMaxObserved.
	MaxObserved int
	// Duplicates is the counter stream's duplicate window, at least
	// MinDuplicates: a failed take is settled (Counter.Settle) only
	// within 3/4 of it. Default DefaultDuplicates.
	Duplicates time.Duration
	// MaxUnsettled bounds the failed takes and reverts a Counter keeps
	// to settle. Default DefaultMaxUnsettled.
	MaxUnsettled int
	// Logger receives what a Counter cannot report through a result (a
	// failed revert). Nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Cooldown == 0 {
		c.Cooldown = DefaultCooldown
	}
	if c.MaxObserved == 0 {
		c.MaxObserved = DefaultMaxObserved
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.MaxUnsettled <= 0 {
		c.MaxUnsettled = DefaultMaxUnsettled
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks a Config after its defaults.
func (c Config) validate() error {
	if c.Stream == "" || strings.ContainsAny(c.Stream, ".*> \t\r\n/\\") {
		return fmt.Errorf("quota: stream name %q: no '.', '*', '>', white space or slashes", c.Stream)
	}
	if err := validPrefix(c.Prefix); err != nil {
		return err
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("quota: stream %s: replicas %d out of range 1 to 5", c.Stream, c.Replicas)
	}
	if c.MaxAge < MinMaxAge {
		return fmt.Errorf("quota: stream %s: max age %v is shorter than the minimum %v: a month's counters would vanish within their window", c.Stream, c.MaxAge, MinMaxAge)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("quota: timeout %v is negative", c.Timeout)
	}
	if c.Duplicates < MinDuplicates {
		return fmt.Errorf("quota: stream %s: duplicate window %v is shorter than the minimum %v: failed takes could not be settled", c.Stream, c.Duplicates, MinDuplicates)
	}
	return nil
}

func validPrefix(p string) error {
	if p == "" {
		return errors.New("quota: empty subject prefix")
	}
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n\x00*>") {
			return fmt.Errorf("quota: subject prefix %q: tokens must be non-empty with no wildcards or white space", p)
		}
	}
	return nil
}
