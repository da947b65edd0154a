package dpop

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"github.com/mcp-pdp/pdp/internal/jsonfast"
)

// parseObject decodes a JSON object into its members, keyed by the decoded
// member name (exact, case-sensitive), each value kept raw. A member name
// that occurs twice (also when spelt with escapes) is an error, so that no
// two readers of the same proof can see different values.
func parseObject(b []byte) (map[string][]byte, error) {
	if !json.Valid(b) {
		return nil, errors.New("not valid JSON")
	}
	i := jsonfast.SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	m := make(map[string][]byte, 8)
	var dup, bad bool
	_, ok := jsonfast.Members(b, i, func(key, value []byte) bool {
		k, ok := jsonfast.String(key)
		if !ok {
			bad = true
			return false
		}
		if _, seen := m[k]; seen {
			dup = true
			return false
		}
		m[k] = value
		return true
	})
	switch {
	case dup:
		return nil, errors.New("duplicate member name")
	case bad || !ok:
		return nil, errors.New("cannot read the object's members")
	}
	return m, nil
}

// memberString reads the string member name: present is false when it is
// absent, ok is false when it is present with another type (null too).
func memberString(m map[string][]byte, name string) (s string, present, ok bool) {
	v, present := m[name]
	if !present {
		return "", false, true
	}
	s, ok = jsonfast.String(v)
	return s, true, ok
}

// numericDate reads a JSON NumericDate (seconds since the epoch, possibly
// fractional) from a raw JSON value.
func numericDate(v []byte) (float64, bool) {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > maxNumericDateSecs {
		return 0, false
	}
	return f, true
}

// isB64URLChar reports whether c is in the unpadded base64url alphabet.
func isB64URLChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// isB64URL reports whether s is non-empty and only base64url characters
// (the decoder alone would skip CR and LF).
func isB64URL(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isB64URLChar(s[i]) {
			return false
		}
	}
	return true
}
