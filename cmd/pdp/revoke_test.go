package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/revoke"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

const testFP = "sha256:0123456789abcdef0123456789abcdef"

// Arguments refused before any connection (exit 2), and help (exit 0).
func TestRevokeUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{"no arguments", nil, 2, "", "Usage:"},
		{"help", []string{"help"}, 0, "pdp revoke client ID", ""},
		{"-h", []string{"-h"}, 0, "pdp revoke list", ""},
		{"--help", []string{"--help"}, 0, "pdp revoke remove", ""},
		{"subcommand -h", []string{"client", "-h"}, 0, "-reason", ""},
		{"list -h", []string{"list", "-h"}, 0, "-json", ""},
		{"unknown command", []string{"user", "alice"}, 2, "", `unknown command "user"`},
		{"client without id", []string{"client"}, 2, "", "want one client_id, got 0"},
		{"two ids", []string{"subject", "alice", "bob"}, 2, "", "want one subject (sub), got 2"},
		{"empty id", []string{"client", ""}, 2, "", "without an id"},
		{"bad fingerprint", []string{"token", "eyJhbGciOiJFUzI1NiJ9"}, 2, "", "not a token fingerprint"},
		{"fingerprint too short", []string{"token", "sha256:0123"}, 2, "", "not a token fingerprint"},
		{"bad --for", []string{"client", "c", "--for", "soon"}, 2, "", "--for"},
		{"negative --for", []string{"client", "c", "--for", "-1h"}, 2, "", "must be positive"},
		{"zero --for", []string{"client", "c", "--for", "0d"}, 2, "", "must be positive"},
		{"reason on two lines", []string{"client", "c", "--reason", "a\nb"}, 2, "", "reason must be one line"},
		{"unknown flag", []string{"client", "c", "--until", "1h"}, 2, "", "unknown flag --until"},
		{"bad replicas", []string{"client", "c", "--replicas", "7"}, 2, "", "--replicas 7"},
		{"list with arguments", []string{"list", "everything"}, 2, "", "unexpected arguments"},
		{"remove without id", []string{"remove", "client"}, 2, "", "want a kind"},
		{"remove unknown kind", []string{"remove", "user", "alice"}, 2, "", `unknown revocation kind "user"`},
		{"remove bad fingerprint", []string{"remove", "token", "xyz"}, 2, "", "not a token fingerprint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runRevoke(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.wantOut)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantErr)
			}
		})
	}
}

func TestParseRevokeArgs(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tests := []struct {
		name string
		args []string
		want revoke.Entry
	}{
		{"client", []string{"client", "cursor", "--by", "ops"}, revoke.Entry{Kind: revoke.KindClient, ID: "cursor", By: "ops", Created: now}},
		{"flags before and after", []string{"subject", "--for", "24h", "alice", "--reason", "left the company", "--by", "hr"},
			revoke.Entry{Kind: revoke.KindSubject, ID: "alice", Reason: "left the company", By: "hr", Created: now, Expires: now.Add(24 * time.Hour)}},
		{"days", []string{"client", "c", "--for", "7d", "--by", "x"}, revoke.Entry{Kind: revoke.KindClient, ID: "c", By: "x", Created: now, Expires: now.Add(7 * 24 * time.Hour)}},
		{"fingerprint normalized", []string{"token", strings.ToUpper(testFP[7:]), "--by", "x"}, revoke.Entry{Kind: revoke.KindToken, ID: testFP, By: "x", Created: now}},
		{"id starting with a dash", []string{"client", "--by", "x", "--", "-odd-id"}, revoke.Entry{Kind: revoke.KindClient, ID: "-odd-id", By: "x", Created: now}},
		{"id with spaces and wildcards", []string{"subject", "a b.*.>", "--by", "x"}, revoke.Entry{Kind: revoke.KindSubject, ID: "a b.*.>", By: "x", Created: now}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			c, code := parseRevokeArgs(tt.args, clock, &stdout, &stderr)
			if c == nil {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			if *c.entry != tt.want {
				t.Fatalf("entry = %+v, want %+v", *c.entry, tt.want)
			}
		})
	}
	// --by defaults to the login name, when there is one.
	c, _ := parseRevokeArgs([]string{"client", "c"}, clock, &bytes.Buffer{}, &bytes.Buffer{})
	if c == nil || c.entry.By != loginName() {
		t.Fatalf("default --by: %+v, want %q", c, loginName())
	}
}

// revoke → list shows it → remove → list empty, against a real JetStream.
func TestRevokeCommands(t *testing.T) {
	srv := natstest.Start(t)
	dataDir := t.TempDir() // no seeds: the test server has no users
	nflags := []string{"--nats", srv.URL(), "--data-dir", dataDir}
	run := func(t *testing.T, wantCode int, args ...string) (stdout, stderr string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := runRevoke(context.Background(), append(args, nflags...), &out, &errb)
		if code != wantCode {
			t.Fatalf("pdp revoke %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}

	// Before the first revocation the bucket does not exist.
	if out, _ := run(t, 0, "list"); !strings.Contains(out, "does not exist yet") {
		t.Fatalf("list before any revocation: %q", out)
	}
	run(t, 1, "remove", "client", "cursor")

	out, _ := run(t, 0, "client", "cursor", "--reason", "leaked secret", "--by", "ops")
	if !strings.Contains(out, "revoked client cursor until removed: leaked secret") {
		t.Fatalf("revoke client: %q", out)
	}
	out, _ = run(t, 0, "subject", "alice", "--for", "24h", "--by", "hr")
	if !strings.Contains(out, "revoked subject alice until 20") {
		t.Fatalf("revoke subject --for: %q", out)
	}
	run(t, 0, "token", strings.ToUpper(testFP[7:]), "--by", "ops", "--for", "1ms")
	run(t, 0, "client", "evil\x1b[2Jid", "--by", "ops")
	run(t, 2, "token", "not-a-fingerprint")

	time.Sleep(5 * time.Millisecond) // the token's revocation expires
	out, _ = run(t, 0, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "KIND") {
		t.Fatalf("list:\n%s", out)
	}
	for _, want := range []struct {
		line  int
		parts []string
	}{
		{1, []string{"client", "cursor", "active", "ops", "leaked secret"}},
		{2, []string{"client", `"evil\x1b[2Jid"`, "active"}},
		{3, []string{"subject", "alice", "active", "hr"}},
		{4, []string{"token", testFP, "expired", "ops"}},
	} {
		for _, p := range want.parts {
			if !strings.Contains(lines[want.line], p) {
				t.Errorf("list line %d %q lacks %q", want.line, lines[want.line], p)
			}
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("list printed an escape sequence of an id")
	}

	out, _ = run(t, 0, "list", "--json")
	var listed []struct {
		revoke.Entry
		Active bool `json:"active"`
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var l struct {
			revoke.Entry
			Active bool `json:"active"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("list --json line %q: %v", line, err)
		}
		listed = append(listed, l)
	}
	if len(listed) != 4 {
		t.Fatalf("list --json: %d lines, want 4:\n%s", len(listed), out)
	}
	alice := listed[2]
	if alice.ID != "alice" || !alice.Active || alice.By != "hr" || alice.Expires.Sub(alice.Created) != 24*time.Hour {
		t.Errorf("alice in list --json: %+v", alice)
	}
	if tok := listed[3]; tok.ID != testFP || tok.Active || tok.Expires.IsZero() {
		t.Errorf("token in list --json: %+v", tok)
	}

	// Remove each (a token by its fingerprint in any case, an odd id
	// quoted by the shell), then the list is empty.
	run(t, 0, "remove", "client", "cursor")
	run(t, 0, "remove", "client", "evil\x1b[2Jid")
	run(t, 0, "remove", "subject", "alice")
	run(t, 0, "remove", "token", strings.ToUpper(testFP))
	_, errOut := run(t, 1, "remove", "subject", "alice")
	if !strings.Contains(errOut, "subject alice is not revoked") {
		t.Errorf("second remove: %q", errOut)
	}
	if out, _ := run(t, 0, "list"); strings.TrimSpace(out) != "no revocations" {
		t.Fatalf("list after removing everything: %q", out)
	}
	if out, _ := run(t, 0, "list", "--json"); out != "" {
		t.Fatalf("list --json of no revocations: %q", out)
	}

	// The bucket the command created is the revocation bucket (no TTL).
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), revoke.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 0 || st.History() != 1 {
		t.Errorf("bucket: TTL %s, history %d", st.TTL(), st.History())
	}

	// A malformed value: list shows the rest and fails naming the key.
	run(t, 0, "client", "ok", "--by", "x")
	if _, err := kv.Put(context.Background(), revoke.Key(revoke.KindSubject, "bad"), []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	out, errOut = run(t, 1, "list")
	if !strings.Contains(out, "ok") || !strings.Contains(errOut, revoke.Key(revoke.KindSubject, "bad")) {
		t.Errorf("list with a malformed value: stdout %q, stderr %q", out, errOut)
	}
	// Another bucket is another set.
	run(t, 0, "client", "elsewhere", "--bucket", "other_revocations", "--by", "x")
	if out, _ := run(t, 0, "list", "--bucket", "other_revocations"); !strings.Contains(out, "elsewhere") || strings.Contains(out, " ok ") {
		t.Errorf("list --bucket other_revocations: %q", out)
	}
}

// No NATS: a clear failure, exit 1.
func TestRevokeNoNATS(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := runRevoke(context.Background(), []string{"list", "--data-dir", t.TempDir()}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "--nats") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
