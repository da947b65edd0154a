package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/dpoptest"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
	"github.com/mcp-pdp/pdp/pep"
)

// TestDPoPReplayAcrossReplicas: two PDPs sharing one NATS (the audit's
// server, as replicas do) share the DPoP replay bucket: a proof accepted
// by one is refused by the other, and the nonces one issues the other
// accepts.
func TestDPoPReplayAcrossReplicas(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	ns := natstest.Start(t)
	replica := func(name string, nonce bool) *Server {
		cfg := hConfig(t, iss)
		cfg.Resources[0].DPoPNonce = nonce
		on := true
		cfg.Audit = config.Audit{Enabled: &on, NATS: config.NATS{URL: ns.URL()}}
		cfg.Instance = name
		cfg.ApplyDefaults()
		ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
		defer cancel()
		s, err := New(ctx, cfg, Options{NoListener: true})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := replica("a", false), replica("b", false)
	key := dpoptest.NewKey(t)
	tok := iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "app", Audience: []string{hResource}, Scopes: []string{"qr:generate"},
		Extra: map[string]any{"cnf": map[string]any{"jkt": key.JKT}}})
	req := func(proof string) *pep.Request {
		return &pep.Request{
			Resource: hResource, Authorization: "DPoP " + tok, DPoP: proof, HTTP: &pep.HTTPRequest{Method: "POST", URL: hResource},
			Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{"text":"x"}}}`),
		}
	}
	ctx := context.Background()
	proof := key.Proof(t, "POST", hResource, tok, dpoptest.Options{})
	r, err := a.Core().Decide(ctx, req(proof), "")
	if err != nil || !r.Allow {
		t.Fatalf("replica a: %+v %v", r, err)
	}
	r, err = b.Core().Decide(ctx, req(proof), "")
	if err != nil || r.Allow || r.HTTPStatus != 401 || !strings.Contains(r.WWWAuthenticate, `error="invalid_dpop_proof"`) || !strings.Contains(r.WWWAuthenticate, "used before") {
		t.Fatalf("replica b, the proof replayed: %+v %v", r, err)
	}
	// A fresh proof is fine on b.
	if r, err = b.Core().Decide(ctx, req(key.Proof(t, "POST", hResource, tok, dpoptest.Options{})), ""); err != nil || !r.Allow {
		t.Fatalf("replica b, a fresh proof: %+v %v", r, err)
	}

	// Nonces: the key is shared through NATS, so a nonce c issues, d takes.
	c, d := replica("c", true), replica("d", true)
	r, err = c.Core().Decide(ctx, req(key.Proof(t, "POST", hResource, tok, dpoptest.Options{})), "")
	if err != nil || r.Allow || r.DPoPNonce == "" || !strings.Contains(r.WWWAuthenticate, `error="use_dpop_nonce"`) {
		t.Fatalf("replica c, no nonce: %+v %v", r, err)
	}
	if r, err = d.Core().Decide(ctx, req(key.Proof(t, "POST", hResource, tok, dpoptest.Options{Nonce: r.DPoPNonce})), ""); err != nil || !r.Allow {
		t.Fatalf("replica d, c's nonce: %+v %v", r, err)
	}
}
