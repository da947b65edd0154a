package auditsink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream setup and the classification of JetStream errors.

// setupStream creates or updates the stream (or, with SkipStreamSetup,
// checks that it exists) and marks it ready.
func (s *Sink) setupStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.cfg.SkipStreamSetup {
		if _, err := s.js.Stream(ctx, s.cfg.Stream); err != nil {
			return fmt.Errorf("look up stream (Config.SkipStreamSetup is set, so it must exist): %w", err)
		}
	} else if _, err := s.js.CreateOrUpdateStream(ctx, StreamConfig(s.cfg)); err != nil {
		if isConfigError(err) {
			return fmt.Errorf("create or update stream: %w", err)
		}
		// Credentials that may publish but not manage streams: use the
		// stream an operator created, if it is there.
		if _, serr := s.js.Stream(ctx, s.cfg.Stream); serr != nil {
			return fmt.Errorf("create or update stream: %w", err)
		}
		s.log.Warn("could not create or update the audit stream; using it as it is", "stream", s.cfg.Stream, "err", err)
	}
	s.streamReady.Store(true)
	return nil
}

// StreamConfig is the stream the sink creates or updates for cfg (after
// cfg's defaults): file storage, limits retention discarding the oldest
// events, no size limit.
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
	}
}

// isConfigError: the server understood the request and refused it (a bad
// or conflicting stream configuration) - retrying will not help.
func isConfigError(err error) bool {
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
