package stepup

import (
	"encoding/json"

	"github.com/mcp-pdp/pdp/pep"
)

// Structured authorization denials follow SEP-2643, a draft of the MCP
// specification (modelcontextprotocol PR #2643, seps/2643-structured-
// authorization-denials.md). The envelope is the same object on every
// transport: in a JSON-RPC error it is error.data.authorization, as the
// draft's current text has it; in a tool result, which has no error data,
// it is _meta["io.modelcontextprotocol/authorization"], as the draft's
// earlier text had it. It adds `remediation`, from that earlier text, and
// one hint type of mcp-pdp's own, "oauth_scopes"; clients ignore hint
// types they do not know (SEP-2643: "Clients MUST ignore remediation hints
// whose type they do not recognize").
const (
	// MetaAuthorization is the _meta key of the envelope on tool results.
	MetaAuthorization = "io.modelcontextprotocol/authorization"
	// MetaAuthorizationContextID is the _meta key under which a client
	// echoes authorizationContextId on its retry.
	MetaAuthorizationContextID = "io.modelcontextprotocol/authorization-context-id"
	// ReasonInsufficientAuthorization is the one reason the draft defines.
	ReasonInsufficientAuthorization = "insufficient_authorization"
	// HintOAuthScopes is the hint of a refusal a new access token remedies:
	// the scopes to ask for and where the resource's metadata is.
	HintOAuthScopes = "oauth_scopes"
)

// Remediation values: whether the caller can remedy the refusal.
const (
	// RemediationAvailable: a new credential (or another step the hints
	// name) can make the request succeed.
	RemediationAvailable = "available"
	// RemediationUnavailable: nothing the caller can do changes the answer.
	RemediationUnavailable = "unavailable"
	// RemediationUndisclosed: the server does not say.
	RemediationUndisclosed = "undisclosed"
)

// ValidRemediation reports whether s is one of the remediation values.
func ValidRemediation(s string) bool {
	return s == RemediationAvailable || s == RemediationUnavailable || s == RemediationUndisclosed
}

// Envelope is the structured authorization denial (SEP-2643, draft).
type Envelope struct {
	Reason                 string `json:"reason"`
	Remediation            string `json:"remediation"`
	AuthorizationContextID string `json:"authorizationContextId,omitempty"`
	RemediationHints       []Hint `json:"remediationHints,omitempty"`
}

// Hint is one remediation hint. Type HintOAuthScopes carries the OAuth
// error of the challenge (none when no token was sent), the scopes it asks
// for and the resource's RFC 9728 metadata URL: what WWW-Authenticate
// says, for transports without it (stdio) and clients that read bodies.
type Hint struct {
	Type             string   `json:"type"`
	Error            string   `json:"error,omitempty"`
	Scopes           []string `json:"scopes,omitempty"`
	ResourceMetadata string   `json:"resource_metadata,omitempty"`
}

// addEnvelope puts the envelope of an authorization refusal (a challenge
// or a policy refusal) into a's in-band forms. Hidden targets (answered as
// absent), failed decisions and allowed requests get none.
func (r *Resource) addEnvelope(a *Answer, f Refusal) {
	env := Envelope{Reason: ReasonInsufficientAuthorization, AuthorizationContextID: f.DecisionID}
	switch f.Kind {
	case NoToken, InvalidToken, InvalidRequest, InsufficientScope:
		env.Remediation = RemediationAvailable
		h := Hint{Type: HintOAuthScopes, ResourceMetadata: r.MetadataURL}
		switch f.Kind {
		case InvalidToken:
			h.Error = "invalid_token"
			if f.DPoPError != "" {
				h.Error = f.DPoPError
			}
			h.Scopes = r.challengeScopes(f.Required, nil)
		case InvalidRequest:
			h.Error = "invalid_request"
		case InsufficientScope:
			h.Error = "insufficient_scope"
			h.Scopes = r.challengeScopes(f.Required, f.Granted)
		default:
			h.Scopes = r.challengeScopes(f.Required, nil)
		}
		if len(h.Scopes) == 0 {
			h.Scopes = nil
		}
		env.RemediationHints = []Hint{h}
		if a.JSONRPCError == nil {
			a.JSONRPCError = &pep.JSONRPCError{Code: CodeForbidden, Message: challengeText(f)}
		}
	case Forbidden:
		env.Remediation = f.Remediation
		if !ValidRemediation(env.Remediation) {
			env.Remediation = RemediationUnavailable
		}
	default:
		return
	}
	data, err := json.Marshal(struct {
		Authorization *Envelope `json:"authorization"`
	}{&env})
	if err != nil {
		return // unreachable: the envelope is strings
	}
	if a.JSONRPCError != nil {
		a.JSONRPCError.Data = data
	}
	if a.ToolResult != nil {
		if a.ToolResult.Meta == nil {
			a.ToolResult.Meta = make(map[string]any, 1)
		}
		a.ToolResult.Meta[MetaAuthorization] = &env
	}
}
