// Package mcpbench is what the gateway series of the load benchmark (make
// loadbench, -what gateway) shares between its minimal MCP servers
// (bench/mcpupstream over Streamable HTTP, bench/mcpstdio over stdio) and
// the orchestrator: the 100 tools the servers list, the catalog the PDP
// decides them with, and the servers' canned answers.
//
// The catalog makes the first 90 tools public, the next 5 step-up (they
// need StepUpScope) and leaves the last 5 out: unknown tools are denied, so
// the gateway hides them from lists. It is the catalog of the in-process
// gateway benchmarks (internal/gateway/bench_test.go).
package mcpbench

import (
	"encoding/json"
	"fmt"
	"strings"
)

const (
	// Tools is the size of the servers' tool list.
	Tools = 100
	// Public tools come first, then StepUp step-up tools; the rest
	// (Tools-Public-StepUp) are not in the catalog.
	Public = 90
	StepUp = 5
	// Visible is how many tools a holder of StepUpScope sees in a
	// filtered list.
	Visible = Public + StepUp
	// StepUpScope is the scope the step-up tools need.
	StepUpScope = "bench:admin"
	// CallTool is the tool the tools/call rows call: a step-up tool, so
	// the decision checks the scope.
	CallTool = "tool_090"
	// HiddenTool is a tool the gateway must hide (not in the catalog).
	HiddenTool = "tool_099"
	// CallText is the text of every tools/call result.
	CallText = "done"
	// ProtocolVersion is what the servers answer initialize with.
	ProtocolVersion = "2025-06-18"
)

// ToolName is the name of tool i of the list.
func ToolName(i int) string { return fmt.Sprintf("tool_%03d", i) }

// ListResult is the servers' tools/list result: Tools tools, each with a
// description and an input schema like a real server's.
func ListResult() json.RawMessage {
	type tool struct {
		Name        string         `json:"name"`
		Description string         `json:"description"`
		InputSchema map[string]any `json:"inputSchema"`
	}
	tools := make([]tool, Tools)
	for i := range tools {
		tools[i] = tool{
			Name:        ToolName(i),
			Description: fmt.Sprintf("Tool number %d of the benchmark upstream, which does nothing useful.", i),
			InputSchema: map[string]any{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}},
		}
	}
	b, _ := json.Marshal(map[string]any{"tools": tools})
	return b
}

// CallResult is the servers' tools/call result.
func CallResult() json.RawMessage {
	return json.RawMessage(`{"content":[{"type":"text","text":"` + CallText + `"}]}`)
}

// InitializeResult is the servers' initialize result.
func InitializeResult(name string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"protocolVersion": ProtocolVersion,
		"capabilities":    map[string]any{"tools": map[string]any{}},
		"serverInfo":      map[string]any{"name": name, "version": "0"},
	})
	return b
}

// Catalog is the policy data document (the `mcp` key of data.json) of the
// default policy for the servers' tools, used for every resource.
func Catalog() map[string]any {
	tools := map[string]any{}
	for i := range Public + StepUp {
		if i < Public {
			tools[ToolName(i)] = map[string]any{"access": "public"}
		} else {
			tools[ToolName(i)] = map[string]any{"access": "step_up", "scopes": []any{StepUpScope}}
		}
	}
	return map[string]any{"mcp": map[string]any{
		"default_catalog": "bench",
		"resources":       map[string]any{},
		"revoked":         map[string]any{"clients": map[string]any{}, "subjects": map[string]any{}},
		"hidden":          []any{},
		"catalogs": map[string]any{"bench": map[string]any{
			"unknown":            map[string]any{"access": "deny"},
			"tools":              tools,
			"prompts":            map[string]any{},
			"resources":          map[string]any{},
			"resource_templates": map[string]any{},
		}},
	}}
}

// CheckList tells whether body (a JSON answer or an SSE stream) carries a
// tools/list result of want tools, without the hidden ones when filtered.
func CheckList(body []byte, filtered bool) error {
	s := string(body)
	n := strings.Count(s, `"name":"tool_`)
	want := Tools
	if filtered {
		want = Visible
	}
	if n != want || (filtered && strings.Contains(s, HiddenTool)) {
		return fmt.Errorf("%d tools listed, want %d (filtered: %v): %.300s", n, want, filtered, body)
	}
	return nil
}
