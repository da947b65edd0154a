package core_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/revoke"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/pep"
)

// Revocations from the set (pdp revoke, through the watcher) deny with
// their reason from the next decision on, without a policy reload; the
// decision caches neither keep allowing a revoked caller nor keep denying
// it once the revocation is removed; other callers are unaffected.
func TestRevocationsDenyAndCachesFollow(t *testing.T) {
	set := revoke.NewSet()
	e, log := auditedEnv(t, coretest.Options{Core: func(o *core.Options) { o.Revocations = set }})
	alice := e.Bearer(t, devissuer.MintOptions{Subject: "alice", ClientID: "agent-1", Scopes: []string{"qr:generate"}})
	bob := e.Bearer(t, devissuer.MintOptions{Subject: "bob", ClientID: "agent-2", Scopes: []string{"qr:generate"}})
	aliceFP := token.Fingerprint(strings.TrimPrefix(alice, "Bearer "))

	call := func(authz string) *pep.Response {
		t.Helper()
		r, _ := decideOne(t, e, log, callRequest(authz, "generate_qr_url"))
		return r
	}
	expectAllowed := func(what string, authz string) {
		t.Helper()
		if r := call(authz); !r.Allow {
			t.Fatalf("%s: denied: %+v", what, r)
		}
	}
	// Warm every cache with allowed decisions first.
	for range 3 {
		expectAllowed("alice before", alice)
		expectAllowed("bob before", bob)
	}
	cases := []struct {
		name   string
		entry  *revoke.Entry
		reason string
	}{
		{"client", &revoke.Entry{Kind: revoke.KindClient, ID: "agent-1", Reason: "key leaked", Created: time.Now()}, "client agent-1 is revoked: key leaked"},
		{"subject", &revoke.Entry{Kind: revoke.KindSubject, ID: "alice", Reason: "left", Created: time.Now()}, "the token's subject is revoked: left"},
		{"token", &revoke.Entry{Kind: revoke.KindToken, ID: aliceFP, Created: time.Now()}, "the token is revoked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set.Apply(revoke.Change{Kind: tc.entry.Kind, ID: tc.entry.ID, Entry: tc.entry})
			for range 3 { // the call cache and the result cache
				r, ev := decideOne(t, e, log, callRequest(alice, "generate_qr_url"))
				// The resource's denial form (in band: a tool result that is an error).
				if r.Allow || r.Reason != tc.reason || ev.Outcome != "deny" || ev.Reason != tc.reason || r.ToolResult == nil {
					t.Fatalf("revoked alice: %+v (event reason %q), want a denial %q", r, ev.Reason, tc.reason)
				}
			}
			expectAllowed("bob while alice is revoked", bob)
			// Lists stay filtered as for any caller.
			lr, _ := decideOne(t, e, log, listRequestAs(alice))
			if !lr.Allow {
				t.Fatalf("list of a revoked caller: %+v", lr)
			}
			// A transport request (an SSE stream) is refused too.
			tr, err := e.Service.Decide(context.Background(), &pep.Request{Resource: coretest.Resource, Authorization: alice, HTTPMethod: pep.HTTPMethodGet}, "pep-a")
			log.take()
			if err != nil || tr.Allow || !strings.Contains(tr.Reason, tc.reason) {
				t.Fatalf("transport request of a revoked caller: %+v %v", tr, err)
			}
			set.Apply(revoke.Change{Kind: tc.entry.Kind, ID: tc.entry.ID}) // removed
			expectAllowed("alice after removal", alice)
		})
	}
	// An expired revocation no longer applies.
	set.Apply(revoke.Change{Kind: revoke.KindClient, ID: "agent-1", Entry: &revoke.Entry{Kind: revoke.KindClient, ID: "agent-1", Created: time.Now(), Expires: time.Now().Add(300 * time.Millisecond)}})
	if r := call(alice); r.Allow {
		t.Fatalf("alice under a revocation with an expiry: %+v", r)
	}
	time.Sleep(400 * time.Millisecond)
	expectAllowed("alice after the revocation expired", alice)
}

func listRequestAs(authz string) *pep.Request {
	r := listRequest(4)
	r.Authorization = authz
	return r
}
