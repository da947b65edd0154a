package core_test

import (
	"context"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/token"
)

// TestDecideVerified: a caller the enforcement point verified is decided as
// a token with the same claims would be, audited with validation "pep";
// the request may not carry a token besides.
func TestDecideVerified(t *testing.T) {
	audit := &eventLog{}
	e := coretest.New(t, coretest.Options{Auditor: audit})
	ctx := context.Background()
	caller := func(scopes ...string) *token.Claims {
		return &token.Claims{Subject: "alice", ClientID: "agent-7", Issuer: "https://as.example.com", Scopes: scopes,
			ExpiresAt: time.Now().Add(time.Hour), Validation: core.ValidationPEP, Raw: map[string]any{"sub": "alice"}}
	}
	r, err := e.Service.DecideVerified(ctx, callRequest("", "generate_qr_url"), caller("qr:generate"), "gateway")
	if err != nil || !r.Allow || r.Caller == nil || r.Caller.Subject != "alice" || r.Caller.ClientID != "agent-7" {
		t.Fatalf("with the scope: %+v %v", r, err)
	}
	r, err = e.Service.DecideVerified(ctx, callRequest("", "generate_qr_url"), caller(), "gateway")
	if err != nil || r.Allow || r.HTTPStatus != 403 || len(r.MissingScopes) != 1 || r.MissingScopes[0] != "qr:generate" {
		t.Fatalf("without: %+v %v", r, err)
	}
	r, err = e.Service.DecideVerified(ctx, callRequest("", "lookup_product"), nil, "gateway")
	if err != nil || !r.Allow || r.Caller != nil {
		t.Fatalf("anonymous public: %+v %v", r, err)
	}
	if _, err := e.Service.DecideVerified(ctx, callRequest("Bearer x", "lookup_product"), caller(), "gateway"); err == nil {
		t.Fatal("a token besides the verified caller was accepted")
	}
	evs, _ := audit.take()
	if len(evs) != 3 || evs[0].TokenValidation != core.ValidationPEP || evs[0].Subject != "alice" || evs[0].PEP != "gateway" {
		t.Fatalf("events %+v", evs)
	}
}
