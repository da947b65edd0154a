package auditsink

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

func TestNATSSubjectSanitizing(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"plain", Event{ResourceKey: "demo", Method: "tools/call", Outcome: "allow"}, "mcp.audit.demo.tools/call.allow"},
		{"dots in key", Event{ResourceKey: "mcp.example.com", Method: "tools/list", Outcome: "filtered"}, "mcp.audit.mcp_example_com.tools/list.filtered"},
		{"wildcards", Event{ResourceKey: "a*b>c", Method: "x>y", Outcome: "*"}, "mcp.audit.a_b_c.x_y._"},
		{"whitespace and control", Event{ResourceKey: "a b\tc\nd\x00", Method: "m", Outcome: "deny"}, "mcp.audit.a_b_c_d_.m.deny"},
		{"empty tokens", Event{}, "mcp.audit._._._"},
		{"no key (the PDP always sets one)", Event{Resource: "https://MCP.example.com/mcp/", Method: "prompts/get", Outcome: "challenge"}, "mcp.audit._.prompts/get.challenge"},
		{"unicode kept, invalid utf8 replaced", Event{ResourceKey: "ré\xff", Method: "m", Outcome: "allow"}, "mcp.audit.ré_.m.allow"},
		{"non-breaking space", Event{ResourceKey: "a\u00a0b", Method: "m", Outcome: "allow"}, "mcp.audit.a_b.m.allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ev.NATSSubject("mcp.audit"); got != tt.want {
				t.Fatalf("NATSSubject = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIsResourceKey(t *testing.T) {
	tests := map[string]bool{
		"mcp_example_com_mcp":       true,
		"Demo-1":                    true,
		"":                          false,
		"http://localhost:8181/mcp": false, // a URI, not a key: no subject filter
		"mcp.example.com":           false,
		"a*b":                       false,
	}
	for in, want := range tests {
		if got := IsResourceKey(in); got != want {
			t.Errorf("IsResourceKey(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestEventJSONFieldNames(t *testing.T) {
	ev := testEvent(1)
	ev.Schema, ev.PDP = SchemaVersion, "pdp-1"
	ev.Arguments = map[string]any{"gtin": "[REDACTED]"}
	ev.JSONRPCID = json.RawMessage(`7`)
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "time", "schema", "pdp", "pep", "resource", "resource_key", "method", "target", "outcome",
		"http_status", "required_scopes", "missing_scopes", "reason", "sub", "client_id", "act", "grant", "issuer",
		"token_fingerprint", "policy_revision", "latency_us", "arguments", "jsonrpc_id"} {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing from %s", k, b)
		}
	}
	if len(m) != 24 {
		t.Errorf("unexpected fields in %s", b)
	}
}

func TestFilterSubjects(t *testing.T) {
	tests := []struct {
		f    Filter
		want []string
	}{
		{Filter{}, []string{"p.*.*.*"}},
		{Filter{Resource: "demo", Method: "tools/call", Outcome: "deny"}, []string{"p.demo.tools/call.deny"}},
		{Filter{Resource: "https://mcp.example.com/mcp"}, []string{"p.*.*.*"}}, // a URI: matched client-side
		{Filter{Outcome: "deny, challenge,deny"}, []string{"p.*.*.deny", "p.*.*.challenge"}},
		{Filter{Tool: "x", Subject: "alice", ClientID: "c"}, []string{"p.*.*.*"}},
	}
	for _, tt := range tests {
		if got := tt.f.subjects("p"); !slices.Equal(got, tt.want) {
			t.Errorf("%+v: subjects %v, want %v", tt.f, got, tt.want)
		}
	}
}

// Read against a real stream, with server-side and client-side filters.
func TestReadFilters(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	s := newSink(t, baseConfig(t, t.TempDir()), nc)
	const total = 40
	for i := range total {
		ev := testEvent(i)
		if i%2 == 1 {
			ev.ResourceKey, ev.Resource = "other", "https://other.example.com/mcp"
		}
		if err := s.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	waitDrained(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	base := testEvent(0).Time
	match := func(pred func(i int, ev *Event) bool) []string {
		var out []string
		for i := range total {
			ev := testEvent(i)
			if i%2 == 1 {
				ev.ResourceKey, ev.Resource = "other", "https://other.example.com/mcp"
			}
			if pred(i, ev) {
				out = append(out, ev.ID)
			}
		}
		return out
	}
	tests := []struct {
		name string
		f    Filter
		want []string
	}{
		{"all", Filter{}, ids(0, total)},
		{"resource key", Filter{Resource: "other"}, match(func(i int, _ *Event) bool { return i%2 == 1 })},
		{"resource URI", Filter{Resource: "https://mcp.example.com/mcp"}, match(func(i int, _ *Event) bool { return i%2 == 0 })},
		{"outcome", Filter{Outcome: "deny"}, match(func(_ int, ev *Event) bool { return ev.Outcome == "deny" })},
		{"outcomes", Filter{Outcome: "deny,challenge"}, match(func(_ int, ev *Event) bool { return ev.Outcome == "deny" || ev.Outcome == "challenge" })},
		{"method", Filter{Method: "tools/list"}, match(func(_ int, ev *Event) bool { return ev.Method == "tools/list" })},
		{"tool", Filter{Tool: "tool_3"}, match(func(_ int, ev *Event) bool { return ev.Target == "tool_3" })},
		{"subject and client", Filter{Subject: "user-2", ClientID: "client-1"}, match(func(_ int, ev *Event) bool { return ev.Subject == "user-2" && ev.ClientID == "client-1" })},
		{"since/until", Filter{Since: base.Add(10 * time.Millisecond), Until: base.Add(19 * time.Millisecond)}, ids(10, 20)},
		{"nothing matches", Filter{Subject: "nobody"}, nil},
		{"no subject matches", Filter{Resource: "nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := Read(testCtx(t), js, "", "", tt.f, false, func(ev *Event) error {
				got = append(got, ev.ID)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v\nwant %v", got, tt.want)
			}
		})
	}

	t.Run("fn error stops", func(t *testing.T) {
		stop := errors.New("enough")
		calls := 0
		err := Read(testCtx(t), js, DefaultStream, DefaultSubjectPrefix, Filter{}, false, func(*Event) error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("err %v after %d calls", err, calls)
		}
	})

	t.Run("follow", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		got := make(chan string, 100)
		errc := make(chan error, 1)
		go func() {
			errc <- Read(ctx, js, DefaultStream, DefaultSubjectPrefix, Filter{Subject: "late-user"}, true, func(ev *Event) error {
				got <- ev.ID
				return nil
			})
		}()
		late := testEvent(1000)
		late.Subject = "late-user"
		if err := s.Record(context.Background(), late); err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-got:
			if id != late.ID {
				t.Fatalf("followed %s, want %s", id, late.ID)
			}
		case <-time.After(waitLong):
			t.Fatal("follow did not deliver the new event")
		}
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("Read with follow returned %v after cancel, want nil", err)
			}
		case <-time.After(waitLong):
			t.Fatal("Read with follow did not return after cancel")
		}
	})

	t.Run("missing stream", func(t *testing.T) {
		if err := Read(testCtx(t), js, "NOPE", "", Filter{}, false, func(*Event) error { return nil }); err == nil {
			t.Fatal("want an error")
		}
	})
}
