package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// `pdp audit tail|export` against the embedded NATS of a "running dev
// server", found through <data-dir>/nats.url.
func TestRunAuditTailAndExport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	srv := natstest.Start(t)
	if err := natsembed.WriteURLFile(dataDir, srv.URL()); err != nil {
		t.Fatal(err)
	}
	nc, err := auditsink.Connect(ctx, srv.URL(), auditsink.ConnectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sink, err := auditsink.New(ctx, auditsink.Config{SpoolDir: filepath.Join(dataDir, "spool"), PDP: "dev", Logger: slog.New(slog.DiscardHandler)}, nc)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	events := []*auditsink.Event{
		{ID: "d1", Time: now.Add(-2 * time.Hour), ResourceKey: "demo", Method: "tools/call", Target: "generate_qr_url", Outcome: "allow", HTTPStatus: 200, Subject: "alice", ClientID: "claude"},
		{ID: "d2", Time: now.Add(-30 * time.Minute), ResourceKey: "demo", Method: "tools/call", Target: "delete_all", Outcome: "deny", HTTPStatus: 403, Subject: "bob", ClientID: "cursor", Reason: "missing scope admin"},
		{ID: "d3", Time: now.Add(-time.Minute), ResourceKey: "demo", Method: "tools/call", Target: "generate_qr_url", Outcome: "challenge", HTTPStatus: 401, Subject: "alice", ClientID: "claude"},
	}
	for _, ev := range events {
		if err := sink.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// 3 events and the checkpoint of the sink's Close.
	if st := sink.Stats(); st.Published != 4 {
		// Under load (make test runs packages in parallel under the race
		// detector) a publish may fail or time out and the event go to
		// the spool, as designed: a new sink on the same spool replays it.
		t.Logf("published %d of 4 (%d spooled); replaying the spool", st.Published, st.Spooled)
		again, err := auditsink.New(ctx, auditsink.Config{SpoolDir: filepath.Join(dataDir, "spool"), PDP: "dev", Logger: slog.New(slog.DiscardHandler)}, nc)
		if err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, "the spooled events to be replayed", func() bool { return again.Stats().SpoolPending == 0 })
		if err := again.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if got := st.Published + again.Stats().Replayed + again.Stats().Published; got != 4 {
			t.Fatalf("published %d of 4 after replaying the spool", got)
		}
	}

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // in stdout
		notWant  []string
	}{
		{"tail table, last hour", []string{"tail", "--data-dir", dataDir}, 0, []string{"OUTCOME", "deny", "403", "delete_all", "bob", "cursor", "missing scope admin", "challenge"}, []string{"d1", "allow "}},
		{"tail json with filters", []string{"tail", "--data-dir", dataDir, "--json", "--since", "3h", "--subject", "alice"}, 0, []string{`"id":"d1"`, `"id":"d3"`}, []string{`"id":"d2"`}},
		{"tail outcome filter", []string{"tail", "--data-dir", dataDir, "--since", "1d", "--outcome", "allow"}, 0, []string{"generate_qr_url", "allow"}, []string{"delete_all"}},
		{"export with nats url", []string{"export", "--nats", srv.URL(), "--since", "24h", "--until", "10m", "--tool", "delete_all"}, 0, []string{`"id":"d2"`}, []string{`"id":"d1"`, `"id":"d3"`}},
		{"bad since", []string{"export", "--nats", srv.URL(), "--since", "yesterday"}, 2, nil, nil},
		{"no dev server", []string{"tail", "--data-dir", t.TempDir()}, 1, nil, nil},
		{"unknown subcommand", []string{"grep"}, 2, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runAudit(ctx, tt.args, &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("stdout has %q:\n%s", w, out.String())
				}
			}
			if jsonOut := strings.Contains(strings.Join(tt.args, " "), "--json") || tt.args[0] == "export"; jsonOut && code == 0 {
				for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
					if !json.Valid([]byte(line)) {
						t.Errorf("not a JSON line: %q", line)
					}
				}
			}
		})
	}
}

func TestAuditParseTimeArg(t *testing.T) {
	now := time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"", time.Time{}, false},
		{"24h", now.Add(-24 * time.Hour), false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"7d", now.Add(-7 * 24 * time.Hour), false},
		{"2025-06-01T10:00:00Z", time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC), false},
		{"2025-06-01T10:00:00.5+02:00", time.Date(2025, 6, 1, 8, 0, 0, 5e8, time.UTC), false},
		{"2025-06-01", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), false},
		{"-1h", time.Time{}, true},
		{"yesterday", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTimeArg(tt.in, now)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !got.Equal(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAuditTableAndJSONOutput(t *testing.T) {
	var buf bytes.Buffer
	if err := writeAuditHeader(&buf); err != nil {
		t.Fatal(err)
	}
	ev := &auditsink.Event{
		ID: "dec-000001", Time: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).Add(time.Millisecond),
		ResourceKey: "demo", Method: "tools/call", Outcome: auditsink.OutcomeDeny, HTTPStatus: 403,
		Subject: "user-1", ClientID: "client-1",
	}
	ev.Reason = strings.Repeat("scope missing; ", 10) + "\nsecond line"
	ev.Target = "a_really_long_tool_name_that_does_not_fit"
	if err := writeAuditRow(&buf, ev); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	for _, want := range []string{"TIME", "OUTCOME", "HTTP", "METHOD", "TARGET", "SUBJECT", "CLIENT_ID", "REASON"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header %q lacks %s", lines[0], want)
		}
	}
	for _, want := range []string{"2025-06-01T12:00:00.001Z", "deny", "403", "tools/call", "a_really_long_tool_name_tha…", "user-1", "client-1", "scope missing;"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
	if strings.Contains(lines[1], "second line") {
		t.Errorf("reason not truncated: %q", lines[1])
	}
	// Columns line up: OUTCOME starts at the same place.
	if strings.Index(lines[0], "OUTCOME") != strings.Index(lines[1], "deny") {
		t.Errorf("columns misaligned:\n%s\n%s", lines[0], lines[1])
	}
	buf.Reset()
	if err := writeAuditJSON(&buf, ev); err != nil {
		t.Fatal(err)
	}
	var back auditsink.Event
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.ID != ev.ID || !strings.HasSuffix(buf.String(), "}\n") {
		t.Fatalf("JSON line %q: %v", buf.String(), err)
	}
}
