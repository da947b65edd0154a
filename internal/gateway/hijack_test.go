package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
)

// auditLog keeps the audit events the core records.
type auditLog struct {
	mu     sync.Mutex
	events []*auditsink.Event
}

func (l *auditLog) Record(_ context.Context, ev *auditsink.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := *ev // Record must not keep ev
	l.events = append(l.events, &c)
	return nil
}

func (l *auditLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// TestGatewaySessionHijackAudited: a request on alice's session with bob's
// token, or none, is refused with 403 before the upstream sees it, and
// each refusal is one audit event: deny, the hijack reason, bob as the
// caller who presented it. A GET stream on her session is refused alike.
func TestGatewaySessionHijackAudited(t *testing.T) {
	audit := &auditLog{}
	f := newFixtureWith(t, true, coretest.Options{Auditor: audit})
	env, endpoint := f.env, f.endpoint
	alice := env.Bearer(t, devissuer.MintOptions{Subject: "alice", ClientID: "demo"})
	bob := env.Bearer(t, devissuer.MintOptions{Subject: "bob", ClientID: "demo"})

	resp, out := post(t, endpoint, alice, "", initialize)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %v", resp.StatusCode, out)
	}
	list := `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`
	tests := []struct {
		name, method, authz, sub string
	}{
		{"bob's list", http.MethodPost, bob, "bob"},
		{"an anonymous list", http.MethodPost, "", ""},
		{"bob's GET stream", http.MethodGet, bob, "bob"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Mcp-Session-Id": {sid}}
			if tc.authz != "" {
				h.Set("Authorization", tc.authz)
			}
			body := list
			if tc.method == http.MethodGet {
				body = ""
			}
			before := audit.count()
			a := exchange(t, tc.method, endpoint, h, body)
			if a.status != http.StatusForbidden || a.rpcError() == nil {
				t.Fatalf("HTTP %d %q, want 403 with a JSON-RPC error", a.status, a.raw)
			}
			if n := audit.count() - before; n != 1 {
				t.Fatalf("%d audit events for the refusal, want 1", n)
			}
			audit.mu.Lock()
			ev := audit.events[len(audit.events)-1]
			audit.mu.Unlock()
			if ev.Outcome != "deny" || ev.HTTPStatus != http.StatusForbidden || !strings.Contains(ev.Reason, "session hijack") || ev.Subject != tc.sub || ev.PEP != "gateway" {
				t.Fatalf("audit event %+v, want a 403 deny for the hijack by %q", ev, tc.sub)
			}
		})
	}
	// Alice's own session still works.
	resp, out = post(t, endpoint, alice, sid, list)
	if resp.StatusCode != http.StatusOK || out["result"] == nil {
		t.Fatalf("alice's list on her session: HTTP %d %v", resp.StatusCode, out)
	}
}
