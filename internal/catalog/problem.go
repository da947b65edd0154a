package catalog

import (
	"fmt"
	"os"
	"strings"
)

// Problem is one thing wrong with a policy: a Rego compile error or a data
// (catalog) problem, with the file and line that hold it when known.
type Problem struct {
	File string
	Line int
	// Path is the data path of a data problem ("mcp.catalogs.demo.tools.x.access").
	Path string
	// Code is OPA's error code (rego_parse_error, rego_type_error, ...) for
	// Rego problems, CodeDataError for data files that cannot be read and
	// CodeCatalog for catalog format problems.
	Code    string
	Message string
	// Details are extra lines from OPA (the offending source line, types).
	Details []string
	// Hint is a plain explanation of what usually causes the problem.
	Hint string
	// Warning marks a problem that does not refuse the policy.
	Warning bool

	segs []string // Path as segments, for Locations.LocateProblems
}

// Problem codes of data problems; Rego problems carry OPA's codes.
const (
	// CodeCatalog marks a problem of the catalog format (Validate).
	CodeCatalog = "catalog"
	// CodeDataError marks a data file that cannot be parsed (DataFileProblem).
	CodeDataError = "data_error"
)

// Location is "file:line", "file" or "" (unknown).
func (p Problem) Location() string {
	switch {
	case p.File == "":
		return ""
	case p.Line > 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	default:
		return p.File
	}
}

// String renders the problem like a compiler does:
//
//	policies/authz.rego:12: rego_unsafe_var_error: var x is unsafe
//		hint: ...
func (p Problem) String() string {
	var b strings.Builder
	if loc := p.Location(); loc != "" {
		b.WriteString(loc)
		b.WriteString(": ")
	}
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Code != "" && p.Code != CodeCatalog {
		b.WriteString(p.Code)
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString("data")
		if !strings.HasPrefix(p.Path, "[") {
			b.WriteString(".")
		}
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	for _, d := range p.Details {
		b.WriteString("\n\t")
		b.WriteString(d)
	}
	if p.Hint != "" {
		b.WriteString("\n\thint: ")
		b.WriteString(p.Hint)
	}
	return b.String()
}

// DataFileProblem explains a data file that cannot be parsed: file is the
// file the loader names and reason its message. The loader does not always
// give the line, so the file is read and parsed again to find it (reason
// is then replaced by the parser's own message).
func DataFileProblem(file, reason string) Problem {
	p := Problem{File: file, Code: CodeDataError, Message: reason}
	if raw, err := os.ReadFile(file); err == nil {
		if line, msg, ok := syntaxErrorLine(file, raw); ok {
			p.Line, p.Message = line, msg
		}
	}
	switch {
	case strings.HasSuffix(p.File, ".json"):
		p.Hint = "the file is not valid JSON: look for a missing comma, quote or closing brace at or just before this line"
	case strings.HasSuffix(p.File, ".yaml"), strings.HasSuffix(p.File, ".yml"):
		p.Hint = "the file is not valid YAML: check the indentation and that lists and maps are closed at or just before this line"
	}
	return p
}
