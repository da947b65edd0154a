package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/testkit"
)

// startDev runs `pdp serve --dev` in-process on a free loopback port with
// its own data directory and returns the base URL.
func startDev(t *testing.T) (base, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	cfg := &config.Config{Listen: "127.0.0.1:0", DataDir: dataDir}
	cfg.ApplyDefaults()
	s, err := server.New(context.Background(), cfg, server.Options{Dev: true})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	base = s.URL()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	return base, dataDir
}

func decide(t *testing.T, base string, body map[string]any) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(body)
	resp, err := http.Post(base+"/v1/decide", "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil {
		t.Fatalf("HTTP %d %s", resp.StatusCode, b)
	}
	return out
}

// TestDevWalkthrough is the README's walk-through against the real server:
// anonymous list, anonymous protected call (401 challenge), a token from
// `pdp token`, the retry (allowed), and one audit event per decision in the
// embedded JetStream.
func TestDevWalkthrough(t *testing.T) {
	base, dataDir := startDev(t)
	resource := base + "/mcp"
	call := map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call",
		"params": map[string]any{"name": "generate_qr_url", "arguments": map[string]any{"gtin": "4006381333931"}}}

	list := decide(t, base, map[string]any{"resource": resource,
		"message": map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
		"result": map[string]any{"tools": []any{
			map[string]any{"name": "lookup_product", "inputSchema": map[string]any{"type": "object"}},
			map[string]any{"name": "generate_qr_url", "inputSchema": map[string]any{"type": "object"}},
			map[string]any{"name": "internal_debug", "inputSchema": map[string]any{"type": "object"}},
		}}})
	if tools := list["result"].(map[string]any)["tools"].([]any); len(tools) != 2 {
		t.Fatalf("anonymous list: %v", list)
	}

	anon := decide(t, base, map[string]any{"resource": resource, "message": call})
	wantHeader := `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp", scope="qr:generate"`
	if anon["http_status"] != float64(401) || anon["www_authenticate"] != wantHeader {
		t.Fatalf("anonymous call: %v", anon)
	}
	// The metadata URL the challenge points to is served by the PDP in dev mode.
	ch, err := stepup.ParseChallenges(anon["www_authenticate"].(string))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(ch[0].Params["resource_metadata"])
	if err != nil {
		t.Fatal(err)
	}
	var prm map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&prm)
	resp.Body.Close()
	if prm["resource"] != resource {
		t.Fatalf("protected resource metadata = %v", prm)
	}

	var stdout, stderr bytes.Buffer
	if code := runToken(context.Background(), []string{"--data-dir", dataDir, "--scope", "qr:generate", "--sub", "alice", "--client-id", "demo"}, &stdout, &stderr); code != 0 {
		t.Fatalf("pdp token: %d %s", code, stderr.String())
	}
	tok := strings.TrimSpace(stdout.String())
	if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
		t.Fatalf("pdp token printed %q", tok)
	}
	allowed := decide(t, base, map[string]any{"resource": resource, "authorization": "Bearer " + tok, "message": call})
	if allowed["allow"] != true || allowed["http_status"] != float64(200) {
		t.Fatalf("call with token: %v", allowed)
	}

	// Every decision is in the stream, exactly once, with who and what.
	url, err := natsembed.ReadURLFile(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	// The embedded NATS refuses anonymous clients; the reader reads.
	if nc, err := auditsink.Connect(context.Background(), url, auditsink.ConnectOptions{}); err == nil {
		nc.Close()
		t.Fatal("the embedded NATS accepted a client without credentials")
	}
	nc, err := auditsink.Connect(context.Background(), url, auditsink.ConnectOptions{NKeySeedFile: natsembed.SeedFile(dataDir, natsembed.RoleReader)})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{list["decision_id"].(string): "filtered", anon["decision_id"].(string): "challenge", allowed["decision_id"].(string): "allow"}
	got := map[string]*auditsink.Event{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		got = map[string]*auditsink.Event{}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := auditsink.Read(ctx, js, "MCP_AUDIT", "mcp.audit", auditsink.Filter{}, false, func(ev *auditsink.Event) error {
			if _, dup := got[ev.ID]; dup {
				t.Errorf("event %s twice", ev.ID)
			}
			got[ev.ID] = ev
			return nil
		})
		cancel()
		if err != nil {
			t.Logf("read: %v", err)
		}
		if len(got) < len(want) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	for id, outcome := range want {
		ev := got[id]
		if ev == nil || ev.Outcome != outcome {
			t.Fatalf("event %s = %+v, want outcome %s", id, ev, outcome)
		}
	}
	ev := got[allowed["decision_id"].(string)]
	if ev.Subject != "alice" || ev.ClientID != "demo" || ev.Target != "generate_qr_url" || ev.PolicyRevision == "" || ev.TokenFingerprint == "" {
		t.Fatalf("allowed event = %+v", ev)
	}

	// The dev server runs the SQL audit store in process: pdp audit query
	// answers from <data-dir>/audit.db with no set-up.
	auditCLI := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runAudit(context.Background(), append(args, "--data-dir", dataDir), &out, &errb)
		return code, out.String(), errb.String()
	}
	var rows []map[string]any
	testkit.WaitFor(t, "the three decisions in the audit store", func() bool {
		code, out, _ := auditCLI("query", "--format", "jsonl")
		rows = nil
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(l), &r) == nil {
				rows = append(rows, r)
			}
		}
		return code == 0 && len(rows) >= len(want)
	})
	code, out, errs := auditCLI("query", "--tool", "generate_qr_url", "--outcome", "allow", "--subject", "alice", "--since", "1h", "--format", "csv")
	if code != 0 || !strings.HasPrefix(out, "id,time,") || !strings.Contains(out, allowed["decision_id"].(string)) || strings.Count(out, "\n") != 2 {
		t.Fatalf("pdp audit query --tool --outcome --subject: %d\n%s%s", code, out, errs)
	}
	code, out, errs = auditCLI("query", "--by", "outcome")
	if code != 0 || !strings.Contains(out, "OUTCOME") || !strings.Contains(out, "challenge") || !strings.Contains(out, "filtered") {
		t.Fatalf("pdp audit query --by outcome: %d\n%s%s", code, out, errs)
	}
	code, out, errs = auditCLI("sql", "SELECT COUNT(*) AS n FROM audit_events WHERE client_id = 'demo'", "--format", "jsonl")
	if code != 0 || strings.TrimSpace(out) != `{"n":1}` {
		t.Fatalf("pdp audit sql: %d %s%s", code, out, errs)
	}
	if code, _, errs = auditCLI("sql", "DELETE FROM audit_events"); code == 0 || !strings.Contains(errs, "only SELECT") {
		t.Fatalf("pdp audit sql DELETE: %d %s", code, errs)
	}
	var vout, verr bytes.Buffer
	if code := runAuditVerify(context.Background(), []string{"--store", "default", "--data-dir", dataDir}, &vout, &verr); code != 0 {
		t.Fatalf("pdp audit verify --store: %d\n%s%s", code, vout.String(), verr.String())
	}
	if !strings.Contains(vout.String(), "chain ") {
		t.Fatalf("pdp audit verify --store printed %q", vout.String())
	}
}

// `pdp revoke` against a running dev server: the next call of the revoked
// client is denied with the reason on the server's own embedded NATS (its
// admin user writes, the PDP's restricted user watches), and allowed again
// after `pdp revoke remove`; /readyz reports the watch.
func TestDevRevokeEndToEnd(t *testing.T) {
	base, dataDir := startDev(t)
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	if code := runToken(ctx, []string{"--data-dir", dataDir, "--scope", "qr:generate", "--sub", "alice", "--client-id", "leaky-agent"}, &stdout, &stderr); code != 0 {
		t.Fatalf("pdp token: %d %s", code, stderr.String())
	}
	tok := strings.TrimSpace(stdout.String())
	call := map[string]any{"resource": base + "/mcp", "authorization": "Bearer " + tok,
		"message": map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "generate_qr_url", "arguments": map[string]any{"gtin": "4006381333931"}}}}
	if r := decide(t, base, call); r["allow"] != true {
		t.Fatalf("before the revocation: %v", r)
	}
	revoke := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := runRevoke(ctx, append(args, "--data-dir", dataDir), &out, &errb); code != 0 {
			t.Fatalf("pdp revoke %v: exit %d %s", args, code, errb.String())
		}
		return out.String()
	}
	revoke("client", "leaky-agent", "--reason", "INC-1 key leaked")
	testkit.WaitFor(t, "the revoked client denied", func() bool {
		r := decide(t, base, call)
		return r["allow"] == false && r["reason"] == "client leaky-agent is revoked: INC-1 key leaked"
	})
	if out := revoke("list"); !strings.Contains(out, "leaky-agent") {
		t.Fatalf("pdp revoke list: %s", out)
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if rv, _ := ready["revocations"].(map[string]any); rv["synced"] != true || rv["entries"] != float64(1) {
		t.Fatalf("/readyz: %v", ready)
	}
	revoke("remove", "client", "leaky-agent")
	testkit.WaitFor(t, "allowed again after the removal", func() bool { return decide(t, base, call)["allow"] == true })
}
