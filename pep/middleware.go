package pep

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Decider decides one request of an MCP server: [*Client] over the PDP's
// HTTP API, or the PDP's core in-process.
type Decider interface {
	// Decide answers req. An error means no decision (the PDP could not
	// be reached, or refused the request as malformed): the caller fails
	// closed. A *RequestError says what the PDP refused.
	Decide(ctx context.Context, req *Request) (*Response, error)
}

// Defaults of Options.
const (
	// DefaultMaxBodyBytes bounds a client's request body.
	DefaultMaxBodyBytes = 4 << 20
	// DefaultMaxResponseBytes bounds what the middleware reads whole of
	// the handler's answer: the JSON answer to a request, one SSE event.
	DefaultMaxResponseBytes = 16 << 20
	// DefaultMaxSessions bounds the sessions whose owners are remembered.
	DefaultMaxSessions = 100_000
	// MaxBatch bounds the messages of one JSON-RPC batch: each is a
	// decision.
	MaxBatch = 100
)

// Options configure [Middleware].
type Options struct {
	// Decider decides every message (required).
	Decider Decider
	// Resource is the canonical URI of the protected MCP server
	// (required), byte-identical to a resource configured on the PDP.
	Resource string
	// MaxBodyBytes bounds a client's request body (default
	// DefaultMaxBodyBytes); a larger one is answered 413.
	MaxBodyBytes int64
	// MaxResponseBytes bounds what is read whole of the handler's answer
	// (default DefaultMaxResponseBytes): a larger list is refused, never
	// relayed unfiltered.
	MaxResponseBytes int64
	// AllowedOrigins are the browser origins that may call the server
	// ("*": any); the resource's own origin always may. A request with
	// another Origin header is refused with 403 (MCP transports: validate
	// Origin, against DNS rebinding).
	AllowedOrigins []string
	// MaxSessions bounds the remembered session owners (default
	// DefaultMaxSessions); the oldest is forgotten first.
	MaxSessions int
	// RateKey names an anonymous client for the PDP's rate limits and
	// quotas (Request.RateKey; a caller with a token is counted by its
	// token). nil: the host of the request's RemoteAddr. Behind a proxy
	// every client has the proxy's address: return the client address the
	// proxy forwards (only from a proxy you trust), or "" to let anonymous
	// callers share one budget.
	RateKey func(*http.Request) string
	// Logger receives the middleware's warnings (default: none).
	Logger *slog.Logger
}

type decisionKey struct{}

// decided is what Middleware puts in a handler's context: the decision and
// the Decider that made it (for RefundCall).
type decided struct {
	d   *Response
	dec Decider
}

// DecisionFrom returns the allowed decision of the request whose context
// ctx is, as [Middleware] put it there for the handler.
func DecisionFrom(ctx context.Context) (*Response, bool) {
	v, ok := ctx.Value(decisionKey{}).(*decided)
	if !ok {
		return nil, false
	}
	return v.d, true
}

// Refunder gives a call counted by a quota back to it (POST /v1/refund):
// [Client] and the in-process PDP of pep/local are Refunders.
type Refunder interface {
	// Refund gives back the call of the refund token (Response.Refund),
	// reason for the PDP's log; refunded is false when the same refund
	// was applied before.
	Refund(ctx context.Context, token, reason string) (refunded bool, err error)
}

// ErrNoRefunder is the error of RefundCall when the Middleware's Decider
// cannot refund (it is not a [Refunder]).
var ErrNoRefunder = errors.New("pep: the Decider cannot refund calls (not a pep.Refunder)")

// RefundCall gives the call of the request whose context ctx is back to
// its quota, for a tool handler whose call failed after the PDP allowed
// and counted it (the upstream errored, nothing was delivered): the
// Middleware's Decider refunds its decision's Response.Refund. It returns
// false with no error when there is nothing to give back (no quota
// counted the call, or it was refunded before), ErrNoRefunder when the
// Decider cannot refund, and the PDP's error otherwise (the counters out of
// reach, a *RequestError). Call it once the failure is known, within a
// minute of the decision (a refund asked again after that could count
// twice); reason goes to the PDP's log.
func RefundCall(ctx context.Context, reason string) (bool, error) {
	v, ok := ctx.Value(decisionKey{}).(*decided)
	if !ok || v.d.Refund == "" {
		return false, nil
	}
	r, ok := v.dec.(Refunder)
	if !ok {
		return false, ErrNoRefunder
	}
	return r.Refund(ctx, v.d.Refund, reason)
}

// CallerFrom returns the verified caller of the request whose context ctx
// is: nil for an anonymous caller or outside [Middleware].
func CallerFrom(ctx context.Context) *Caller {
	if d, ok := DecisionFrom(ctx); ok {
		return d.Caller
	}
	return nil
}

// middleware is the handler Middleware returns.
type middleware struct {
	o        Options
	next     http.Handler
	sessions *sessions
	origins  map[string]bool
	base     string // the resource's scheme://host, of the URLs DPoP proofs sign
	log      *slog.Logger
}

// Middleware protects next, the Streamable HTTP endpoint of an MCP server
// (every protocol revision from 2025-03-26 on). Before a message reaches
// next it is decided: a refusal is answered as the decision says (401/403
// with WWW-Authenticate and a JSON-RPC error body, an in-band JSON-RPC
// error, or a tool result) and next never sees it. What next answers to a
// list request (tools/list, prompts/list, resources/list,
// resources/templates/list) is filtered for the caller, in a JSON body or
// in the SSE event that carries it (every other event streams through),
// and marked cacheScope "private"; an answer that cannot be filtered is
// refused, never passed on unfiltered. GET and DELETE are authenticated.
// A session (Mcp-Session-Id) is bound to the user who opened it. JSON-RPC
// batches are decided message by message. The allowed decision, with its
// caller, is in the request context of next ([CallerFrom],
// [DecisionFrom]).
//
// Middleware panics when o has no Decider or no Resource.
func Middleware(next http.Handler, o Options) http.Handler {
	if o.Decider == nil || o.Resource == "" {
		panic("pep.Middleware: Options.Decider and Options.Resource are required")
	}
	o.MaxBodyBytes = cmp.Or(o.MaxBodyBytes, DefaultMaxBodyBytes)
	o.MaxResponseBytes = cmp.Or(o.MaxResponseBytes, DefaultMaxResponseBytes)
	o.MaxSessions = cmp.Or(o.MaxSessions, DefaultMaxSessions)
	m := &middleware{o: o, next: next, sessions: newSessions(o.MaxSessions), origins: map[string]bool{}, log: o.Logger}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if ru, err := url.Parse(o.Resource); err == nil && ru.Host != "" {
		m.base = ru.Scheme + "://" + ru.Host
		m.origins[m.base] = true
	}
	for _, origin := range o.AllowedOrigins {
		m.origins[strings.TrimSuffix(origin, "/")] = true
	}
	return m
}

// CORS: what a browser-based client may send and read.
const (
	corsAllowHeaders  = "Authorization, DPoP, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name"
	corsExposeHeaders = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate, DPoP-Nonce"
)

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !m.originAllowed(w, r) {
		return
	}
	if tp := r.Header.Get("Traceparent"); tp != "" {
		// The client's W3C trace context, for the PDP's decision spans.
		r = r.WithContext(withTraceContext(r.Context(), tp, r.Header.Get("Tracestate")))
	}
	switch r.Method {
	case http.MethodPost:
		m.post(w, r)
	case http.MethodGet, http.MethodDelete:
		m.transport(w, r)
	case http.MethodOptions:
		if r.Header.Get("Origin") == "" {
			w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
		WriteError(w, http.StatusMethodNotAllowed, nil, codeInvalidRequest, "method "+r.Method+" is not allowed on an MCP endpoint")
	}
}

// originAllowed refuses a browser request from an origin that is not
// allowed (403), and marks the answer to an allowed one readable by it.
func (m *middleware) originAllowed(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if !m.origins[origin] && !m.origins["*"] {
		m.log.Warn("pep: request from an origin that is not allowed", "origin", origin)
		WriteError(w, http.StatusForbidden, nil, codeInvalidRequest, "origin "+origin+" is not allowed to call this MCP server")
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	return true
}

// post decides one JSON-RPC message (or a batch) and hands it to next.
func (m *middleware) post(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, m.o.MaxBodyBytes)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			WriteError(w, http.StatusRequestEntityTooLarge, nil, codeInvalidRequest, fmt.Sprintf("the request body exceeds %d bytes", m.o.MaxBodyBytes))
			return
		}
		WriteError(w, http.StatusBadRequest, nil, codeParseError, "the request body could not be read")
		return
	}
	msg, err := parseMessage(body)
	if err != nil {
		WriteError(w, http.StatusBadRequest, nil, codeOf(err), err.Error())
		return
	}
	if msg.batch {
		m.postBatch(w, r, body)
		return
	}
	if why := headerMismatch(r.Header, msg); why != "" {
		m.refuseMismatch(w, r, msg, why)
		return
	}
	creds := m.credentials(r)
	resp, err := m.o.Decider.Decide(r.Context(), m.request(r, msg, creds))
	if err != nil {
		status, code, why := m.undecided(err)
		WriteError(w, status, msg.id, code, why)
		return
	}
	if !resp.Allow {
		writeDenial(w, msg.id, resp)
		return
	}
	if !m.sessionAllowed(w, r, msg.id, resp) {
		return
	}
	iw := m.intercept(w, r, resp)
	if msg.isRequest() {
		iw.owe(msg.id)
		if isList(msg.method) {
			iw.list = msg
			iw.creds = creds
			if sid := r.Header.Get(headerSessionID); sid != "" {
				m.sessions.rememberList(sid, &message{raw: bytes.Clone(msg.raw), id: bytes.Clone(msg.id), method: msg.method})
			}
		}
	}
	m.serve(iw, r, body, resp)
}

// refuseMismatch refuses a message whose Mcp-Method or Mcp-Name header
// contradicts its body. The PDP is asked with the headers, so that it
// refuses and audits the mismatch; its refusal is the answer. Should it
// not refuse (it failed, or it does not compare the headers), the
// mismatch is refused here all the same.
func (m *middleware) refuseMismatch(w http.ResponseWriter, r *http.Request, msg *message, why string) {
	req := m.request(r, msg, m.credentials(r))
	req.MCPMethod = strings.Join(r.Header.Values(headerMethod), ", ")
	req.MCPName = strings.Join(r.Header.Values(headerName), ", ")
	resp, err := m.o.Decider.Decide(r.Context(), req)
	if err == nil && !resp.Allow {
		writeDenial(w, msg.id, resp)
		return
	}
	m.log.Warn("pep: header mismatch refused", "why", why, "pdp_err", err)
	WriteError(w, http.StatusBadRequest, msg.id, codeHeaderMismatch, why)
}

// readBody reads a request body of at most limit bytes, in one
// allocation when its length is declared (then exactly that many bytes are
// read: what is decided is what next reads).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= limit {
		b := make([]byte, n)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

// bodyReader is the body next reads: the bytes decided.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

// request is the decision request for msg: the message itself, or, for a
// client's answer to a server request, the caller only.
func (m *middleware) request(r *http.Request, msg *message, c credentials) *Request {
	owner := m.sessions.ownerCaller(r.Header.Get(headerSessionID))
	if !msg.isRequest() && !msg.isNotification() {
		return &Request{Resource: m.o.Resource, Authorization: c.authorization, DPoP: c.dpop, HTTP: c.http, HTTPMethod: HTTPMethodPost, SessionOwner: owner, RateKey: c.rateKey}
	}
	return &Request{Resource: m.o.Resource, Authorization: c.authorization, DPoP: c.dpop, HTTP: c.http, Message: msg.raw, SessionOwner: owner, RateKey: c.rateKey}
}

// credentials are what a request presents to the PDP: its Authorization
// and, with a DPoP proof, the proof and the HTTP request it signs.
type credentials struct {
	authorization, dpop string
	http                *HTTPRequest
	rateKey             string
}

// credentials reads r's credentials. A DPoP proof comes with r's method,
// its URL as the client addressed it (the resource's scheme and host, the
// request's path: a proxy in front changes neither for the client) and a
// random id shared by the decisions of r, which may all present the one
// proof. Several DPoP headers are joined (and so refused).
func (m *middleware) credentials(r *http.Request) credentials {
	c := credentials{authorization: authorization(r.Header)}
	if c.authorization == "" {
		c.rateKey = m.rateKey(r)
	}
	if v := r.Header.Values("DPoP"); len(v) > 0 {
		c.dpop = strings.Join(v, ", ")
		c.http = &HTTPRequest{Method: r.Method, URL: m.base + r.URL.EscapedPath(), ID: rand.Text()}
	}
	return c
}

// rateKey is Request.RateKey for an anonymous r (Options.RateKey), cut to
// the 256 bytes the PDP takes.
func (m *middleware) rateKey(r *http.Request) string {
	var k string
	if m.o.RateKey != nil {
		k = m.o.RateKey(r)
	} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		k = host
	} else {
		k = r.RemoteAddr
	}
	if len(k) > 256 {
		k = k[:256]
	}
	return k
}

// serve runs next with the allowed decision in its context and the body
// it is to read, then completes the answer.
func (m *middleware) serve(iw *interceptor, r *http.Request, body []byte, d *Response) {
	if d.DPoPNonce != "" {
		iw.Header().Set("DPoP-Nonce", d.DPoPNonce) // the nonce to use next (RFC 9449 §8.2)
	}
	iw.ctxVal = decided{d: d, dec: m.o.Decider}
	r2 := r.WithContext(context.WithValue(r.Context(), decisionKey{}, &iw.ctxVal))
	if body != nil {
		b := &bodyReader{}
		b.Reset(body)
		r2.Body, r2.ContentLength = b, int64(len(body))
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				m.log.Error("pep: the MCP handler panicked", "panic", p)
				iw.handlerFailed = true
			}
		}()
		m.next.ServeHTTP(iw, r2)
	}()
	iw.finish()
}

// transport authenticates a GET or DELETE and hands it to next.
func (m *middleware) transport(w http.ResponseWriter, r *http.Request) {
	creds := m.credentials(r)
	resp, err := m.o.Decider.Decide(r.Context(), &Request{
		Resource: m.o.Resource, Authorization: creds.authorization, DPoP: creds.dpop, HTTP: creds.http, HTTPMethod: r.Method,
		SessionOwner: m.sessions.ownerCaller(r.Header.Get(headerSessionID)),
	})
	if err != nil {
		status, code, why := m.undecided(err)
		WriteError(w, status, nil, code, why)
		return
	}
	if !resp.Allow {
		writeDenial(w, nil, resp)
		return
	}
	if !m.sessionAllowed(w, r, nil, resp) {
		return
	}
	iw := m.intercept(w, r, resp)
	if r.Method == http.MethodGet {
		// The server's stream: what it replays of earlier answers (after
		// Last-Event-ID) is held to the session's list requests.
		iw.replay, iw.creds = r.Header.Get(headerSessionID), creds
	}
	m.serve(iw, r, nil, resp)
}

// authorization is the request's Authorization header as the PDP is to see
// it. Several headers are joined with ", " (RFC 9110 §5.3), never one of
// them picked: the PDP refuses the result (a comma is not a token
// character) with 400 invalid_request, so a request whose credentials are
// ambiguous is refused, and audited, rather than decided on one of them.
func authorization(h http.Header) string {
	v := h["Authorization"]
	switch len(v) {
	case 0:
		return ""
	case 1:
		return v[0]
	}
	return strings.Join(v, ", ")
}

// undecided is the answer to a message the PDP could not decide: 400 with
// the reason for a malformed message (the client's fault), 429 when the
// PDP rate-limits, 503 for everything else (no decision could be had:
// fail closed, without the PDP's reason, which may describe its set-up).
func (m *middleware) undecided(err error) (status, code int, why string) {
	var re *RequestError
	if errors.As(err, &re) {
		switch {
		case re.Code == "invalid_message":
			return http.StatusBadRequest, codeInvalidRequest, re.Description
		case re.Status == http.StatusTooManyRequests:
			return http.StatusTooManyRequests, codeInternalError, "too many requests; retry later"
		}
	}
	m.log.Error("pep: no decision", "err", err)
	return http.StatusServiceUnavailable, codeInternalError, "authorization unavailable"
}

// sessionAllowed refuses a request on another caller's session (403).
func (m *middleware) sessionAllowed(w http.ResponseWriter, r *http.Request, id json.RawMessage, d *Response) bool {
	sid := r.Header.Get(headerSessionID)
	if sid == "" || m.sessions.check(sid, newOwner(d.Caller)) {
		return true
	}
	m.log.Warn("pep: request on another caller's session refused", "decision_id", d.DecisionID)
	WriteError(w, http.StatusForbidden, id, codeForbidden, "this session belongs to another caller")
	return false
}
