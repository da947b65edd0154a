// Package decision is the policy engine of mcp-pdp: it builds the Rego input
// for one MCP request, evaluates the prepared query data.mcp.authz.decision
// (OPA as a library) and returns a typed Result.
//
// A Policy is compiled once per load and shared by all goroutines; an Engine
// holds the active Policy behind an atomic pointer so a reload swaps it
// without stopping decisions already under way.
package decision
