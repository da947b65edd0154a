package pep

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
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

// writeWithData writes the event with its data replaced by the
// concatenation of parts (one line), as withData builds it, without
// building it.
func (e *event) writeWithData(w io.Writer, parts [][]byte) error {
	wrote := false
	nl := []byte{'\n'}
	for _, l := range e.lines {
		if isField(l, "data") {
			if wrote {
				continue
			}
			wrote = true
			if _, err := io.WriteString(w, "data: "); err != nil {
				return err
			}
			for _, p := range parts {
				if _, err := w.Write(p); err != nil {
					return err
				}
			}
			if _, err := w.Write(nl); err != nil {
				return err
			}
			continue
		}
		if _, err := w.Write(l); err != nil {
			return err
		}
		if _, err := w.Write(nl); err != nil {
			return err
		}
	}
	_, err := w.Write(nl)
	return err
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
	switch len(data) {
	case 0:
	case 1:
		e.hasData, e.data = true, data[0] // the common case: a slice of raw
	default:
		e.hasData, e.data = true, bytes.Join(data, []byte("\n"))
	}
}

// splitter cuts what a handler writes to an SSE stream into events (LF
// or CRLF line endings; a leading byte order mark dropped), each at most
// limit bytes.
type splitter struct {
	buf      []byte
	limit    int64
	started  bool
	searched int // bytes of buf searched for an event's end without finding one
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
// events are skipped. Bytes already searched are not searched again, so
// that an event written in many small pieces costs one pass.
func (s *splitter) next() (*event, error) {
	// Blank lines before an event.
	for len(s.buf) > 0 && (s.buf[0] == '\n' || (s.buf[0] == '\r' && len(s.buf) > 1 && s.buf[1] == '\n')) {
		if s.buf[0] == '\r' {
			s.buf = s.buf[2:]
		} else {
			s.buf = s.buf[1:]
		}
		s.searched = 0
	}
	from := max(0, s.searched-2)
	end := -1
	if i := bytes.Index(s.buf[from:], []byte("\n\n")); i >= 0 {
		end = from + i + 2
	}
	if i := bytes.Index(s.buf[from:], []byte("\n\r\n")); i >= 0 && (end < 0 || from+i+3 < end) {
		end = from + i + 3
	}
	if end < 0 {
		s.searched = len(s.buf)
		return nil, nil
	}
	if int64(end) > s.limit {
		return nil, errEventTooLarge
	}
	// The event keeps its bytes where they are: later writes append
	// behind the rest of the buffer and never reach them.
	ev := &event{raw: s.buf[:end:end]}
	s.buf, s.searched = s.buf[end:], 0
	for _, l := range bytes.Split(ev.raw, []byte("\n")) {
		if c := bytes.TrimRight(l, "\r"); len(c) > 0 {
			ev.lines = append(ev.lines, c) // slices of raw: no copies
		}
	}
	ev.finish()
	return ev, nil
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
