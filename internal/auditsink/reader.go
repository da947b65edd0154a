package auditsink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Filter selects events for `pdp audit tail|export`. Empty fields match
// everything. Outcome may list several outcomes separated by commas.
type Filter struct {
	// Resource matches the resource key or the resource URI.
	Resource string
	// Tool matches the target (tool or prompt name, resource URI).
	Tool     string
	Outcome  string
	Subject  string
	ClientID string
	Method   string
	// Since and Until bound the event time (inclusive; zero = open).
	Since, Until time.Time
}

// startSkew is how far before Since the server-side start time is set:
// the stream's timestamps are the NATS servers' clocks, the event time is
// the PDP's, and a replayed event is stored after its event time.
const startSkew = time.Minute

// subjects returns the server-side filter subjects: resource key, method
// and outcome are subject tokens; the rest is filtered here.
func (f Filter) subjects(prefix string) []string {
	rk := "*"
	if IsResourceKey(f.Resource) {
		rk = f.Resource
	}
	method := "*"
	if f.Method != "" {
		method = SanitizeToken(f.Method)
	}
	outcomes := f.outcomes()
	for i, o := range outcomes {
		outcomes[i] = SanitizeToken(o)
	}
	if len(outcomes) == 0 {
		outcomes = []string{"*"}
	}
	subs := make([]string, 0, len(outcomes))
	for _, o := range outcomes {
		s := prefix + "." + rk + "." + method + "." + o
		if !slices.Contains(subs, s) {
			subs = append(subs, s)
		}
	}
	return subs
}

func (f Filter) outcomes() []string {
	var out []string
	for _, o := range strings.Split(f.Outcome, ",") {
		if o = strings.ToLower(strings.TrimSpace(o)); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// Match reports whether ev passes every set field of the filter.
func (f Filter) Match(ev *Event) bool {
	if f.Resource != "" && ev.ResourceKey != f.Resource && ev.Resource != f.Resource {
		return false
	}
	if f.Tool != "" && ev.Target != f.Tool {
		return false
	}
	if os := f.outcomes(); len(os) > 0 && !slices.Contains(os, ev.Outcome) {
		return false
	}
	if f.Subject != "" && ev.Subject != f.Subject {
		return false
	}
	if f.ClientID != "" && ev.ClientID != f.ClientID {
		return false
	}
	if f.Method != "" && ev.Method != f.Method {
		return false
	}
	if !f.Since.IsZero() && ev.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && ev.Time.After(f.Until) {
		return false
	}
	return true
}

// Read calls fn for every event of the stream that matches f, in stream
// order, using an ordered consumer with server-side subject filters for
// resource key, method and outcome. Without follow it returns after the
// last event stored when it started; with follow it waits for new events
// until ctx ends (and then returns nil). fn returning an error stops Read
// with that error.
func Read(ctx context.Context, js jetstream.JetStream, stream, prefix string, f Filter, follow bool, fn func(*Event) error) error {
	if prefix == "" {
		prefix = DefaultSubjectPrefix
	}
	if stream == "" {
		stream = DefaultStream
	}
	str, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("auditsink: stream %s: %w", stream, err)
	}
	lastSeq := str.CachedInfo().State.LastSeq
	if !follow && lastSeq == 0 {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: f.subjects(prefix), DeliverPolicy: jetstream.DeliverAllPolicy}
	if !f.Since.IsZero() {
		start := f.Since.Add(-startSkew)
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	} else if follow && !f.Until.IsZero() && f.Until.Before(time.Now()) {
		follow = false
	}
	cons, err := str.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("auditsink: ordered consumer on %s: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("auditsink: consume %s: %w", stream, err)
	}
	defer it.Stop()
	for {
		if ctx.Err() != nil {
			if follow {
				return nil
			}
			return fmt.Errorf("auditsink: read %s: %w", stream, ctx.Err())
		}
		nctx, cancel := context.WithTimeout(ctx, time.Second)
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
				if follow {
					continue
				}
				// Nothing came for a while: done if nothing is pending.
				info, ierr := cons.Info(ctx)
				if ierr == nil && info.NumPending == 0 {
					return nil
				}
				continue
			}
			return fmt.Errorf("auditsink: read %s: %w", stream, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("auditsink: message metadata: %w", err)
		}
		if !follow && meta.Sequence.Stream > lastSeq {
			return nil
		}
		var ev Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			return fmt.Errorf("auditsink: stream %s sequence %d (subject %s) is not an audit event: %w", stream, meta.Sequence.Stream, msg.Subject(), err)
		}
		if f.Match(&ev) {
			if err := fn(&ev); err != nil {
				return err
			}
		}
		if !follow && (meta.NumPending == 0 || meta.Sequence.Stream >= lastSeq) {
			return nil
		}
	}
}

// ReadRaw calls fn with every message of the stream up to its last
// message at the start, in stream order: events and checkpoints, their
// exact bytes (for `pdp audit verify`). data is only valid during fn.
func ReadRaw(ctx context.Context, js jetstream.JetStream, stream string, fn func(subject string, streamSeq uint64, data []byte) error) error {
	if stream == "" {
		stream = DefaultStream
	}
	str, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("auditsink: stream %s: %w", stream, err)
	}
	lastSeq := str.CachedInfo().State.LastSeq
	if lastSeq == 0 {
		return nil
	}
	cons, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("auditsink: ordered consumer on %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("auditsink: consume %s: %w", stream, err)
	}
	defer it.Stop()
	for {
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("auditsink: read %s: %w", stream, ctx.Err())
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
				info, ierr := cons.Info(ctx)
				if ierr == nil && info.NumPending == 0 {
					return nil // the rest up to lastSeq was removed meanwhile
				}
				continue
			}
			return fmt.Errorf("auditsink: read %s: %w", stream, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("auditsink: message metadata: %w", err)
		}
		if meta.Sequence.Stream > lastSeq {
			return nil
		}
		if err := fn(msg.Subject(), meta.Sequence.Stream, msg.Data()); err != nil {
			return err
		}
		if meta.NumPending == 0 || meta.Sequence.Stream >= lastSeq {
			return nil
		}
	}
}
