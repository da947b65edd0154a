package local_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/pep/local"
)

// denial is the structured denial envelope as a client reads it.
type denial struct {
	Reason                 string `json:"reason"`
	Remediation            string `json:"remediation"`
	AuthorizationContextID string `json:"authorizationContextId"`
	RemediationHints       []struct {
		Type   string   `json:"type"`
		Error  string   `json:"error"`
		Scopes []string `json:"scopes"`
	} `json:"remediationHints"`
}

// TestStructuredDenialsOverHTTPAndStdio: a resource with structured_denials
// gives the same envelope (SEP-2643, draft) to a client over Streamable
// HTTP (the 401/403 body pep.Middleware writes) and to a client of a stdio
// server whose enforcement point answers with the decision's JSON-RPC
// error; the go-sdk client reads it from the error's data.
func TestStructuredDenialsOverHTTPAndStdio(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pdp.yaml")
	testkit.WriteFile(t, cfg, "data_dir: "+strconv.Quote(filepath.Join(dir, "data"))+"\n"+
		"audit: {enabled: false}\n"+
		"resources:\n  - uri: "+benchResource+"\n    issuer: "+iss.URL+"\n    structured_denials: true\n")
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	p, err := local.Open(ctx, cfg, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	noScope := "Bearer " + iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "demo", Audience: []string{benchResource}})

	check := func(t *testing.T, how string, data json.RawMessage, hintError string) string {
		t.Helper()
		var d struct {
			Authorization *denial `json:"authorization"`
		}
		if err := json.Unmarshal(data, &d); err != nil || d.Authorization == nil {
			t.Fatalf("%s: error data %s: %v", how, data, err)
		}
		a := d.Authorization
		if a.Reason != "insufficient_authorization" || a.Remediation != "available" || a.AuthorizationContextID == "" ||
			len(a.RemediationHints) != 1 || a.RemediationHints[0].Type != "oauth_scopes" || a.RemediationHints[0].Error != hintError ||
			strings.Join(a.RemediationHints[0].Scopes, " ") != "qr:generate" {
			t.Fatalf("%s: envelope %+v", how, a)
		}
		return a.AuthorizationContextID
	}

	t.Run("HTTP", func(t *testing.T) {
		h := pep.Middleware(trivial, pep.Options{Decider: p, Resource: benchResource})
		for _, tc := range []struct {
			authz     string
			status    int
			hintError string
		}{{"", 401, ""}, {noScope, 403, "insufficient_scope"}} {
			r := httptest.NewRequest(http.MethodPost, benchResource, strings.NewReader(benchCall))
			r.Header.Set("Content-Type", "application/json")
			if tc.authz != "" {
				r.Header.Set("Authorization", tc.authz)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			var body struct {
				Error *struct {
					Code int             `json:"code"`
					Data json.RawMessage `json:"data"`
				} `json:"error"`
			}
			if w.Code != tc.status || w.Header().Get("WWW-Authenticate") == "" || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error == nil || body.Error.Code != -32001 {
				t.Fatalf("HTTP %d %s", w.Code, w.Body)
			}
			check(t, "HTTP "+strconv.Itoa(tc.status), body.Error.Data, tc.hintError)
		}
	})

	t.Run("stdio", func(t *testing.T) {
		// A go-sdk server on newline-delimited JSON over pipes (what stdio
		// is), whose enforcement point decides every tools/call with the
		// caller's token (a stdio server takes it from its environment)
		// and answers a refusal with the decision's JSON-RPC error.
		for _, tc := range []struct {
			authz, hintError string
		}{{"", ""}, {noScope, "insufficient_scope"}} {
			srv := mcp.NewServer(&mcp.Implementation{Name: "shop", Version: "1"}, nil)
			ran := false
			srv.AddTool(&mcp.Tool{Name: "generate_qr_url", InputSchema: json.RawMessage(`{"type":"object"}`)},
				func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					ran = true
					return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
				})
			srv.AddReceivingMiddleware(stdioPEP(p, tc.authz))
			cr, sw := io.Pipe()
			sr, cw := io.Pipe()
			ss, err := srv.Connect(ctx, &mcp.IOTransport{Reader: sr, Writer: sw}, nil)
			if err != nil {
				t.Fatal(err)
			}
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, nil).Connect(ctx, &mcp.IOTransport{Reader: cr, Writer: cw}, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "generate_qr_url", Arguments: map[string]any{"text": "x"}})
			var rpcErr *jsonrpc.Error
			if !errors.As(err, &rpcErr) || rpcErr.Code != -32001 {
				t.Fatalf("call: %v", err)
			}
			check(t, "stdio", rpcErr.Data, tc.hintError)
			if ran {
				t.Fatal("the refused tool ran")
			}
			_ = cs.Close()
			_ = ss.Wait()
		}
	})
}

// stdioPEP is the enforcement point of a stdio go-sdk server: each
// tools/call is decided for the caller of authz, and a refusal answered
// with the decision's JSON-RPC error (a stdio server has no HTTP status
// to send).
func stdioPEP(d pep.Decider, authz string) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if method != "tools/call" {
				return next(ctx, method, req)
			}
			params, err := json.Marshal(req.GetParams())
			if err != nil {
				return nil, err
			}
			msg, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": json.RawMessage(params)})
			if err != nil {
				return nil, err
			}
			dec, err := d.Decide(ctx, &pep.Request{Resource: benchResource, Authorization: authz, Message: msg})
			if err != nil {
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "authorization unavailable"}
			}
			if dec.Allow {
				return next(ctx, method, req)
			}
			if e := dec.JSONRPCError; e != nil {
				return nil, &jsonrpc.Error{Code: int64(e.Code), Message: e.Message, Data: e.Data}
			}
			return nil, &jsonrpc.Error{Code: -32001, Message: "forbidden"}
		}
	}
}
