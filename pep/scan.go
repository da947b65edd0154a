package pep

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

// scanMessage reads the common shape of a JSON-RPC message in one pass,
// without reflection or copies: an object whose keys are plain (no
// escapes, spelled exactly), each at most once, jsonrpc and method plain
// strings, params an object whose name and uri are read when they are
// plain strings. It reports false for anything else (and for input that
// is not valid JSON), and parseMessage then reads the message with
// encoding/json, which gives the same message for every input scanMessage
// accepts (FuzzScanMessage holds the two to that).
func scanMessage(raw, trimmed []byte) (*message, bool) {
	s := scanner{b: trimmed}
	if !s.byte('{') {
		return nil, false
	}
	out := &message{raw: raw}
	var seen [6]bool
	var jsonrpc []byte
	var method, name, uri []byte
	var hasMethod bool
	if !s.byte('}') {
		for {
			key, ok := s.plainString()
			if !ok || !s.byte(':') {
				return nil, false
			}
			k := -1
			switch string(key) {
			case "jsonrpc":
				k = 0
			case "id":
				k = 1
			case "method":
				k = 2
			case "result":
				k = 3
			case "error":
				k = 4
			case "params":
				k = 5
			default:
				if bytes.EqualFold(key, []byte("jsonrpc")) || bytes.EqualFold(key, []byte("id")) || bytes.EqualFold(key, []byte("method")) ||
					bytes.EqualFold(key, []byte("result")) || bytes.EqualFold(key, []byte("error")) || bytes.EqualFold(key, []byte("params")) {
					return nil, false // encoding/json matches keys up to case
				}
			}
			if k >= 0 {
				if seen[k] {
					return nil, false
				}
				seen[k] = true
			}
			start := s.i
			switch k {
			case 0, 2:
				v, ok := s.plainString()
				if !ok {
					return nil, false
				}
				if k == 0 {
					jsonrpc = v
				} else {
					method, hasMethod = v, true
				}
			case 5:
				if !s.params(&name, &uri) {
					return nil, false
				}
			default:
				if !s.value(0) {
					return nil, false
				}
				switch k {
				case 1:
					out.id = trimmed[start:s.i]
				case 3:
					out.result = trimmed[start:s.i]
				case 4:
					out.err = trimmed[start:s.i]
				}
			}
			if s.byte('}') {
				break
			}
			if !s.byte(',') {
				return nil, false
			}
		}
	}
	s.space()
	if s.i != len(s.b) {
		return nil, false
	}
	if string(jsonrpc) != "2.0" || (hasMethod && len(method) == 0) {
		return nil, false // encoding/json's path says what is wrong
	}
	out.method = methodString(method)
	out.name = string(name)
	if out.method == "resources/read" {
		out.name = string(uri)
	}
	if len(out.id) > 0 {
		switch c := out.id[0]; {
		case string(out.id) == "null":
			out.id = nil
		case c != '"' && c != '-' && (c < '0' || c > '9'):
			return nil, false
		}
	}
	if out.method == "" && !out.isResponse() {
		return nil, false
	}
	return out, true
}

// scanner walks JSON bytes; every method reports false on anything it
// does not read simply.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte consumes c after white space, if it is next.
func (s *scanner) byte(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// plainString reads a string of printable ASCII without escapes and
// returns its contents.
func (s *scanner) plainString() ([]byte, bool) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			v := s.b[s.i+1 : j]
			s.i = j + 1
			return v, true
		case c < 0x20 || c == '\\' || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

// params reads the params object, taking name and uri when they are plain
// strings (other values of them: "").
func (s *scanner) params(name, uri *[]byte) bool {
	if !s.byte('{') {
		return false // null, an array, ...: encoding/json's path
	}
	if s.byte('}') {
		return true
	}
	var seenName, seenURI bool
	for {
		key, ok := s.plainString()
		if !ok || !s.byte(':') {
			return false
		}
		var dst *[]byte
		switch string(key) {
		case "name":
			if seenName {
				return false
			}
			seenName, dst = true, name
		case "uri":
			if seenURI {
				return false
			}
			seenURI, dst = true, uri
		default:
			if bytes.EqualFold(key, []byte("name")) || bytes.EqualFold(key, []byte("uri")) {
				return false
			}
		}
		if dst != nil {
			s.space()
			if s.i < len(s.b) && s.b[s.i] == '"' {
				v, ok := s.plainString()
				if !ok {
					return false
				}
				*dst = v
			} else if !s.value(0) {
				return false
			}
		} else if !s.value(0) {
			return false
		}
		if s.byte('}') {
			return true
		}
		if !s.byte(',') {
			return false
		}
	}
}

// maxDepth bounds the nesting value follows.
const maxDepth = 256

// value skips one JSON value, checking it as json.Valid would.
func (s *scanner) value(depth int) bool {
	if depth > maxDepth {
		return false
	}
	s.space()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return s.str()
	case c == '{':
		s.i++
		if s.byte('}') {
			return true
		}
		for {
			s.space()
			if !s.str() || !s.byte(':') || !s.value(depth+1) {
				return false
			}
			if s.byte('}') {
				return true
			}
			if !s.byte(',') {
				return false
			}
		}
	case c == '[':
		s.i++
		if s.byte(']') {
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			if s.byte(']') {
				return true
			}
			if !s.byte(',') {
				return false
			}
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.number()
	}
}

func (s *scanner) literal(l string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(l)) {
		s.i += len(l)
		return true
	}
	return false
}

// str skips a string with valid escapes and valid UTF-8.
func (s *scanner) str() bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	j := s.i + 1
	for j < len(s.b) {
		// Eight plain bytes at a time (printable ASCII, no quote, no
		// backslash): most of a JSON document's strings.
		for j+8 <= len(s.b) && plain8(binary.LittleEndian.Uint64(s.b[j:])) {
			j += 8
		}
		if j >= len(s.b) {
			break
		}
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			return true
		case c == '\\':
			if j+1 >= len(s.b) {
				return false
			}
			switch s.b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(s.b) || !isHex4(s.b[j+2:j+6]) {
					return false
				}
				j += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		case c < utf8.RuneSelf:
			j++
		default:
			r, size := utf8.DecodeRune(s.b[j:])
			if r == utf8.RuneError && size == 1 {
				// encoding/json accepts invalid UTF-8 (it replaces it);
				// json.Valid too: the message is valid, but leave it to
				// encoding/json, which decides how it reads.
				return false
			}
			j += size
		}
	}
	return false
}

// SWAR constants: every byte 0x01, every byte 0x80.
const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// plain8 reports whether the eight bytes of x (little endian) are all
// printable ASCII (0x20 to 0x7f) other than '"' and '\\'.
func plain8(x uint64) bool {
	// hasLess(v, n) sets the high bit of some byte when a byte of v is
	// below n (for bytes under 0x80: x's own high bits are rejected
	// anyway); a zero byte is one below 1.
	hasLess := func(v, n uint64) uint64 { return (v - lo8*n) &^ v }
	q := x ^ lo8*'"'
	bs := x ^ lo8*'\\'
	return (hasLess(x, 0x20)|hasLess(q, 1)|hasLess(bs, 1)|x)&hi8 == 0
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// number skips a JSON number.
func (s *scanner) number() bool {
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && '1' <= s.b[s.i] && s.b[s.i] <= '9':
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
		}
	default:
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		d := s.i
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
		}
		if s.i == d {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		d := s.i
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
		}
		if s.i == d {
			return false
		}
	}
	return s.i > start
}

// methodString is string(b), without an allocation for the methods an MCP
// server is asked most.
func methodString(b []byte) string {
	switch string(b) {
	case "tools/call":
		return "tools/call"
	case "tools/list":
		return "tools/list"
	case "resources/read":
		return "resources/read"
	case "resources/list":
		return "resources/list"
	case "prompts/get":
		return "prompts/get"
	case "prompts/list":
		return "prompts/list"
	case "notifications/initialized":
		return "notifications/initialized"
	case "initialize":
		return "initialize"
	case "ping":
		return "ping"
	}
	return string(b)
}
