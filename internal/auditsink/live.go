package auditsink

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// live tracks the events published directly (not from the spool) that
// await their JetStream ack. Each is published with its own reply subject
// under one inbox the sink subscribes to; the ack handler settles it.
//
// This is what jetstream.PublishMsgAsync does, minus what a sink does not
// need per event: a future with two channels, a timer per message (one
// sweep bounds all waits here), a goroutine hop to read the future, and a
// full JSON decode of every successful ack. On this project's 2-core
// machines those were ~7% of the CPU of an audited decision.
type live struct {
	prefix string // "<inbox>."

	mu      sync.Mutex
	next    uint64
	pending map[uint64]*item
	idle    chan struct{} // closed and replaced when pending becomes empty

	// slots bound the events awaiting an ack (Config.MaxPending): the
	// publisher takes one before it publishes, the settler gives it back.
	slots chan struct{}
}

func newLive(prefix string, maxPending int) *live {
	return &live{
		prefix:  prefix,
		pending: make(map[uint64]*item, maxPending),
		idle:    make(chan struct{}),
		slots:   make(chan struct{}, maxPending),
	}
}

// add registers it and returns its reply subject.
func (l *live) add(it *item) (uint64, string) {
	l.mu.Lock()
	l.next++
	tok := l.next
	l.pending[tok] = it
	l.mu.Unlock()
	var b [20]byte
	return tok, l.prefix + string(strconv.AppendUint(b[:0], tok, 36))
}

// take removes and returns the event of tok; nil when it was settled
// already (a late ack after a timeout or a reconnect).
func (l *live) take(tok uint64) *item {
	l.mu.Lock()
	it := l.pending[tok]
	if it != nil {
		delete(l.pending, tok)
		if len(l.pending) == 0 {
			close(l.idle)
			l.idle = make(chan struct{})
		}
	}
	l.mu.Unlock()
	if it != nil {
		<-l.slots
	}
	return it
}

// takeIf removes and returns the events for which keep is true.
func (l *live) takeIf(keep func(*item) bool) []*item {
	l.mu.Lock()
	var out []*item
	for tok, it := range l.pending {
		if keep(it) {
			out = append(out, it)
			delete(l.pending, tok)
		}
	}
	if len(out) > 0 && len(l.pending) == 0 {
		close(l.idle)
		l.idle = make(chan struct{})
	}
	l.mu.Unlock()
	for range out {
		<-l.slots
	}
	return out
}

// waitIdle returns a channel closed when no event awaits its ack (already
// closed when none does now).
func (l *live) waitIdle() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	return l.idle
}

// tokenOf reads the reply token from an ack's subject.
func (l *live) tokenOf(subject string) (uint64, bool) {
	if len(subject) <= len(l.prefix) {
		return 0, false
	}
	tok, err := strconv.ParseUint(subject[len(l.prefix):], 36, 64)
	return tok, err == nil
}

var (
	ackErrorKey     = []byte(`"error"`)
	ackStreamKey    = []byte(`"stream":`)
	ackDuplicateKey = []byte(`"duplicate":true`)
)

// parseAck reads a JetStream publish ack: an error, or whether the message
// was a duplicate. Only an ack that carries an error is decoded in full.
func parseAck(m *nats.Msg) (duplicate bool, err error) {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return false, nats.ErrNoResponders
	}
	if bytes.Contains(m.Data, ackErrorKey) || !bytes.Contains(m.Data, ackStreamKey) {
		var r struct {
			Error  *jetstream.APIError `json:"error"`
			Stream string              `json:"stream"`
		}
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return false, errors.Join(jetstream.ErrInvalidJSAck, err)
		}
		if r.Error != nil {
			return false, r.Error
		}
		if r.Stream == "" {
			return false, jetstream.ErrInvalidJSAck
		}
	}
	return bytes.Contains(m.Data, ackDuplicateKey), nil
}

// onAck settles the event an ack is for (nats.go calls it from the
// subscription's goroutine).
func (s *Sink) onAck(m *nats.Msg) {
	tok, ok := s.live.tokenOf(m.Subject)
	if !ok {
		return
	}
	it := s.live.take(tok)
	if it == nil {
		return // settled already: its spooled copy is deduplicated on replay
	}
	defer s.nMem.Add(-1)
	duplicate, err := parseAck(m)
	if err != nil {
		s.publishFailed(it, err)
		return
	}
	if duplicate {
		s.duplicates.Add(1)
	}
	s.published.Add(1)
	if s.m != nil {
		s.m.latency.Observe(time.Since(it.start).Seconds())
	}
}

// publishLive publishes it and registers it for its ack, waiting for a
// free slot first (or spooling it when Close runs out of time while it
// waits).
func (s *Sink) publishLive(it *item) {
	select {
	case s.live.slots <- struct{}{}:
	case <-s.abort:
		// Close ran out of time while acks were overdue: keep it on disk.
		_ = s.spoolItem(it, false)
		s.nMem.Add(-1)
		return
	}
	tok, reply := s.live.add(it)
	if err := s.publishMsg(it, reply); err != nil {
		if it := s.live.take(tok); it != nil {
			s.publishFailed(it, err)
			s.nMem.Add(-1)
		}
	}
}

// failPending spools the events whose ack has not come: those older than
// the ack timeout, or all of them (a reconnect, Close running out of
// time). A late ack then finds nothing to settle, and the replay of the
// spooled copy is dropped by JetStream as a duplicate.
func (s *Sink) failPending(all bool, why error) {
	deadline := time.Now().Add(-s.cfg.AckTimeout)
	for _, it := range s.live.takeIf(func(it *item) bool { return all || it.start.Before(deadline) }) {
		s.publishFailed(it, why)
		s.nMem.Add(-1)
	}
}

var (
	errAckTimeout   = errors.New("no JetStream ack within the ack timeout")
	errReconnected  = errors.New("connection to NATS lost before the ack")
	errCloseTimeout = errors.New("close deadline reached before the ack")
)

// runAckWatch spools events whose ack is overdue, and all pending ones
// when the connection is lost (their acks would go to the old one); at
// each reconnect it reads the server's max_payload again.
func (s *Sink) runAckWatch(status chan nats.Status) {
	defer s.pubWG.Done()
	every := max(s.cfg.AckTimeout/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ackWatchDone:
			return
		case st := <-status:
			if st == nats.CONNECTED {
				s.maxPayload.Store(s.nc.MaxPayload())
			} else {
				s.connEpoch.Add(1)
				select { // the batch in flight, if any, is lost too
				case s.connLost <- struct{}{}:
				default:
				}
				s.failPending(true, errReconnected)
			}
		case <-t.C:
			s.failPending(false, errAckTimeout)
		}
	}
}
