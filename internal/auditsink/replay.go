package auditsink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/spool"
)

// The replayer: the spool goes out in order whenever NATS is available.

// runReplayer publishes the spool in order whenever NATS is available,
// commits progress after the acks, and switches back to direct publishing
// once the spool is empty.
func (s *Sink) runReplayer() {
	defer s.bgWG.Done()
	const minBackoff, maxBackoff = 100 * time.Millisecond, 2 * time.Second
	backoff := minBackoff
	idle := time.NewTicker(250 * time.Millisecond)
	defer idle.Stop()
	var lastErr string
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-idle.C:
		}
		err := s.replay(s.ctx)
		if err == nil {
			backoff = minBackoff
			if lastErr != "" {
				s.log.Info("audit spool replay resumed")
				lastErr = ""
			}
			continue
		}
		if s.ctx.Err() != nil {
			return
		}
		if msg := err.Error(); msg != lastErr {
			s.log.Warn("audit spool replay waiting for NATS", "err", err, "spool_pending", s.sp.Stats().Pending)
			lastErr = msg
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// errNotConnected: the connection is down (at New, or while replaying).
var errNotConnected = errors.New("not connected to NATS")

// replay publishes the spool from its cursor until it is empty (then the
// sink publishes directly again), committing after the acks. An error
// means NATS or the stream is unavailable; the replayer retries.
func (s *Sink) replay(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !s.nc.IsConnected() {
			if s.sp.Stats().Segments == 0 {
				return nil // nothing to replay; Record spools and wakes us
			}
			return errNotConnected
		}
		if !s.streamReady.Load() {
			if err := s.setupStream(ctx); err != nil {
				return fmt.Errorf("stream %s: %w", s.cfg.Stream, err)
			}
			s.log.Info("audit stream ready", "stream", s.cfg.Stream)
		}
		start := s.sp.Cursor()
		b, err := s.sp.ReadBatch(s.cfg.MaxPending, 4<<20)
		if err != nil {
			return err
		}
		if len(b.Records) == 0 {
			if b.End != start {
				if err := s.sp.Commit(b.End, 0); err != nil {
					s.log.Warn("audit spool: commit", "err", err)
				}
				if s.sp.Cursor() == start {
					return nil // no progress possible now
				}
				continue
			}
			if s.sp.Drained(func() {
				if s.spooling.Swap(false) {
					s.log.Info("audit spool drained; publishing directly again")
				}
			}) {
				return nil
			}
			return nil
		}
		consumed, err := s.publishBatch(ctx, b.Records)
		if consumed > 0 {
			end := b.End
			if consumed < len(b.Records) {
				end = b.Records[consumed].Start
			}
			if cerr := s.sp.Commit(end, consumed); cerr != nil {
				s.log.Warn("audit spool: commit", "err", cerr)
			}
		}
		if err != nil {
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				// No stream behind the subjects (deleted?) or a leader
				// election: check, and recreate it, before the next try.
				s.streamReady.Store(false)
			}
			return err
		}
	}
}

// publishBatch publishes recs async and waits for all acks. It returns
// how many records from the front are done (acked, or dropped as
// unpublishable) and the first error.
func (s *Sink) publishBatch(ctx context.Context, recs []spool.Record) (int, error) {
	futs := make([]jetstream.PubAckFuture, len(recs))
	errs := make([]error, len(recs))
	for i, r := range recs {
		f, err := s.js.PublishMsgAsync(s.msg(r.Subject, r.ID, r.Data))
		if err != nil {
			errs[i] = err
			if !isPermanent(err) {
				break
			}
			continue
		}
		futs[i] = f
	}
	consumed := 0
	var first error
	prefix := true
	for i, r := range recs {
		err := errs[i]
		if f := futs[i]; f != nil {
			select {
			case ack := <-f.Ok():
				s.acked(&item{id: r.ID}, ack, true)
			case err = <-f.Err():
			case <-ctx.Done():
				return consumed, ctx.Err()
			}
		} else if err == nil {
			err = errors.New("not sent")
		}
		if err != nil && isPermanent(err) {
			s.failed.Add(1)
			s.log.Error("AUDIT EVENT LOST: spooled event rejected by JetStream", "id", r.ID, "subject", r.Subject, "err", err)
			err = nil
		}
		if err != nil {
			if first == nil {
				first = err
			}
			prefix = false
			continue
		}
		if prefix {
			consumed++
		}
	}
	if first != nil {
		return consumed, fmt.Errorf("replay publish: %w", first)
	}
	return consumed, nil
}
