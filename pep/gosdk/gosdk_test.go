package gosdk_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-pdp/pdp/internal/testkit/peptest"
	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/pep/gosdk"
)

// TestGoSDKStepUp: the go-sdk client with its own OAuth handler against a
// go-sdk server protected by gosdk.Handler, deciding with a remote PDP and
// in-process, answering in SSE and in JSON: anonymous list without the
// hidden tool, a public call, step-ups through 401 and 403; tool handlers
// see the caller through req.Extra.TokenInfo; denied calls never reach a
// handler.
func TestGoSDKStepUp(t *testing.T) {
	peptest.StepUp(t, shop)
}

// shop is a go-sdk server with the scenario's tools behind gosdk.Handler.
func shop(d pep.Decider, resource string, jsonAnswers bool, calls *peptest.Calls) http.Handler {
	return shopWith(d, resource, calls, &mcp.StreamableHTTPOptions{JSONResponse: jsonAnswers})
}

func shopWith(d pep.Decider, resource string, calls *peptest.Calls, opts *mcp.StreamableHTTPOptions) http.Handler {
	srv := mcp.NewServer(&mcp.Implementation{Name: "shop", Version: "1.0.0"}, nil)
	for _, name := range peptest.Tools {
		srv.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				text := calls.Ran(name, gosdk.CallerOf(req.Extra.TokenInfo))
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil
			})
	}
	return gosdk.Handler(func(*http.Request) *mcp.Server { return srv },
		pep.Options{Decider: d, Resource: resource}, opts)
}

// TestGoSDKDPoP: a DPoP-bound token reaches tool handlers through the SDK's
// TokenInfo (the SDK's middleware reads only the Bearer scheme).
func TestGoSDKDPoP(t *testing.T) {
	peptest.DPoP(t, shop)
}

// TestGoSDKVersions: the scenario on each protocol version the go-sdk
// speaks. The go-sdk server takes 2026-07-28 (server/discover, stateless
// requests with their _meta and Mcp-Method/Mcp-Name headers) in its
// stateless mode only; the others also on sessions.
func TestGoSDKVersions(t *testing.T) {
	peptest.StepUpVersions(t, shop, []string{"2025-06-18", "2025-11-25"}, nil)
	peptest.StepUpVersions(t, statelessShop, []string{"2026-07-28"}, nil)
}

// statelessShop is shop in the go-sdk's stateless mode.
func statelessShop(d pep.Decider, resource string, jsonAnswers bool, calls *peptest.Calls) http.Handler {
	return shopWith(d, resource, calls, &mcp.StreamableHTTPOptions{JSONResponse: jsonAnswers, Stateless: true})
}
