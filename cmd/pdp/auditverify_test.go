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

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// `pdp audit verify` over the stream of a dev server: intact, then with an
// event removed, then with the wrong key; the exit codes and the report.
func TestRunAuditVerify(t *testing.T) {
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
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The attacker's stream: deletes allowed.
	scfg := auditsink.StreamConfig(auditsink.Config{})
	scfg.DenyDelete, scfg.DenyPurge = false, false
	str, err := js.CreateStream(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := auditsink.LoadOrCreateSigningKey(filepath.Join(dataDir, "audit-signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	sink, err := auditsink.New(ctx, auditsink.Config{SpoolDir: filepath.Join(dataDir, "spool"), PDP: "dev", SigningKey: key,
		CheckpointEvery: 5, SkipStreamSetup: true, Logger: slog.New(slog.DiscardHandler)}, nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if err := sink.Record(ctx, &auditsink.Event{ID: "v" + string(rune('a'+i)), ResourceKey: "demo", Method: "tools/call", Outcome: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	verify := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runAudit(ctx, append([]string{"verify", "--data-dir", dataDir}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	// The default key is the dev server's public key in the data dir.
	code, out, stderr := verify()
	if code != 0 || !strings.Contains(out, "12 events, seq 1-12, 3 checkpoints") || !strings.Contains(out, "OK:") {
		t.Fatalf("intact: exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = verify("--json")
	var rep auditsink.Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.SignaturesChecked || len(rep.Chains) != 1 || rep.Chains[0].Covered != 12 {
		t.Fatalf("json: exit %d %s", code, out)
	}
	// Another PDP's key: every checkpoint is untrusted.
	other := filepath.Join(t.TempDir(), "other.key")
	if _, _, err := auditsink.LoadOrCreateSigningKey(other); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := verify("--public-key", auditsink.PublicKeyPath(other)); code != 1 || !strings.Contains(out, "FINDING bad_signature") {
		t.Fatalf("untrusted key: exit %d\n%s", code, out)
	}
	// Remove an event.
	if err := str.DeleteMsg(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := verify(); code != 1 || !strings.Contains(out, "FINDING gap") {
		t.Fatalf("after a delete: exit %d\n%s", code, out)
	}
	if code, _, stderr := verify("--public-key", "/nonexistent"); code != 2 || !strings.Contains(stderr, "/nonexistent") {
		t.Fatalf("missing key file: exit %d %s", code, stderr)
	}
	if code, _, _ := verify("--nats", "nats://127.0.0.1:1"); code != 3 {
		t.Fatalf("NATS unreachable: exit %d, want 3", code)
	}
}
