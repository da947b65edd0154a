package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// freeAddr is a loopback address no one listens on (for --metrics-addr).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// `pdp audit store` as its own process over a real JetStream, then `pdp
// audit query`, `sql` and `verify --store` over what it wrote, then the
// same verify after the database was tampered with.
func TestRunAuditStoreQueryVerify(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	srv := natstest.Start(t)
	nc, err := auditsink.Connect(ctx, srv.URL(), auditsink.ConnectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	key, _, err := auditsink.LoadOrCreateSigningKey(filepath.Join(dataDir, "audit-signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	sink, err := auditsink.New(ctx, auditsink.Config{SpoolDir: filepath.Join(dataDir, "spool"), PDP: "p1", SigningKey: key,
		CheckpointEvery: 10, Logger: slog.New(slog.DiscardHandler)}, nc)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := []string{"allow", "deny", "challenge"}
	for i := range 30 {
		ev := &auditsink.Event{ID: fmt.Sprintf("d%02d", i), ResourceKey: "demo", Resource: "https://r/mcp", Method: "tools/call",
			Target: []string{"generate_qr_url", "lookup_product"}[i%2], Outcome: outcomes[i%3],
			Subject: fmt.Sprintf("user%d", i%4), ClientID: fmt.Sprintf("agent%d", i%2)}
		if err := sink.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}

	db := filepath.Join(dataDir, "audit.db")
	metrics := freeAddr(t)
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var storeCode int
	var storeErr bytes.Buffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		storeCode = runAudit(sctx, []string{"store", "--nats", srv.URL(), "--db", db, "--batch", "7", "--metrics-addr", metrics}, io.Discard, &storeErr)
	}()
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runAudit(ctx, append(args, "--db", db), &out, &errb)
		return code, out.String(), errb.String()
	}
	testkit.WaitFor(t, "30 events and their checkpoints stored", func() bool {
		code, out, _ := cli("sql", "SELECT (SELECT COUNT(*) FROM audit_events) || '/' || (SELECT COUNT(*) FROM audit_checkpoints) AS n", "--format", "csv")
		return code == 0 && strings.Contains(out, "30/3")
	})
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "mcp_pdp_audit_store_rows_total 30") || !strings.Contains(string(body), "mcp_pdp_audit_store_lag 0") {
		t.Fatalf("metrics:\n%s", body)
	}
	stop()
	wg.Wait()
	if storeCode != 0 {
		t.Fatalf("pdp audit store: exit %d\n%s", storeCode, storeErr.String())
	}

	queries := []struct {
		args []string
		rows int
	}{
		{[]string{"--tool", "generate_qr_url"}, 15},
		{[]string{"--tool", "generate_qr_url", "--outcome", "allow"}, 5},
		{[]string{"--outcome", "allow,deny"}, 20},
		{[]string{"--denied"}, 20},
		{[]string{"--subject", "user1"}, 8},
		{[]string{"--client", "agent1", "--denied"}, 10},
		{[]string{"--decision", "d07"}, 1},
		{[]string{"--since", "1h", "--until", "0s"}, 30},
		{[]string{"--since", "2000-01-01", "--until", "2000-02-01"}, 0},
		{[]string{"--limit", "4"}, 4},
		{[]string{"--by", "client,outcome"}, 6},
	}
	for _, q := range queries {
		t.Run(strings.Join(q.args, " "), func(t *testing.T) {
			code, out, errs := cli(append([]string{"query", "--format", "csv"}, q.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil || len(recs)-1 != q.rows {
				t.Fatalf("%d rows, want %d (%v):\n%s", len(recs)-1, q.rows, err, out)
			}
		})
	}
	code, out, _ := cli("query", "--by", "client", "--format", "jsonl")
	if code != 0 || !strings.Contains(out, `{"client_id":"agent0","count":15}`) {
		t.Fatalf("grouped jsonl: %d %s", code, out)
	}
	code, out, _ = cli("query", "--decision", "d07")
	if code != 0 || !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "d07") || !strings.Contains(out, "user3") {
		t.Fatalf("table: %d %s", code, out)
	}

	verify := func() (int, string) {
		var out, errb bytes.Buffer
		code := runAudit(ctx, []string{"verify", "--store", db, "--data-dir", dataDir}, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := verify(); code != 0 || !strings.Contains(out, "30 events, seq 1-30, 3 checkpoints") {
		t.Fatalf("verify --store, intact: exit %d\n%s", code, out)
	}
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tamper := []struct {
		name, stmt, finding string
	}{
		{"a column rewritten", `UPDATE audit_events SET outcome = 'allow' WHERE id = 'd04'`, "FINDING modified"},
		{"an event removed", `DELETE FROM audit_events WHERE id = 'd11'`, "FINDING gap"},
	}
	for _, tc := range tamper {
		if _, err := raw.ExecContext(ctx, tc.stmt); err != nil {
			t.Fatal(err)
		}
		code, out := verify()
		if code != 1 || !strings.Contains(out, tc.finding) {
			t.Fatalf("%s: exit %d, want 1 and %q\n%s", tc.name, code, tc.finding, out)
		}
	}
	if _, out := verify(); !strings.Contains(out, "d04") {
		t.Fatalf("the modified finding does not name the row d04:\n%s", out)
	}
}

// Usage errors exit 2 with a message naming the flag; a missing store
// exits 1 and says how to get one.
func TestAuditStoreUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"query", "--format", "xml"}, 2, "--format"},
		{[]string{"query", "--since", "yesterday"}, 2, "--since"},
		{[]string{"query", "extra"}, 2, "unexpected arguments"},
		{[]string{"query", "--data-dir", dir}, 1, "no audit store at " + filepath.Join(dir, "audit.db")},
		{[]string{"sql"}, 2, "one SELECT"},
		{[]string{"sql", "SELECT 1", "SELECT 2"}, 2, "one SELECT"},
		{[]string{"store", "--retention", "-3d"}, 2, "--retention"},
		{[]string{"store", "--retention", "soon"}, 2, "--retention"},
		{[]string{"store", "--batch", "0"}, 2, "--batch"},
		{[]string{"store", "--db", "mysql://x"}, 1, "mysql"},
		{[]string{"query", "-h"}, 0, "pdp audit query"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runAudit(context.Background(), c.args, &out, &errb)
			if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
				t.Fatalf("exit %d, want %d; output lacks %q:\n%s%s", code, c.code, c.want, out.String(), errb.String())
			}
		})
	}
	// A bad group column is the store's error, with the columns that exist.
	db := filepath.Join(dir, "q.db")
	var out, errb bytes.Buffer
	if code := runAudit(context.Background(), []string{"store", "--db", db, "--nats", "nats://127.0.0.1:1"}, &out, &errb); code != 1 {
		t.Fatalf("store without NATS: exit %d %s", code, errb.String())
	}
	errb.Reset()
	if code := runAudit(context.Background(), []string{"query", "--db", db, "--by", "password"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not a group column") {
		t.Fatalf("--by password: exit %d %s", code, errb.String())
	}
}
