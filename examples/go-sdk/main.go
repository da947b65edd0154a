// Command go-sdk is an MCP server of the official Go SDK protected by
// mcp-pdp: lookup_product is public, generate_qr_url needs the scope
// qr:generate (the demo policy of `pdp serve --dev`). Try it:
//
//	pdp serve --dev --resource http://127.0.0.1:3000/mcp
//	go run ./examples/go-sdk
//
// It answers with SSE streams; -json makes it answer with JSON, -resumable
// keeps its streams' events for clients resuming with Last-Event-ID (both
// for the parity test, test/parity).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/pep/gosdk"
)

type qrArgs struct {
	Text string `json:"text"`
}

func main() {
	pdpURL := flag.String("pdp", "http://127.0.0.1:8181", "the PDP's URL")
	addr := flag.String("listen", "127.0.0.1:3000", "this server's address")
	jsonAnswers := flag.Bool("json", false, "answer with JSON rather than SSE streams")
	resumable := flag.Bool("resumable", false, "keep stream events for clients resuming with Last-Event-ID")
	flag.Parse()
	resource := "http://" + *addr + "/mcp"

	server := mcp.NewServer(&mcp.Implementation{Name: "shop", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "lookup_product", Description: "Look a product up"},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "a product"}}}, nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "generate_qr_url", Description: "A QR code URL (scope qr:generate)"},
		func(_ context.Context, req *mcp.CallToolRequest, args qrArgs) (*mcp.CallToolResult, any, error) {
			user := gosdk.CallerOf(req.Extra.TokenInfo).Subject // allowed: a caller with the scope
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "https://qr.example/" + args.Text + " for " + user}}}, nil, nil
		})

	pdp, err := pep.NewClient(*pdpURL, pep.ClientOptions{})
	if err != nil {
		log.Fatal(err)
	}
	opts := &mcp.StreamableHTTPOptions{JSONResponse: *jsonAnswers}
	if *resumable {
		opts.EventStore = mcp.NewMemoryEventStore(nil)
	}
	http.Handle("/mcp", gosdk.Handler(func(*http.Request) *mcp.Server { return server }, pep.Options{Decider: pdp, Resource: resource}, opts))
	http.Handle("/.well-known/oauth-protected-resource/mcp", auth.ProtectedResourceMetadataHandler(
		&oauthex.ProtectedResourceMetadata{Resource: resource, AuthorizationServers: []string{*pdpURL + "/dev"}}))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("serving", resource)
	log.Fatal(http.Serve(ln, nil))
}
