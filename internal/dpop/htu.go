package dpop

import (
	"strconv"
	"strings"
)

// normalizeHTU returns the form of an absolute http(s) URI that RFC 9449
// §4.3 step 9 compares: the query and fragment dropped, then RFC 3986
// §6.2.2 syntax-based normalization (scheme and host lower-cased,
// percent-encodings of unreserved characters decoded and the others' hex
// digits upper-cased, dot segments removed) and §6.2.3 scheme-based
// normalization (the default port and an empty port dropped, an empty
// path made "/"). ok is false for anything else: another scheme, no host,
// userinfo (RFC 9110 §4.2.4 forbids it in http(s) URIs), a bad port, or
// characters a URI cannot hold.
func normalizeHTU(s string) (string, bool) {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	colon := strings.Index(s, "://")
	if colon < 0 {
		return "", false
	}
	var scheme, defaultPort string
	switch {
	case strings.EqualFold(s[:colon], "https"):
		scheme, defaultPort = "https", "443"
	case strings.EqualFold(s[:colon], "http"):
		scheme, defaultPort = "http", "80"
	default:
		return "", false
	}
	rest := s[colon+3:]
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	host, port, ok := splitHostPort(authority)
	if !ok {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(s) + 1)
	b.WriteString(scheme)
	b.WriteString("://")
	if !writeNormalized(&b, host, true) {
		return "", false
	}
	if port != "" && port != defaultPort {
		b.WriteByte(':')
		b.WriteString(port)
	}
	var p strings.Builder
	p.Grow(len(path))
	if !writeNormalized(&p, path, false) {
		return "", false
	}
	np := removeDotSegments(p.String())
	if np == "" {
		np = "/"
	}
	b.WriteString(np)
	return b.String(), true
}

// splitHostPort splits an authority into host (an IP literal keeps its
// brackets) and port, normalized to its decimal value without leading
// zeros ("" when absent or empty).
func splitHostPort(a string) (host, port string, ok bool) {
	if a == "" || strings.IndexByte(a, '@') >= 0 {
		return "", "", false
	}
	if a[0] == '[' {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", "", false
		}
		host, a = a[:end+1], a[end+1:]
		for i := 1; i < len(host)-1; i++ {
			if c := host[i]; !(isHex(c) || c == ':' || c == '.' || c == 'v' || c == 'V' || isUnreserved(c) || isSubDelim(c)) {
				return "", "", false
			}
		}
		if a != "" && a[0] != ':' {
			return "", "", false
		}
		if a != "" {
			port = a[1:]
		}
	} else if i := strings.LastIndexByte(a, ':'); i >= 0 {
		host, port = a[:i], a[i+1:]
		if strings.IndexByte(host, ':') >= 0 {
			return "", "", false
		}
	} else {
		host = a
	}
	if host == "" || host == "[]" {
		return "", "", false
	}
	if port == "" {
		return host, "", true
	}
	if len(port) > 5 {
		return "", "", false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return "", "", false
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n > 65535 {
		return "", "", false
	}
	return host, strconv.Itoa(n), true
}

// writeNormalized writes s with percent-encodings normalized: an encoded
// unreserved character is decoded, other encodings get upper-case hex
// digits. lower also lower-cases letters (the host). ok is false for a
// malformed encoding or a character that is neither unreserved, a
// sub-delimiter, ":", "@", "/" nor, in an IP literal, a bracket.
func writeNormalized(b *strings.Builder, s string, lower bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			d := unhex(s[i+1])<<4 | unhex(s[i+2])
			if isUnreserved(d) {
				if lower {
					d = toLower(d)
				}
				b.WriteByte(d)
			} else {
				b.WriteByte('%')
				b.WriteByte(toUpper(s[i+1]))
				b.WriteByte(toUpper(s[i+2]))
			}
			i += 2
		case isUnreserved(c) || isSubDelim(c) || c == ':' || c == '@' || c == '/' || (lower && (c == '[' || c == ']')):
			if lower {
				c = toLower(c)
			}
			b.WriteByte(c)
		default:
			return false
		}
	}
	return true
}

// removeDotSegments is the algorithm of RFC 3986 §5.2.4.
func removeDotSegments(in string) string {
	if !strings.Contains(in, ".") {
		return in
	}
	out := make([]byte, 0, len(in))
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			out = dropLastSegment(out)
		case in == "/..":
			in = "/"
			out = dropLastSegment(out)
		case in == "." || in == "..":
			in = ""
		default:
			start := 0
			if in[0] == '/' {
				start = 1
			}
			end := strings.IndexByte(in[start:], '/')
			if end < 0 {
				end = len(in)
			} else {
				end += start
			}
			out = append(out, in[:end]...)
			in = in[end:]
		}
	}
	return string(out)
}

func dropLastSegment(out []byte) []byte {
	for len(out) > 0 {
		c := out[len(out)-1]
		out = out[:len(out)-1]
		if c == '/' {
			break
		}
	}
	return out
}

func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func isSubDelim(c byte) bool {
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func toLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func toUpper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}
