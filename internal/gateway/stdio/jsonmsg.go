package stdio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// span is a byte range [start, end) of a compacted message.
type span struct{ start, end int }

func (s span) ok() bool { return s.end > s.start }

// envelope is what the pool reads of a JSON-RPC message: where its
// top-level members are. Every span indexes the compacted message.
type envelope struct {
	id, method, params span
	result, errorObj   bool
}

// isRequest reports whether the message is a request: a method and an id.
func (e envelope) isRequest() bool { return e.method.ok() && e.id.ok() }

// isResponse reports whether the message is a response: an id, no method,
// and a result or an error.
func (e envelope) isResponse() bool {
	return !e.method.ok() && e.id.ok() && (e.result || e.errorObj)
}

var errNotObject = errors.New("not a JSON-RPC message (a JSON object)")

// compact returns msg compacted (json.Compact: no insignificant white
// space, so no newline can remain) in a new slice with room for one more
// byte, the line's newline. It fails on anything but one valid JSON value.
func compact(msg []byte) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(msg) + 1)
	if err := json.Compact(&b, msg); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	out := b.Bytes()
	if bytes.IndexByte(out, '\n') >= 0 { // cannot happen after Compact; a line must hold
		return nil, errors.New("message holds a newline")
	}
	return out, nil
}

// envelopeMembers are the members parseEnvelope reads.
var envelopeMembers = []string{"id", "method", "params", "result", "error"}

// parseEnvelope finds the top-level members id, method, params, result and
// error of the compacted JSON value m. A member named twice is refused, as
// JSON parsers disagree on which one counts.
func parseEnvelope(m []byte) (envelope, error) {
	var e envelope
	if len(m) < 2 || m[0] != '{' {
		return e, errNotObject
	}
	var seen [5]bool // id, method, params, result, error
	i := 1
	if m[i] == '}' {
		return e, nil
	}
	for {
		ks := i
		i = skipString(m, i)
		key := m[ks:i]
		name := string(key[1 : len(key)-1])
		if bytes.IndexByte(key, '\\') >= 0 {
			if err := json.Unmarshal(key, &name); err != nil {
				return e, fmt.Errorf("member name: %w", err)
			}
		}
		i++ // the colon
		vs := i
		i = skipValue(m, i)
		v := span{vs, i}
		if k := slices.Index(envelopeMembers, name); k >= 0 {
			if seen[k] {
				return e, fmt.Errorf("member %q appears twice", name)
			}
			seen[k] = true
		}
		switch name {
		case "id":
			e.id = v
		case "method":
			if m[vs] != '"' {
				return e, errors.New("method is not a string")
			}
			e.method = v
		case "params":
			e.params = v
		case "result":
			e.result = true
		case "error":
			e.errorObj = true
		}
		if m[i] == '}' {
			return e, nil
		}
		i++ // the comma
	}
}

// skipString returns the index just past the JSON string starting at m[i].
// m is valid compacted JSON.
func skipString(m []byte, i int) int {
	for i++; ; i++ {
		switch m[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

// skipValue returns the index just past the JSON value starting at m[i].
// m is valid compacted JSON.
func skipValue(m []byte, i int) int {
	switch m[i] {
	case '"':
		return skipString(m, i)
	case '{', '[':
		depth := 0
		for {
			switch m[i] {
			case '"':
				i = skipString(m, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
	default: // number, true, false, null
		for i < len(m) && m[i] != ',' && m[i] != '}' && m[i] != ']' {
			i++
		}
		return i
	}
}

// validID reports whether raw is a JSON-RPC request id the pool accepts: a
// string or a number (null and structured values are not ids).
func validID(raw []byte) bool {
	switch c := raw[0]; {
	case c == '"':
		return true
	case c == '-' || (c >= '0' && c <= '9'):
		return true
	}
	return false
}

// wireID reads an id the pool gave a request (a decimal number) back from
// the child's response. A child that echoes it as 7.0 or 7e0 still
// matches; a string never does.
func wireID(raw []byte) (uint64, bool) {
	if n, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f != float64(uint64(f)) {
		return 0, false
	}
	return uint64(f), true
}

// splice returns a new slice: m with the bytes of sp replaced by with,
// followed by a newline.
func splice(m []byte, sp span, with []byte) []byte {
	out := make([]byte, 0, len(m)-(sp.end-sp.start)+len(with)+1)
	out = append(out, m[:sp.start]...)
	out = append(out, with...)
	out = append(out, m[sp.end:]...)
	return append(out, '\n')
}

// memberSpan finds the top-level member name of the compacted JSON object
// obj (plain names only), or returns an empty span.
func memberSpan(obj []byte, name string) span {
	if len(obj) < 2 || obj[0] != '{' || obj[1] == '}' {
		return span{}
	}
	i := 1
	for {
		ks := i
		i = skipString(obj, i)
		key := obj[ks+1 : i-1]
		i++
		vs := i
		i = skipValue(obj, i)
		if string(key) == name {
			return span{vs, i}
		}
		if obj[i] == '}' {
			return span{}
		}
		i++
	}
}
