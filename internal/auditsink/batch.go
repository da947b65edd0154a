package auditsink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Batches: the async publisher sends the events it has gathered
// (collect) as one JetStream fast batch (ADR-50, nats-server 2.14: the
// stream's allow_batched). Every event is still a message of its own in
// the stream, with its Nats-Msg-Id and Nats-Expected-Stream headers, stored
// as it arrives, exactly as a single publish; what the batch changes is the
// acknowledgement: the server confirms the batch once, after its last
// message is stored, with the number of messages stored, instead of once
// per message. The messages carry their place in the batch in their reply
// subject:
//
//	<inbox>.<batch id>.<flow>.fail.<seq>.<op>.$FI
//
// op 0 starts the batch (seq 1), 1 appends, 2 appends and commits (the
// last event). "fail" is the gap mode: the server ends the batch at the
// first message it misses or refuses, so that its final ack
// ({"stream":..,"seq":..,"batch":..,"count":n}) means: the batch's first
// n messages are stored, and only those. flow asks for a flow ack
// ({"type":"ack","seq":s}: the first s are stored) every that many
// messages; the server sends one when a batch starts and at most one every
// 500 messages.
//
// The publisher has one batch in flight at a time: it waits for the final
// ack (or an error, a lost connection, the ack timeout, Close's deadline)
// before it sends the next, while new events queue up for it. The events
// the server did not confirm go to the spool and are replayed one by one;
// those it had stored after all are dropped there as duplicates (their
// Nats-Msg-Id, within the stream's duplicate window). Nothing is taken as
// stored without the server's word, so a lost batch costs a replay, never
// an event.

// batchFlow is the flow value the batches ask for: the server caps it at
// 500, so a batch of maxBurst events gets no flow ack but its first.
const batchFlow = "500"

// burst is the batch in flight. The publisher goroutine owns it.
type burst struct {
	id    string // fast batch id: the sink's prefix and a counter
	items []*item
	sent  time.Time
	epoch uint64 // s.connEpoch when it was sent
	// stored is how many of items, from the first, the server confirmed
	// stored so far (flow acks).
	stored int
	// duplicate: the batch was one event, which the stream had already
	// (the server skips duplicates inside a batch without saying so, and
	// counts them in its final ack).
	duplicate bool
}

// publishBurst sends items as one fast batch and waits until it is
// settled: every event counted published or spooled.
func (s *Sink) publishBurst(items []*item) {
	s.burstSeq++
	s.batches.Add(1)
	b := &s.cur
	*b = burst{id: s.burstPrefix + strconv.FormatUint(s.burstSeq, 36), items: items,
		sent: time.Now(), epoch: s.connEpoch.Load()}
	s.replyBuf = append(append(append(s.replyBuf[:0], s.batchInbox...), b.id...), "."+batchFlow+".fail."...)
	base := len(s.replyBuf)
	for i, it := range items {
		op := byte('1')
		switch {
		case i == len(items)-1:
			op = '2' // commit; also for a batch of one
		case i == 0:
			op = '0'
		}
		r := strconv.AppendUint(s.replyBuf[:base], uint64(i+1), 10)
		r = append(r, '.', op, '.', '$', 'F', 'I')
		s.replyBuf = r
		if err := s.publishMsg(it, string(r)); err != nil {
			// The batch cannot be completed: what went out may be stored,
			// the replay sorts it out.
			s.settleBurst(fmt.Errorf("publish: %w", err))
			return
		}
	}
	s.awaitBurst()
}

// awaitBurst waits for the final ack of the batch in flight, or for what
// ends the wait: an error, a lost connection, the ack timeout, Close's
// deadline.
func (s *Sink) awaitBurst() {
	b := &s.cur
	s.burstTimer.Reset(s.cfg.AckTimeout)
	defer s.burstTimer.Stop()
	for {
		select {
		case m := <-s.batchAcks:
			if done, err := s.onBurstAck(m); done {
				s.settleBurst(err)
				return
			}
		case <-s.connLost:
			if s.connEpoch.Load() != b.epoch {
				s.settleBurst(errReconnected)
				return
			}
		case <-s.burstTimer.C:
			s.settleBurst(errAckTimeout)
			return
		case <-s.abort:
			s.settleBurst(errCloseTimeout)
			return
		}
	}
}

// errBatchIncomplete: the server's final ack counts fewer messages than the
// batch had (it missed or refused one; see the batch's other acks).
var errBatchIncomplete = errors.New("JetStream stored only part of the batch")

// onBurstAck reads a message on the batch inbox. done is true when it
// settles the batch in flight: b.stored is then final, and err says why
// the rest, if any, is not stored.
func (s *Sink) onBurstAck(m *nats.Msg) (done bool, err error) {
	b := &s.cur
	if !s.isBurstReply(m.Subject, b.id) {
		return false, nil // a batch settled before (a late ack, or the errors of messages after its end)
	}
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == "503" {
			return true, nats.ErrNoResponders
		}
		return true, jetstream.ErrInvalidJSAck
	}
	switch {
	case bytes.HasPrefix(m.Data, flowAckPrefix):
		if seq, ok := jsonUint(m.Data, `"seq":`); ok && int(seq) > b.stored {
			b.stored = min(int(seq), len(b.items))
		}
		return b.stored == len(b.items), nil
	case bytes.HasPrefix(m.Data, flowGapPrefix), bytes.HasPrefix(m.Data, flowErrPrefix):
		// Informational: the final ack follows and counts what is stored.
		if bytes.HasPrefix(m.Data, flowErrPrefix) {
			s.log.Warn("JetStream refused a message of an audit batch; the events after the last stored one are replayed from the spool", "batch", b.id, "detail", string(m.Data))
		}
		return false, nil
	case bytes.Contains(m.Data, ackErrorKey):
		var r struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &r); err != nil || r.Error == nil {
			return true, errors.Join(jetstream.ErrInvalidJSAck, err)
		}
		if r.Error.ErrorCode == jsErrBatchPublishDisabled && s.batching.Swap(false) {
			s.log.Warn("the audit stream no longer allows batch publishing: events are published one acknowledgement each", "stream", s.cfg.Stream)
		}
		return true, r.Error
	}
	count, ok := jsonUint(m.Data, `"count":`)
	if !ok || !bytes.Contains(m.Data, ackStreamKey) {
		return true, jetstream.ErrInvalidJSAck
	}
	b.stored = max(b.stored, min(int(count), len(b.items)))
	b.duplicate = bytes.Contains(m.Data, ackDuplicateSpaceKey) || bytes.Contains(m.Data, ackDuplicateKey)
	if b.stored < len(b.items) {
		return true, errBatchIncomplete
	}
	return true, nil
}

// JetStream's "batch publish is disabled" (the stream does not allow it).
const jsErrBatchPublishDisabled jetstream.ErrorCode = 10205

var (
	flowAckPrefix = []byte(`{"type":"ack"`)
	flowGapPrefix = []byte(`{"type":"gap"`)
	flowErrPrefix = []byte(`{"type":"err"`)
	// The server writes a batch's duplicate ack with a space.
	ackDuplicateSpaceKey = []byte(`"duplicate": true`)
)

// isBurstReply reports whether subject is a reply subject of batch id.
func (s *Sink) isBurstReply(subject, id string) bool {
	n := len(s.batchInbox)
	return len(subject) > n+len(id) && subject[:n] == s.batchInbox && subject[n:n+len(id)] == id && subject[n+len(id)] == '.'
}

// settleBurst counts the batch's stored events published and spools the
// others (err says why).
func (s *Sink) settleBurst(err error) {
	b := &s.cur
	now := time.Now()
	if b.duplicate {
		s.duplicates.Add(1)
	}
	for _, it := range b.items[:b.stored] {
		s.published.Add(1)
		if s.m != nil {
			s.m.latency.Observe(now.Sub(it.start).Seconds())
		}
		s.nMem.Add(-1)
		recycle(it)
	}
	if rest := b.items[b.stored:]; len(rest) > 0 {
		if err == nil {
			err = errBatchIncomplete
		}
		s.enterSpooling(err.Error())
		for _, it := range rest {
			_ = s.spoolRecycle(it, false)
			s.nMem.Add(-1)
		}
	}
	clear(b.items)
	*b = burst{}
}

// jsonUint reads the unsigned integer after key in a flat JSON object.
func jsonUint(data []byte, key string) (uint64, bool) {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, false
	}
	i += len(key)
	for i < len(data) && data[i] == ' ' {
		i++
	}
	j := i
	for j < len(data) && data[j] >= '0' && data[j] <= '9' {
		j++
	}
	if j == i {
		return 0, false
	}
	v, err := strconv.ParseUint(string(data[i:j]), 10, 64)
	return v, err == nil
}
