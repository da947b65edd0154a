// Package mcpgo protects a server of mcp-go (github.com/mark3labs/mcp-go)
// with mcp-pdp: its Streamable HTTP server behind pep.Middleware. Tool
// handlers read the caller with pep.CallerFrom(ctx): mcp-go runs them in
// the context of the HTTP request.
//
//	pdp, _ := pep.NewClient("http://127.0.0.1:8181", pep.ClientOptions{})
//	http.Handle("/mcp", mcpgo.Handler(s, pep.Options{Decider: pdp, Resource: "https://mcp.example.com/mcp"}))
package mcpgo

import (
	"net/http"

	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-pdp/pdp/pep"
)

// Handler is server.NewStreamableHTTPServer(s, opts...) protected by
// pep.Middleware(…, o).
func Handler(s *server.MCPServer, o pep.Options, opts ...server.StreamableHTTPOption) http.Handler {
	return pep.Middleware(server.NewStreamableHTTPServer(s, opts...), o)
}
