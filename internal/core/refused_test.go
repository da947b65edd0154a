package core_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/token"
)

// A refused token still tells who presented it: the audit event carries
// its fingerprint and what it claims, marked unverified, and none of the
// verified caller fields.
func TestRefusedTokenAudited(t *testing.T) {
	e, log := auditedEnv(t, coretest.Options{})
	expired := e.Bearer(t, devissuer.MintOptions{Subject: "mallory", ClientID: "stolen-agent", TTL: -time.Hour})
	valid := e.Bearer(t, devissuer.MintOptions{Subject: "alice", ClientID: "app"})
	forged := valid[:len(valid)-4] + "AAAA" // the signature no longer matches
	tests := []struct {
		name       string
		authz      string
		unverified *auditsink.Unverified // nil: nothing readable
	}{
		{"expired", expired, &auditsink.Unverified{Subject: "mallory", ClientID: "stolen-agent"}},
		{"bad signature", forged, &auditsink.Unverified{Subject: "alice", ClientID: "app"}},
		{"opaque garbage", "Bearer 2YotnFZFEjr1zCsicMWpAA", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ev := decideOne(t, e, log, callRequest(tc.authz, "generate_qr_url"))
			if r.Allow || r.HTTPStatus != 401 || r.Caller != nil {
				t.Fatalf("%+v", r)
			}
			raw := strings.TrimPrefix(tc.authz, "Bearer ")
			if ev.TokenFingerprint != token.Fingerprint(raw) {
				t.Fatalf("fingerprint %q, want %q", ev.TokenFingerprint, token.Fingerprint(raw))
			}
			if ev.Subject != "" || ev.ClientID != "" || ev.Issuer != "" || ev.TokenValidation != "" {
				t.Fatalf("verified fields set for a refused token: %+v", ev)
			}
			got := ev.Unverified
			if tc.unverified == nil {
				if got != nil {
					t.Fatalf("unverified %+v, want none", got)
				}
			} else {
				if got == nil || got.Subject != tc.unverified.Subject || got.ClientID != tc.unverified.ClientID || got.Issuer == "" {
					t.Fatalf("unverified %+v, want %+v and the issuer", got, tc.unverified)
				}
			}
			b, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), raw) {
				t.Fatal("the audit event carries the raw token")
			}
		})
	}
	// A valid token: verified fields, nothing unverified.
	_, ev := decideOne(t, e, log, callRequest(valid, "generate_qr_url"))
	if ev.Unverified != nil || ev.Subject != "alice" {
		t.Fatalf("valid token event %+v", ev)
	}
}
