package core

import (
	"encoding/json"

	"github.com/mcp-pdp/pdp/internal/stepup"
)

// Request is the body of POST /v1/decide. These wire types are kept in this
// one file so that they can become a public package for PEP clients.
type Request struct {
	// Resource is the canonical URI of the protected MCP server.
	Resource string `json:"resource"`
	// Authorization is the raw Authorization header value the MCP server
	// received; empty means an anonymous caller.
	Authorization string `json:"authorization,omitempty"`
	// Message is the JSON-RPC request the MCP server received.
	Message json.RawMessage `json:"message"`
	// Result is, for list methods, the result the MCP server would return.
	Result json.RawMessage `json:"result,omitempty"`
	// JSONValid says that Message and Result are known to be valid JSON
	// (the HTTP API reads them with a decoder that checks them), so that
	// Decide does not check them again. Set it only when that holds.
	JSONValid bool `json:"-"`
}

// Response is the answer of POST /v1/decide.
type Response struct {
	DecisionID      string               `json:"decision_id"`
	Allow           bool                 `json:"allow"`
	Outcome         string               `json:"outcome"`
	HTTPStatus      int                  `json:"http_status"`
	WWWAuthenticate string               `json:"www_authenticate,omitempty"`
	RequiredScopes  []string             `json:"required_scopes"`
	MissingScopes   []string             `json:"missing_scopes"`
	Reason          string               `json:"reason"`
	JSONRPCError    *stepup.JSONRPCError `json:"jsonrpc_error,omitempty"`
	ToolResult      *stepup.ToolResult   `json:"tool_result,omitempty"`
	Result          json.RawMessage      `json:"result,omitempty"`
	PolicyRevision  string               `json:"policy_revision,omitempty"`
}

// Outcomes of a decision, as in audit events.
const (
	OutcomeAllow     = "allow"
	OutcomeFiltered  = "filtered"
	OutcomeChallenge = "challenge"
	OutcomeDeny      = "deny"
)

// RequestError is a request the PDP cannot decide at all (HTTP 4xx).
type RequestError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *RequestError) Error() string { return e.Code + ": " + e.Description }
