package auditsink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream setup and the classification of JetStream errors.

// setupStream creates the stream, or brings an existing one to the
// configuration (never weakening it, see reconcileStream), or with
// SkipStreamSetup (audit.manage_stream: false) only checks that it exists
// and holds the sink's subjects; then it marks the stream ready.
func (s *Sink) setupStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	want := StreamConfig(s.cfg)
	str, err := s.js.Stream(ctx, s.cfg.Stream)
	if !s.cfg.SkipStreamSetup && !batchSupported(ctx, s.js) {
		// A server before 2.14 (JetStream API level 4) does not know
		// allow_batched: asking for it would change nothing there, and a
		// stream requiring level 4 would not be served by such a node of
		// a cluster.
		want.AllowBatchPublish = false
	}
	batching := false
	switch {
	case s.cfg.SkipStreamSetup:
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return &configError{fmt.Errorf("stream %s not found (audit.manage_stream is false, so it must exist): %w", s.cfg.Stream, err)}
		}
		if err != nil {
			return fmt.Errorf("look up stream: %w", err)
		}
		if subj := str.CachedInfo().Config.Subjects; !coversSubjects(subj, want.Subjects[0]) {
			// Maybe narrower patterns that still match; if not, the
			// publishes time out into the spool until the stream is fixed.
			s.log.Warn("the audit stream (audit.manage_stream: false) does not list the sink's subjects; events it does not take stay on the spool",
				"stream", s.cfg.Stream, "subjects", subj, "want", want.Subjects[0])
		}
		s.warnWeak(str.CachedInfo().Config)
		batching = str.CachedInfo().Config.AllowBatchPublish
	case errors.Is(err, jetstream.ErrStreamNotFound):
		created, err := s.js.CreateStream(ctx, want)
		if err != nil {
			return fmt.Errorf("create stream: %w", err)
		}
		batching = created.CachedInfo().Config.AllowBatchPublish
		s.log.Info("audit stream created", "stream", want.Name, "deny_delete", true, "deny_purge", true, "replicas", want.Replicas,
			"allow_batched", batching)
	case err != nil:
		return fmt.Errorf("look up stream: %w", err)
	default:
		have := str.CachedInfo().Config
		batching = have.AllowBatchPublish
		next, weaker := reconcileStream(have, want)
		if len(weaker) > 0 {
			// Never weaken what an operator (or an earlier config) set.
			s.log.Warn("the audit stream is left as it is: the configuration would weaken it", "stream", have.Name, "would_weaken", weaker)
			s.warnWeak(have)
			break
		}
		if !streamConfigEqual(have, next) {
			updated, err := s.js.UpdateStream(ctx, next)
			if err != nil {
				if isConfigError(err) {
					return fmt.Errorf("update stream: %w", err)
				}
				// Credentials that may publish but not manage streams:
				// use the stream as it is.
				s.log.Warn("could not update the audit stream; using it as it is", "stream", have.Name, "err", err)
				s.warnWeak(have)
				break
			}
			batching = updated.CachedInfo().Config.AllowBatchPublish
		}
	}
	if s.batching.Swap(batching) != batching || !s.setupLogged {
		s.setupLogged = true
		if batching {
			s.log.Info("audit events are published in batches (the stream allows batch publishing)", "stream", s.cfg.Stream)
		} else {
			s.log.Info("audit events are published one acknowledgement each: the stream does not allow batch publishing (allow_batched)", "stream", s.cfg.Stream)
		}
	}
	s.streamReady.Store(true)
	return nil
}

// batchSupported reports whether the server's JetStream knows fast batch
// publishing (API level 4, nats-server 2.14). Unknown (no answer, no
// right to ask) counts as no.
func batchSupported(ctx context.Context, js jetstream.JetStream) bool {
	info, err := js.AccountInfo(ctx)
	return err == nil && info.API.Level >= 4
}

// configError marks a stream the sink must not use, like isConfigError's.
type configError struct{ error }

func (e *configError) Unwrap() error { return e.error }

// warnWeak logs what leaves the audit open to removal.
func (s *Sink) warnWeak(c jetstream.StreamConfig) {
	if !c.DenyDelete || !c.DenyPurge {
		s.log.Warn("the audit stream allows deleting or purging events: anyone with the rights can erase the audit (set deny_delete and deny_purge on it)",
			"stream", c.Name, "deny_delete", c.DenyDelete, "deny_purge", c.DenyPurge)
	}
}

// reconcileStream returns have brought to want, and what of want would
// weaken have (then have is to be left alone): dropping deny-delete or
// deny-purge (JetStream refuses that anyway), a shorter or newly set
// retention (max_age), fewer replicas, memory instead of file storage,
// or subjects taken away. Settings of have that want does not speak of
// (limits, compression, ...) are kept.
func reconcileStream(have, want jetstream.StreamConfig) (jetstream.StreamConfig, []string) {
	next := have
	var weaker []string
	if have.DenyDelete && !want.DenyDelete {
		weaker = append(weaker, "deny_delete")
	}
	if have.DenyPurge && !want.DenyPurge {
		weaker = append(weaker, "deny_purge")
	}
	next.DenyDelete = have.DenyDelete || want.DenyDelete
	next.DenyPurge = have.DenyPurge || want.DenyPurge
	if want.MaxAge != have.MaxAge {
		if want.MaxAge != 0 && (have.MaxAge == 0 || want.MaxAge < have.MaxAge) {
			weaker = append(weaker, "max_age")
		}
		next.MaxAge = want.MaxAge
	}
	if want.Replicas < have.Replicas {
		weaker = append(weaker, "replicas")
	}
	next.Replicas = want.Replicas
	if have.Storage == jetstream.FileStorage && want.Storage != jetstream.FileStorage {
		weaker = append(weaker, "storage")
	}
	if !coversSubjects(have.Subjects, want.Subjects[0]) {
		next.Subjects = append(slices.Clone(have.Subjects), want.Subjects[0])
	}
	next.Duplicates = want.Duplicates
	// Batch publishing is an addition: never taken away.
	next.AllowBatchPublish = have.AllowBatchPublish || want.AllowBatchPublish
	if next.Description == "" {
		next.Description = want.Description
	}
	return next, weaker
}

// coversSubjects reports whether subjects hold subject literally (the
// sink's "<prefix>.>").
func coversSubjects(subjects []string, subject string) bool {
	return slices.Contains(subjects, subject) || slices.Contains(subjects, ">")
}

func streamConfigEqual(a, b jetstream.StreamConfig) bool {
	return a.DenyDelete == b.DenyDelete && a.DenyPurge == b.DenyPurge && a.MaxAge == b.MaxAge &&
		a.Replicas == b.Replicas && a.Duplicates == b.Duplicates && slices.Equal(a.Subjects, b.Subjects) &&
		a.Description == b.Description && a.Storage == b.Storage && a.AllowBatchPublish == b.AllowBatchPublish
}

// StreamConfig is the stream the sink creates for cfg (after cfg's
// defaults): file storage, limits retention discarding the oldest events,
// no size limit, and no deleting or purging of events (deny_delete,
// deny_purge: JetStream keeps them until max_age, and no client, not even
// one with every right on the stream, can remove one earlier), and batch
// publishing allowed (allow_batched: the sink publishes its events in
// batches acknowledged once, each event still one message).
func StreamConfig(cfg Config) jetstream.StreamConfig {
	cfg.applyDefaults()
	return jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "mcp-pdp audit events (" + SchemaVersion + "), one per decision; see docs/audit.md",
		Subjects:    []string{cfg.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.DuplicateWindow,
		DenyDelete:  true,
		DenyPurge:   true,
		// allow_batched: fast batch publishing (nats-server 2.14); each
		// message of a batch is stored as a message of its own.
		AllowBatchPublish: true,
	}
}

// isConfigError: the server understood the request and refused it (a bad
// or conflicting stream configuration) - retrying will not help.
func isConfigError(err error) bool {
	var ce *configError
	if errors.As(err, &ce) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case 10074, // replicas > 1 not supported in non-clustered mode
		10052, // invalid stream configuration
		10069: // stream update refused (e.g. a field that cannot change)
		return true
	}
	return apiErr.Code == 400
}

// isPermanent: publishing this message again can never succeed.
func isPermanent(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}
