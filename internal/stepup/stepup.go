// Package stepup turns a decision into what the enforcement point sends: the
// HTTP status, an RFC 6750 §3 WWW-Authenticate challenge carrying the scopes
// the operation needs (MCP authorization, SEP-2350), the in-band forms some
// clients act on (a JSON-RPC error, or a tool result with
// _meta["mcp/www_authenticate"]), and the RFC 9728 protected resource
// metadata documents the challenges point to.
package stepup

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/mcp-pdp/pdp/pep"
)

// Strategy chooses the scopes a challenge asks for.
type Strategy string

const (
	// Operation asks for exactly the scopes the current operation needs.
	Operation Strategy = "operation"
	// Accumulate asks for those plus the caller's granted scopes that apply
	// to this resource, for clients that replace rather than union scopes.
	Accumulate Strategy = "accumulate"
)

// Resource holds what challenges for one protected resource need.
type Resource struct {
	URI string
	// MetadataURL is the RFC 9728 protected resource metadata URL.
	MetadataURL string
	Strategy    Strategy
	// ScopesSupported limits which granted scopes Accumulate carries over
	// (empty: all granted scopes).
	ScopesSupported []string
	// DPoP is how the resource takes DPoP proofs (RFC 9449): DPoPOff
	// (zero: Bearer challenges only), DPoPAllowed (a Bearer and a DPoP
	// challenge) or DPoPRequired (a DPoP challenge only).
	DPoP DPoPMode
	// DPoPAlgs are the proof algorithms accepted, for the DPoP challenge's
	// algs.
	DPoPAlgs []string
	// StructuredDenials adds the SEP-2643 (draft) denial envelope to the
	// in-band forms of authorization refusals: error.data.authorization of
	// the JSON-RPC error (then set for challenges too) and
	// _meta["io.modelcontextprotocol/authorization"] of the tool result.
	StructuredDenials bool
}

// DPoPMode is how a resource takes sender-constrained tokens.
type DPoPMode string

// Values of DPoPMode.
const (
	DPoPOff      DPoPMode = "off"
	DPoPAllowed  DPoPMode = "allowed"
	DPoPRequired DPoPMode = "required"
)

// dpop reports whether challenges carry a DPoP challenge.
func (r *Resource) dpop() bool { return r.DPoP == DPoPAllowed || r.DPoP == DPoPRequired }

// MetadataURL derives the RFC 9728 §3.1 well-known URL of a resource:
// "/.well-known/oauth-protected-resource" inserted between the host and the
// path and query components.
func MetadataURL(resource string) (string, error) {
	u, err := url.Parse(resource)
	if err != nil {
		return "", err
	}
	p := strings.TrimSuffix(u.EscapedPath(), "/")
	out := url.URL{Scheme: u.Scheme, Host: u.Host}
	s := out.String() + WellKnownPath + p
	if u.RawQuery != "" {
		s += "?" + u.RawQuery
	}
	return s, nil
}

// WellKnownPath is the RFC 9728 well-known path prefix.
const WellKnownPath = "/.well-known/oauth-protected-resource"

// Kind is why a request is refused.
type Kind int

const (
	// Allowed: no refusal.
	Allowed Kind = iota
	// NoToken: an anonymous caller needs a token (401, no error code).
	NoToken
	// InvalidToken: the token was rejected (401 invalid_token).
	InvalidToken
	// InvalidRequest: the Authorization header is malformed (400 invalid_request).
	InvalidRequest
	// InsufficientScope: the token lacks scopes (403 insufficient_scope).
	InsufficientScope
	// Hidden: the target does not exist for this caller (in-band "unknown").
	Hidden
	// Forbidden: policy refuses for a reason new scopes cannot fix (in-band).
	Forbidden
	// Unavailable: the decision could not be made (policy error, timeout): deny.
	Unavailable
	// Limited: the call is allowed but over a rate limit or a quota (429
	// with Retry-After; in band: a JSON-RPC error or a tool result with
	// the time to retry).
	Limited
)

// Refusal describes a denied request.
type Refusal struct {
	Kind Kind
	// Method is the MCP method; Target the tool/prompt name or resource URI.
	Method, Target string
	// Required are the scopes the operation needs; Granted the caller's scopes.
	Required, Granted []string
	// Description is the human readable reason (error_description).
	Description string
	// DPoP says the request presented its token with the DPoP scheme: the
	// error goes into the DPoP challenge.
	DPoP bool
	// DPoPError, when set (invalid_dpop_proof, use_dpop_nonce), is the
	// error code of a refused proof; the refusal is then InvalidToken.
	DPoPError string
	// DecisionID is the refusal's decision id, the envelope's
	// authorizationContextId (structured denials).
	DecisionID string
	// Remediation, when set (RemediationAvailable, ...), is the policy's
	// word on whether a Forbidden refusal can be remedied; else it is
	// RemediationUnavailable (structured denials).
	Remediation string
	// RetryAfter is, for Limited, how long until the call may succeed: a
	// rate limit's next token, a quota's window end.
	RetryAfter time.Duration
	// Limit is, for Limited, the limit that applied, in words ("10 calls
	// per 1m per client"); Quota says it is a quota (else a rate limit).
	Limit string
	Quota bool
}

// Answer is what the enforcement point must send; the core copies it into
// the fields of the same names of [pep.Response].
type Answer struct {
	// HTTPStatus is the status of the MCP server's HTTP answer.
	HTTPStatus int
	// WWWAuthenticate is the challenge header value; empty when none is due.
	WWWAuthenticate string
	// JSONRPCError is the in-band JSON-RPC error, or nil.
	JSONRPCError *pep.JSONRPCError
	// ToolResult is the in-band tools/call result, or nil (set only when
	// the method is tools/call).
	ToolResult *pep.ToolResult
	// RetryAfter is, for a limited call, the Retry-After value in seconds.
	RetryAfter int
}

// JSON-RPC error codes used for in-band refusals.
const (
	CodeInvalidParams    = -32602
	CodeMethodNotFound   = -32601
	CodeInternalError    = -32603
	CodeResourceNotFound = -32002
	// CodeForbidden is used for policy refusals outside tools/call.
	CodeForbidden = -32001
	// CodeLimited is a call over a rate limit or a quota (a server error
	// code: JSON-RPC and MCP define none); data.retryAfter says when to
	// retry, in seconds.
	CodeLimited = -32029
)

// Answer builds the answer for a refusal against this resource.
func (r *Resource) Answer(f Refusal) Answer {
	a := r.answer(f)
	if r.StructuredDenials {
		r.addEnvelope(&a, f)
	}
	return a
}

func (r *Resource) answer(f Refusal) Answer {
	switch f.Kind {
	case Allowed:
		return Answer{HTTPStatus: http.StatusOK}
	case NoToken:
		h := r.challenges("", "", f, r.challengeScopes(f.Required, nil))
		return Answer{HTTPStatus: http.StatusUnauthorized, WWWAuthenticate: h, ToolResult: toolChallenge(f, h)}
	case InvalidToken, InvalidRequest:
		code := "invalid_token"
		status := http.StatusUnauthorized
		if f.Kind == InvalidRequest {
			code, status = "invalid_request", http.StatusBadRequest
		}
		if f.DPoPError != "" {
			code = f.DPoPError
		}
		h := r.challenges(code, f.Description, f, r.challengeScopes(f.Required, nil))
		return Answer{HTTPStatus: status, WWWAuthenticate: h, ToolResult: toolChallenge(f, h)}
	case InsufficientScope:
		h := r.challenges("insufficient_scope", f.Description, f, r.challengeScopes(f.Required, f.Granted))
		return Answer{HTTPStatus: http.StatusForbidden, WWWAuthenticate: h, ToolResult: toolChallenge(f, h)}
	case Hidden:
		return Answer{HTTPStatus: http.StatusOK, JSONRPCError: hiddenError(f.Method, f.Target)}
	case Forbidden:
		if f.Method == "tools/call" {
			return Answer{HTTPStatus: http.StatusOK, ToolResult: &pep.ToolResult{
				IsError: true,
				Content: []pep.Content{{Type: "text", Text: "Denied by policy: " + f.Description}},
			}}
		}
		return Answer{HTTPStatus: http.StatusOK, JSONRPCError: &pep.JSONRPCError{Code: CodeForbidden, Message: "Forbidden: " + f.Description}}
	case Limited:
		return limited(f)
	default: // Unavailable
		return Answer{HTTPStatus: http.StatusServiceUnavailable, JSONRPCError: &pep.JSONRPCError{Code: CodeInternalError, Message: "Authorization unavailable"}}
	}
}

// challenges is the WWW-Authenticate value of a refusal: the Bearer
// challenge, and, on a DPoP resource, a DPoP challenge with its algs
// (RFC 9449 §7.1); a resource that requires DPoP sends only that one. The
// error goes into the challenge of the scheme the request used (a DPoP
// proof error always into the DPoP one); the other challenge carries only
// resource_metadata and scope, so a client can authorize either way.
//
// Where DPoP is allowed, a request that used neither the DPoP scheme nor a
// proof gets the Bearer challenge alone, as from a resource without DPoP:
// clients that do not know DPoP see what they always saw, and clients
// that use it learn the algorithms.
func (r *Resource) challenges(code, desc string, f Refusal, scopes []string) string {
	if !r.dpop() || (r.DPoP == DPoPAllowed && !f.DPoP && f.DPoPError == "") {
		return Header(code, desc, r.MetadataURL, scopes)
	}
	inDPoP := f.DPoP || f.DPoPError != "" || r.DPoP == DPoPRequired
	var bearer string
	if r.DPoP != DPoPRequired {
		if inDPoP {
			bearer = Header("", "", r.MetadataURL, scopes)
		} else {
			bearer = Header(code, desc, r.MetadataURL, scopes)
		}
	}
	var dp string
	if inDPoP {
		dp = DPoPHeader(code, desc, r.MetadataURL, scopes, r.DPoPAlgs)
	} else {
		dp = DPoPHeader("", "", r.MetadataURL, scopes, r.DPoPAlgs)
	}
	if bearer == "" {
		return dp
	}
	return bearer + ", " + dp
}

// limited answers a call over a limit: 429 with Retry-After (whole
// seconds, rounded up, at least 1), and in band a JSON-RPC error or, for
// tools/call, a tool result that tells the model when to retry.
func limited(f Refusal) Answer {
	secs := int((f.RetryAfter + time.Second - 1) / time.Second)
	secs = max(secs, 1)
	what := "Rate limit"
	if f.Quota {
		what = "Quota"
	}
	var target string
	switch {
	case f.Method == "tools/call":
		target = " for " + f.Target
	case f.Target != "":
		target = " for " + f.Method + " " + f.Target
	default:
		target = " for " + f.Method
	}
	text := fmt.Sprintf("%s exceeded%s", what, target)
	if f.Limit != "" {
		text += " (" + f.Limit + ")"
	}
	text += fmt.Sprintf(": retry after %d s", secs)
	kind := "rate"
	if f.Quota {
		kind = "quota"
	}
	data := json.RawMessage(fmt.Sprintf(`{"retryAfter":%d,"limit":%q}`, secs, kind))
	a := Answer{HTTPStatus: http.StatusTooManyRequests, RetryAfter: secs,
		JSONRPCError: &pep.JSONRPCError{Code: CodeLimited, Message: text, Data: data}}
	if f.Method == "tools/call" {
		a.ToolResult = &pep.ToolResult{IsError: true, Content: []pep.Content{{Type: "text", Text: text}}}
	}
	return a
}

// hiddenError answers as if the target did not exist, so its existence is not revealed.
func hiddenError(method, target string) *pep.JSONRPCError {
	switch method {
	case "tools/call":
		return &pep.JSONRPCError{Code: CodeInvalidParams, Message: "Unknown tool: " + target}
	case "prompts/get":
		return &pep.JSONRPCError{Code: CodeInvalidParams, Message: "Unknown prompt: " + target}
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return &pep.JSONRPCError{Code: CodeResourceNotFound, Message: "Resource not found: " + target}
	default:
		return &pep.JSONRPCError{Code: CodeMethodNotFound, Message: "Method not found: " + method}
	}
}

// toolChallenge is the in-band form of a challenge for tools/call.
func toolChallenge(f Refusal, header string) *pep.ToolResult {
	if f.Method != "tools/call" {
		return nil
	}
	return &pep.ToolResult{
		IsError: true,
		Content: []pep.Content{{Type: "text", Text: challengeText(f)}},
		Meta:    map[string]any{"mcp/www_authenticate": []string{header}},
	}
}

// challengeText says what a challenge asks for, for the model and the user.
func challengeText(f Refusal) string {
	var text string
	switch f.Kind {
	case NoToken:
		text = "Authorization required"
	case InsufficientScope:
		text = "Additional permission required"
	default:
		text = "The access token was rejected"
	}
	if f.Kind != InvalidToken && f.Kind != InvalidRequest {
		switch {
		case f.Method == "tools/call":
			text += " to call " + f.Target
		case f.Target != "":
			text += " for " + f.Method + " " + f.Target
		default:
			text += " for " + f.Method
		}
	}
	if f.Description != "" && f.Kind != NoToken {
		text += ": " + f.Description
	}
	if len(f.Required) > 0 {
		text += " (scopes needed: " + strings.Join(f.Required, " ") + ")"
	}
	return text
}

// challengeScopes applies the strategy: the operation's scopes, plus for
// Accumulate the caller's granted scopes that apply to this resource.
func (r *Resource) challengeScopes(required, granted []string) []string {
	out := make([]string, 0, len(required)+len(granted))
	seen := make(map[string]bool, len(required)+len(granted))
	for _, s := range required {
		if ValidScope(s) && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	if r.Strategy != Accumulate {
		return out
	}
	var extra []string
	for _, s := range granted {
		if !ValidScope(s) || seen[s] || (len(r.ScopesSupported) > 0 && !contains(r.ScopesSupported, s)) {
			continue
		}
		seen[s] = true
		extra = append(extra, s)
	}
	sort.Strings(extra)
	return append(out, extra...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
