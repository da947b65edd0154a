package peptest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/internal/testkit/dpoptest"
	"github.com/mcp-pdp/pdp/internal/testkit/servertest"
	"github.com/mcp-pdp/pdp/pep"
)

// DPoP runs the adapter with a token bound to a DPoP key (RFC 9449) over
// raw HTTP (the go-sdk client makes no proofs): with the DPoP scheme and a
// proof the call runs and its handler sees the caller; the same proof
// again, or the token as Bearer, is refused with a DPoP challenge and the
// handler does not run.
func DPoP(t *testing.T, mount Mount) {
	mcpSrv := httptest.NewUnstartedServer(nil)
	t.Cleanup(mcpSrv.Close)
	resource := "http://" + mcpSrv.Listener.Addr().String() + "/mcp"
	pdp := servertest.Dev(t, servertest.Options{Resources: []string{resource}, Data: Catalog})
	c, err := pep.NewClient(pdp.URL, pep.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	calls := &Calls{}
	mux := http.NewServeMux()
	mux.Handle("/mcp", mount(c, resource, true, calls))
	mcpSrv.Config.Handler = mux
	mcpSrv.Start()

	iss, err := devissuer.Load(filepath.Join(pdp.DataDir, server.DevIssuerFile))
	if err != nil {
		t.Fatal(err)
	}
	key := dpoptest.NewKey(t)
	tok, err := iss.Mint(devissuer.MintOptions{Subject: "alice", ClientID: "demo", Audience: []string{resource}, Scopes: []string{"qr:generate"},
		Extra: map[string]any{"cnf": map[string]any{"jkt": key.JKT}}})
	if err != nil {
		t.Fatal(err)
	}
	post := func(authz, proof, sid string, body any) (*http.Response, string) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, resource, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		req.Header.Set("Authorization", authz)
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rb, _ := io.ReadAll(resp.Body)
		return resp, string(rb)
	}
	proof := func() string { return key.Proof(t, "POST", resource, tok, dpoptest.Options{}) }
	init := map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{
		"protocolVersion": "2025-06-18", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "dpop", "version": "1"}}}
	resp, body := post("DPoP "+tok, proof(), "", init)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	if resp, body = post("DPoP "+tok, proof(), sid, map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	callQR := map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "generate_qr_url", "arguments": map[string]any{}}}
	p := proof()
	if resp, body = post("DPoP "+tok, p, sid, callQR); resp.StatusCode != http.StatusOK || !strings.Contains(body, "ran for alice qr:generate") {
		t.Fatalf("call with a proof: %d %s", resp.StatusCode, body)
	}
	before := len(calls.all())
	for name, try := range map[string]struct{ authz, proof, want string }{
		"the same proof again": {"DPoP " + tok, p, `error="invalid_dpop_proof"`},
		"the token as Bearer":  {"Bearer " + tok, proof(), "present it with the DPoP scheme"},
		"a proof for GET":      {"DPoP " + tok, key.Proof(t, "GET", resource, tok, dpoptest.Options{IssuedAt: time.Now()}), `error="invalid_dpop_proof"`},
	} {
		resp, body := post(try.authz, try.proof, sid, callQR)
		if www := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(www, `DPoP algs="`) || !strings.Contains(www, try.want) {
			t.Fatalf("%s: %d %q %s", name, resp.StatusCode, www, body)
		}
	}
	if n := len(calls.all()); n != before {
		t.Fatalf("a refused call reached its handler: %v", calls.all())
	}
}
