package pep

import (
	"bytes"
	"encoding/json"
	"errors"
)

// errEventTooLarge: an SSE event over the middleware's bound.
var errEventTooLarge = errors.New("SSE event too large")

// event is one server-sent event as the server wrote it.
type event struct {
	// raw is the event as written, through its terminating blank line.
	raw []byte
	// lines are the event's lines without line endings.
	lines [][]byte
	// data is the event's data: its data lines' values joined by "\n".
	data    []byte
	hasData bool
}

// withData is the event with its data replaced by d (one line: the JSON
// the middleware writes has no line breaks), every other field kept.
func (e *event) withData(d []byte) []byte {
	var b bytes.Buffer
	wrote := false
	for _, l := range e.lines {
		if isField(l, "data") {
			if !wrote {
				b.WriteString("data: ")
				b.Write(d)
				b.WriteByte('\n')
				wrote = true
			}
			continue
		}
		b.Write(l)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// isField reports whether line is a field named name ("name:" or "name").
func isField(line []byte, name string) bool {
	if !bytes.HasPrefix(line, []byte(name)) {
		return false
	}
	rest := line[len(name):]
	return len(rest) == 0 || rest[0] == ':'
}

// bareCR reports whether an event's lines hold a lone CR (valid SSE
// framing that the splitter does not split on): its fields cannot be seen,
// so a stream that must be filtered refuses it rather than pass it unread.
func (e *event) bareCR() bool {
	for _, l := range e.lines {
		if bytes.IndexByte(l, '\r') >= 0 {
			return true
		}
	}
	return false
}

func (e *event) finish() {
	var data [][]byte
	for _, l := range e.lines {
		if !isField(l, "data") {
			continue
		}
		v := l[len("data"):]
		if len(v) > 0 {
			v = v[1:] // the colon
			if len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
		}
		data = append(data, v)
	}
	if len(data) > 0 {
		e.hasData = true
		e.data = bytes.Join(data, []byte("\n"))
	}
}

// splitter cuts what a handler writes to an SSE stream into events (LF
// or CRLF line endings; a leading byte order mark dropped), each at most
// limit bytes.
type splitter struct {
	buf     []byte
	limit   int64
	started bool
}

// add appends written bytes (a leading byte order mark dropped, as SSE
// decoders drop it).
func (s *splitter) add(p []byte) {
	s.buf = append(s.buf, p...)
	if !s.started && len(s.buf) >= 3 {
		s.started = true
		s.buf = bytes.TrimPrefix(s.buf, []byte{0xEF, 0xBB, 0xBF})
	}
}

// overLimit reports whether the unfinished event is over the limit.
func (s *splitter) overLimit() bool { return int64(len(s.buf)) > s.limit }

// next returns the next complete event, or nil. Blank lines between
// events are skipped.
func (s *splitter) next() (*event, error) {
	ev := &event{}
	i := 0
	for {
		j := bytes.IndexByte(s.buf[i:], '\n')
		if j < 0 {
			return nil, nil
		}
		line := s.buf[i : i+j+1]
		content := bytes.TrimRight(line, "\r\n")
		i += j + 1
		if len(content) == 0 {
			if len(ev.lines) == 0 {
				// blank lines before an event: consumed
				s.buf = s.buf[i:]
				i = 0
				continue
			}
			ev.raw = append([]byte(nil), s.buf[:i]...)
			s.buf = s.buf[i:]
			if int64(len(ev.raw)) > s.limit {
				return nil, errEventTooLarge
			}
			ev.finish()
			return ev, nil
		}
		ev.lines = append(ev.lines, append([]byte(nil), content...))
	}
}

// rest returns what was written after the last complete event (an event
// the handler did not terminate), as an event, or nil.
func (s *splitter) rest() *event {
	if len(bytes.TrimSpace(s.buf)) == 0 {
		return nil
	}
	ev := &event{raw: s.buf}
	for _, l := range bytes.Split(s.buf, []byte("\n")) {
		if c := bytes.TrimRight(l, "\r"); len(c) > 0 {
			ev.lines = append(ev.lines, c)
		}
	}
	s.buf = nil
	ev.finish()
	return ev
}

// errorEvent is an SSE event carrying a JSON-RPC error for the request id.
func errorEvent(id json.RawMessage, why string) []byte {
	return messageEvent(rpcError(id, codeInternalError, why))
}

// messageEvent frames one JSON-RPC message as an SSE event.
func messageEvent(msg []byte) []byte {
	return append(append([]byte("event: message\ndata: "), msg...), '\n', '\n')
}
