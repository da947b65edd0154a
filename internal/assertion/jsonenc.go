package assertion

import (
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. s must be valid UTF-8 (checked
// by the caller). It escapes what JSON requires (quote, backslash, control
// characters) and, like encoding/json, U+2028 and U+2029 and the HTML
// characters <, > and &, so that the text can be embedded anywhere: the
// output is byte for byte what json.Marshal writes for s.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

// appendEscaped appends the body of the JSON string s, without quotes.
func appendEscaped(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// appendField appends `,"name":"value"` (the name is a trusted literal).
func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return appendString(dst, value)
}

// appendInt appends `,"name":n`.
func appendInt(dst []byte, name string, n int64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, n, 10)
}

// appendAct appends the RFC 8693 nested `act` object for chain (non-empty):
// {"sub":..,"client_id":..,"act":{..}}.
func appendAct(dst []byte, chain []Actor) []byte {
	for _, a := range chain {
		dst = append(dst, '{')
		sep := false
		if a.Subject != "" {
			dst = append(dst, `"sub":`...)
			dst = appendString(dst, a.Subject)
			sep = true
		}
		if a.ClientID != "" {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"client_id":`...)
			dst = appendString(dst, a.ClientID)
			sep = true
		}
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, `"act":`...)
	}
	// The innermost "act": is not wanted: cut it, then close the objects.
	dst = dst[:len(dst)-len(`"act":`)]
	if dst[len(dst)-1] == ',' {
		dst = dst[:len(dst)-1]
	}
	for range chain {
		dst = append(dst, '}')
	}
	return dst
}
