package decision

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// keyEqual must agree with OPA's Compare wherever it answers true: a false
// "equal" would serve one input's decision for another.
func TestKeyEqual(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b string
		want bool
	}{
		{"same object", `{"a": 1, "b": "x"}`, `{"b": "x", "a": 1}`, true},
		{"sets in another order", `{"names": {"a", "b", "c"}}`, `{"names": {"c", "a", "b"}}`, true},
		{"sets of the same size differ", `{"names": {"a", "b", "c"}}`, `{"names": {"a", "b", "d"}}`, false},
		{"set sizes differ", `{"names": {"a", "b"}}`, `{"names": {"a", "b", "c"}}`, false},
		{"nested objects differ", `{"token": {"claims": {"sub": "alice"}}}`, `{"token": {"claims": {"sub": "bob"}}}`, false},
		{"missing key", `{"a": 1, "b": 2}`, `{"a": 1, "c": 2}`, false},
		{"arrays keep order", `{"scopes": ["a", "b"]}`, `{"scopes": ["b", "a"]}`, false},
		{"object against set", `{"x": {"a": true}}`, `{"x": {"a"}}`, false},
		{"empty set and empty object", `{"x": set()}`, `{"x": {}}`, false},
		{"sets of objects", `{"x": {{"k": 1}, {"k": 2}}}`, `{"x": {{"k": 2}, {"k": 1}}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := ast.MustParseTerm(tc.a).Value, ast.MustParseTerm(tc.b).Value
			if got := keyEqual(a, b); got != tc.want {
				t.Fatalf("keyEqual = %v, want %v", got, tc.want)
			}
			if got, cmp := keyEqual(a, b), a.Compare(b) == 0; got && !cmp {
				t.Fatalf("keyEqual says equal, Compare says %d", a.Compare(b))
			}
		})
	}
}
