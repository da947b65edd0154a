// Package core is the decision core of mcp-pdp as a Go API: it verifies the
// caller's token, evaluates the policy once, filters lists, builds the
// step-up answer and records the audit event. The HTTP API calls it; a
// future in-process gateway will call it the same way.
//
// Its requests and answers are the wire types of the public package
// [github.com/mcp-pdp/pdp/pep]: [pep.Request] in, [pep.Response] or a
// [*pep.RequestError] out.
package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/dpop"
	"github.com/mcp-pdp/pdp/internal/listfilter"
	"github.com/mcp-pdp/pdp/internal/ratelimit"
	"github.com/mcp-pdp/pdp/internal/revoke"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/pep"
)

// Verifier verifies a raw bearer token for one resource.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*token.Claims, error)
}

// Auditor records audit events; *auditsink.Sink implements it. Record
// returns an error only when the event could not be made durable. It must
// not keep ev after it returns (the core reuses it for the next
// decision): copy what it keeps.
type Auditor interface {
	Record(ctx context.Context, ev *auditsink.Event) error
}

// Resource is one protected MCP server as the core sees it.
type Resource struct {
	URI string
	// Key names the resource in audit subjects.
	Key       string
	Verifier  Verifier
	Challenge stepup.Resource
	// AuditArguments records call arguments in audit events, with the
	// fields named in Redact (at any depth) replaced by "[REDACTED]".
	AuditArguments bool
	Redact         []string
	// DPoP checks the proofs of sender-constrained tokens (RFC 9449); nil:
	// DPoP is off for the resource (the DPoP scheme is refused; a token
	// bound to a key is taken as a bearer token).
	DPoP *dpop.Verifier
	// DPoPRequired refuses the tokens that are not bound to a key.
	DPoPRequired bool
	// OnCounterUnavailable is what a call with a quota gets when the
	// quota counters cannot be reached: CounterDeny ("" too) or
	// CounterAllow (allowed uncounted, said in its audit event).
	OnCounterUnavailable string
}

// Options configure a Service.
type Options struct {
	Engine    *decision.Engine
	Resources []*Resource
	// Auditor may be nil: no audit.
	Auditor Auditor
	// DenyUnaudited denies a decision whose audit event could not be made durable.
	DenyUnaudited bool
	// DecisionTimeout bounds token verification and policy evaluation
	// (0 = DefaultDecisionTimeout; limits.decision_timeout).
	DecisionTimeout time.Duration
	// Revocations are the revocations every decision looks its caller up
	// in (the set a revoke.Watcher keeps); nil: none.
	Revocations *revoke.Set
	// Rates are the token buckets of the rate limits the policy returns
	// (per replica); nil: a new ratelimit.Limiter with its defaults.
	Rates *ratelimit.Limiter
	// Quotas counts the quotas the policy returns; nil: a call with a
	// quota cannot be counted (the resource's OnCounterUnavailable).
	Quotas Quotas
	// Tracer starts the spans of each decision (pdp.decide, and its
	// pdp.token, pdp.policy or pdp.list_filter, pdp.limits and pdp.audit),
	// children of the span in the context passed to Decide; nil: none,
	// and no cost.
	Tracer trace.Tracer
	Logger *slog.Logger
}

// maxRateKey bounds pep.Request.RateKey.
const maxRateKey = 256

// DefaultDecisionTimeout is Options.DecisionTimeout's default.
const DefaultDecisionTimeout = 250 * time.Millisecond

// Service decides requests. It is safe for concurrent use.
type Service struct {
	engine    *decision.Engine
	resources map[string]*Resource
	auditor   Auditor
	denyUnaud bool
	timeout   time.Duration
	log       *slog.Logger
	revoked   *revoke.Set
	rates     *ratelimit.Limiter
	quotas    Quotas
	tracer    trace.Tracer
	ids       sync.Pool
	// events are the audit events handed to the auditor, reused (Record
	// keeps nothing of them).
	events sync.Pool
	// limited counts the calls answered limited, by kind.
	rateLimited, quotaLimited atomic.Int64
	tokens                    *tokenMemo
	// toolMetas are each resource's tools' annotations and _meta from its
	// lists.
	toolMetas map[string]*toolMetas
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Engine == nil {
		return nil, errors.New("core: no decision engine")
	}
	s := &Service{
		engine:    o.Engine,
		resources: make(map[string]*Resource, len(o.Resources)),
		toolMetas: make(map[string]*toolMetas, len(o.Resources)),
		auditor:   o.Auditor,
		denyUnaud: o.DenyUnaudited,
		timeout:   o.DecisionTimeout,
		log:       o.Logger,
		revoked:   o.Revocations,
		rates:     o.Rates,
		quotas:    o.Quotas,
		tracer:    o.Tracer,
	}
	if s.rates == nil {
		s.rates = ratelimit.New(ratelimit.Options{})
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.timeout <= 0 {
		s.timeout = DefaultDecisionTimeout
	}
	for _, r := range o.Resources {
		if r.Verifier == nil {
			return nil, fmt.Errorf("core: resource %s has no token verifier", r.URI)
		}
		s.resources[r.URI] = r
		s.toolMetas[r.URI] = newToolMetas()
	}
	s.ids.New = func() any { return nuid.New() }
	s.events.New = func() any { return new(auditsink.Event) }
	s.tokens = newTokenMemo(2048)
	return s, nil
}

// Resource returns the configured resource with this URI, or nil.
func (s *Service) Resource(uri string) *Resource { return s.resources[uri] }

// Ready reports whether a policy is loaded.
func (s *Service) Ready() bool { return s.engine.Policy() != nil }

// LimitStats are the calls a Service answered limited since New.
type LimitStats struct {
	// Rate and Quota count the calls over a rate limit (shared or not)
	// and over a quota.
	Rate, Quota int64
}

// LimitStats returns the tallies of limited calls.
func (s *Service) LimitStats() LimitStats {
	return LimitStats{Rate: s.rateLimited.Load(), Quota: s.quotaLimited.Load()}
}

func (s *Service) newID() string {
	n := s.ids.Get().(*nuid.NUID)
	id := n.Next()
	s.ids.Put(n)
	return id
}

// message is the part of a JSON-RPC request the PDP reads.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"` // absent and "" are both refused
	Params  json.RawMessage `json:"params"`
}

type callParams struct {
	Name      string          `json:"name"`
	URI       string          `json:"uri"`
	Arguments json.RawMessage `json:"arguments"`
	Meta      json.RawMessage `json:"_meta"`
}

// decideWork is what one decision of a message keeps, allocated once.
type decideWork struct {
	msg     message
	params  callParams
	in      decision.Input
	pending pending
}

func badRequest(code, format string, args ...any) *pep.RequestError {
	return &pep.RequestError{Status: http.StatusBadRequest, Code: code, Description: fmt.Sprintf(format, args...)}
}

// Decide answers one request. pepName names the authenticated PEP, for the
// audit event (empty: none). A *pep.RequestError means the request could not
// be decided (HTTP 4xx); any other failure is answered as a deny inside the
// Response. Every decided request is one audit event.
//
// A list method without req.Result is decided as a request (may this
// caller list at all?): the answer is an allow without Result, or a
// challenge or deny; the same method with its Result is filtered. A request
// with req.HTTPMethod and no Message (a Streamable HTTP GET or DELETE)
// authenticates the caller for the resource without consulting the policy.
//
// The Response's Caller is shared by the answers for the same verified
// token: treat it as read-only.
func (s *Service) Decide(ctx context.Context, req *pep.Request, pepName string) (*pep.Response, error) {
	return s.decide(ctx, req, pepName, false, nil)
}

// DecideVerified decides req for a caller whose token the enforcement
// point has verified itself (the AuthZEN profile: the PEP sends the
// subject, not the token): caller stands for the token (nil: anonymous),
// req must carry no Authorization and no DPoP. The policy sees the token
// object built from caller; its Validation names who verified it
// (ValidationPEP). Audited like every decision.
func (s *Service) DecideVerified(ctx context.Context, req *pep.Request, caller *token.Claims, pepName string) (*pep.Response, error) {
	if req.Authorization != "" || req.DPoP != "" {
		return nil, badRequest("invalid_request", "a request decided for a verified caller carries no authorization and no dpop")
	}
	return s.decide(ctx, req, pepName, false, caller)
}

// ValidationPEP is Claims.Validation of a caller verified by the
// enforcement point (DecideVerified).
const ValidationPEP = token.ValidationPEP

// DecideValid is Decide for a request whose Message and Result the caller
// has already checked to be valid JSON (json.Valid, or read by a decoder
// that checks every value, as the HTTP API's does): they are not checked
// again. It is the trusted entry point; when that does not hold, call
// Decide.
func (s *Service) DecideValid(ctx context.Context, req *pep.Request, pepName string) (*pep.Response, error) {
	return s.decide(ctx, req, pepName, true, nil)
}

// decide is Decide; valid says that req.Message and req.Result are known to
// be valid JSON.
func (s *Service) decide(ctx context.Context, req *pep.Request, pepName string, valid bool, verified *token.Claims) (resp *pep.Response, err error) {
	start := time.Now()
	if s.tracer != nil {
		var span trace.Span
		ctx, span = s.tracer.Start(ctx, "pdp.decide", trace.WithSpanKind(trace.SpanKindServer))
		defer func() { endDecision(span, req, resp, err) }()
	}
	if req.Resource == "" {
		return nil, badRequest("invalid_request", "resource is required")
	}
	res := s.resources[req.Resource]
	if res == nil {
		return nil, badRequest("unknown_resource", "resource %q is not configured on this PDP", req.Resource)
	}
	if len(req.RateKey) > maxRateKey {
		return nil, badRequest("invalid_request", "rate_key is longer than %d bytes", maxRateKey)
	}
	if req.HTTPMethod != "" {
		return s.decideTransport(ctx, req, res, pepName, start, verified)
	}
	if isAbsent(req.Message) {
		return nil, badRequest("invalid_request", "message is required: the JSON-RPC request the MCP server received")
	}
	w := new(decideWork) // one allocation for what the decision keeps
	msg, p := &w.msg, &w.params
	fast := parseMessageFast(req.Message, valid, msg, p)
	if !fast {
		if k, ok := caseVariantKey(req.Message); ok && (valid || json.Valid(req.Message)) {
			return nil, badRequest("invalid_message", "message key %q differs from a JSON-RPC or MCP member only in case: servers read keys exactly, so the message is ambiguous", k)
		}
		*msg, *p = message{}, callParams{}
		if err := json.Unmarshal(req.Message, msg); err != nil {
			return nil, badRequest("invalid_message", "message must be a JSON-RPC request object: %v", jsonErr(err))
		}
	}
	if msg.JSONRPC != "2.0" {
		return nil, badRequest("invalid_message", `message.jsonrpc must be "2.0"`)
	}
	if msg.Method == "" {
		return nil, badRequest("invalid_message", "message.method is required")
	}
	in := &w.in
	*in = decision.Input{Resource: res.URI, Method: msg.Method, Class: decision.ClassifyMethod(msg.Method)}
	d := &w.pending
	*d = pending{svc: s, res: res, in: in, id: msg.ID, pepName: pepName, start: start, verified: verified, pepRateKey: req.RateKey}

	if in.Class.Operation == decision.OpCall {
		if !fast && len(msg.Params) > 0 {
			if err := json.Unmarshal(msg.Params, p); err != nil {
				return d.invalidParams(ctx, "params must be an object")
			}
		}
		in.Target = p.Name
		if in.Class.NameKey == "uri" {
			in.Target = p.URI
		}
		if in.Class.Kind == decision.KindTool {
			in.TargetMeta = s.toolMetas[res.URI].get(in.Target)
		}
		if in.Target == "" {
			return d.invalidParams(ctx, "params."+in.Class.NameKey+" is required")
		}
		if len(p.Arguments) > 0 && !bytes.Equal(p.Arguments, []byte("null")) {
			// Valid JSON (params decoded); an object starts with "{". The
			// policy parses the arguments only if it can read them.
			if p.Arguments[0] != '{' {
				return d.invalidParams(ctx, "params.arguments must be an object")
			}
			in.RawArguments = p.Arguments
			d.args = p.Arguments
		}
		d.retryOf = retryOf(p.Meta)
	}

	if s.tracer != nil {
		trace.SpanFromContext(ctx).SetAttributes(attribute.String("mcp.method", in.Method), attribute.String("mcp.target", in.Target))
	}

	// The budget covers token verification and policy evaluation; the audit
	// record (a JetStream ack in sync mode) has its own timeout in the sink.
	reqCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	// The token. An invalid token is refused with 401 whatever the method;
	// the policy is still evaluated (as anonymous) to tell the scopes needed.
	tctx, tspan := s.child(ctx, "pdp.token")
	tokErr, err := d.verify(tctx, req)
	endSpan(tspan, err)
	if err != nil {
		return d.finish(reqCtx, nil, err, nil)
	}
	if tokErr == nil && !d.ownsSession(req.SessionOwner) {
		return d.sessionHijack(reqCtx)
	}
	if d.claims != nil {
		in.Revoked = s.revokedFor(d.claims)
	}
	if why := headerMismatch(req, msg.Method, in); why != "" {
		return d.headerMismatch(reqCtx, why)
	}

	var result *decision.Result
	switch {
	case in.Class.Operation == decision.OpList && !isAbsent(req.Result):
		var f *listfilter.Filtered
		lctx, lspan := s.child(ctx, "pdp.list_filter")
		if valid {
			f, err = listfilter.FilterValid(lctx, s.engine, in, req.Result)
		} else {
			f, err = listfilter.Filter(lctx, s.engine, in, req.Result)
		}
		endSpan(lspan, err)
		if errors.Is(err, listfilter.ErrInvalidResult) {
			return nil, badRequest("invalid_result", "%v", err)
		}
		if err == nil {
			result = f.Decision
			d.filtered = f
			if in.Class.Kind == decision.KindTool {
				s.toolMetas[res.URI].remember(in.Items)
			}
		}
	default:
		// A single target, a lifecycle or other method, or the request
		// phase of a list (no result): the policy decides the request as
		// it is, a list without items.
		pctx, pspan := s.child(ctx, "pdp.policy")
		result, err = s.engine.Decide(pctx, in)
		if err == nil {
			result, err = d.withBudget(pctx, result)
		}
		endSpan(pspan, err)
	}
	return d.finish(reqCtx, result, err, tokErr)
}

// verify authenticates the caller from the Authorization value: it sets
// d.claims, d.caller and d.in.Token for a valid token and leaves them nil
// for an anonymous caller. A rejected token (or malformed header) is
// tokErr, answered with a 401 challenge; err is a failure that is not the
// caller's fault (the signing keys cannot be fetched), answered as
// unavailable (503).
func (d *pending) verify(ctx context.Context, req *pep.Request) (tokErr *token.Error, err error) {
	if v := d.verified; v != nil {
		// Verified by the enforcement point: its policy view, not memoized
		// (a new caller object per request).
		d.claims = v
		if d.in.Token, err = policyToken(v); err != nil {
			d.claims, d.in.Token = nil, nil
			return nil, fmt.Errorf("verified caller: %w", err)
		}
		d.caller = callerOf(v)
		return nil, nil
	}
	scheme, raw, err := token.ParseCredentials(req.Authorization)
	d.dpopUsed = scheme == token.SchemeDPoP || req.DPoP != ""
	if err == nil && scheme == token.SchemeDPoP && d.res.DPoP == nil {
		err = &token.Error{Code: token.CodeInvalidRequest, Description: "unsupported authorization scheme: DPoP is off for this resource (expected Bearer)"}
	}
	if err == nil && raw != "" {
		d.claims, err = d.res.Verifier.Verify(ctx, raw)
		if err == nil {
			err = d.checkDPoP(ctx, req, scheme, raw)
		}
		if err == nil {
			d.in.Token, d.caller, err = d.svc.tokens.get(d.claims)
		}
	}
	if err == nil {
		return nil, nil
	}
	d.claims, d.caller, d.in.Token = nil, nil, nil
	if raw != "" {
		d.refusedFP = token.Fingerprint(raw)
		if u, ok := token.ReadUnverified(raw); ok {
			d.refused = &auditsink.Unverified{Subject: u.Subject, ClientID: u.ClientID, Issuer: u.Issuer}
		}
	}
	if errors.Is(err, errDPoPUnavailable) {
		d.svc.log.Warn("DPoP replay cache unavailable", "resource", d.res.URI, "err", err)
		return nil, err
	}
	if errors.Is(err, token.ErrKeysUnavailable) || errors.Is(err, token.ErrIntrospectionUnavailable) {
		// Not the caller's fault: a 401 would send the client to
		// re-authorize for nothing. Deny as unavailable (503).
		d.svc.log.Warn("token validation unavailable", "resource", d.res.URI, "err", err)
		return nil, fmt.Errorf("token verification: %w", err)
	}
	if !errors.As(err, &tokErr) {
		tokErr = &token.Error{Code: "invalid_token", Description: "token verification failed"}
		d.svc.log.Warn("token verification error", "resource", d.res.URI, "err", err)
	}
	return tokErr, nil
}

// decideTransport decides a Streamable HTTP request without a JSON-RPC
// message (req.HTTPMethod): the caller is authenticated for the resource
// and the policy is not consulted, as there is no method to decide. The
// audit event records the method as "http/" + req.HTTPMethod.
func (s *Service) decideTransport(ctx context.Context, req *pep.Request, res *Resource, pepName string, start time.Time, verified *token.Claims) (*pep.Response, error) {
	switch req.HTTPMethod {
	case pep.HTTPMethodGet, pep.HTTPMethodDelete, pep.HTTPMethodPost:
	default:
		return nil, badRequest("invalid_request", "http_method must be %q, %q or %q, not %q", pep.HTTPMethodGet, pep.HTTPMethodDelete, pep.HTTPMethodPost, req.HTTPMethod)
	}
	if !isAbsent(req.Message) {
		return nil, badRequest("invalid_request", "http_method and message exclude each other: send http_method only for a %s or %s without a JSON-RPC message", pep.HTTPMethodGet, pep.HTTPMethodDelete)
	}
	in := decision.Input{Resource: res.URI, Method: "http/" + req.HTTPMethod, Class: decision.Method{Operation: decision.OpOther}}
	d := &pending{svc: s, res: res, in: &in, pepName: pepName, start: start, verified: verified}
	vctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tokErr, err := d.verify(vctx, req)
	if err != nil {
		return d.finish(ctx, nil, err, nil)
	}
	if tokErr == nil && !d.ownsSession(req.SessionOwner) {
		return d.sessionHijack(ctx)
	}
	if d.claims != nil {
		if r := s.revokedFor(d.claims); r != nil {
			// No policy for transport requests: the revocation refuses
			// the stream and the session as it would every call.
			refused := &decision.Result{Visible: true, Reason: revokedReason(r)}
			return d.finish(ctx, refused, nil, nil)
		}
	}
	// Anonymous or a valid token: allowed (an invalid token is tokErr).
	allowed := &decision.Result{Allow: true, Visible: true, Reason: "transport request: caller authenticated for the resource"}
	return d.finish(ctx, allowed, nil, tokErr)
}

// revokedFor returns the revocations that apply to the caller c, nil when
// none does (no allocation then).
func (s *Service) revokedFor(c *token.Claims) *decision.Revoked {
	m := s.revoked.Lookup(c.ClientID, c.Subject, c.Fingerprint)
	if !m.Any() {
		return nil
	}
	conv := func(e *revoke.Entry) *decision.Revocation {
		if e == nil {
			return nil
		}
		return &decision.Revocation{ID: e.ID, Reason: e.Reason, By: e.By, Created: e.Created, Expires: e.Expires}
	}
	return &decision.Revoked{Client: conv(m.Client), Subject: conv(m.Subject), Token: conv(m.Token)}
}

// revokedReason words a revocation as the default policy does.
func revokedReason(r *decision.Revoked) string {
	var why string
	var rev *decision.Revocation
	switch {
	case r.Token != nil:
		why, rev = "the token is revoked", r.Token
	case r.Subject != nil:
		why, rev = "the token's subject is revoked", r.Subject
	default:
		why, rev = "client "+r.Client.ID+" is revoked", r.Client
	}
	if rev.Reason != "" {
		why += ": " + rev.Reason
	}
	return why
}

// isAbsent reports whether an optional JSON member is missing or null.
func isAbsent(v json.RawMessage) bool {
	return len(v) == 0 || bytes.Equal(v, []byte("null"))
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "want a JSON object, not " + te.Value
		}
		return fmt.Sprintf("field %s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	return err.Error()
}

// jsonKind names a Go kind the way a JSON user would.
func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "struct", "map", "ptr":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	default:
		return "a number"
	}
}

// policyToken converts verified claims into the policy's view of the token.
func policyToken(c *token.Claims) (*decision.Token, error) {
	act := make([]decision.Actor, len(c.Act))
	for i, a := range c.Act {
		act[i] = decision.Actor{Subject: a.Subject, ClientID: a.ClientID}
	}
	return decision.NewToken(c.Subject, c.ClientID, c.Issuer, c.Grant, c.Scopes, act, c.Raw)
}

// pending carries one request through to its answer and audit event.
type pending struct {
	svc      *Service
	res      *Resource
	in       *decision.Input
	id       json.RawMessage
	pepName  string
	start    time.Time
	claims   *token.Claims
	caller   *pep.Caller
	args     json.RawMessage
	filtered *listfilter.Filtered
	// dpopUsed: the request presented the DPoP scheme or a proof;
	// dpopNonce is the nonce to send back (use_dpop_nonce).
	dpopUsed  bool
	dpopNonce string
	// verified is the caller the enforcement point verified
	// (DecideVerified); nil: verify req.Authorization.
	verified *token.Claims
	// retryOf is the denial the client says this request retries.
	retryOf string
	// refusedFP and refused tell who presented a token that was refused:
	// its fingerprint and what it claims, unverified (for the audit).
	refusedFP string
	refused   *auditsink.Unverified
	// rateKey counts an anonymous caller's limits (pep.Request.RateKey);
	// limit is the limit that refused the call, or the quota it was
	// allowed without counting, for the audit event.
	pepRateKey string
	limit      *auditsink.Limit
	tookQuota  bool      // applyLimits counted the call's quota
	tookShared bool      // and its rate in the shared counters
	tookAt     time.Time // when the quota was taken
	sharedAt   time.Time // when the shared rate was taken
}

func (d *pending) invalidParams(ctx context.Context, why string) (*pep.Response, error) {
	resp := &pep.Response{
		Allow:        false,
		HTTPStatus:   http.StatusOK,
		Reason:       "invalid params: " + why,
		JSONRPCError: &pep.JSONRPCError{Code: stepup.CodeInvalidParams, Message: "Invalid params: " + why},
	}
	return d.answer(ctx, resp, pep.OutcomeDeny, nil)
}

// ownsSession reports whether the verified caller (nil: anonymous) is the
// owner of the session the request arrived on (nil: no owner to match).
// A session belongs to a user (MCP security best practices bind it to the
// user): issuer and subject; the client may change, as clients register
// anew when they step up. A token without a subject (a client acting on
// its own) is matched by issuer and client.
func (d *pending) ownsSession(owner *pep.Caller) bool {
	if owner == nil {
		return true
	}
	c := d.caller
	if c == nil || c.Issuer != owner.Issuer || c.Subject != owner.Subject {
		return false
	}
	return owner.Subject != "" || c.ClientID == owner.ClientID
}

// sessionHijack refuses a request on another caller's MCP session: 403 and
// a JSON-RPC error, audited with the presenting caller's identity.
func (d *pending) sessionHijack(ctx context.Context) (*pep.Response, error) {
	resp := &pep.Response{
		HTTPStatus:   http.StatusForbidden,
		Reason:       "session hijack: the MCP session belongs to another caller",
		JSONRPCError: &pep.JSONRPCError{Code: stepup.CodeForbidden, Message: "this session belongs to another caller"},
	}
	return d.answer(ctx, resp, pep.OutcomeDeny, nil)
}

func (d *pending) finish(ctx context.Context, result *decision.Result, evalErr error, tokErr *token.Error) (*pep.Response, error) {
	resp := &pep.Response{RequiredScopes: []string{}, MissingScopes: []string{}}
	ref := stepup.Refusal{Method: d.in.Method, Target: d.in.Target, DPoP: d.dpopUsed}
	if result != nil {
		resp.PolicyRevision = result.Revision
		ref.Required = result.RequiredScopes
		if result.RequiredScopes != nil {
			resp.RequiredScopes = result.RequiredScopes
		}
		if result.MissingScopes != nil {
			resp.MissingScopes = result.MissingScopes
		}
		resp.Reason = result.Reason
	}
	if d.claims != nil {
		ref.Granted = d.claims.Scopes
	}
	switch {
	case evalErr != nil:
		ref.Kind = stepup.Unavailable
		resp.Reason = "decision failed: " + evalErr.Error()
		d.svc.log.Error("decision failed", "resource", d.res.URI, "method", d.in.Method, "target", d.in.Target, "err", evalErr)
	case tokErr != nil:
		// A malformed Authorization header (Basic scheme, two tokens, ...)
		// is answered like an invalid token: 401 invalid_token sends MCP
		// clients back to authorization; a 400 would leave them stuck.
		ref.Kind = stepup.InvalidToken
		ref.Description = tokErr.Description
		if tokErr.Code == dpop.CodeInvalidProof || tokErr.Code == dpop.CodeUseNonce {
			ref.DPoPError = tokErr.Code
			resp.DPoPNonce = d.dpopNonce
		}
		if result != nil && !result.Visible {
			ref.Required = nil // do not reveal what a hidden target needs
		}
		resp.RequiredScopes = ref.Required
		if resp.RequiredScopes == nil {
			resp.RequiredScopes = []string{}
		}
		resp.MissingScopes = resp.RequiredScopes
		resp.Reason = tokErr.Description
	case result.Allow:
		lctx, lspan := ctx, trace.Span(nil)
		if result.Rate != nil || result.Quota != nil {
			lctx, lspan = d.svc.child(ctx, "pdp.limits")
		}
		kind, lref, lev, lerr := d.applyLimits(lctx, result)
		endSpan(lspan, lerr)
		d.limit = lev
		ref.Kind = kind
		switch kind {
		case stepup.Limited:
			ref.RetryAfter, ref.Limit, ref.Quota = lref.RetryAfter, lref.Limit, lref.Quota
			resp.Reason = "over its limit: " + lref.Limit
			if lref.Quota {
				d.svc.quotaLimited.Add(1)
			} else {
				d.svc.rateLimited.Add(1)
			}
		case stepup.Unavailable:
			resp.Reason = "decision failed: " + lerr.Error()
			d.svc.log.Error("decision failed", "resource", d.res.URI, "method", d.in.Method, "target", d.in.Target, "err", lerr)
		}
	case !result.Visible:
		ref.Kind = stepup.Hidden
		resp.RequiredScopes, resp.MissingScopes = []string{}, []string{}
	case result.Forbidden:
		ref.Kind = stepup.Forbidden
		ref.Description = result.Reason
		ref.Remediation = result.Remediation
	case d.in.Token == nil:
		ref.Kind = stepup.NoToken
	case len(result.MissingScopes) > 0:
		ref.Kind = stepup.InsufficientScope
		ref.Required = result.RequiredScopes
		ref.Description = result.Reason
	default:
		ref.Kind = stepup.Forbidden
		ref.Description = result.Reason
		ref.Remediation = result.Remediation
	}
	if ref.Kind != stepup.Allowed {
		// The envelope of a structured denial names its decision.
		resp.DecisionID = d.svc.newID()
		ref.DecisionID = resp.DecisionID
	}
	ans := d.res.Challenge.Answer(ref)
	resp.Allow = ref.Kind == stepup.Allowed
	resp.HTTPStatus = ans.HTTPStatus
	resp.WWWAuthenticate = ans.WWWAuthenticate
	resp.JSONRPCError = ans.JSONRPCError
	resp.RetryAfter = ans.RetryAfter
	if d.in.Class.Kind == decision.KindTool && d.in.Class.Operation == decision.OpCall {
		resp.ToolResult = ans.ToolResult
	}
	var outcome string
	switch ref.Kind {
	case stepup.Allowed:
		outcome = pep.OutcomeAllow
		resp.Caller = d.caller
		if d.dpopUsed && d.res.DPoP != nil {
			// The nonce to use next (RFC 9449 §8.2), before this one expires.
			resp.DPoPNonce = d.res.DPoP.Nonce()
		}
		if d.filtered != nil {
			outcome = pep.OutcomeFiltered
			resp.Result = d.filtered.Result
		}
	case stepup.NoToken, stepup.InvalidToken, stepup.InvalidRequest, stepup.InsufficientScope:
		outcome = pep.OutcomeChallenge
	case stepup.Limited:
		outcome = pep.OutcomeLimited
	default:
		outcome = pep.OutcomeDeny
	}
	return d.answer(ctx, resp, outcome, result)
}

// answer assigns the decision id, records the audit event and, when the
// event cannot be made durable and the PDP is set to deny unaudited
// decisions, turns the answer into a deny.
func (d *pending) answer(ctx context.Context, resp *pep.Response, outcome string, result *decision.Result) (*pep.Response, error) {
	if resp.DecisionID == "" {
		resp.DecisionID = d.svc.newID()
	}
	if resp.Allow && d.tookQuota && result != nil && result.Quota != nil {
		resp.Refund = d.refundToken(resp.DecisionID, result.Quota)
	}
	resp.Outcome = outcome
	if resp.RequiredScopes == nil {
		resp.RequiredScopes = []string{}
	}
	if resp.MissingScopes == nil {
		resp.MissingScopes = []string{}
	}
	if d.svc.auditor == nil {
		return resp, nil
	}
	ev := d.event(resp)
	actx, aspan := d.svc.child(ctx, "pdp.audit")
	err := d.svc.auditor.Record(actx, ev)
	endSpan(aspan, err)
	*ev = auditsink.Event{} // Record keeps nothing of it
	d.svc.events.Put(ev)
	if err != nil {
		d.svc.log.Error("audit event not durable", "decision_id", resp.DecisionID, "err", err)
		if d.svc.denyUnaud && resp.Allow {
			d.giveBack(ctx, result)
			ans := d.res.Challenge.Answer(stepup.Refusal{Kind: stepup.Unavailable, Method: d.in.Method, Target: d.in.Target})
			*resp = pep.Response{
				DecisionID: resp.DecisionID, Outcome: pep.OutcomeDeny, HTTPStatus: ans.HTTPStatus,
				JSONRPCError: ans.JSONRPCError, RequiredScopes: []string{}, MissingScopes: []string{},
				Reason: "audit unavailable: decisions are denied until audit events can be recorded", PolicyRevision: resp.PolicyRevision,
			}
		}
	}
	return resp, nil
}

func (d *pending) event(resp *pep.Response) *auditsink.Event {
	ev := d.svc.events.Get().(*auditsink.Event)
	*ev = auditsink.Event{
		ID:             resp.DecisionID,
		Time:           d.start.UTC(),
		Schema:         auditsink.SchemaVersion,
		PEP:            d.pepName,
		Resource:       d.res.URI,
		ResourceKey:    d.res.Key,
		Method:         d.in.Method,
		Target:         d.in.Target,
		Outcome:        resp.Outcome,
		HTTPStatus:     resp.HTTPStatus,
		RequiredScopes: resp.RequiredScopes,
		MissingScopes:  resp.MissingScopes,
		Reason:         resp.Reason,
		PolicyRevision: resp.PolicyRevision,
		LatencyMicros:  time.Since(d.start).Microseconds(),
		JSONRPCID:      d.id,
	}
	if c := d.claims; c != nil {
		ev.Subject, ev.ClientID, ev.Grant, ev.Issuer = c.Subject, c.ClientID, c.Grant, c.Issuer
		ev.TokenFingerprint, ev.TokenValidation = c.Fingerprint, c.Validation
		for _, a := range c.Act {
			ev.Act = append(ev.Act, auditsink.Actor{Subject: a.Subject, ClientID: a.ClientID})
		}
	} else if d.refusedFP != "" {
		ev.TokenFingerprint, ev.Unverified = d.refusedFP, d.refused
	}
	if d.filtered != nil {
		ev.Visible, ev.Hidden = d.filtered.Visible, d.filtered.Hidden
	}
	ev.RetryOf = d.retryOf
	ev.Limit = d.limit
	if d.res.AuditArguments && d.args != nil {
		var args map[string]any
		if json.Unmarshal(d.args, &args) == nil {
			ev.Arguments = redact(args, d.res.Redact)
		}
	}
	return ev
}

// redact replaces the values of the named fields, at any depth.
func redact(v map[string]any, fields []string) map[string]any {
	for k, x := range v {
		if containsFold(fields, k) {
			v[k] = "[REDACTED]"
			continue
		}
		switch t := x.(type) {
		case map[string]any:
			redact(t, fields)
		case []any:
			for _, e := range t {
				if m, ok := e.(map[string]any); ok {
					redact(m, fields)
				}
			}
		}
	}
	return v
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
