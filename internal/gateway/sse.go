package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// errEventTooLarge: an SSE event over the gateway's bound.
var errEventTooLarge = errors.New("gateway: SSE event too large")

// event is one server-sent event as read from the upstream.
type event struct {
	// raw is the event as received, through its terminating blank line.
	raw []byte
	// lines are the event's lines without line endings (raw minus framing).
	lines [][]byte
	// data is the event's data: its data lines' values joined by "\n".
	data    []byte
	hasData bool
}

// withData is the event with its data replaced by d (one line: the JSON
// the gateway writes has no line breaks), every other field kept in place.
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

// eventReader splits an SSE stream into events (LF or CRLF line endings),
// each at most limit bytes.
type eventReader struct {
	r       *bufio.Reader
	limit   int64
	started bool // past a leading byte order mark
}

func newEventReader(r io.Reader, limit int64) *eventReader {
	return &eventReader{r: bufio.NewReaderSize(r, 4<<10), limit: limit}
}

// next returns the next event; at the end of the stream it returns what
// was left (an unterminated event is returned as it is, so that nothing
// is lost) with the error.
func (er *eventReader) next() (*event, error) {
	ev := &event{}
	for {
		line, err := er.readLine()
		if len(line) > 0 || err == nil {
			ev.raw = append(ev.raw, line...)
		}
		if int64(len(ev.raw)) > er.limit {
			return nil, errEventTooLarge
		}
		if err != nil {
			if len(ev.raw) == 0 {
				return nil, err
			}
			// The stream ended inside an event: its last line counts too,
			// so that a list answer cut short is still seen (and filtered
			// or refused), never relayed raw.
			if content := bytes.TrimRight(line, "\r\n"); len(content) > 0 {
				ev.lines = append(ev.lines, content)
			}
			ev.finish()
			return ev, err
		}
		content := bytes.TrimRight(line, "\r\n")
		if len(content) == 0 {
			if len(ev.lines) == 0 {
				continue // blank lines between events
			}
			ev.finish()
			return ev, nil
		}
		ev.lines = append(ev.lines, content)
	}
}

// readLine reads through the next '\n' (or to the end of the stream),
// bounded by the reader's limit.
func (er *eventReader) readLine() ([]byte, error) {
	if !er.started {
		// A stream may begin with a UTF-8 byte order mark, which SSE
		// decoders drop: drop it too, so that the first field is seen.
		er.started = true
		if b, err := er.r.Peek(3); err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
			_, _ = er.r.Discard(3)
		}
	}
	var line []byte
	for {
		chunk, err := er.r.ReadSlice('\n')
		line = append(line, chunk...)
		if int64(len(line)) > er.limit {
			return nil, errEventTooLarge
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, err
	}
}

func (ev *event) finish() {
	var data [][]byte
	for _, l := range ev.lines {
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
		ev.hasData = true
		ev.data = bytes.Join(data, []byte("\n"))
	}
}

// bareCR reports whether an event's lines are ended by a lone CR (valid
// SSE framing that this reader does not split): the gateway cannot see its
// fields, so a list stream refuses it rather than relay it unread.
func (ev *event) bareCR() bool {
	for _, l := range ev.lines {
		if bytes.IndexByte(l, '\r') >= 0 {
			return true
		}
	}
	return false
}
