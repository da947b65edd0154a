package core

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/pep"
)

// CodeHeaderMismatch is the JSON-RPC error of a request whose Mcp-Method
// or Mcp-Name header contradicts its body (MCP 2026-07-28 HeaderMismatch).
const CodeHeaderMismatch = -32020

// headerMismatch compares the Mcp-Method and Mcp-Name headers the PEP
// passed (req.MCPMethod, req.MCPName) with the message: it returns what is
// wrong, or "". Mcp-Name names the target of tools/call, prompts/get and
// resources/read; an absent header is not compared.
func headerMismatch(req *pep.Request, method string, in *decision.Input) string {
	if req.MCPMethod != "" {
		if got, ok := headerValue(req.MCPMethod); !ok || got != method {
			return fmt.Sprintf("the Mcp-Method header does not match the method of the body (%q)", method)
		}
	}
	if req.MCPName != "" {
		switch method {
		case "tools/call", "prompts/get", "resources/read":
			if got, ok := headerValue(req.MCPName); !ok || got != in.Target {
				return "the Mcp-Name header does not match the name of the body's target"
			}
		}
	}
	return ""
}

// headerValue is a header value as the client meant it: plain, or the
// =?base64?…?= form MCP uses for values that are not plain ASCII.
func headerValue(v string) (string, bool) {
	inner, found := strings.CutPrefix(v, "=?base64?")
	if !found {
		return v, true
	}
	inner, found = strings.CutSuffix(inner, "?=")
	if !found {
		return v, true
	}
	b, err := base64.StdEncoding.DecodeString(inner)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// headerMismatch refuses the request: 400 with the HeaderMismatch error,
// audited as a deny.
func (d *pending) headerMismatch(ctx context.Context, why string) (*pep.Response, error) {
	resp := &pep.Response{
		HTTPStatus:   http.StatusBadRequest,
		Reason:       "header mismatch: " + why,
		JSONRPCError: &pep.JSONRPCError{Code: CodeHeaderMismatch, Message: why},
	}
	return d.answer(ctx, resp, pep.OutcomeDeny, nil)
}
