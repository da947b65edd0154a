package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/testkit"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/policies"
)

func polWriteJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "x.json")
	testkit.WriteFile(t, p, string(raw))
	return p
}

func polCallRequest(tool, authz string) map[string]any {
	r := map[string]any{"resource": polEvalResource, "message": map[string]any{
		"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": tool, "arguments": map[string]any{}},
	}}
	if authz != "" {
		r["authorization"] = authz
	}
	return r
}

// polDefaultWithRevoked is the default policy with client "leaky" revoked.
func polDefaultWithRevoked(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files, err := fs.Glob(policies.FS, "*.rego")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(files, "lib/scopes.rego", "data.yaml") {
		b, err := policies.FS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		content := string(b)
		if f == "data.yaml" {
			content = strings.Replace(content, "    clients: {}", "    clients: {leaky: \"key leaked\"}", 1)
		}
		testkit.WriteFile(t, filepath.Join(dir, f), content)
	}
	return dir
}

func runEvalArgs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runEval(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func polResponse(t *testing.T, stdout string) map[string]any {
	t.Helper()
	// The response is the first JSON document; an explanation may follow.
	var resp map[string]any
	if err := json.NewDecoder(strings.NewReader(stdout)).Decode(&resp); err != nil {
		t.Fatalf("stdout is not a response: %v\n%s", err, stdout)
	}
	return resp
}

func TestEval(t *testing.T) {
	revoked := polDefaultWithRevoked(t)
	claims := func(c map[string]any) string { return polWriteJSON(t, c) }
	list := polWriteJSON(t, map[string]any{"resource": polEvalResource,
		"message": map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
		"result": map[string]any{"tools": []any{
			map[string]any{"name": "lookup_product"}, map[string]any{"name": "generate_qr_url"}, map[string]any{"name": "internal_debug"},
		}}})
	tests := []struct {
		name     string
		args     []string
		code     int
		allow    bool
		status   float64
		reason   string
		explains []string // in the explanation
	}{
		{"anonymous public tool", []string{"--input", polWriteJSON(t, polCallRequest("lookup_product", ""))}, 0, true, 200, "public access", nil},
		{"anonymous step-up tool is challenged", []string{"--input", polWriteJSON(t, polCallRequest("generate_qr_url", "")), "--fail"}, 3, false, 401, "authorization required", nil},
		{"claims without the scope", []string{
			"--input", polWriteJSON(t, polCallRequest("generate_qr_url", "")),
			"--claims", claims(map[string]any{"sub": "alice", "client_id": "demo", "scope": "other"}),
			"--explain", "fails",
		}, 0, false, 403, "missing scopes: qr:generate", []string{"data.mcp.authz.target_missing", "trace (fails)", "Fail"}},
		{"claims with the scope (space-delimited scope claim)", []string{
			"--input", polWriteJSON(t, polCallRequest("generate_qr_url", "")),
			"--claims", claims(map[string]any{"sub": "alice", "client_id": "demo", "scope": "openid qr:generate"}),
		}, 0, true, 200, "step_up access", nil},
		{"revoked client: explain names the deny rule", []string{
			"--policy", revoked,
			"--input", polWriteJSON(t, polCallRequest("generate_qr_url", "")),
			"--claims", claims(map[string]any{"sub": "alice", "client_id": "leaky", "scp": []any{"qr:generate"}}),
			"--explain", "full",
		}, 0, false, 200, "client leaky is revoked", []string{
			filepath.Join(revoked, "authz.rego") + ":", "data.mcp.authz.deny", `deny contains concat("", ["client ", input.token.client_id, " is revoked"])`,
			"Exit data.mcp.authz.deny",
		}},
		{"list is filtered", []string{"--input", list, "--explain", "notes"}, 0, true, 200, "list filtered", []string{"data.mcp.authz.visible_items", "no notes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runEvalArgs(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			resp := polResponse(t, stdout)
			if resp["allow"] != tc.allow || resp["http_status"] != tc.status || resp["reason"] != tc.reason {
				t.Fatalf("response %v\nwant allow=%v status=%v reason=%q", resp, tc.allow, tc.status, tc.reason)
			}
			if resp["policy_revision"] == "" || resp["decision_id"] == "" {
				t.Fatalf("response lacks policy_revision or decision_id: %v", resp)
			}
			for _, want := range tc.explains {
				if !strings.Contains(stdout, want) {
					t.Fatalf("explanation lacks %q:\n%s", want, stdout)
				}
			}
		})
	}
	// --show-input prints the input document the policy saw.
	_, stdout, _ := runEvalArgs(t, "--input", polWriteJSON(t, polCallRequest("lookup_product", "")), "--show-input",
		"--claims", claims(map[string]any{"sub": "bob", "client_id": "bot", "scp": []any{"a"}, "gty": "client_credentials"}))
	for _, want := range []string{"input document:", `"operation": "call"`, `"name": "lookup_product"`, `"grant": "client_credentials"`, `"scopes": [`} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("--show-input lacks %q:\n%s", want, stdout)
		}
	}
	// The list answer is the filtered result.
	_, stdout, _ = runEvalArgs(t, "--input", list)
	tools := polResponse(t, stdout)["result"].(map[string]any)["tools"].([]any)
	if len(tools) != 2 {
		t.Fatalf("filtered tools: %v", tools)
	}
}

// With --config a real token is verified as the server verifies it.
func TestEvalWithConfigVerifiesTokens(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	cfgPath := filepath.Join(t.TempDir(), "pdp.yaml")
	testkit.WriteFile(t, cfgPath, "resources:\n  - uri: "+polEvalResource+"\n    issuer: "+iss.URL+"\naudit:\n  enabled: false\n")
	good := iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "demo", Audience: []string{polEvalResource}, Scopes: []string{"qr:generate"}})
	wrongAud := iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "demo", Audience: []string{"https://other.example"}, Scopes: []string{"qr:generate"}})
	tests := []struct {
		name   string
		authz  string
		allow  bool
		status float64
	}{
		{"valid token", "Bearer " + good, true, 200},
		{"token for another audience", "Bearer " + wrongAud, false, 401},
		{"garbage token", "Bearer not.a.jwt", false, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runEvalArgs(t, "--config", cfgPath, "--input", polWriteJSON(t, polCallRequest("generate_qr_url", tc.authz)))
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			resp := polResponse(t, stdout)
			if resp["allow"] != tc.allow || resp["http_status"] != tc.status {
				t.Fatalf("response %v", resp)
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	testkit.WriteFile(t, bad, `{"resource": "x", "mesage": {}}`)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no input", nil, 2, "--input is required"},
		{"bad explain mode", []string{"--input", bad, "--explain", "everything"}, 2, "not one of"},
		{"not a request", []string{"--input", bad}, 1, "not a /v1/decide request body"},
		{"token without config", []string{"--input", polWriteJSON(t, polCallRequest("x", "Bearer abc"))}, 1, "give --config, or --claims"},
		{"missing input file", []string{"--input", filepath.Join(t.TempDir(), "nope.json")}, 1, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runEvalArgs(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
		})
	}
}
