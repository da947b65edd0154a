package decision

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"

	"github.com/mcp-pdp/pdp/internal/catalog"
)

// PolicyError refuses a policy: it cannot be read, does not compile, or its
// data is invalid. Every problem names its file and line when known.
type PolicyError struct {
	// Source is where the policy came from.
	Source string
	// Stage is "load", "compile" or "validate".
	Stage    string
	Problems []Problem
	// Err is the underlying error, when it was not broken into Problems.
	Err error
}

// Error names the stage and the source, then the problems that refuse the
// policy (or the underlying error when there are none).
func (e *PolicyError) Error() string {
	var b strings.Builder
	switch e.Stage {
	case "compile":
		b.WriteString("compile policy ")
	case "validate":
		b.WriteString("invalid policy data in ")
	default:
		b.WriteString("load policy ")
	}
	b.WriteString(e.Source)
	errs := e.Errors()
	switch {
	case len(errs) == 0 && e.Err != nil:
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	case len(errs) == 1:
		b.WriteString(": ")
		b.WriteString(errs[0].String())
	default:
		fmt.Fprintf(&b, ": %d problems:", len(errs))
		for _, p := range errs {
			b.WriteString("\n")
			b.WriteString(p.String())
		}
	}
	return b.String()
}

// Unwrap returns the underlying error, or nil.
func (e *PolicyError) Unwrap() error { return e.Err }

// Errors returns the problems that refuse the policy (not the warnings).
func (e *PolicyError) Errors() []Problem {
	var out []Problem
	for _, p := range e.Problems {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// ProblemsOf returns the problems an error from ReadBundle, Load or Prepare
// carries, or nil when it carries none (e.g. a file that does not exist).
func ProblemsOf(err error) []Problem {
	var pe *PolicyError
	if errors.As(err, &pe) {
		return pe.Problems
	}
	return nil
}

// NewPolicyError turns an OPA loader or compiler error into a *PolicyError
// whose problems carry file, line and a hint. stage is "load" or "compile".
func NewPolicyError(source, stage string, err error) error { return policyError(source, stage, err) }

func policyError(source, stage string, err error) error {
	if err == nil {
		return nil
	}
	pe := &PolicyError{Source: source, Stage: stage, Err: err}
	var astErrs ast.Errors
	var astErr *ast.Error
	var loadErrs loader.Errors
	switch {
	case errors.As(err, &astErrs):
		pe.Problems = fromASTErrors(astErrs)
	case errors.As(err, &astErr):
		pe.Problems = fromASTErrors(ast.Errors{astErr})
	case errors.As(err, &loadErrs):
		for _, le := range loadErrs {
			if p, ok := fromLoadError(le); ok {
				pe.Problems = append(pe.Problems, p)
			}
		}
	default:
		if p, ok := fromLoadError(err); ok {
			pe.Problems = []Problem{p}
		}
	}
	return pe
}

func fromASTErrors(errs ast.Errors) []Problem {
	out := make([]Problem, 0, len(errs))
	seen := map[string]bool{}
	for _, e := range errs {
		p := Problem{Code: e.Code, Message: e.Message}
		if e.Location != nil {
			p.File, p.Line = e.Location.File, e.Location.Row
		}
		if e.Details != nil {
			p.Details = e.Details.Lines()
		}
		// OPA often reports one parse error twice on the same line.
		key := p.Location() + "\x00" + p.Code
		if p.Code == "rego_parse_error" && seen[key] {
			continue
		}
		seen[key] = true
		p.Hint = hintFor(p.Code, p.Message)
		out = append(out, p)
	}
	return out
}

// bundleLoadFailed matches OPA's "bundle load failed on <file>: <reason>".
var bundleLoadFailed = regexp.MustCompile(`bundle load failed on (\S+?): (.*)$`)

// fromLoadError explains a data file that cannot be parsed (OPA's loader
// names the file; catalog.DataFileProblem finds the line).
func fromLoadError(err error) (Problem, bool) {
	m := bundleLoadFailed.FindStringSubmatch(err.Error())
	if m == nil {
		return Problem{}, false
	}
	return catalog.DataFileProblem(m[1], m[2]), true
}

// hints explain common compiler errors in plain words; the first match wins.
var hints = []struct {
	code, contains, hint string
}{
	{"rego_parse_error", "`if` keyword is required", "Rego v1 requires `if` before a rule body: write `allow if { ... }`, and `contains` for partial sets: `deny contains msg if { ... }`"},
	{"rego_parse_error", "`contains` keyword is required", "a rule that adds to a set is written `name contains value if { ... }` in Rego v1"},
	{"rego_parse_error", "unexpected eof", "a bracket, brace or quote opened above is never closed"},
	{"rego_parse_error", "", "this line is not valid Rego (v1) syntax; compare it with the examples in docs/policy.md"},
	{"rego_unsafe_var_error", "", "the variable is used without ever being given a value: bind it first (`some x in ...`, `x := ...`) or check its spelling"},
	{"rego_recursion_error", "", "rules may not depend on themselves, directly or through other rules"},
	{"rego_type_error", "undefined function", "no such function: check its name, and import its package (e.g. `import data.mcp.lib` to call `lib.satisfied(...)`)"},
	{"rego_type_error", "undefined ref", "this reference can never be defined (e.g. a misspelt field of input or data)"},
	{"rego_type_error", "conflicting rules", "two rules define the same name in different ways (e.g. `x := 1` and `x contains 1`); give one of them another name"},
	{"rego_type_error", "multiple default rules", "a rule may have only one `default` value"},
	{"rego_type_error", "", "the operands' types cannot match (e.g. a number compared with a string, or a function called with the wrong argument types)"},
	{"rego_compile_error", "conflicting rule for data path", "a rule and a data file define the same path under data; rename the rule or move the data"},
	{"rego_compile_error", "is unused", "strict mode: remove the unused variable or import, or use it"},
	{"rego_compile_error", "", "the policy is valid syntax but cannot be compiled as written"},
}

func hintFor(code, msg string) string {
	for _, h := range hints {
		if h.code == code && strings.Contains(msg, h.contains) {
			return h.hint
		}
	}
	return ""
}
