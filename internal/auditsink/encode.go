package auditsink

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Event encoding without reflection. appendEvent writes byte for byte what
// json.Marshal writes for an Event (TestAppendEventMatchesMarshal holds it
// to that, field by field), but only for events whose strings need no
// escaping; anything else goes to json.Marshal.

// chainRoom is the room left after an encoded event for the chain's
// fields (chain.link appends ,"chain":"<32 hex>","seq":<n>,"prev":"<64
// hex>"), so that linking does not copy the event again.
const chainRoom = 160

// marshalEvent returns the JSON of e as json.Marshal does.
func marshalEvent(e *Event) ([]byte, error) { return appendEventJSON(nil, e) }

// appendEventJSON writes the JSON of e (as json.Marshal does) into dst's
// buffer from its start, growing it when needed, with chainRoom to spare.
func appendEventJSON(dst []byte, e *Event) ([]byte, error) {
	if cap(dst) < 1024 {
		dst = make([]byte, 0, 1024)
	}
	b, ok := appendEvent(dst[:0], e)
	if !ok {
		j, err := json.Marshal(e)
		if err != nil {
			return b[:0], err
		}
		b = append(b[:0], j...)
	}
	return slices.Grow(b, chainRoom), nil
}

// appendEvent appends the JSON of e; ok is false when a value needs
// encoding/json (escapes, an id with spaces, arguments that fail).
func appendEvent(b []byte, e *Event) (_ []byte, ok bool) {
	b = append(b, '{')
	b, ok = appendField(b, `"id":`, e.ID, false)
	if !ok {
		return b, false
	}
	b = append(b, `,"time":"`...)
	b, err := e.Time.AppendText(b)
	if err != nil {
		return b, false
	}
	b = append(b, '"')
	for _, f := range [...]struct {
		key       string
		v         string
		omitempty bool
	}{
		{`,"schema":`, e.Schema, false},
		{`,"pdp":`, e.PDP, false},
		{`,"pep":`, e.PEP, true},
		{`,"resource":`, e.Resource, false},
		{`,"resource_key":`, e.ResourceKey, false},
		{`,"method":`, e.Method, false},
		{`,"target":`, e.Target, true},
		{`,"outcome":`, e.Outcome, false},
	} {
		if b, ok = appendField(b, f.key, f.v, f.omitempty); !ok {
			return b, false
		}
	}
	b = append(b, `,"http_status":`...)
	b = strconv.AppendInt(b, int64(e.HTTPStatus), 10)
	if b, ok = appendList(b, `,"required_scopes":`, e.RequiredScopes); !ok {
		return b, false
	}
	if b, ok = appendList(b, `,"missing_scopes":`, e.MissingScopes); !ok {
		return b, false
	}
	for _, f := range [...]struct{ key, v string }{
		{`,"reason":`, e.Reason},
		{`,"sub":`, e.Subject},
		{`,"client_id":`, e.ClientID},
	} {
		if b, ok = appendField(b, f.key, f.v, true); !ok {
			return b, false
		}
	}
	if len(e.Act) > 0 {
		b = append(b, `,"act":[`...)
		for i, a := range e.Act {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			n := len(b)
			if b, ok = appendField(b, `"sub":`, a.Subject, true); !ok {
				return b, false
			}
			key := `,"client_id":`
			if len(b) == n {
				key = key[1:]
			}
			if b, ok = appendField(b, key, a.ClientID, true); !ok {
				return b, false
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	for _, f := range [...]struct{ key, v string }{
		{`,"grant":`, e.Grant},
		{`,"issuer":`, e.Issuer},
		{`,"token_fingerprint":`, e.TokenFingerprint},
		{`,"token_validation":`, e.TokenValidation},
	} {
		if b, ok = appendField(b, f.key, f.v, true); !ok {
			return b, false
		}
	}
	if u := e.Unverified; u != nil {
		b = append(b, `,"unverified":{`...)
		n := len(b)
		for _, f := range [...]struct{ key, v string }{
			{`,"sub":`, u.Subject},
			{`,"client_id":`, u.ClientID},
			{`,"iss":`, u.Issuer},
		} {
			key := f.key
			if len(b) == n {
				key = key[1:]
			}
			if b, ok = appendField(b, key, f.v, true); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	for _, f := range [...]struct{ key, v string }{
		{`,"policy_revision":`, e.PolicyRevision},
		{`,"retry_of":`, e.RetryOf},
	} {
		if b, ok = appendField(b, f.key, f.v, true); !ok {
			return b, false
		}
	}
	if l := e.Limit; l != nil {
		if b, ok = appendField(b, `,"limit":{"kind":`, l.Kind, false); !ok {
			return b, false
		}
		b = append(b, `,"limit":`...)
		b = strconv.AppendInt(b, int64(l.Limit), 10)
		if b, ok = appendField(b, `,"per":`, l.Per, false); !ok {
			return b, false
		}
		if b, ok = appendField(b, `,"by":`, l.By, false); !ok {
			return b, false
		}
		if l.Uncounted {
			b = append(b, `,"uncounted":true`...)
		}
		b = append(b, '}')
	}
	b = append(b, `,"latency_us":`...)
	b = strconv.AppendInt(b, e.LatencyMicros, 10)
	if b, ok = appendList(b, `,"visible":`, e.Visible); !ok {
		return b, false
	}
	if b, ok = appendList(b, `,"hidden":`, e.Hidden); !ok {
		return b, false
	}
	if len(e.Arguments) > 0 {
		args, err := json.Marshal(e.Arguments)
		if err != nil {
			return b, false
		}
		b = append(b, `,"arguments":`...)
		b = append(b, args...)
	}
	if len(e.JSONRPCID) > 0 {
		if !plainRaw(e.JSONRPCID) {
			return b, false
		}
		b = append(b, `,"jsonrpc_id":`...)
		b = append(b, e.JSONRPCID...)
	}
	if e.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	if b, ok = appendField(b, `,"chain":`, e.Chain, true); !ok {
		return b, false
	}
	if e.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, e.Seq, 10)
	}
	if b, ok = appendField(b, `,"prev":`, e.Prev, true); !ok {
		return b, false
	}
	return append(b, '}'), true
}

// appendField appends key and the string v, unless omitempty and v is "".
func appendField(b []byte, key, v string, omitempty bool) ([]byte, bool) {
	if omitempty && v == "" {
		return b, true
	}
	if !plain(v) {
		return b, false
	}
	b = append(b, key...)
	b = append(b, '"')
	b = append(b, v...)
	return append(b, '"'), true
}

// appendList appends key and the list, omitted when empty.
func appendList(b []byte, key string, l []string) ([]byte, bool) {
	if len(l) == 0 {
		return b, true
	}
	b = append(b, key...)
	b = append(b, '[')
	for i, v := range l {
		if !plain(v) {
			return b, false
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, v...)
		b = append(b, '"')
	}
	return append(b, ']'), true
}

// plain reports whether encoding/json writes s unchanged between quotes:
// printable ASCII other than the characters it escapes.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// plainRaw reports whether encoding/json writes the raw value r unchanged:
// valid JSON with nothing to compact or escape (a number, a plain string).
func plainRaw(r json.RawMessage) bool {
	for _, c := range r {
		if c <= ' ' || c >= 0x7f || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return json.Valid(r)
}

// eventCopies are the scratch copies encode fills in defaults on (ev is
// the caller's and stays untouched); pooled, as a copy handed to
// json.Marshal escapes to the heap.
var eventCopies = sync.Pool{New: func() any { return new(Event) }}

// encode fills in the defaults of ev (ID, time, schema, PDP) on a copy and
// encodes it, dropping arguments and item lists when it is too large for
// one NATS message (Truncated).
func (s *Sink) encode(ev *Event) (*item, error) {
	e := eventCopies.Get().(*Event)
	defer func() {
		*e = Event{} // drop the references to the caller's data
		eventCopies.Put(e)
	}()
	*e = *ev
	e.Chain, e.Seq, e.Prev = "", 0, "" // the chain's to set (chain.link)
	if e.ID == "" {
		e.ID = NewID()
	}
	if len(e.ID) > 1024 || strings.ContainsAny(e.ID, "\r\n") {
		return nil, errors.New("event id longer than 1024 bytes or with a line break")
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Schema == "" {
		e.Schema = SchemaVersion
	}
	if e.PDP == "" {
		e.PDP = s.cfg.PDP
	}
	it := itemPool.Get().(*item)
	data, err := appendEventJSON(it.data, e)
	if limit := s.eventLimit(); err == nil && len(data) > limit {
		e.Arguments, e.Visible, e.Hidden, e.Truncated = nil, nil, nil, true
		if len(e.Reason) > 1024 {
			e.Reason = e.Reason[:1024]
		}
		if data, err = appendEventJSON(data, e); err == nil && len(data) > limit {
			err = fmt.Errorf("event of %d bytes exceeds %d even without arguments and item lists", len(data), limit)
		}
	}
	it.data = data
	if err != nil {
		recycle(it)
		return nil, err
	}
	it.id, it.subject, it.start = e.ID, s.subjects.get(e, s.cfg.SubjectPrefix), time.Now()
	return it, nil
}

// Items are pooled with their data buffer (encode reuses it), and
// recycled where an event is settled by its only owner: published in a
// batch (nats.go copied its bytes) or written to the spool (which copies
// them too). Events published one ack each (live.go) are not recycled:
// the ack handler and the ack watch may hold one while the publisher
// still writes it.
var itemPool = sync.Pool{New: func() any { return new(item) }}

// maxPooledData: larger buffers (an event with large arguments) are left
// to the collector.
const maxPooledData = 8 << 10

// recycle returns it to the pool; nothing may use it afterwards.
func recycle(it *item) {
	data := it.data[:0]
	if cap(data) > maxPooledData {
		data = nil
	}
	*it = item{data: data}
	itemPool.Put(it)
}

// subjectCache holds the subjects of events (NATSSubject), by resource
// key, method and outcome: a PDP decides on few of them, and building one
// is an allocation per event. Copy on write, read without a lock; bounded
// (maxCachedSubjects, short keys only), beyond which subjects are built
// each time.
type subjectCache struct {
	m  atomic.Pointer[map[subjectKey]string]
	mu sync.Mutex
}

type subjectKey struct{ resourceKey, method, outcome string }

const (
	maxCachedSubjects   = 512
	maxCachedSubjectKey = 128
)

func (c *subjectCache) get(e *Event, prefix string) string {
	k := subjectKey{e.ResourceKey, e.Method, e.Outcome}
	m := c.m.Load()
	if m != nil {
		if subj, ok := (*m)[k]; ok {
			return subj
		}
	}
	subj := e.NATSSubject(prefix)
	if len(k.resourceKey)+len(k.method)+len(k.outcome) > maxCachedSubjectKey || (m != nil && len(*m) >= maxCachedSubjects) {
		return subj
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	n := make(map[subjectKey]string, 1+len(ptrMap(old)))
	for key, v := range ptrMap(old) {
		n[key] = v
	}
	if len(n) < maxCachedSubjects {
		n[k] = subj
		c.m.Store(&n)
	}
	return subj
}

func ptrMap(m *map[subjectKey]string) map[subjectKey]string {
	if m == nil {
		return nil
	}
	return *m
}

// eventLimit is the largest encoded event: maxEventBytes, or less when the
// server's max_payload (less room for the headers) is smaller.
func (s *Sink) eventLimit() int {
	limit := maxEventBytes
	// The server's limit as of the last (re)connect: asking the connection
	// takes its lock, which the publisher and flusher hold, on every event.
	mp := int(s.maxPayload.Load())
	if mp == 0 { // not connected yet at New
		mp = int(s.nc.MaxPayload())
	}
	if mp > 0 && mp-1024 < limit {
		limit = mp - 1024 // room for the headers
	}
	return limit
}
