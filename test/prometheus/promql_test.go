package prometheus_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// baseExprs are the expressions of an alert whose results must not be
// empty on a scraped PDP: the alert with its thresholds taken off. The
// operands of `or`, `and` and `unless` are taken apart, and a comparison
// with a number keeps its other side (`x > 0.05` → x); a comparison of two
// vectors keeps both. Anything else is its own base.
//
// It reads PromQL as far as the rules need: brackets, braces, parentheses
// and string literals are skipped, so label matchers (=~, !=) and ranges
// are never mistaken for operators.
func baseExprs(expr string) ([]string, error) {
	expr = trimParens(stripModifiers(strings.TrimSpace(expr)))
	if expr == "" {
		return nil, fmt.Errorf("empty operand")
	}
	// Lowest precedence first: or, then and/unless, then comparisons.
	for _, ops := range [][]string{{"or"}, {"and", "unless"}} {
		if parts := splitKeyword(expr, ops); len(parts) > 1 {
			return baseOfAll(parts)
		}
	}
	if lhs, rhs, ok := splitComparison(expr); ok {
		rhs = stripModifiers(rhs)
		if isNumber(rhs) {
			return baseExprs(lhs)
		}
		if isNumber(strings.TrimSpace(lhs)) {
			return baseExprs(rhs)
		}
		return baseOfAll([]string{lhs, rhs})
	}
	return []string{expr}, nil
}

func baseOfAll(parts []string) ([]string, error) {
	var out []string
	for _, p := range parts {
		b, err := baseExprs(p)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", p, err)
		}
		out = append(out, b...)
	}
	return out, nil
}

// modifiers are what may start the right operand of a binary operator.
var modifiers = regexp.MustCompile(`^(?:bool\b|(?:on|ignoring)\s*\([^)]*\)|group_(?:left|right)(?:\s*\([^)]*\))?)\s*`)

// stripModifiers removes the vector matching and bool modifiers an operand
// starts with.
func stripModifiers(s string) string {
	s = strings.TrimSpace(s)
	for {
		loc := modifiers.FindStringIndex(s)
		if loc == nil || loc[1] == 0 {
			return s
		}
		s = strings.TrimSpace(s[loc[1]:])
	}
}

// trimParens removes parentheses around the whole expression.
func trimParens(s string) string {
	for strings.HasPrefix(s, "(") {
		if end := matching(s, 0); end != len(s)-1 {
			return s
		}
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}

// matching is the index of the bracket closing the one at i, or -1.
func matching(s string, i int) int {
	depth := 0
	for j := i; j < len(s); j++ {
		switch c := s[j]; c {
		case '"', '\'', '`':
			j = skipString(s, j)
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// skipString returns the index of the quote closing the string at i.
func skipString(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if q != '`' {
				j++
			}
		case q:
			return j
		}
	}
	return len(s) - 1
}

// topLevel calls f with each index of s outside brackets and strings.
func topLevel(s string, f func(i int) bool) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\'', '`':
			i = skipString(s, i)
			continue
		case '(', '[', '{':
			depth++
			continue
		case ')', ']', '}':
			depth--
			continue
		}
		if depth == 0 && !f(i) {
			return
		}
	}
}

func isIdent(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// splitKeyword splits s at the top-level set operators ops (whole words).
func splitKeyword(s string, ops []string) []string {
	var parts []string
	last := 0
	topLevel(s, func(i int) bool {
		if i > 0 && isIdent(s[i-1]) {
			return true
		}
		for _, op := range ops {
			end := i + len(op)
			if strings.HasPrefix(s[i:], op) && (end == len(s) || !isIdent(s[end])) {
				parts = append(parts, s[last:i])
				last = end
			}
		}
		return true
	})
	return append(parts, s[last:])
}

// splitComparison splits s at its last top-level comparison operator
// (they associate to the left).
func splitComparison(s string) (lhs, rhs string, ok bool) {
	at, width := -1, 0
	topLevel(s, func(i int) bool {
		switch {
		case strings.HasPrefix(s[i:], "=="), strings.HasPrefix(s[i:], "!="),
			strings.HasPrefix(s[i:], ">="), strings.HasPrefix(s[i:], "<="):
			at, width = i, 2
		case s[i] == '>' || s[i] == '<':
			if i > 0 && at == i-1 && width == 2 {
				return true // the second character of a two-character operator
			}
			at, width = i, 1
		}
		return true
	})
	if at < 0 {
		return "", "", false
	}
	return s[:at], s[at+width:], true
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return err == nil
}

// TestBaseExprs: the thresholds come off, set operators are taken apart,
// matchers and strings are left alone.
func TestBaseExprs(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`pdp_policy_last_reload_successful == 0`, []string{`pdp_policy_last_reload_successful`}},
		{`job:x:ratio > 0.05`, []string{`job:x:ratio`}},
		{`sum by (job) (rate(a{error!="rate_limited"}[5m])) / on (job) group_left sum by (job) (rate(b[5m])) > 0.05`,
			[]string{`sum by (job) (rate(a{error!="rate_limited"}[5m])) / on (job) group_left sum by (job) (rate(b[5m]))`}},
		{`up == 0 and on (job, instance) last_over_time(pdp_build_info[1h])`, []string{`up`, `last_over_time(pdp_build_info[1h])`}},
		{`a > 0 and deriv(a[10m]) > 0`, []string{`a`, `deriv(a[10m])`}},
		{`(a{x=~"a|b>c"} or b * 0) / c`, []string{`(a{x=~"a|b>c"} or b * 0) / c`}},
		{`(a >= 1)`, []string{`a`}},
		{`a > bool 1`, []string{`a`}},
		{`a unless b`, []string{`a`, `b`}},
		{`a > b`, []string{`a`, `b`}},
		{`count by (job) (count by (job, revision) (pdp_policy_info)) > 1`, []string{`count by (job) (count by (job, revision) (pdp_policy_info))`}},
		{`mcp_pdp_order_total > 0`, []string{`mcp_pdp_order_total`}}, // "or" inside a name
	} {
		got, err := baseExprs(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		for i := range got {
			got[i] = strings.TrimSpace(got[i])
		}
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", c.expr, got, c.want)
		}
	}
}
