package mcpgo_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-pdp/pdp/internal/testkit/peptest"
	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/pep/mcpgo"
)

// TestMCPGoStepUp: the go-sdk client with its own OAuth handler against an
// mcp-go server protected by mcpgo.Handler, deciding with a remote PDP and
// in-process: anonymous list without the hidden tool, a public call,
// step-ups through 401 and 403; tool handlers see the caller with
// pep.CallerFrom; denied calls never reach a handler. mcp-go answers in
// JSON unless the handler streams, so both modes run the same.
func TestMCPGoStepUp(t *testing.T) {
	peptest.StepUp(t, shop)
}

// TestMCPGoDPoP: a DPoP-bound token reaches tool handlers (pep.CallerFrom).
func TestMCPGoDPoP(t *testing.T) {
	peptest.DPoP(t, shop)
}

// TestMCPGoVersions: the scenario with the go-sdk client asking for each
// protocol version; mcp-go's server answers the ones it speaks.
func TestMCPGoVersions(t *testing.T) {
	peptest.StepUpVersions(t, shop, peptest.Versions, nil)
}

// shop is an mcp-go server with the scenario's tools behind mcpgo.Handler
// (mcp-go answers in JSON unless a handler streams: the answer mode is
// not its to choose here).
func shop(d pep.Decider, resource string, _ bool, calls *peptest.Calls) http.Handler {
	s := server.NewMCPServer("shop", "1.0.0", server.WithToolCapabilities(true))
	for _, name := range peptest.Tools {
		s.AddTool(mcp.NewTool(name), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText(calls.Ran(name, pep.CallerFrom(ctx))), nil
		})
	}
	return mcpgo.Handler(s, pep.Options{Decider: d, Resource: resource}, server.WithEndpointPath("/mcp"))
}
