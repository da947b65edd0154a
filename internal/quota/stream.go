package quota

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig is the stream EnsureStream creates for cfg (after its
// defaults): a counter stream (allow_msg_counter: every message adds its
// Nats-Incr to its subject's total), file storage, limits retention
// discarding the oldest (a counter stream cannot discard new), one
// message per subject (the latest holds the total; the increments before
// it are not kept), no message or byte limit (discarding a counter of the
// current window would reset it to 0), max_age past the longest window,
// direct get allowed (reading a counter from any replica, as ADR-49
// clients and `nats stream get` expect), and the duplicate window a
// failed take is settled within (Counter.Settle).
func StreamConfig(cfg Config) jetstream.StreamConfig {
	cfg = cfg.withDefaults()
	return jetstream.StreamConfig{
		Name:              cfg.Stream,
		Description:       "mcp-pdp quota counters, one subject per key and calendar window; see docs/operations.md",
		Subjects:          []string{cfg.Prefix + ".>"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		MaxAge:            cfg.MaxAge,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: 1,
		AllowMsgCounter:   true,
		AllowDirect:       true,
		Duplicates:        cfg.Duplicates,
	}
}

// ErrStreamKept is wrapped by the error of EnsureStream when the stream
// exists with settings the configuration would weaken: it is left as it
// is and is fit for counting (the caller may log the error and go on).
var ErrStreamKept = errors.New("quota: counter stream left as it is")

// StreamKeptError says which settings of the configuration EnsureStream
// did not apply to an existing stream because they would weaken it.
type StreamKeptError struct {
	// Stream is the stream's name.
	Stream string
	// Weaker lists the settings, e.g. "replicas 1 < 3".
	Weaker []string
}

// Error names the stream and the settings.
func (e *StreamKeptError) Error() string {
	return fmt.Sprintf("quota: counter stream %s left as it is: the configuration would weaken it (%s)", e.Stream, strings.Join(e.Weaker, ", "))
}

// Unwrap makes errors.Is(err, ErrStreamKept) hold.
func (e *StreamKeptError) Unwrap() error { return ErrStreamKept }

// EnsureStream creates the counter stream (StreamConfig), or brings an
// existing one up to it: more replicas, a longer max_age, direct get, the
// prefix's subjects. It never weakens one: when the configuration asks
// for fewer replicas, a shorter max_age or memory storage, the stream is
// left entirely as it is and the error is a *StreamKeptError (wrapping
// ErrStreamKept) naming those settings; the stream is still fit for
// counting. A stream unfit for counting is an error and is not changed:
// not a counter stream (JetStream cannot turn an existing stream into
// one), sealed, without acknowledgements, with a message or byte limit
// (it would discard live counters), or, when it is left as it is, with a
// max_age shorter than MinMaxAge or without the prefix's subjects.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if js == nil {
		return fmt.Errorf("quota: stream %s: no JetStream context", cfg.Stream)
	}
	want := StreamConfig(cfg)
	for attempt := 0; ; attempt++ {
		str, err := js.Stream(ctx, cfg.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // another replica created it meanwhile, maybe otherwise
			}
			if err != nil {
				return fmt.Errorf("quota: create counter stream %s: %w", cfg.Stream, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("quota: look up counter stream %s: %w", cfg.Stream, err)
		}
		have := str.CachedInfo().Config
		if err := unfit(have); err != nil {
			return err
		}
		next, weaker := reconcileStream(have, want)
		if len(weaker) > 0 {
			if err := unfitKept(have, want.Subjects[0]); err != nil {
				return fmt.Errorf("%w; and it cannot be changed: the configuration would weaken it (%s)", err, strings.Join(weaker, ", "))
			}
			return &StreamKeptError{Stream: have.Name, Weaker: weaker}
		}
		if streamConfigEqual(have, next) {
			return nil
		}
		if _, err := js.UpdateStream(ctx, next); err != nil {
			return fmt.Errorf("quota: update counter stream %s: %w", cfg.Stream, err)
		}
		return nil
	}
}

// unfit: what makes an existing stream unusable for counting and is not
// for EnsureStream to change.
func unfit(have jetstream.StreamConfig) error {
	var why []string
	if !have.AllowMsgCounter {
		why = append(why, "it is not a counter stream (allow_msg_counter), and an existing stream cannot become one: delete it or name another quota stream")
	}
	if have.Sealed {
		why = append(why, "it is sealed")
	}
	if have.NoAck {
		why = append(why, "it does not acknowledge messages (no_ack), so no total comes back")
	}
	if have.MaxMsgs > 0 || have.MaxBytes > 0 {
		why = append(why, fmt.Sprintf("it has max_msgs %d / max_bytes %d: when full it would discard the oldest counters, maybe of the current window, which would then start again at 0 (an over-allow); remove the limits", have.MaxMsgs, have.MaxBytes))
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("quota: counter stream %s cannot be used: %s", have.Name, strings.Join(why, "; "))
}

// unfitKept: what makes a stream EnsureStream leaves as it is unusable.
func unfitKept(have jetstream.StreamConfig, subject string) error {
	var why []string
	if have.MaxAge > 0 && have.MaxAge < MinMaxAge {
		why = append(why, fmt.Sprintf("its max_age %v is shorter than %v: a month's counters would vanish within their window", have.MaxAge, MinMaxAge))
	}
	if !coversSubjects(have.Subjects, subject) {
		why = append(why, fmt.Sprintf("its subjects %v do not take %s", have.Subjects, subject))
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("quota: counter stream %s cannot be used: %s", have.Name, strings.Join(why, "; "))
}

// reconcileStream returns have brought up to want, and what of want would
// weaken have: fewer replicas, a shorter (or newly set) max_age, memory
// instead of file storage. Settings want does not speak of are kept.
func reconcileStream(have, want jetstream.StreamConfig) (jetstream.StreamConfig, []string) {
	next := have
	var weaker []string
	if want.Replicas < have.Replicas {
		weaker = append(weaker, fmt.Sprintf("replicas %d < %d", want.Replicas, have.Replicas))
	}
	next.Replicas = want.Replicas
	if want.MaxAge != have.MaxAge {
		if have.MaxAge == 0 || want.MaxAge < have.MaxAge {
			weaker = append(weaker, fmt.Sprintf("max_age %v < %v", want.MaxAge, maxAgeString(have.MaxAge)))
		}
		next.MaxAge = want.MaxAge
	}
	if have.Storage == jetstream.FileStorage && want.Storage != jetstream.FileStorage {
		weaker = append(weaker, "memory storage")
	} else if have.Storage != want.Storage {
		// JetStream cannot change the storage of a stream.
		weaker = append(weaker, "file storage (a memory stream cannot become a file one; recreate it)")
	}
	next.AllowDirect = true
	// A longer duplicate window only costs the servers memory; a
	// shorter one than configured could let a resent take count twice.
	next.Duplicates = max(have.Duplicates, want.Duplicates)
	if !coversSubjects(have.Subjects, want.Subjects[0]) {
		next.Subjects = append(slices.Clone(have.Subjects), want.Subjects[0])
	}
	if next.Description == "" {
		next.Description = want.Description
	}
	return next, weaker
}

func maxAgeString(d time.Duration) string {
	if d == 0 {
		return "unlimited"
	}
	return d.String()
}

// coversSubjects reports whether subjects hold subject literally (the
// counters' "<prefix>.>") or take every subject.
func coversSubjects(subjects []string, subject string) bool {
	return slices.Contains(subjects, subject) || slices.Contains(subjects, ">")
}

func streamConfigEqual(a, b jetstream.StreamConfig) bool {
	return a.Replicas == b.Replicas && a.MaxAge == b.MaxAge && a.AllowDirect == b.AllowDirect && a.Duplicates == b.Duplicates &&
		slices.Equal(a.Subjects, b.Subjects) && a.Description == b.Description
}
