package pep

import "encoding/json"

// Request is the body of POST /v1/decide: one JSON-RPC message an MCP
// server received, to be decided for the caller it came from.
type Request struct {
	// Resource (JSON "resource", required) is the canonical URI of the
	// protected MCP server, byte-identical to a resource configured on the
	// PDP; the PDP does no normalization.
	Resource string `json:"resource"`
	// Authorization (JSON "authorization", omitted when empty) is the
	// Authorization header exactly as the MCP server received it; empty
	// means an anonymous caller.
	Authorization string `json:"authorization,omitempty"`
	// Message (JSON "message", required unless HTTPMethod is set) is the
	// JSON-RPC request or notification the MCP server received: an object
	// with jsonrpc "2.0" and a non-empty method. With HTTPMethod it must be
	// absent (or null).
	Message json.RawMessage `json:"message"`
	// Result (JSON "result", omitted when empty) is, for the list methods
	// (tools/list, prompts/list, resources/list, resources/templates/list),
	// the list result the MCP server would return, to be filtered for the
	// caller. Without it the PDP decides the list request itself (may this
	// caller list at all?), so a PEP can refuse a bad token before the MCP
	// server builds its list, and filter the list with a second request
	// that carries it. It is ignored for every other method.
	Result json.RawMessage `json:"result,omitempty"`
	// HTTPMethod (JSON "http_method", omitted when empty) asks for a
	// Streamable HTTP transport request that carries no JSON-RPC message to
	// decide: HTTPMethodGet (open the server's SSE stream),
	// HTTPMethodDelete (end the session) or HTTPMethodPost (a POST that
	// carries the client's answer to a server request), with Message
	// absent. The caller is authenticated for
	// the resource: an invalid token is challenged, an anonymous caller or
	// a valid token is allowed. Any other value is refused as
	// invalid_request.
	HTTPMethod string `json:"http_method,omitempty"`
	// SessionOwner (JSON "session_owner", omitted when nil) is the caller
	// that opened the MCP session (Mcp-Session-Id) this request arrived on,
	// as the PEP kept it from that session's earlier [Response.Caller]. The
	// session belongs to a user: Issuer and Subject are compared (a client
	// may re-register when it steps up), and ClientID only when Subject is
	// empty (a client acting on its own); the other fields are ignored. A
	// request whose verified caller is someone else, or that
	// carries no valid token, is refused with 403 and a JSON-RPC error
	// (session hijack, MCP security best practices), and audited as such.
	// Nil: no session, or one opened anonymously, which its first
	// authenticated caller may claim.
	SessionOwner *Caller `json:"session_owner,omitempty"`
	// MCPMethod and MCPName (JSON "mcp_method", "mcp_name", omitted when
	// empty) are the Mcp-Method and Mcp-Name request headers (MCP
	// 2026-07-28) as received, plain or in their =?base64?…?= form. The
	// PDP refuses a message they contradict (400, JSON-RPC -32020
	// HeaderMismatch), audited: infrastructure that routes or limits on
	// the headers must not see another request than the one decided.
	MCPMethod string `json:"mcp_method,omitempty"`
	MCPName   string `json:"mcp_name,omitempty"`
	// DPoP (JSON "dpop", omitted when empty) is the DPoP header (RFC 9449)
	// of the MCP request, exactly as received; several DPoP headers are
	// joined with ", " (and then refused). A token bound to a key
	// (`cnf.jkt`) is accepted only with a valid proof for HTTP.
	DPoP string `json:"dpop,omitempty"`
	// HTTP (JSON "http", omitted when nil) is the HTTP request that carried
	// the message, which a DPoP proof signs: required with DPoP.
	HTTP *HTTPRequest `json:"http,omitempty"`
	// RateKey (JSON "rate_key", omitted when empty; at most 256 bytes)
	// counts an anonymous caller's rate limits and quotas, e.g. the
	// client's address (the middleware sends the remote IP); without it
	// anonymous callers share one budget. Callers with a token are counted
	// by their token.
	RateKey string `json:"rate_key,omitempty"`
}

// HTTPRequest is the HTTP request of an MCP message, as a DPoP proof names
// it (RFC 9449 §4.2 htm and htu).
type HTTPRequest struct {
	// Method (JSON "method") is the HTTP method, e.g. "POST".
	Method string `json:"method"`
	// URL (JSON "url") is the absolute URL the client addressed, without
	// query and fragment: the resource URI's scheme and host with the
	// request's path, for a server behind a proxy too.
	URL string `json:"url"`
	// ID (JSON "id", omitted when empty) identifies the HTTP request at
	// the PEP, unique and unguessable: the decisions of one HTTP request
	// (a batch's messages, a list request and its answer) may present its
	// one DPoP proof; without it a proof is accepted for one decision.
	ID string `json:"id,omitempty"`
}

// Values of [Request.HTTPMethod]: the Streamable HTTP requests that carry no
// JSON-RPC message.
const (
	// HTTPMethodGet opens the server's SSE stream.
	HTTPMethodGet = "GET"
	// HTTPMethodDelete ends the session.
	HTTPMethodDelete = "DELETE"
	// HTTPMethodPost carries the client's JSON-RPC response to a server
	// request (sampling, elicitation, roots): nothing to decide but the
	// caller.
	HTTPMethodPost = "POST"
)

// Response is the body of a decided POST /v1/decide (HTTP 200). Allow says
// whether to run the request; when it is false, the other fields say how to
// refuse it.
type Response struct {
	// DecisionID (JSON "decision_id", always set) is the unique id of this
	// decision, also the id of its audit event; log it with the request.
	DecisionID string `json:"decision_id"`
	// Allow (JSON "allow", always set) is true when the MCP server may run
	// the request (for a list method sent with its result: return Result
	// instead of its own result), false when it must refuse it as the other
	// fields say.
	Allow bool `json:"allow"`
	// Outcome (JSON "outcome", always set) is one of OutcomeAllow,
	// OutcomeFiltered, OutcomeChallenge and OutcomeDeny.
	Outcome string `json:"outcome"`
	// HTTPStatus (JSON "http_status", always set) is the HTTP status the MCP
	// server must answer its client with: 200, 400, 401, 403, 429 or 503.
	HTTPStatus int `json:"http_status"`
	// WWWAuthenticate (JSON "www_authenticate", set for challenges only) is
	// the complete WWW-Authenticate header value (RFC 6750 §3) to send with
	// HTTPStatus.
	WWWAuthenticate string `json:"www_authenticate,omitempty"`
	// DPoPNonce (JSON "dpop_nonce", omitted when empty) is a nonce the
	// client must put in its next DPoP proof (RFC 9449 §8): send it as the
	// DPoP-Nonce header of the answer. It comes with a use_dpop_nonce
	// challenge, and with every allowed DPoP request on a resource with
	// dpop_nonce, so that the client renews its nonce before it expires.
	DPoPNonce string `json:"dpop_nonce,omitempty"`
	// RetryAfter (JSON "retry_after", set for OutcomeLimited only) is the
	// number of seconds after which the call may succeed (a rate limit's
	// next token, a quota's next window): send it as the Retry-After
	// header with HTTPStatus 429.
	RetryAfter int `json:"retry_after,omitempty"`
	// Refund (JSON "refund", set only for an allowed call that a quota
	// counted) gives the call back to its quota when it failed after all:
	// POST it to /v1/refund (Client.Refund) once the call is known to
	// have failed, within a minute of the decision for the refund to be
	// applied at most once. Opaque; it names the caller's budget, so keep
	// it server-side, as the decision's other fields.
	Refund string `json:"refund,omitempty"`
	// RequiredScopes (JSON "required_scopes", always set, possibly empty) are
	// the scopes the target requires per the policy; empty for public
	// targets, lists, lifecycle methods and targets hidden from the caller.
	RequiredScopes []string `json:"required_scopes"`
	// MissingScopes (JSON "missing_scopes", always set, possibly empty) are
	// the required scopes the token does not grant, after the policy's scope
	// hierarchies and wildcards are applied; for an anonymous caller or an
	// invalid token they equal RequiredScopes.
	MissingScopes []string `json:"missing_scopes"`
	// Reason (JSON "reason", always set) is a human-readable reason for logs
	// and audit. It may reveal policy internals: do not forward it to
	// clients.
	Reason string `json:"reason"`
	// JSONRPCError (JSON "jsonrpc_error", set when the refusal is a
	// JSON-RPC error) is the error to send in the JSON-RPC response, with
	// the request's id.
	JSONRPCError *JSONRPCError `json:"jsonrpc_error,omitempty"`
	// ToolResult (JSON "tool_result", set for tools/call challenges and
	// policy refusals of tools/call) is the result to send in the JSON-RPC
	// response instead of running the tool.
	ToolResult *ToolResult `json:"tool_result,omitempty"`
	// Result (JSON "result", set for allowed list methods whose request
	// carried a result) is the filtered list result: hidden items removed,
	// kept tools annotated with their securitySchemes. The MCP server sends
	// it instead of its own result. From a PDP in-process (pep/local) it
	// may be shared with other answers: do not change it.
	Result json.RawMessage `json:"result,omitempty"`
	// PolicyRevision (JSON "policy_revision", set when the policy was
	// evaluated) is the revision of the policy that decided: the bundle's
	// manifest revision, or "sha256:" and 12 hex digits of the policy
	// content.
	PolicyRevision string `json:"policy_revision,omitempty"`
	// Caller (JSON "caller", omitted when nil) is who the request is
	// decided for, from the verified token: set when Allow is true and the
	// request carried a valid token, nil for anonymous callers and for
	// every refusal. A PEP hands it to tool handlers instead of parsing the
	// token. It never contains the token itself.
	Caller *Caller `json:"caller,omitempty"`
}

// Caller is the verified identity behind an allowed request: the claims of
// its access token that name the end user, the client and the delegation
// chain.
type Caller struct {
	// Subject (JSON "sub", omitted when empty) is the token's `sub`.
	Subject string `json:"sub,omitempty"`
	// ClientID (JSON "client_id", omitted when empty) is the OAuth client
	// the token was issued to (`client_id`, else `azp`).
	ClientID string `json:"client_id,omitempty"`
	// Scopes (JSON "scopes", always set, possibly empty) are the scopes the
	// token grants, as a list, in the token's order, without duplicates.
	Scopes []string `json:"scopes"`
	// Act (JSON "act", omitted when empty) is the RFC 8693 delegation
	// chain, the current actor first.
	Act []Actor `json:"act,omitempty"`
	// Grant (JSON "grant", omitted when unknown) is "user" for a token
	// obtained for an end user, "client_credentials" for a client acting
	// on its own behalf.
	Grant string `json:"grant,omitempty"`
	// Issuer (JSON "issuer") is the token's `iss`.
	Issuer string `json:"issuer"`
	// ExpiresAt (JSON "expires_at", omitted when the token has none) is the
	// token's `exp`, in seconds since the Unix epoch: when a PEP that
	// keeps the caller (in an SDK's auth info, say) must stop trusting it.
	ExpiresAt int64 `json:"expires_at,omitempty"`
}

// Actor is one link of a [Caller]'s delegation chain (RFC 8693 `act`).
type Actor struct {
	// Subject (JSON "sub", omitted when empty) is the actor's `sub`.
	Subject string `json:"sub,omitempty"`
	// ClientID (JSON "client_id", omitted when empty) is the actor's
	// `client_id`.
	ClientID string `json:"client_id,omitempty"`
}

// Outcomes of a decision, the values of [Response.Outcome]. Audit events and
// the pdp_decisions_total metric use the same values.
const (
	// OutcomeAllow: the request is allowed; run it. A list method sent
	// without its result is answered with OutcomeAllow: the caller may
	// list; its result is filtered by a second request that carries it.
	OutcomeAllow = "allow"
	// OutcomeFiltered: a list method sent with its result is allowed;
	// return Response.Result.
	OutcomeFiltered = "filtered"
	// OutcomeChallenge: a token is missing, invalid or lacks scopes; answer
	// with the OAuth challenge (Response.WWWAuthenticate).
	OutcomeChallenge = "challenge"
	// OutcomeDeny: the request is refused (the target is hidden, the policy
	// refuses it, its params are invalid, or the decision failed).
	OutcomeDeny = "deny"
	// OutcomeLimited: the request would be allowed but is over a rate
	// limit or a quota; answer 429 with Retry-After (Response.RetryAfter)
	// or in band.
	OutcomeLimited = "limited"
)

// JSONRPCError is the error object of a JSON-RPC 2.0 response.
type JSONRPCError struct {
	// Code (JSON "code") is the JSON-RPC error code, e.g. -32602.
	Code int `json:"code"`
	// Message (JSON "message") is the short description of the error.
	Message string `json:"message"`
	// Data (JSON "data", omitted when empty) is the error's data. On a
	// resource with structured denials (SEP-2643, a draft), an
	// authorization refusal carries {"authorization": <envelope>} here:
	// send it as it is.
	Data json.RawMessage `json:"data,omitempty"`
}

// ToolResult is an MCP CallToolResult that reports an error and, for a
// step-up challenge, carries the challenge in _meta["mcp/www_authenticate"].
type ToolResult struct {
	// IsError (JSON "isError") is true: the tool call failed.
	IsError bool `json:"isError"`
	// Content (JSON "content") is the message shown to the model and user.
	Content []Content `json:"content"`
	// Meta (JSON "_meta", omitted when empty) holds, for a challenge, the
	// key "mcp/www_authenticate" with the WWW-Authenticate value as a
	// one-element string array; on a resource with structured denials,
	// also the key "io.modelcontextprotocol/authorization" with the
	// denial's envelope (SEP-2643, a draft).
	Meta map[string]any `json:"_meta,omitempty"`
}

// Content is one content block of a [ToolResult].
type Content struct {
	// Type (JSON "type") is the block type, "text".
	Type string `json:"type"`
	// Text (JSON "text") is the text of the block.
	Text string `json:"text"`
}

// RequestError is the answer to a request the PDP did not decide: the body
// of every non-200 answer of the PDP's HTTP API, such as a malformed
// request, an unauthenticated PEP or an overloaded PDP. The PEP must fail
// closed for the request at hand.
type RequestError struct {
	// Status is the HTTP status of the answer (4xx or 5xx). It is not part
	// of the JSON body: a client takes it from the HTTP response.
	Status int `json:"-"`
	// Code (JSON "error") is the machine-readable error code, e.g.
	// "invalid_request", "unknown_resource", "rate_limited".
	Code string `json:"error"`
	// Description (JSON "error_description") says what is wrong and how to
	// fix it.
	Description string `json:"error_description"`
}

// Error returns the code and the description.
func (e *RequestError) Error() string { return e.Code + ": " + e.Description }
