// Package auditsink turns every decision of mcp-pdp into one audit event in
// NATS JetStream, durably.
//
// Events are published with Nats-Msg-Id = event ID (the decision ID), so a
// retry or a replay inside the stream's duplicate window is stored once. In
// the default asynchronous mode Record only enqueues; a publisher goroutine
// publishes with async acks. While NATS is unreachable, or when the queue is
// full, events are appended to a local spool (internal/spool: segment files
// of length-prefixed, CRC-checked records, fsynced in small batches) and
// replayed in order when NATS is back, also after a restart. See
// docs/audit.md for the schema and the guarantees of each mode.
//
// The files: event.go and encode.go are the event and its JSON; config.go
// the options and their defaults; sink.go the lifecycle and the publish
// path, with live.go tracking the acks of direct publishes; replay.go the
// replay of the spool; stream.go the stream and JetStream errors;
// reader.go reads events back (Filter, Read) for `pdp audit`; connect.go
// dials NATS.
package auditsink

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// SchemaVersion is written into every event's "schema" field. A change that
// removes or renames a field or changes its meaning gets a new version.
const SchemaVersion = "mcp-pdp.audit/v1"

// Outcomes of a decision, as the audit schema writes them.
//
// These, like Actor, belong to the audit schema (SchemaVersion) and stay
// defined here even where the same words exist elsewhere: the /v1/decide
// wire types (internal/core, moving to the public pep package), the
// decision input (internal/decision) and the verified claims
// (internal/token) are other contracts that may change on their own.
// internal/core maps one to the other when it builds the event. Do not
// unify them across packages.
const (
	OutcomeAllow     = "allow"
	OutcomeDeny      = "deny"
	OutcomeChallenge = "challenge"
	OutcomeFiltered  = "filtered"
	// OutcomeLimited: allowed by the policy, refused by a rate limit or a
	// quota (Event.Limit says which).
	OutcomeLimited = "limited"
)

// Actor is one link of the RFC 8693 "act" delegation chain, outermost
// (the current actor) first, as the audit schema records it (see the note
// on the outcome constants: not to be unified with the other packages'
// Actor types).
type Actor struct {
	Subject  string `json:"sub,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

// Event is one audit event: one decision of the PDP.
type Event struct {
	// ID is the decision ID; it is also the Nats-Msg-Id (dedup key).
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Schema string    `json:"schema"`
	// PDP is the name of the PDP instance that decided.
	PDP string `json:"pdp"`
	// PEP is the authenticated name of the caller of /v1/decide.
	PEP string `json:"pep,omitempty"`

	Resource    string `json:"resource"`
	ResourceKey string `json:"resource_key"`
	Method      string `json:"method"`
	// Target is the tool or prompt name or the resource URI.
	Target string `json:"target,omitempty"`
	// Outcome is one of allow, deny, challenge, filtered.
	Outcome        string   `json:"outcome"`
	HTTPStatus     int      `json:"http_status"`
	RequiredScopes []string `json:"required_scopes,omitempty"`
	MissingScopes  []string `json:"missing_scopes,omitempty"`
	Reason         string   `json:"reason,omitempty"`

	Subject  string  `json:"sub,omitempty"`
	ClientID string  `json:"client_id,omitempty"`
	Act      []Actor `json:"act,omitempty"`
	// Grant is the OAuth grant behind the token: "user" flows
	// (authorization_code, ...) or "client_credentials".
	Grant  string `json:"grant,omitempty"`
	Issuer string `json:"issuer,omitempty"`
	// TokenFingerprint identifies the token without revealing it (a hash
	// computed by internal/token); the token itself is never recorded.
	TokenFingerprint string `json:"token_fingerprint,omitempty"`
	// TokenValidation tells how the token was validated: "jwt" (its
	// signature, by the issuer's keys) or "introspection" (RFC 7662).
	TokenValidation string `json:"token_validation,omitempty"`
	// Unverified holds what a token that was refused (bad signature,
	// expired, wrong audience, ...) says about its holder, read without
	// verification: the claims of someone who presented it, or of a
	// forgery. Only set when the token was refused; never trust it.
	Unverified *Unverified `json:"unverified,omitempty"`

	PolicyRevision string `json:"policy_revision,omitempty"`
	// RetryOf is the id of the denied decision the client says this
	// request retries (the authorizationContextId of a structured denial,
	// echoed in the request's _meta); the client's word, not verified.
	RetryOf string `json:"retry_of,omitempty"`
	// Limit is, for outcome limited, the limit that refused the call; for
	// an allowed call whose quota could not be counted (the counters
	// unreachable, on_counter_unavailable: allow), that quota, with
	// Uncounted set.
	Limit         *Limit `json:"limit,omitempty"`
	LatencyMicros int64  `json:"latency_us"`

	// Visible and Hidden are the item names of a filtered list.
	Visible []string `json:"visible,omitempty"`
	Hidden  []string `json:"hidden,omitempty"`

	// Arguments are recorded only when a resource enables it, already
	// redacted by the caller.
	Arguments map[string]any `json:"arguments,omitempty"`
	// JSONRPCID is the id of the JSON-RPC request decided on.
	JSONRPCID json.RawMessage `json:"jsonrpc_id,omitempty"`

	// Truncated is set by the sink when the event was too large for one
	// NATS message and arguments and item lists were dropped from it.
	Truncated bool `json:"truncated,omitempty"`

	// The chain (see chain.go), set by the sink and always last: Chain
	// names the instance's chain, Seq numbers its events without gaps
	// from 1, and Prev is the hex SHA-256 of the exact bytes of the
	// chain's event Seq-1 ("" for Seq 1).
	Chain string `json:"chain,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
	Prev  string `json:"prev,omitempty"`
}

// Unverified is what a refused token claims, unverified: its "sub",
// "client_id" (or "azp") and "iss", each cut to 256 bytes.
type Unverified struct {
	Subject  string `json:"sub,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Issuer   string `json:"iss,omitempty"`
}

// NATSSubject returns "<prefix>.<resource_key>.<method>.<outcome>" with
// each token sanitized for NATS (see SanitizeToken). An empty resource key
// (never written by the PDP) becomes "_". (It cannot be called Subject:
// that is the field holding the token's "sub".)
func (e *Event) NATSSubject(prefix string) string {
	rk := e.ResourceKey
	if rk == "" {
		rk = "_" // the PDP always sets it (config.ResourceKey)
	}
	var b strings.Builder
	b.Grow(len(prefix) + len(rk) + len(e.Method) + len(e.Outcome) + 3)
	b.WriteString(prefix)
	b.WriteByte('.')
	b.WriteString(SanitizeToken(rk))
	b.WriteByte('.')
	b.WriteString(SanitizeToken(e.Method))
	b.WriteByte('.')
	b.WriteString(SanitizeToken(e.Outcome))
	return b.String()
}

// SanitizeToken makes s usable as one NATS subject token: '.', '*', '>',
// whitespace and control characters become '_', invalid UTF-8 becomes '_',
// and an empty token becomes "_". Other characters, '/' included, are kept,
// so "tools/call" stays "tools/call".
func SanitizeToken(s string) string {
	if s == "" {
		return "_"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' || c == '*' || c == '>' || c <= ' ' || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '.' || r == '*' || r == '>' || r == utf8.RuneError:
			b.WriteByte('_')
		case unicode.IsSpace(r) || unicode.IsControl(r):
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Limit is a rate limit or quota as an audit event records it.
type Limit struct {
	// Kind is "rate" or "quota".
	Kind string `json:"kind"`
	// Limit calls per Per ("1m0s" for a rate, "hour", "day" or "month"
	// for a quota), counted per By ("sub", "client", "sub+client",
	// "resource").
	Limit int    `json:"limit"`
	Per   string `json:"per"`
	By    string `json:"by"`
	// Uncounted: the call was allowed without being counted.
	Uncounted bool `json:"uncounted,omitempty"`
}

// IsResourceKey reports whether s is written like a resource key (the
// configuration derives them, see config.ResourceKey): non-empty, only
// [A-Za-z0-9_-], so it is one NATS subject token as it is.
func IsResourceKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// NewID returns a random 128-bit hex ID, for events recorded without a
// decision ID.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go >= 1.24)
	return hex.EncodeToString(b[:])
}
