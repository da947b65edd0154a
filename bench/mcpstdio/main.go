// Command mcpstdio is the minimal stdio MCP server of the load benchmark's
// gateway series (make loadbench, -what gateway): newline-delimited
// JSON-RPC on stdin and stdout, answering initialize, ping, tools/list (the
// 100 tools of bench/internal/mcpbench) and tools/call; notifications are
// read and ignored. It exits when stdin closes. The series measures its
// start-up time to the first answer, run directly and as a new session
// through the gateway.
//
// It is a benchmark fixture, not part of the product.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/mcp-pdp/pdp/bench/internal/mcpbench"
)

func main() {
	if err := serve(); err != nil {
		fmt.Fprintln(os.Stderr, "mcpstdio:", err)
		os.Exit(1)
	}
}

func serve() error {
	results := map[string]json.RawMessage{
		"initialize": mcpbench.InitializeResult("mcpstdio"),
		"ping":       json.RawMessage(`{}`),
		"tools/list": mcpbench.ListResult(),
		"tools/call": mcpbench.CallResult(),
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 4<<20)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if err := json.Unmarshal(in.Bytes(), &m); err != nil || m.ID == nil || m.Method == "" {
			continue // a notification, a response, or not JSON-RPC
		}
		out.WriteString(`{"jsonrpc":"2.0","id":`)
		out.Write(m.ID)
		if res, ok := results[m.Method]; ok {
			out.WriteString(`,"result":`)
			out.Write(res)
			out.WriteString("}\n")
		} else {
			out.WriteString(`,"error":{"code":-32601,"message":"method not found"}}` + "\n")
		}
		if err := out.Flush(); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	if err := in.Err(); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	return nil
}
