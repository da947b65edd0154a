package decision

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
)

// ExplainMode selects the part of an evaluation trace to show, as
// `opa eval --explain` does.
type ExplainMode string

const (
	// ExplainFails shows the expressions that failed: why a rule did not apply.
	ExplainFails ExplainMode = "fails"
	// ExplainNotes shows the notes of trace(msg) calls in the policy.
	ExplainNotes ExplainMode = "notes"
	// ExplainFull shows every step of the evaluation.
	ExplainFull ExplainMode = "full"
)

// ParseExplainMode accepts fails, notes and full.
func ParseExplainMode(s string) (ExplainMode, error) {
	switch m := ExplainMode(s); m {
	case ExplainFails, ExplainNotes, ExplainFull:
		return m, nil
	}
	return "", fmt.Errorf("explain mode %q is not one of: fails, notes, full", s)
}

// Recording returns a copy of p that records the inputs it decides, so that
// `pdp eval` can run a request through the full decision path (token
// verification, list filtering) and then explain exactly the input that path
// built. The copy shares the prepared query, has no decision cache (every
// decision is evaluated) and gives every policy the whole input; use it for
// one request at a time.
func (p *Policy) Recording() *Policy {
	cp := *p
	cp.cache, cp.calls, cp.lists = nil, nil, nil
	// The whole input, as documented: what the policy cannot read (see
	// readsArguments, readsItems, claimsRead) does not change its decision.
	cp.readsArgs, cp.readsItems, cp.claimKeys, cp.subjects = true, true, nil, nil
	cp.record = &recorder{}
	return &cp
}

// RecordedInputs returns the input documents a Recording policy decided
// without error, in the order it decided them; nil for other policies.
func (p *Policy) RecordedInputs() []ast.Value {
	if p.record == nil {
		return nil
	}
	p.record.mu.Lock()
	defer p.record.mu.Unlock()
	return slices.Clone(p.record.inputs)
}

// recorder keeps the inputs a Recording policy evaluates.
type recorder struct {
	mu     sync.Mutex
	inputs []ast.Value
}

func (r *recorder) add(v ast.Value) {
	r.mu.Lock()
	r.inputs = append(r.inputs, v)
	r.mu.Unlock()
}

// Explanation is one evaluation with its trace.
type Explanation struct {
	Result *Result
	// Fired are the rules outside the mcp.lib library that produced a value,
	// in evaluation order: among them the rule that allowed or denied.
	Fired []FiredRule
	// Trace holds the events the mode selects.
	Trace []*topdown.Event
	Mode  ExplainMode
}

// FiredRule is a rule (or an else branch) that produced a value.
type FiredRule struct {
	Rule string // data.mcp.authz.deny
	File string
	Line int
	Text string // the rule's first source line
}

// Explain evaluates input with a tracer.
func (p *Policy) Explain(ctx context.Context, input ast.Value, mode ExplainMode) (*Explanation, error) {
	buf := topdown.NewBufferTracer()
	res, err := p.Eval(ctx, input, rego.EvalQueryTracer(buf))
	ex := &Explanation{Result: res, Mode: mode, Fired: firedRules(*buf)}
	switch mode {
	case ExplainNotes:
		ex.Trace = lineage.Notes(*buf)
	case ExplainFull:
		ex.Trace = lineage.Full(*buf)
	default:
		ex.Trace = lineage.Fails(*buf)
	}
	return ex, err
}

var libPackage = ast.MustParseRef("data.mcp.lib")

func firedRules(trace []*topdown.Event) []FiredRule {
	var out []FiredRule
	seen := map[*ast.Rule]bool{}
	for _, e := range trace {
		if e.Op != topdown.ExitOp {
			continue
		}
		r, ok := e.Node.(*ast.Rule)
		if !ok || seen[r] || r.Module == nil || r.Module.Package.Path.HasPrefix(libPackage) {
			continue
		}
		seen[r] = true
		fr := FiredRule{Rule: r.Module.Package.Path.Extend(r.Head.Ref().GroundPrefix()).String()}
		if r.Location != nil {
			fr.File, fr.Line = r.Location.File, r.Location.Row
			fr.Text = firstLine(string(r.Location.Text))
		}
		if r.Default {
			fr.Text = firstLine(r.String())
		}
		out = append(out, fr)
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

// WriteTo prints the explanation for people: the decision, the rules that
// produced it, and the trace.
func (ex *Explanation) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	if r := ex.Result; r != nil {
		fmt.Fprintf(cw, "decision: allow=%v visible=%v", r.Allow, r.Visible)
		if r.Access != "" {
			fmt.Fprintf(cw, " access=%s", r.Access)
		}
		fmt.Fprintf(cw, " reason=%q revision=%s\n", r.Reason, r.Revision)
		if len(r.MissingScopes) > 0 {
			fmt.Fprintf(cw, "missing scopes: %s\n", strings.Join(r.MissingScopes, " "))
		}
	}
	for _, kind := range []struct{ suffix, title string }{
		{".deny", "deny rules that fired (each one refuses the request):"},
		{".hide", "hide rules that fired (each one hides a name):"},
	} {
		var fired []FiredRule
		for _, f := range ex.Fired {
			if strings.HasSuffix(f.Rule, kind.suffix) {
				fired = append(fired, f)
			}
		}
		if len(fired) > 0 {
			fmt.Fprintln(cw, "\n"+kind.title)
			for _, f := range fired {
				fmt.Fprintf(cw, "  %s:%d  %s\n", f.File, f.Line, f.Text)
			}
		}
	}
	fmt.Fprintln(cw, "\nrules that produced a value, in evaluation order:")
	tw := tabwriter.NewWriter(cw, 2, 4, 2, ' ', 0)
	for _, f := range ex.Fired {
		fmt.Fprintf(tw, "  %s:%d\t%s\t%s\n", f.File, f.Line, f.Rule, f.Text)
	}
	_ = tw.Flush()
	fmt.Fprintf(cw, "\ntrace (%s):\n", ex.Mode)
	if len(ex.Trace) == 0 {
		switch ex.Mode {
		case ExplainNotes:
			fmt.Fprintln(cw, "  (no notes: add trace(sprintf(...)) calls to the policy to see them here)")
		default:
			fmt.Fprintln(cw, "  (empty)")
		}
	} else {
		topdown.PrettyTraceWithLocation(cw, ex.Trace)
	}
	return cw.n, cw.err
}

type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}
