// Package pep is the wire contract between an MCP server that enforces
// decisions (the policy enforcement point, PEP) and mcp-pdp, the policy
// decision point: the JSON bodies of POST /v1/decide.
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
// The types here encode to and decode from exactly the JSON the PDP reads
// and writes (field names and order included), so a Go PEP can use them with
// encoding/json. The HTTP API, the order in which a PEP must read the
// fields of a Response, and examples of every answer are in docs/api.md
// (https://github.com/mcp-pdp/pdp/blob/main/docs/api.md).
//
// The package has no dependencies beyond the standard library.
package pep
