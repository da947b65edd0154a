// Package authzen is the OpenID AuthZEN Authorization API 1.0 face of the
// decision core: it reads Access Evaluation and Access Evaluations requests,
// maps each (subject, action, resource, context) onto the JSON-RPC message
// and the caller the core decides (the default mappings of the COAZ-MCP
// binding, read backwards), and answers the core's decision as an AuthZEN
// Decision. It also builds the PDP metadata document
// (/.well-known/authzen-configuration). docs/authzen.md describes the
// mapping.
//
// In this profile the enforcement point has verified the caller's token and
// sends no token: the caller is the subject it describes, decided with
// [Decider.DecideVerified].
package authzen

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/pep"
)

// Decider is the decision core; *core.Service implements it.
type Decider interface {
	// DecideVerified decides req (a JSON-RPC message for req.Resource,
	// without authorization) for a caller the enforcement point verified
	// (nil: anonymous), for the PEP named pepName (audit).
	DecideVerified(ctx context.Context, req *pep.Request, caller *token.Claims, pepName string) (*pep.Response, error)
}

// Options configure a Service.
type Options struct {
	// Core decides (required).
	Core Decider
	// Resources are the URIs of the configured MCP servers: with exactly
	// one, a request that does not name its server is decided for it.
	Resources []string
	// MaxEvaluations bounds the evaluations of one Access Evaluations
	// request (0 = DefaultMaxEvaluations).
	MaxEvaluations int
	// MaxDepth bounds the nesting of a request's JSON (0 = DefaultMaxDepth).
	MaxDepth int
	// Decided, when set, is told of every decision (the API counts them
	// in its metrics, as /v1/decide's).
	Decided func(*pep.Response)
}

// DefaultMaxEvaluations is Options.MaxEvaluations's default.
const DefaultMaxEvaluations = 64

// DefaultMaxDepth is Options.MaxDepth's default.
const DefaultMaxDepth = 32

// Service answers AuthZEN requests with the core. It is safe for
// concurrent use.
type Service struct {
	core      Decider
	resources []string
	maxEvals  int
	maxDepth  int
	decided   func(*pep.Response)
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Core == nil {
		return nil, errors.New("authzen: no decision core")
	}
	if o.MaxEvaluations <= 0 {
		o.MaxEvaluations = DefaultMaxEvaluations
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	return &Service{core: o.Core, resources: append([]string(nil), o.Resources...), maxEvals: o.MaxEvaluations, maxDepth: o.MaxDepth, decided: o.Decided}, nil
}

// Decision is an AuthZEN Decision (Authorization API 1.0 §"Decision"):
// decision, and a context that says why.
type Decision struct {
	// Decision (JSON "decision") is true when the request may go forward.
	Decision bool `json:"decision"`
	// Context (JSON "context", omitted when nil) is a *DecisionContext for
	// a decided request, an *ErrorContext for an evaluation of a batch that
	// could not be decided.
	Context any `json:"context,omitempty"`
}

// DecisionContext is the context of a decided evaluation: the core's
// answer, as /v1/decide gives it.
type DecisionContext struct {
	// DecisionID (JSON "decision_id") is the id of the decision and of its
	// audit event.
	DecisionID string `json:"decision_id"`
	// Outcome (JSON "outcome") is allow, filtered, challenge, deny or
	// limited.
	Outcome string `json:"outcome"`
	// Reason (JSON "reason") is the core's reason, for administrators (it
	// may reveal policy internals: not for end users).
	Reason string `json:"reason"`
	// HTTPStatus (JSON "http_status") is the status the MCP server would
	// answer its client with (/v1/decide's http_status).
	HTTPStatus int `json:"http_status"`
	// RetryAfter (JSON "retry_after", for limited) is the seconds until the
	// call may succeed (/v1/decide's retry_after).
	RetryAfter int `json:"retry_after,omitempty"`
	// RequiredScopes and MissingScopes (JSON "required_scopes",
	// "missing_scopes", always set) are the scopes the target requires and
	// those the subject's scopes do not grant.
	RequiredScopes []string `json:"required_scopes"`
	MissingScopes  []string `json:"missing_scopes"`
	// InsufficientScope (JSON "insufficient_scope", omitted when false):
	// the policy needs scopes the subject lacks; a step-up can help.
	InsufficientScope bool `json:"insufficient_scope,omitempty"`
	// ScopesSent (JSON "scopes_sent", set with InsufficientScope): whether
	// the request carried subject.properties.scopes at all; false means the
	// PEP did not pass the token's scopes, so the subject was decided as
	// holding none.
	ScopesSent *bool `json:"scopes_sent,omitempty"`
	// WWWAuthenticate (JSON "www_authenticate", for challenges) is the
	// WWW-Authenticate value the MCP server would send (RFC 6750 §3).
	WWWAuthenticate string `json:"www_authenticate,omitempty"`
	// JSONRPCError (JSON "jsonrpc_error", when the refusal is a JSON-RPC
	// error) is the error /v1/decide would have the MCP server send.
	JSONRPCError *pep.JSONRPCError `json:"jsonrpc_error,omitempty"`
	// PolicyRevision (JSON "policy_revision", when the policy was
	// evaluated) is the revision that decided.
	PolicyRevision string `json:"policy_revision,omitempty"`
}

// ErrorContext is the context of an evaluation of a batch that could not
// be decided (Authorization API 1.0 §"Errors": decision false, the error in
// the context).
type ErrorContext struct {
	// Error (JSON "error") is what went wrong.
	Error EvaluationError `json:"error"`
}

// EvaluationError describes an evaluation that could not be decided.
type EvaluationError struct {
	// Status (JSON "status") is the HTTP status a single evaluation would
	// have been answered with (400, 500, ...).
	Status int `json:"status"`
	// Code (JSON "code") is the machine-readable error code of the API's
	// error answers (e.g. "invalid_request", "unknown_resource").
	Code string `json:"code"`
	// Message (JSON "message") says what is wrong.
	Message string `json:"message"`
}

// EvaluationsResponse is the answer of the Access Evaluations API: the
// decisions in request order (fewer with a short-circuiting semantic), or,
// for a request without evaluations, the one Decision.
type EvaluationsResponse struct {
	// Evaluations are the decisions, in the order of the request.
	Evaluations []Decision
	// Single, when set, is the answer of a request without evaluations
	// (it behaves as an Access Evaluation request).
	Single *Decision
}

// MarshalJSON encodes {"evaluations": [...]}, or the single Decision.
func (r *EvaluationsResponse) MarshalJSON() ([]byte, error) {
	if r.Single != nil {
		return marshal(r.Single)
	}
	ev := r.Evaluations
	if ev == nil {
		ev = []Decision{}
	}
	return marshal(struct {
		Evaluations []Decision `json:"evaluations"`
	}{ev})
}

// Evaluate answers one Access Evaluation request (POST
// /access/v1/evaluation) from the PEP named pepName. A *pep.RequestError is
// a request that could not be decided (400 for a malformed request or one
// that cannot be mapped, the core's request errors).
func (s *Service) Evaluate(ctx context.Context, body []byte, pepName string) (*Decision, error) {
	root, err := s.parseRoot(body)
	if err != nil {
		return nil, err
	}
	ev, err := parseEvaluation(root, nil, "")
	if err != nil {
		return nil, err
	}
	d, err := s.decide(ctx, ev, pepName)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Evaluations answers one Access Evaluations request (POST
// /access/v1/evaluations) from the PEP named pepName: each evaluation, with
// the request's subject, action, resource and context as defaults, under
// options.evaluations_semantic (execute_all, deny_on_first_deny,
// permit_on_first_permit). A malformed request is a *pep.RequestError (400);
// an evaluation that is well-formed but cannot be decided is answered in
// place as decision false with an ErrorContext.
func (s *Service) Evaluations(ctx context.Context, body []byte, pepName string) (*EvaluationsResponse, error) {
	root, err := s.parseRoot(body)
	if err != nil {
		return nil, err
	}
	batch, err := parseBatch(root, s.maxEvals)
	if err != nil {
		return nil, err
	}
	if batch.single != nil {
		d, err := s.decide(ctx, batch.single, pepName)
		if err != nil {
			return nil, err
		}
		return &EvaluationsResponse{Single: d}, nil
	}
	out := make([]Decision, 0, len(batch.evals))
	for _, ev := range batch.evals {
		d, err := s.decide(ctx, ev, pepName)
		if err != nil {
			d = errorDecision(err)
		}
		out = append(out, *d)
		if (batch.semantic == DenyOnFirstDeny && !d.Decision) || (batch.semantic == PermitOnFirstPermit && d.Decision) {
			break
		}
	}
	return &EvaluationsResponse{Evaluations: out}, nil
}

// Values of options.evaluations_semantic.
const (
	ExecuteAll          = "execute_all"
	DenyOnFirstDeny     = "deny_on_first_deny"
	PermitOnFirstPermit = "permit_on_first_permit"
)

// errorDecision is the in-place answer of an evaluation that could not be
// decided.
func errorDecision(err error) *Decision {
	var re *pep.RequestError
	e := EvaluationError{Status: http.StatusInternalServerError, Code: "internal_error", Message: "internal error"}
	if errors.As(err, &re) {
		e = EvaluationError{Status: re.Status, Code: re.Code, Message: re.Description}
	}
	return &Decision{Decision: false, Context: &ErrorContext{Error: e}}
}

// decide maps one evaluation onto the core and its answer back.
func (s *Service) decide(ctx context.Context, ev *evaluation, pepName string) (*Decision, error) {
	m, err := s.mapEvaluation(ev)
	if err != nil {
		return nil, err
	}
	resp, err := s.core.DecideVerified(ctx, &pep.Request{Resource: m.server, Message: m.message}, m.caller, pepName)
	if err != nil {
		return nil, fmt.Errorf("deciding %s: %w", ev.action.name, err)
	}
	if s.decided != nil {
		s.decided(resp)
	}
	return decisionOf(resp, m.scopesSent), nil
}

// decisionOf is the core's answer as a Decision.
func decisionOf(r *pep.Response, scopesSent bool) *Decision {
	c := &DecisionContext{
		DecisionID: r.DecisionID, Outcome: r.Outcome, Reason: r.Reason, HTTPStatus: r.HTTPStatus, RetryAfter: r.RetryAfter,
		RequiredScopes: nonNil(r.RequiredScopes), MissingScopes: nonNil(r.MissingScopes),
		WWWAuthenticate: r.WWWAuthenticate, JSONRPCError: r.JSONRPCError, PolicyRevision: r.PolicyRevision,
	}
	if !r.Allow && len(r.MissingScopes) > 0 {
		c.InsufficientScope = true
		c.ScopesSent = &scopesSent
	}
	return &Decision{Decision: r.Allow, Context: c}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Configuration is the PDP metadata document (Authorization API 1.0
// §"Policy Decision Point Metadata").
type Configuration struct {
	// PolicyDecisionPoint (JSON "policy_decision_point") is the PDP's
	// identifier, its base URL.
	PolicyDecisionPoint string `json:"policy_decision_point"`
	// AccessEvaluationEndpoint (JSON "access_evaluation_endpoint") is the
	// URL of the Access Evaluation API.
	AccessEvaluationEndpoint string `json:"access_evaluation_endpoint"`
	// AccessEvaluationsEndpoint (JSON "access_evaluations_endpoint") is the
	// URL of the Access Evaluations API.
	AccessEvaluationsEndpoint string `json:"access_evaluations_endpoint"`
}

// Paths of the API (the HTTPS binding's default paths) and of its metadata.
const (
	EvaluationPath  = "/access/v1/evaluation"
	EvaluationsPath = "/access/v1/evaluations"
	WellKnownPath   = "/.well-known/authzen-configuration"
)

// NewConfiguration is the metadata document of the PDP at base (scheme and
// host, no path, no trailing slash).
func NewConfiguration(base string) Configuration {
	return Configuration{
		PolicyDecisionPoint:       base,
		AccessEvaluationEndpoint:  base + EvaluationPath,
		AccessEvaluationsEndpoint: base + EvaluationsPath,
	}
}
