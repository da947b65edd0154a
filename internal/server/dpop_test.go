package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// TestLazyReplayBucket: the replay bucket is bound on first use; while NATS
// is away a claim fails (the proof is refused as unavailable, never
// accepted), a failed bind is retried after a second, and once NATS is
// back the bucket binds and claims work.
func TestLazyReplayBucket(t *testing.T) {
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ns.Stop()
	l := &lazyKV{js: js, bucket: "lazy_test", ttl: 10 * time.Minute}
	key := sha256.Sum256([]byte("proof"))
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if fresh, err := l.Claim(short, key, "", time.Now().Add(time.Minute)); err == nil || fresh {
		t.Fatalf("NATS away: fresh %v, err %v; want an error", fresh, err)
	}
	// Within the second, the failure is answered without a new attempt.
	start := time.Now()
	if _, err := l.Claim(context.Background(), key, "", time.Now().Add(time.Minute)); err == nil || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("retried at once: %v after %s", err, time.Since(start))
	}
	ns.Restart()
	ctx, cancel2 := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel2()
	for {
		fresh, err := l.Claim(ctx, key, "", time.Now().Add(time.Minute))
		if err == nil {
			if !fresh {
				t.Fatal("the first claim after the bind was a replay")
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the bucket never bound: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if fresh, err := l.Claim(ctx, key, "", time.Now().Add(time.Minute)); err != nil || fresh {
		t.Fatalf("the same proof again: fresh %v, %v", fresh, err)
	}
}
