package stepup_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/stepup"
)

func TestMetadataURL(t *testing.T) {
	tests := []struct{ resource, url, path string }{
		{"https://mcp.example.com/mcp", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource/mcp"},
		{"https://mcp.example.com", "https://mcp.example.com/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource"},
		{"https://mcp.example.com/", "https://mcp.example.com/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource"},
		{"http://127.0.0.1:8181/a/b", "http://127.0.0.1:8181/.well-known/oauth-protected-resource/a/b", "/.well-known/oauth-protected-resource/a/b"},
		{"https://mcp.example.com/mcp?tenant=a", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp?tenant=a", "/.well-known/oauth-protected-resource/mcp"},
	}
	for _, tc := range tests {
		got, err := stepup.MetadataURL(tc.resource)
		if err != nil || got != tc.url {
			t.Errorf("MetadataURL(%q) = %q, %v; want %q", tc.resource, got, err, tc.url)
		}
		p, err := stepup.MetadataPath(tc.resource)
		if err != nil || p != tc.path {
			t.Errorf("MetadataPath(%q) = %q, %v; want %q", tc.resource, p, err, tc.path)
		}
	}
}

const prm = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"

func TestAnswers(t *testing.T) {
	op := &stepup.Resource{URI: "https://mcp.example.com/mcp", MetadataURL: prm, Strategy: stepup.Operation}
	acc := &stepup.Resource{URI: "https://mcp.example.com/mcp", MetadataURL: prm, Strategy: stepup.Accumulate, ScopesSupported: []string{"a", "b", "qr:generate"}}
	tests := []struct {
		name   string
		res    *stepup.Resource
		ref    stepup.Refusal
		status int
		header string
		rpc    int
	}{
		{"allowed", op, stepup.Refusal{Kind: stepup.Allowed}, 200, "", 0},
		{"no token", op, stepup.Refusal{Kind: stepup.NoToken, Method: "tools/call", Target: "generate_qr_url", Required: []string{"qr:generate"}},
			401, `Bearer resource_metadata="` + prm + `", scope="qr:generate"`, 0},
		{"no token, no scopes needed", op, stepup.Refusal{Kind: stepup.NoToken, Method: "tools/call", Target: "x"},
			401, `Bearer resource_metadata="` + prm + `"`, 0},
		{"invalid token", op, stepup.Refusal{Kind: stepup.InvalidToken, Method: "tools/call", Target: "x", Required: []string{"qr:generate"}, Description: "token expired"},
			401, `Bearer error="invalid_token", resource_metadata="` + prm + `", scope="qr:generate", error_description="token expired"`, 0},
		{"invalid request", op, stepup.Refusal{Kind: stepup.InvalidRequest, Method: "tools/list", Description: "two tokens"},
			400, `Bearer error="invalid_request", resource_metadata="` + prm + `", error_description="two tokens"`, 0},
		{"insufficient scope, operation", op, stepup.Refusal{Kind: stepup.InsufficientScope, Method: "tools/call", Target: "x", Required: []string{"qr:generate"}, Granted: []string{"a"}, Description: "missing scopes: qr:generate"},
			403, `Bearer error="insufficient_scope", scope="qr:generate", resource_metadata="` + prm + `", error_description="missing scopes: qr:generate"`, 0},
		{"insufficient scope, accumulate", acc, stepup.Refusal{Kind: stepup.InsufficientScope, Method: "tools/call", Target: "x", Required: []string{"qr:generate"}, Granted: []string{"b", "other-resource", "a"}, Description: "d"},
			403, `Bearer error="insufficient_scope", scope="qr:generate a b", resource_metadata="` + prm + `", error_description="d"`, 0},
		{"hidden tool", op, stepup.Refusal{Kind: stepup.Hidden, Method: "tools/call", Target: "secret"}, 200, "", stepup.CodeInvalidParams},
		{"hidden resource", op, stepup.Refusal{Kind: stepup.Hidden, Method: "resources/read", Target: "file:///x"}, 200, "", stepup.CodeResourceNotFound},
		{"hidden method", op, stepup.Refusal{Kind: stepup.Hidden, Method: "sampling/x"}, 200, "", stepup.CodeMethodNotFound},
		{"forbidden prompt", op, stepup.Refusal{Kind: stepup.Forbidden, Method: "prompts/get", Target: "p", Description: "no"}, 200, "", stepup.CodeForbidden},
		{"unavailable", op, stepup.Refusal{Kind: stepup.Unavailable, Method: "tools/call"}, 503, "", stepup.CodeInternalError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.res.Answer(tc.ref)
			if a.HTTPStatus != tc.status || a.WWWAuthenticate != tc.header {
				t.Fatalf("got %d %q\nwant %d %q", a.HTTPStatus, a.WWWAuthenticate, tc.status, tc.header)
			}
			if tc.rpc != 0 && (a.JSONRPCError == nil || a.JSONRPCError.Code != tc.rpc) {
				t.Fatalf("jsonrpc error = %+v, want code %d", a.JSONRPCError, tc.rpc)
			}
			if tc.header != "" {
				chs, err := stepup.ParseChallenges(a.WWWAuthenticate)
				if err != nil || len(chs) != 1 || chs[0].Scheme != "Bearer" {
					t.Fatalf("challenge does not parse back: %v %+v", err, chs)
				}
				if tc.ref.Method == "tools/call" {
					if a.ToolResult == nil || !a.ToolResult.IsError {
						t.Fatalf("tools/call challenge without in-band tool result")
					}
					if got := a.ToolResult.Meta["mcp/www_authenticate"]; !reflect.DeepEqual(got, []string{a.WWWAuthenticate}) {
						t.Fatalf("_meta challenge = %v", got)
					}
				}
			}
		})
	}
	hidden := op.Answer(stepup.Refusal{Kind: stepup.Hidden, Method: "tools/call", Target: "secret"})
	if hidden.JSONRPCError.Message != "Unknown tool: secret" || hidden.ToolResult != nil {
		t.Fatalf("hidden answer reveals more than an unknown tool: %+v", hidden)
	}
	f := op.Answer(stepup.Refusal{Kind: stepup.Forbidden, Method: "tools/call", Target: "t", Description: "amount over limit"})
	if f.ToolResult == nil || !strings.Contains(f.ToolResult.Content[0].Text, "amount over limit") || f.ToolResult.Meta != nil {
		t.Fatalf("forbidden tools/call = %+v", f.ToolResult)
	}
}

// A description carrying token-controlled text cannot pose as a parameter
// to clients that search the header for "name=".
func TestHeaderDescriptionCannotInjectParameters(t *testing.T) {
	h := stepup.Header("invalid_token", `unknown signing key (kid 'resource_metadata=https://evil/prm, scope=admin')`, prm, nil)
	if strings.Count(h, "resource_metadata=") != 1 || strings.Contains(h, "scope=") {
		t.Fatalf("injected parameters in %q", h)
	}
	if !strings.HasSuffix(h, `')"`) || strings.Index(h, "error_description") < strings.Index(h, "resource_metadata") {
		t.Fatalf("error_description must come last: %q", h)
	}
}

func TestHeaderSanitizesValues(t *testing.T) {
	h := stepup.Header("invalid_token", "bad \"quote\" and \\ and ünïcode", `https://x/"a`, []string{"a", "b"})
	chs, err := stepup.ParseChallenges(h)
	if err != nil {
		t.Fatalf("%q: %v", h, err)
	}
	p := chs[0].Params
	if strings.ContainsAny(p["error_description"], "\"\\") || p["scope"] != "a b" || p["error"] != "invalid_token" {
		t.Fatalf("params = %#v", p)
	}
}

func TestParseChallengesStrict(t *testing.T) {
	good := []struct {
		in   string
		want []stepup.Challenge
	}{
		{`Bearer realm="x", scope="a b"`, []stepup.Challenge{{Scheme: "Bearer", Params: map[string]string{"realm": "x", "scope": "a b"}}}},
		{`Bearer error=invalid_token`, []stepup.Challenge{{Scheme: "Bearer", Params: map[string]string{"error": "invalid_token"}}}},
		{`Basic realm="a", Bearer scope="s"`, []stepup.Challenge{
			{Scheme: "Basic", Params: map[string]string{"realm": "a"}},
			{Scheme: "Bearer", Params: map[string]string{"scope": "s"}}}},
		{`Bearer`, []stepup.Challenge{{Scheme: "Bearer", Params: map[string]string{}}}},
	}
	for _, tc := range good {
		got, err := stepup.ParseChallenges(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseChallenges(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{``, `Bearer scope="a", scope="b"`, `Bearer scope="unterminated`, `Bearer scope="a" error="b"`, `Bearer scope=`} {
		if got, err := stepup.ParseChallenges(bad); err == nil {
			t.Errorf("ParseChallenges(%q) = %+v, want an error", bad, got)
		}
	}
}

// FuzzHeader: whatever goes in, the header parses back to the same
// parameters (after sanitizing), each exactly once.
func FuzzHeader(f *testing.F) {
	f.Add("invalid_token", "token expired", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", "qr:generate a:b")
	f.Add("insufficient_scope", `quote " backslash \`, "https://x", "")
	f.Add("", "", "", "s")
	f.Fuzz(func(t *testing.T, code, desc, url, scopes string) {
		var list []string
		for _, s := range strings.Fields(scopes) {
			if stepup.ValidScope(s) {
				list = append(list, s)
			}
		}
		if !stepup.ValidScope(code) {
			code = ""
		}
		h := stepup.Header(code, desc, url, list)
		chs, err := stepup.ParseChallenges(h)
		if err != nil {
			t.Fatalf("Header output %q does not parse: %v", h, err)
		}
		if len(chs) != 1 || chs[0].Scheme != "Bearer" {
			t.Fatalf("%q parsed as %+v", h, chs)
		}
		p := chs[0].Params
		if p["error"] != code {
			t.Fatalf("error %q != %q in %q", p["error"], code, h)
		}
		if p["scope"] != strings.Join(list, " ") {
			t.Fatalf("scope %q != %q in %q", p["scope"], strings.Join(list, " "), h)
		}
		if len(desc) > 0 && len(p["error_description"]) != len(desc) {
			t.Fatalf("error_description changed length: %q -> %q", desc, p["error_description"])
		}
	})
}

// TestLimited: a call over a limit is 429 with Retry-After in whole
// seconds (rounded up, at least 1), and in band a JSON-RPC error (code
// CodeLimited, data.retryAfter) or, for tools/call, a tool result, each
// naming the limit and when to retry; no envelope, even with structured
// denials.
func TestLimited(t *testing.T) {
	tests := []struct {
		name     string
		f        stepup.Refusal
		secs     int
		text     string
		toolText bool
	}{
		{"rate, tools/call", stepup.Refusal{Kind: stepup.Limited, Method: "tools/call", Target: "generate_qr_url", RetryAfter: 1500 * time.Millisecond, Limit: "10 calls per 1m per client"},
			2, "Rate limit exceeded for generate_qr_url (10 calls per 1m per client): retry after 2 s", true},
		{"quota, prompts/get", stepup.Refusal{Kind: stepup.Limited, Method: "prompts/get", Target: "p", RetryAfter: 3 * time.Hour, Quota: true},
			10800, "Quota exceeded for prompts/get p: retry after 10800 s", false},
		{"at least one second", stepup.Refusal{Kind: stepup.Limited, Method: "completion/complete", RetryAfter: time.Millisecond},
			1, "Rate limit exceeded for completion/complete: retry after 1 s", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, structured := range []bool{false, true} {
				r := &stepup.Resource{MetadataURL: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", StructuredDenials: structured}
				a := r.Answer(tc.f)
				if a.HTTPStatus != http.StatusTooManyRequests || a.RetryAfter != tc.secs || a.WWWAuthenticate != "" {
					t.Fatalf("%+v: want 429, Retry-After %d, no challenge", a, tc.secs)
				}
				kind := "rate"
				if tc.f.Quota {
					kind = "quota"
				}
				wantData := fmt.Sprintf(`{"retryAfter":%d,"limit":%q}`, tc.secs, kind)
				if e := a.JSONRPCError; e == nil || e.Code != stepup.CodeLimited || e.Message != tc.text || string(e.Data) != wantData {
					t.Fatalf("jsonrpc error %+v, want %q with data %s", e, tc.text, wantData)
				}
				if tc.toolText != (a.ToolResult != nil) || (a.ToolResult != nil && (!a.ToolResult.IsError || a.ToolResult.Content[0].Text != tc.text)) {
					t.Fatalf("tool result %+v", a.ToolResult)
				}
			}
		})
	}
}
