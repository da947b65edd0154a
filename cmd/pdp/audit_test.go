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
)

// `pdp audit tail|export` against the embedded NATS of a "running dev
// server", found through <data-dir>/nats.url.
func TestRunAuditTailAndExport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: filepath.Join(dataDir, "nats"), Port: natsembed.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if err := natsembed.WriteURLFile(dataDir, srv.ClientURL()); err != nil {
		t.Fatal(err)
	}
	nc, err := auditsink.Connect(ctx, srv.ClientURL(), auditsink.ConnectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sink, err := auditsink.New(ctx, auditsink.Config{Enabled: true, SpoolDir: filepath.Join(dataDir, "spool"), PDP: "dev", Logger: slog.New(slog.DiscardHandler)}, nc)
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
	if st := sink.Stats(); st.Published != 3 {
		t.Fatalf("published %d of 3", st.Published)
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
		{"export with nats url", []string{"export", "--nats", srv.ClientURL(), "--since", "24h", "--until", "10m", "--tool", "delete_all"}, 0, []string{`"id":"d2"`}, []string{`"id":"d1"`, `"id":"d3"`}},
		{"bad since", []string{"export", "--nats", srv.ClientURL(), "--since", "yesterday"}, 2, nil, nil},
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
