// Command mcp-go is an MCP server of mcp-go protected by mcp-pdp:
// lookup_product is public, generate_qr_url needs the scope qr:generate
// (the demo policy of `pdp serve --dev`). Try it:
//
//	pdp serve --dev --resource http://127.0.0.1:3001/mcp
//	go run ./examples/mcp-go
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-pdp/pdp/pep"
	"github.com/mcp-pdp/pdp/pep/mcpgo"
)

func main() {
	pdpURL := flag.String("pdp", "http://127.0.0.1:8181", "the PDP's URL")
	addr := flag.String("listen", "127.0.0.1:3001", "this server's address")
	flag.Parse()
	resource := "http://" + *addr + "/mcp"

	s := server.NewMCPServer("shop", "1.0.0")
	s.AddTool(mcp.NewTool("lookup_product", mcp.WithDescription("Look a product up")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("a product"), nil
		})
	s.AddTool(mcp.NewTool("generate_qr_url", mcp.WithString("text"), mcp.WithDescription("A QR code URL (scope qr:generate)")),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			user := pep.CallerFrom(ctx).Subject // allowed: a caller with the scope
			return mcp.NewToolResultText("https://qr.example/" + req.GetString("text", "") + " for " + user), nil
		})

	pdp, err := pep.NewClient(*pdpURL, pep.ClientOptions{})
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("/mcp", mcpgo.Handler(s, pep.Options{Decider: pdp, Resource: resource}, server.WithEndpointPath("/mcp")))
	http.Handle("/.well-known/oauth-protected-resource/mcp", metadata(resource, *pdpURL+"/dev"))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("serving", resource)
	log.Fatal(http.Serve(ln, nil))
}

// metadata serves the RFC 9728 document that sends clients to the
// authorization server.
func metadata(resource, authServer string) http.Handler {
	doc := fmt.Sprintf(`{"resource":%q,"authorization_servers":[%q],"bearer_methods_supported":["header"]}`, resource, authServer)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		fmt.Fprint(w, doc)
	})
}
