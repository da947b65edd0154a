package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/pep"
)

// decideRaw posts body to /v1/decide and decodes the answer into a
// pep.Response with unknown fields refused: the wire types are the
// contract.
func (e *env) decideRaw(t *testing.T, body string) (*pep.Response, string) {
	t.Helper()
	resp, err := http.Post(e.srv.URL+"/v1/decide", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, raw)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var out pep.Response
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("answer %s: %v", raw, err)
	}
	return &out, string(raw)
}

// The list request phase, the caller and the transport requests through the
// HTTP API: the new request field is read (fast decoder and encoding/json
// alike), the new answer field is written, a list's spliced result
// included.
func TestDecideNewRequestKinds(t *testing.T) {
	e := setup(t)
	iat := time.Now().Truncate(time.Second)
	tok := "Bearer " + e.iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "claude", Audience: []string{resource}, Scopes: []string{"qr:generate"}, IssuedAt: iat})
	expired := "Bearer " + e.iss.Mint(t, devissuer.MintOptions{Subject: "a", Audience: []string{resource}, TTL: -time.Hour})
	caller := &pep.Caller{Subject: "alice", ClientID: "claude", Scopes: []string{"qr:generate"}, Grant: "user", Issuer: e.iss.URL,
		ExpiresAt: iat.Add(devissuer.DefaultTTL).Unix()}
	list := `"message":{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	res := `"resource":"` + resource + `"`
	tests := []struct {
		name    string
		body    string
		allow   bool
		status  int
		outcome string
		caller  *pep.Caller
		result  bool
	}{
		{"list request phase, anonymous", `{` + res + `,` + list + `}`, true, 200, pep.OutcomeAllow, nil, false},
		{"list request phase, token", `{` + res + `,"authorization":"` + tok + `",` + list + `}`, true, 200, pep.OutcomeAllow, caller, false},
		{"list request phase, expired token", `{` + res + `,"authorization":"` + expired + `",` + list + `}`, false, 401, pep.OutcomeChallenge, nil, false},
		{"list request phase, null result", `{` + res + `,` + list + `,"result":null}`, true, 200, pep.OutcomeAllow, nil, false},
		{"filtered list, token", `{` + res + `,"authorization":"` + tok + `",` + list + `,"result":{"tools":[{"name":"ping"},{"name":"internal_admin"}]}}`, true, 200, pep.OutcomeFiltered, caller, true},
		{"allowed call, token", `{` + res + `,"authorization":"` + tok + `","message":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_qr_url"}}}`, true, 200, pep.OutcomeAllow, caller, false},
		{"GET, anonymous", `{` + res + `,"http_method":"GET"}`, true, 200, pep.OutcomeAllow, nil, false},
		{"GET, token", `{` + res + `,"authorization":"` + tok + `","http_method":"GET"}`, true, 200, pep.OutcomeAllow, caller, false},
		{"DELETE, token, null message", `{"http_method":"DELETE","message":null,"authorization":"` + tok + `",` + res + `}`, true, 200, pep.OutcomeAllow, caller, false},
		{"GET, expired token", `{` + res + `,"authorization":"` + expired + `","http_method":"GET"}`, false, 401, pep.OutcomeChallenge, nil, false},
		{"GET, escaped (encoding/json)", `{` + res + `,"http_method":"G\u0045T"}`, true, 200, pep.OutcomeAllow, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, raw := e.decideRaw(t, tc.body)
			if out.Allow != tc.allow || out.HTTPStatus != tc.status || out.Outcome != tc.outcome || (out.Result != nil) != tc.result {
				t.Fatalf("%s", raw)
			}
			if !reflect.DeepEqual(out.Caller, tc.caller) {
				t.Fatalf("caller %+v, want %+v: %s", out.Caller, tc.caller, raw)
			}
			if strings.Contains(raw, strings.TrimPrefix(tok, "Bearer ")) {
				t.Fatal("the answer echoes the token")
			}
			if tc.status == 401 && !strings.HasPrefix(out.WWWAuthenticate, `Bearer error="invalid_token"`) {
				t.Fatalf("challenge %q", out.WWWAuthenticate)
			}
		})
	}
	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	if len(e.audit.events) != len(tests) {
		t.Fatalf("%d audit events for %d decisions", len(e.audit.events), len(tests))
	}
	if m := e.audit.events[6].Method; m != "http/GET" {
		t.Fatalf("method %q", m)
	}
}
