package quota

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// CheckStream says, without changing anything, what the PDP would make
// of an existing counter stream whose configuration is have, for
// `pdp doctor`. It applies EnsureStream's rules:
//
//   - managed (the PDP manages its streams, audit.manage_stream): an
//     unfit stream is an error as EnsureStream's; one the configuration
//     would weaken is a *StreamKeptError (fit, left as it is); otherwise
//     changes lists what EnsureStream would update, e.g.
//     "replicas 1 -> 3" (empty: nothing).
//   - not managed: EnsureStream does not run, the stream is used as it
//     is; it is an error when unfit for counting (as a stream
//     EnsureStream leaves as it is), and changes is empty.
func CheckStream(have jetstream.StreamConfig, cfg Config, managed bool) (changes []string, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	want := StreamConfig(cfg)
	if err := unfit(have); err != nil {
		return nil, err
	}
	if !managed {
		return nil, unfitKept(have, want.Subjects[0])
	}
	next, weaker := reconcileStream(have, want)
	if len(weaker) > 0 {
		if err := unfitKept(have, want.Subjects[0]); err != nil {
			return nil, fmt.Errorf("%w; and it cannot be changed: the configuration would weaken it (%s)", err, strings.Join(weaker, ", "))
		}
		return nil, &StreamKeptError{Stream: have.Name, Weaker: weaker}
	}
	if streamConfigEqual(have, next) {
		return nil, nil
	}
	if have.Replicas != next.Replicas {
		changes = append(changes, fmt.Sprintf("replicas %d -> %d", have.Replicas, next.Replicas))
	}
	if have.MaxAge != next.MaxAge {
		changes = append(changes, fmt.Sprintf("max_age %s -> %s", maxAgeString(have.MaxAge), maxAgeString(next.MaxAge)))
	}
	if have.AllowDirect != next.AllowDirect {
		changes = append(changes, "allow_direct on")
	}
	if have.Duplicates != next.Duplicates {
		changes = append(changes, fmt.Sprintf("duplicate window %s -> %s", have.Duplicates, next.Duplicates))
	}
	if !slices.Equal(have.Subjects, next.Subjects) {
		changes = append(changes, fmt.Sprintf("subjects %v -> %v", have.Subjects, next.Subjects))
	}
	if have.Description != next.Description {
		changes = append(changes, "description")
	}
	return changes, nil
}
