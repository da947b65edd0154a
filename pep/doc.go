// Package pep is what an MCP server needs to enforce mcp-pdp's decisions
// (the server is the policy enforcement point, PEP; mcp-pdp the policy
// decision point): the wire contract of POST /v1/decide, a client of it,
// and the enforcement middleware.
//
// For every JSON-RPC message it receives, the MCP server sends a [Request]
// (the message, the raw Authorization header, its resource URI and, for list
// methods, its unfiltered list result) and does what the [Response] says:
// run the request, return the filtered list, send the HTTP challenge, or
// send the ready-made [JSONRPCError] or [ToolResult]. A request the PDP
// cannot decide at all is answered with a non-200 status and a
// [RequestError] body; the PEP then fails closed, as it does when the PDP
// cannot be reached.
//
// A list method can be decided in one request (with its result: the answer
// is the filtered list) or in two, as gateways and response-filtering
// middleware do: first without the result (may this caller list at all? an
// invalid token is challenged before the server does any work), then with
// it. The Streamable HTTP requests that carry no JSON-RPC message (GET opens
// the SSE stream, DELETE ends the session) are decided with
// [Request.HTTPMethod]. An allowed answer names its [Caller] when the
// request carried a valid token.
//
// Most Go servers need none of this by hand: [Middleware] is the whole
// enforcement point as net/http middleware in front of any Streamable HTTP
// MCP handler (decisions, list filtering in JSON and SSE answers, denials,
// session binding, batches, Origin checks), with [Client] as its
// [Decider] over the PDP's HTTP API; the tool handlers read the caller
// with [CallerFrom]. The subpackages gosdk and mcpgo adapt it to the two
// Go MCP SDKs, and local runs the PDP itself in-process.
//
// The types here encode to and decode from exactly the JSON the PDP reads
// and writes (field names and order included), so a Go PEP can use them with
// encoding/json. The HTTP API, the order in which a PEP must read the
// fields of a Response, and examples of every answer are in docs/api.md
// (https://github.com/mcp-pdp/pdp/blob/main/docs/api.md).
//
// The package has no dependencies beyond the standard library.
package pep
