package decision_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/testkit"

	"github.com/mcp-pdp/pdp/internal/decision"
)

// Recording captures the exact input a decision was made on; Explain
// re-evaluates it with a tracer and names the rule that denied.
func TestRecordingAndExplain(t *testing.T) {
	dir := t.TempDir()
	copyDefault(t, dir)
	testkit.WriteFile(t, filepath.Join(dir, "data.yaml"), `
mcp:
  default_catalog: demo
  revoked: {clients: {leaky: "key leaked"}, subjects: {}}
  catalogs:
    demo:
      tools:
        generate_qr_url: {access: step_up, scopes: ["qr:generate"]}
`)
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	rec := p.Recording()
	in := call("tools/call", "generate_qr_url", mustToken(t, "alice", "leaky", []string{"qr:generate"}, nil))
	res, err := decision.NewEngine(rec).Decide(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	inputs := rec.RecordedInputs()
	if len(inputs) != 1 || inputs[0].Compare(in.Value()) != 0 {
		t.Fatalf("recorded %d inputs, want exactly the decided one", len(inputs))
	}
	if p.CacheStats().Entries != 0 {
		t.Fatal("recording wrote into the original policy's cache")
	}

	tests := []struct {
		mode  decision.ExplainMode
		trace string // expected in the trace section
	}{
		{decision.ExplainFails, "Fail"},
		{decision.ExplainFull, "Exit data.mcp.authz.deny"},
		{decision.ExplainNotes, "no notes"},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode), func(t *testing.T) {
			ex, err := p.Explain(context.Background(), inputs[0], tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			if ex.Result.Allow != res.Allow || ex.Result.Reason != res.Reason || res.Reason != "client leaky is revoked" {
				t.Fatalf("explained %+v, decided %+v", ex.Result, res)
			}
			var denyRule *decision.FiredRule
			for i, f := range ex.Fired {
				if f.Rule == "data.mcp.authz.deny" {
					denyRule = &ex.Fired[i]
				}
			}
			if denyRule == nil || !strings.HasSuffix(denyRule.File, "authz.rego") || denyRule.Line == 0 ||
				!strings.Contains(denyRule.Text, "is revoked") {
				t.Fatalf("fired rules %+v: want the revocation deny rule", ex.Fired)
			}
			var out strings.Builder
			if _, err := ex.WriteTo(&out); err != nil {
				t.Fatal(err)
			}
			text := out.String()
			for _, want := range []string{`reason="client leaky is revoked"`, "deny rules that fired", "authz.rego:" + strconv.Itoa(denyRule.Line) + "  deny contains", "trace (" + string(tc.mode) + ")", tc.trace} {
				if !strings.Contains(text, want) {
					t.Fatalf("explanation lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

func TestExplainNotes(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "authz.rego"), `package mcp.authz

decision := {"allow": allow}

default allow := false

allow if {
	trace(sprintf("checking %s", [input.method]))
	input.method == "ping"
}
`)
	p, err := decision.Load(context.Background(), decision.Source{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := p.Explain(context.Background(), call("ping", "", nil).Value(), decision.ExplainNotes)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	_, _ = ex.WriteTo(&out)
	if !strings.Contains(out.String(), "checking ping") {
		t.Fatalf("notes missing:\n%s", out.String())
	}
}

func TestParseExplainMode(t *testing.T) {
	for _, s := range []string{"fails", "notes", "full"} {
		if m, err := decision.ParseExplainMode(s); err != nil || string(m) != s {
			t.Fatalf("%s: %v %v", s, m, err)
		}
	}
	if _, err := decision.ParseExplainMode("all"); err == nil {
		t.Fatal("accepted an unknown mode")
	}
}
