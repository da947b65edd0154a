package core_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/token"
)

// TestIntrospectedToken: an opaque token is decided as a JWT with the same
// claims would be (its scope opens the step-up tool), the audit event says
// it was introspected, and an introspection endpoint that fails denies with
// 503 (not a 401 that would send the client to re-authorize).
func TestIntrospectedToken(t *testing.T) {
	const good, noScope = "opaque-good-0123456789", "opaque-noscope-0123456789"
	var down atomic.Bool
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if u, p, ok := r.BasicAuth(); !ok || u != "pdp" || p != "secret" {
			http.Error(w, "who?", http.StatusUnauthorized)
			return
		}
		resp := map[string]any{"active": false}
		exp := time.Now().Add(time.Hour).Unix()
		switch r.PostFormValue("token") {
		case good:
			resp = map[string]any{"active": true, "sub": "alice", "client_id": "app", "scope": "qr:generate", "aud": coretest.Resource, "exp": exp}
		case noScope:
			resp = map[string]any{"active": true, "sub": "alice", "client_id": "app", "aud": coretest.Resource, "exp": exp}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	}))
	defer as.Close()
	audit := &eventLog{}
	e := coretest.New(t, coretest.Options{Auditor: audit, Introspection: &token.IntrospectionConfig{
		Endpoint: as.URL + "/introspect", ClientID: "pdp", ClientSecret: "secret", NegativeTTL: time.Millisecond,
	}})
	// The dev issuer is http: so is its endpoint, as for its JWKS.

	tests := []struct {
		name   string
		token  string
		down   bool
		allow  bool
		status int
		reason string
	}{
		{"active, with the scope", good, false, true, 200, ""},
		{"active, without the scope", noScope, false, false, 403, ""},
		{"inactive", "opaque-revoked-0123456789", false, false, 401, ""},
		{"endpoint down", "opaque-other-0123456789", true, false, 503, "token introspection unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			down.Store(tt.down)
			r, err := e.Service.Decide(context.Background(), callRequest("Bearer "+tt.token, "generate_qr_url"), "")
			if err != nil {
				t.Fatal(err)
			}
			if r.Allow != tt.allow || r.HTTPStatus != tt.status || !strings.Contains(r.Reason, tt.reason) {
				t.Fatalf("allow %v, %d %q", r.Allow, r.HTTPStatus, r.Reason)
			}
			if tt.status == 401 && !strings.Contains(r.WWWAuthenticate, `error="invalid_token", `) {
				t.Fatalf("WWW-Authenticate %q", r.WWWAuthenticate)
			}
			if tt.status == 503 && r.WWWAuthenticate != "" {
				t.Fatalf("a challenge on an outage: %q", r.WWWAuthenticate)
			}
			if tt.allow && (r.Caller == nil || r.Caller.Subject != "alice" || r.Caller.ClientID != "app") {
				t.Fatalf("caller %+v", r.Caller)
			}
		})
	}
	evs, _ := audit.take()
	if len(evs) != len(tests) {
		t.Fatalf("%d events", len(evs))
	}
	for i, ev := range evs[:2] {
		if ev.TokenValidation != token.ValidationIntrospection || ev.Subject != "alice" || ev.TokenFingerprint == "" {
			t.Fatalf("event %d: validation %q sub %q", i, ev.TokenValidation, ev.Subject)
		}
	}
}
