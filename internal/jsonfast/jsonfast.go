// Package jsonfast reads the common shapes of the PDP's JSON inputs (the
// /v1/decide body, a JSON-RPC request, an MCP list result) without
// reflection and without copying: it finds where a value ends, walks the
// members of an object and the elements of an array, and reads strings.
//
// It does not validate: every function expects JSON that json.Valid
// accepts (callers check once, for the whole input), and reports ok=false
// for what it cannot read simply, so that the caller can fall back to
// encoding/json, which then gives the precise result or error. Each caller
// fuzzes its fast path against encoding/json.
package jsonfast

import (
	"bytes"
	"encoding/json"
	"strings"
)

// MaxDepth bounds the nesting ValueEnd follows; deeper values are left to
// encoding/json (and its own depth limit).
const MaxDepth = 512

// SkipSpace returns the index of the first non-space byte at or after i.
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// PlainString returns the contents of the string starting at b[i] if it
// holds printable ASCII only and no escapes (so that its JSON value is its
// bytes), and the index after its closing quote.
func PlainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c == '\\' || c >= 0x80:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// String decodes the JSON string v (quotes included) as encoding/json
// does; ok is false when v is not a string.
func String(v []byte) (string, bool) {
	if s, end, ok := PlainString(v, 0); ok && end == len(v) {
		return string(s), true
	}
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// ValueEnd returns where the JSON value starting at b[i] ends. ok is false
// when it does not end or nests deeper than MaxDepth.
func ValueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return StringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '{', '[':
				depth++
				if depth > MaxDepth {
					return 0, false
				}
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			case '"':
				end, ok := StringEnd(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			}
		}
		return 0, false
	default:
		// A number or a literal: up to the next delimiter.
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j, true
			}
			j++
		}
		return j, true
	}
}

// StringEnd returns the index after the closing quote of the string
// starting at b[i]. It jumps from quote to quote (bytes.IndexByte): a quote
// after an odd run of backslashes is escaped.
func StringEnd(b []byte, i int) (int, bool) {
	j := i + 1
	for j <= len(b) {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, false
		}
		q := j + k
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, true
		}
		j = q + 1
	}
	return 0, false
}

// Members calls fn with the raw key (the string with its quotes) and the
// raw value of each member of the object starting at b[i], in order, and
// returns the index after the object. ok is false when b[i] does not
// start an object, or when fn returns false.
func Members(b []byte, i int, fn func(key, value []byte) bool) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for i < len(b) {
		kend, ok := StringEnd(b, i)
		if !ok || b[i] != '"' {
			return 0, false
		}
		key := b[i:kend]
		i = SkipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i = SkipSpace(b, i+1)
		vend, ok := ValueEnd(b, i)
		if !ok {
			return 0, false
		}
		if !fn(key, b[i:vend]) {
			return 0, false
		}
		var done bool
		if i, done, ok = next(b, vend, '}'); done || !ok {
			return i, ok
		}
	}
	return 0, false
}

// next reads what follows a member or an element that ends at b[i]: the
// closing byte (done, and the index after it) or a comma (the index of
// the next value).
func next(b []byte, i int, closing byte) (j int, done, ok bool) {
	i = SkipSpace(b, i)
	if i >= len(b) {
		return 0, false, false
	}
	switch b[i] {
	case closing:
		return i + 1, true, true
	case ',':
		return SkipSpace(b, i+1), false, true
	}
	return 0, false, false
}

// ElementsAt calls fn for each element of the array starting at b[i], in
// order, and returns the index after the array. fn gets the index where an
// element starts and returns the index after it (a reader that walks the
// element, as Members does, finds its end itself, so it is walked once).
// ok is false when b[i] does not start an array, or when fn fails.
func ElementsAt(b []byte, i int, fn func(start int) (end int, ok bool)) (int, bool) {
	if i >= len(b) || b[i] != '[' {
		return 0, false
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for i < len(b) {
		vend, ok := fn(i)
		if !ok || vend <= i {
			return 0, false
		}
		var done bool
		if i, done, ok = next(b, vend, ']'); done || !ok {
			return i, ok
		}
	}
	return 0, false
}

// Field returns the index of the name the raw key k (quotes included)
// spells exactly; -1 for a key encoding/json would match to none of the
// names, and -2 for one it would match only up to case (a caller that
// reads as encoding/json does then leaves the input to it).
func Field(k []byte, names ...string) int {
	if s, end, ok := PlainString(k, 0); ok && end == len(k) {
		for i, n := range names {
			if string(s) == n {
				return i
			}
		}
		for _, n := range names {
			if strings.EqualFold(string(s), n) {
				return -2
			}
		}
		return -1
	}
	for i, n := range names {
		if match, exact := FoldKey(k, n); match {
			if exact {
				return i
			}
			return -2
		}
	}
	return -1
}

// FoldKey reports whether the raw key k (quotes included) matches name
// the way encoding/json matches a struct field's name: exactly, or (exact
// is false then) equal under Unicode case folding (encoding/json folds as
// bytes.EqualFold does). Keys with escapes are decoded first.
func FoldKey(k []byte, name string) (match, exact bool) {
	s, ok := String(k)
	if !ok {
		return false, false
	}
	if s == name {
		return true, true
	}
	return strings.EqualFold(s, name), false
}
