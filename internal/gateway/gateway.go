// Package gateway is mcp-pdp as an MCP reverse proxy: it serves one
// protected resource's Streamable HTTP endpoint in front of an unmodified
// MCP server (the upstream), decides every JSON-RPC message in-process
// with the decision core before anything reaches the upstream, filters
// list answers (JSON or SSE) per caller, answers denials itself as the
// decision says, and never forwards the client's token.
//
// What one POST goes through:
//
//  1. the body is read (bounded) and checked to be one JSON-RPC message;
//  2. the message is decided (a list request in its request phase: may this
//     caller list at all?); a denial is answered at once: 401/403 with
//     WWW-Authenticate and a JSON-RPC error body, or an in-band error or
//     tool result;
//  3. the session, when the request names one, must belong to the caller
//     that opened it;
//  4. the request goes upstream without Authorization (an identity
//     assertion header instead, when configured);
//  5. the answer is relayed: JSON as it is, SSE event by event as it
//     arrives; the answer to a list request is filtered through the core
//     (its response phase) before it is relayed. An answer that cannot be
//     filtered (too large, malformed) is refused, never relayed unfiltered.
//
// GET (the server's SSE stream) and DELETE (end of session) are
// authenticated as transport requests and relayed.
package gateway

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/pep"
)

// Defaults of Options.
const (
	// DefaultMaxBodyBytes bounds a client's request body.
	DefaultMaxBodyBytes = 4 << 20
	// DefaultMaxResponseBytes bounds an upstream answer the gateway must
	// read whole (a list to filter, a JSON answer, one SSE event).
	DefaultMaxResponseBytes = 16 << 20
	// DefaultConnectTimeout bounds connecting to the upstream.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultResponseTimeout bounds the wait for the upstream's answer
	// headers (a tool call may take this long to start answering).
	DefaultResponseTimeout = 5 * time.Minute
	// DefaultIdleStreamTimeout ends an SSE stream from the upstream that
	// sent nothing for this long.
	DefaultIdleStreamTimeout = 10 * time.Minute
	// DefaultMaxSessions bounds the sessions whose owners the gateway
	// remembers; the oldest is forgotten first.
	DefaultMaxSessions = 100_000
	// DefaultMaxConcurrent bounds the POSTs in progress (open GET streams
	// are not counted).
	DefaultMaxConcurrent = 1024
)

// Decider decides one message in-process; *core.Service is one.
type Decider interface {
	// DecideValid decides req, whose Message and Result are valid JSON.
	DecideValid(ctx context.Context, req *pep.Request, pepName string) (*pep.Response, error)
}

// Asserter makes the identity assertion that tells the upstream who calls.
type Asserter interface {
	// Assert returns the header value for an allowed request of caller
	// (nil: anonymous) decided as decisionID.
	Assert(caller *pep.Caller, decisionID string) (string, error)
}

// Options configure a Gateway for one resource.
type Options struct {
	// Decider decides every message (required).
	Decider Decider
	// Resource is the canonical URI of the protected resource (required);
	// every decision is for it.
	Resource string
	// Upstream is the Streamable HTTP endpoint of the MCP server; exactly
	// one of Upstream and Stdio is required.
	Upstream *url.URL
	// Stdio runs the MCP server as child processes instead (its
	// OnMessage is the gateway's own).
	Stdio *stdio.Options
	// Transport reaches the upstream (default: a transport with
	// ConnectTimeout and ResponseTimeout, HTTP/1.1 and h2).
	Transport http.RoundTripper
	// ForwardToken sends the client's Authorization header upstream. Off
	// by default: MCP's security best practices forbid token passthrough.
	ForwardToken bool
	// Asserter, when set, adds an identity assertion (AssertionHeader) to
	// every request forwarded upstream.
	Asserter Asserter
	// AssertionHeader names the assertion's header (required with Asserter).
	AssertionHeader string
	// MaxBodyBytes bounds a client request body (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxResponseBytes bounds what is read whole from the upstream (default
	// DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// ConnectTimeout (default DefaultConnectTimeout) and ResponseTimeout
	// (default DefaultResponseTimeout) shape the default Transport.
	ConnectTimeout, ResponseTimeout time.Duration
	// IdleStreamTimeout (default DefaultIdleStreamTimeout) ends an upstream
	// SSE stream that sends nothing for this long.
	IdleStreamTimeout time.Duration
	// MaxSessions bounds the remembered session owners (default
	// DefaultMaxSessions).
	MaxSessions int
	// MaxConcurrent bounds the POSTs in progress (default
	// DefaultMaxConcurrent); beyond it a POST is answered 503 with
	// Retry-After at once, without a decision.
	MaxConcurrent int
	// AllowedOrigins are the browser origins that may call the endpoint
	// ("*": any); the resource's own origin always may. A request with
	// another Origin is refused with 403 (MCP transports: validate Origin,
	// against DNS rebinding); requests without Origin are not browsers'.
	AllowedOrigins []string
	// Logger (default: discard).
	Logger *slog.Logger
}

// Gateway is the http.Handler of one resource's MCP endpoint.
type Gateway struct {
	o        Options
	slots    chan struct{} // POSTs in progress
	client   *http.Client
	stdio    *stdioFront // nil for an HTTP upstream
	sessions *sessions
	origins  map[string]bool // allowed Origin values; "*" for any
	log      *slog.Logger
}

// pepName names the gateway as the enforcement point in audit events.
const pepName = "gateway"

// New checks o and returns the gateway.
func New(o Options) (*Gateway, error) {
	switch {
	case o.Decider == nil:
		return nil, errors.New("gateway: no decider")
	case o.Resource == "":
		return nil, errors.New("gateway: no resource")
	case (o.Upstream == nil) == (o.Stdio == nil):
		return nil, errors.New("gateway: give an upstream URL or a stdio command, not both or neither")
	case o.Upstream != nil && ((o.Upstream.Scheme != "http" && o.Upstream.Scheme != "https") || o.Upstream.Host == ""):
		return nil, fmt.Errorf("gateway: upstream.url %v is not an http(s) URL", o.Upstream)
	case o.Asserter != nil && o.AssertionHeader == "":
		return nil, errors.New("gateway: an asserter needs a header name")
	}
	o.MaxBodyBytes = cmp.Or(o.MaxBodyBytes, DefaultMaxBodyBytes)
	o.MaxResponseBytes = cmp.Or(o.MaxResponseBytes, DefaultMaxResponseBytes)
	o.ConnectTimeout = cmp.Or(o.ConnectTimeout, DefaultConnectTimeout)
	o.ResponseTimeout = cmp.Or(o.ResponseTimeout, DefaultResponseTimeout)
	o.IdleStreamTimeout = cmp.Or(o.IdleStreamTimeout, DefaultIdleStreamTimeout)
	o.MaxSessions = cmp.Or(o.MaxSessions, DefaultMaxSessions)
	o.MaxConcurrent = cmp.Or(o.MaxConcurrent, DefaultMaxConcurrent)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Transport == nil {
		o.Transport = &http.Transport{
			Proxy:                 nil, // the upstream is named; no environment proxy
			DialContext:           (&net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   o.ConnectTimeout,
			ResponseHeaderTimeout: o.ResponseTimeout,
		}
	}
	g := &Gateway{
		o:     o,
		slots: make(chan struct{}, o.MaxConcurrent),
		client: &http.Client{
			Transport: o.Transport,
			// The upstream answers itself; a redirect is an upstream error.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		sessions: newSessions(o.MaxSessions),
		origins:  map[string]bool{},
		log:      o.Logger,
	}
	if ru, err := url.Parse(o.Resource); err == nil && ru.Host != "" {
		g.origins[ru.Scheme+"://"+ru.Host] = true
	}
	for _, origin := range o.AllowedOrigins {
		g.origins[strings.TrimSuffix(origin, "/")] = true
	}
	if o.Stdio != nil {
		so := *o.Stdio
		if so.Logger == nil {
			so.Logger = o.Logger
		}
		f, err := newStdioFront(so)
		if err != nil {
			return nil, err
		}
		g.stdio = f
		g.sessions.issued = true
	}
	return g, nil
}

// ServeHTTP serves the MCP endpoint: POST, GET and DELETE, and CORS
// preflights (OPTIONS) from allowed origins.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.originAllowed(w, r) {
		return
	}
	switch r.Method {
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
	case http.MethodPost:
		select {
		case g.slots <- struct{}{}:
			defer func() { <-g.slots }()
		default:
			w.Header().Set("Retry-After", "1")
			writeRPCError(w, http.StatusServiceUnavailable, nil, codeInternalError, "the gateway is overloaded; retry shortly")
			return
		}
		g.post(w, r)
	case http.MethodGet, http.MethodDelete:
		g.transport(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
		writeRPCError(w, http.StatusMethodNotAllowed, nil, codeInvalidRequest, "method "+r.Method+" is not allowed on an MCP endpoint")
	}
}

// CORS: what a browser-based client may send and read.
const (
	corsAllowHeaders  = "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name"
	corsExposeHeaders = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate"
)

// originAllowed refuses a browser request from an origin that is not
// allowed (403), and marks the answer to an allowed one readable by it.
func (g *Gateway) originAllowed(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if !g.origins[origin] && !g.origins["*"] {
		g.log.Warn("gateway: request from an origin that is not allowed", "origin", origin)
		writeRPCError(w, http.StatusForbidden, nil, codeInvalidRequest, "origin "+origin+" is not allowed to call this MCP server (gateway.allowed_origins)")
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	return true
}

// post decides one JSON-RPC message and relays it.
func (g *Gateway) post(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.o.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeRPCError(w, http.StatusRequestEntityTooLarge, nil, codeInvalidRequest, fmt.Sprintf("the request body exceeds %d bytes", g.o.MaxBodyBytes))
			return
		}
		writeRPCError(w, http.StatusBadRequest, nil, codeParseError, "the request body could not be read")
		return
	}
	msg, err := parseMessage(body)
	if err != nil {
		writeRPCError(w, http.StatusBadRequest, nil, codeOf(err), err.Error())
		return
	}
	if msg.Batch {
		g.postBatch(w, r, body)
		return
	}
	if why := headerMismatch(r.Header, msg); why != "" {
		g.log.Warn("gateway: header mismatch refused", "why", why)
		writeRPCError(w, http.StatusBadRequest, msg.ID, codeHeaderMismatch, why)
		return
	}
	owner := g.sessions.ownerCaller(r.Header.Get(headerSessionID))
	preq := &pep.Request{Resource: g.o.Resource, Authorization: r.Header.Get("Authorization"), Message: body, SessionOwner: owner}
	if !msg.IsRequest() && !msg.IsNotification() {
		// A client's answer to a server request: the caller is
		// authenticated like a transport request.
		preq = &pep.Request{Resource: g.o.Resource, Authorization: preq.Authorization, HTTPMethod: http.MethodPost, SessionOwner: owner}
	}
	resp, err := g.o.Decider.DecideValid(r.Context(), preq, pepName)
	if err != nil {
		g.refuseUndecided(w, msg.ID, err)
		return
	}
	if !resp.Allow {
		writeDenial(w, msg.ID, resp)
		return
	}
	if !g.sessionAllowed(w, r, msg.ID, resp) {
		return
	}
	if g.stdio != nil {
		g.postStdio(w, r, msg, preq.Authorization, resp)
		return
	}
	up, err := g.forward(r, body, resp)
	if err != nil {
		g.upstreamFailed(w, msg.ID, err)
		return
	}
	defer up.Body.Close()
	g.bindSession(up, resp)
	if up.StatusCode >= 300 {
		g.relayFailure(w, up, msg.ID)
		return
	}
	if msg.IsRequest() && isList(msg.Method) {
		g.relayList(w, r, up, msg, preq.Authorization)
		return
	}
	var id json.RawMessage
	if msg.IsRequest() {
		id = msg.ID
	}
	g.relay(w, up, id)
}

// transport authenticates a GET or DELETE and relays it.
func (g *Gateway) transport(w http.ResponseWriter, r *http.Request) {
	resp, err := g.o.Decider.DecideValid(r.Context(), &pep.Request{
		Resource: g.o.Resource, Authorization: r.Header.Get("Authorization"), HTTPMethod: r.Method,
		SessionOwner: g.sessions.ownerCaller(r.Header.Get(headerSessionID)),
	}, pepName)
	if err != nil {
		g.refuseUndecided(w, nil, err)
		return
	}
	if !resp.Allow {
		writeDenial(w, nil, resp)
		return
	}
	if !g.sessionAllowed(w, r, nil, resp) {
		return
	}
	if g.stdio != nil {
		g.transportStdio(w, r)
		return
	}
	up, err := g.forward(r, nil, resp)
	if err != nil {
		g.upstreamFailed(w, nil, err)
		return
	}
	defer up.Body.Close()
	if r.Method == http.MethodDelete && up.StatusCode/100 == 2 {
		g.sessions.forget(r.Header.Get(headerSessionID))
	}
	g.relay(w, up, nil)
}

// Headers of Streamable HTTP that cross the gateway in each direction.
const (
	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "Mcp-Protocol-Version"
)

var requestHeaders = []string{
	"Content-Type", "Accept", headerSessionID, headerProtocolVersion, "Last-Event-Id",
	"Mcp-Method", "Mcp-Name", "User-Agent",
}

var responseHeaders = []string{
	"Content-Type", headerSessionID, headerProtocolVersion, "Cache-Control", "Retry-After",
	"Www-Authenticate", // an upstream with its own authorization
}

// forward sends the request upstream: the allow-listed headers, no
// Authorization unless ForwardToken, the identity assertion when set.
func (g *Gateway) forward(r *http.Request, body []byte, resp *pep.Response) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, g.o.Upstream.String(), rd)
	if err != nil {
		return nil, err
	}
	for _, h := range requestHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	if g.o.ForwardToken {
		if v := r.Header.Get("Authorization"); v != "" {
			req.Header.Set("Authorization", v)
		}
	}
	if g.o.Asserter != nil {
		a, err := g.o.Asserter.Assert(resp.Caller, resp.DecisionID)
		if err != nil {
			return nil, fmt.Errorf("identity assertion: %w", err)
		}
		req.Header.Set(g.o.AssertionHeader, a)
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		req.Header.Set("X-Forwarded-For", host)
	}
	return g.client.Do(req)
}

func copyResponseHeaders(w http.ResponseWriter, up *http.Response) {
	for _, h := range responseHeaders {
		if v := up.Header.Values(h); len(v) > 0 {
			w.Header()[h] = v
		}
	}
}

// relayFailure answers an upstream refusal (HTTP 3xx-5xx) with its status:
// its body when that is a JSON-RPC error, else a JSON-RPC error saying
// what happened. Nothing else of it is relayed (it could carry a list).
func (g *Gateway) relayFailure(w http.ResponseWriter, up *http.Response, id json.RawMessage) {
	raw, err := readBounded(up.Body, 64<<10)
	if err == nil {
		if m, perr := parseMessage(raw); perr == nil && m.IsResponse() && m.Error != nil && m.Result == nil {
			copyResponseHeaders(w, up)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Del("Content-Length")
			w.WriteHeader(up.StatusCode)
			_, _ = w.Write(raw)
			return
		}
	}
	for _, h := range []string{headerSessionID, "Retry-After", "Www-Authenticate"} {
		if v := up.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	writeRPCError(w, up.StatusCode, id, codeInternalError, fmt.Sprintf("the MCP server answered HTTP %d", up.StatusCode))
}

// relay copies an upstream answer: an SSE stream as it arrives, event by
// event; the JSON answer to a request (id set) read whole, bounded by
// MaxResponseBytes, so that a cut or oversized answer becomes a JSON-RPC
// error rather than a truncated body; anything else as it arrives.
func (g *Gateway) relay(w http.ResponseWriter, up *http.Response, id json.RawMessage) {
	if isSSE(up.Header) {
		copyResponseHeaders(w, up)
		w.WriteHeader(up.StatusCode)
		var due *owed
		if id != nil {
			due = newOwed(id)
		}
		g.copyStream(w, up.Body, due, nil)
		return
	}
	if id != nil {
		raw, err := readBounded(up.Body, g.o.MaxResponseBytes)
		if err != nil {
			writeRPCError(w, http.StatusBadGateway, id, codeInternalError, "the MCP server's answer "+err.Error()+"; it was not relayed")
			return
		}
		copyResponseHeaders(w, up)
		w.WriteHeader(up.StatusCode)
		_, _ = w.Write(raw)
		return
	}
	copyResponseHeaders(w, up)
	w.WriteHeader(up.StatusCode)
	if _, err := io.Copy(w, up.Body); err != nil {
		g.log.Debug("gateway: relay ended early", "err", err)
	}
}

// relayList relays the answer to a list request with the list filtered:
// a JSON answer read whole (bounded), or the one SSE event that carries
// the response to this request's id; every other event passes untouched.
func (g *Gateway) relayList(w http.ResponseWriter, r *http.Request, up *http.Response, msg *message, authz string) {
	filter := func(event []byte) ([]byte, error) {
		return g.filterList(r.Context(), msg, event, authz)
	}
	if isSSE(up.Header) {
		copyResponseHeaders(w, up)
		w.WriteHeader(up.StatusCode)
		due := newOwed(msg.ID)
		g.copyStream(w, up.Body, due, func(data []byte) ([]byte, bool, error) {
			if len(bytes.TrimSpace(data)) == 0 {
				// A priming event (an id to resume from, no message):
				// servers send one at the start of a stream (2025-11-25).
				return data, false, nil
			}
			m, err := parseMessage(data)
			if err != nil || m.Batch {
				// It could be the list answer: nothing unfiltered passes.
				return nil, false, fmt.Errorf("the upstream sent an event that is not one JSON-RPC message during %s; the stream was cut", msg.Method)
			}
			if m.Method != "" {
				return data, false, nil // the server's own request or notification
			}
			if !bytes.Equal(m.ID, msg.ID) {
				// A response in a list stream is the list's, whatever its id
				// says (3.0, "3"): refuse rather than relay it unfiltered.
				return nil, false, fmt.Errorf("the upstream answered %s with another id; the stream was cut", msg.Method)
			}
			out, err := filter(data)
			if err == nil {
				due.answer(msg.ID)
			}
			return out, true, err
		})
		return
	}
	raw, err := readBounded(up.Body, g.o.MaxResponseBytes)
	if err != nil {
		writeRPCError(w, http.StatusBadGateway, msg.ID, codeInternalError, "the upstream's "+msg.Method+" answer "+err.Error()+"; it was not relayed")
		return
	}
	out, err := filter(raw)
	if err != nil {
		writeRPCError(w, http.StatusBadGateway, msg.ID, codeInternalError, err.Error())
		return
	}
	copyResponseHeaders(w, up)
	w.Header().Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// filterList returns the JSON-RPC response raw with its list result
// filtered for the caller (the response phase of the list decision). An
// error response passes unchanged; anything that is not a response to
// msg is an error, so that nothing unfiltered is relayed.
func (g *Gateway) filterList(ctx context.Context, msg *message, raw []byte, authz string) ([]byte, error) {
	m, err := parseMessage(raw)
	if err != nil || !m.IsResponse() {
		return nil, fmt.Errorf("the upstream's %s answer is not a JSON-RPC response; it was not relayed", msg.Method)
	}
	if !bytes.Equal(m.ID, msg.ID) {
		return nil, fmt.Errorf("the upstream answered %s with another request's id; it was not relayed", msg.Method)
	}
	if m.Error != nil {
		return raw, nil
	}
	resp, err := g.o.Decider.DecideValid(ctx, &pep.Request{
		Resource: g.o.Resource, Authorization: authz, Message: msg.Raw, Result: m.Result,
	}, pepName)
	if err != nil {
		return nil, fmt.Errorf("the upstream's %s answer could not be filtered: %v; it was not relayed", msg.Method, err)
	}
	if !resp.Allow {
		// Refused at the response phase (e.g. the token expired in
		// between): answer in band with the denial's JSON-RPC error.
		e := resp.JSONRPCError
		if e == nil {
			e = &pep.JSONRPCError{Code: codeInternalError, Message: resp.Reason}
		}
		return json.Marshal(rpcErrorResponse{JSONRPC: "2.0", ID: msg.ID, Error: e})
	}
	result, err := privateCache(resp.Result)
	if err != nil {
		return nil, fmt.Errorf("the filtered %s result: %v; it was not relayed", msg.Method, err)
	}
	// The id (compacted by parseMessage) and the result (the core's, valid
	// JSON) are spliced into the envelope: no second encoding pass.
	out := make([]byte, 0, len(result)+len(msg.ID)+32)
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, msg.ID...)
	out = append(out, `,"result":`...)
	out = append(out, result...)
	return append(out, '}'), nil
}

// privateCache marks a filtered list result cacheScope "private" (MCP
// 2026-07-28): it varies per caller, whatever the upstream said, and no
// cache may share it across authorization contexts.
func privateCache(result json.RawMessage) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(result)
	if len(trimmed) < 2 || trimmed[0] != '{' {
		return nil, errors.New("the list result is not a JSON object")
	}
	if !bytes.Contains(trimmed, []byte(`"cacheScope"`)) {
		// The common case: no cacheScope yet; put it first.
		out := make([]byte, 0, len(trimmed)+24)
		out = append(out, `{"cacheScope":"private"`...)
		if rest := bytes.TrimSpace(trimmed[1:]); len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, trimmed[1:]...), nil
	}
	// The upstream set one (or the text occurs in a string): replace it.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return nil, err
	}
	fields["cacheScope"] = json.RawMessage(`"private"`)
	return json.Marshal(fields)
}

// owed are the requests a stream from the upstream must answer: the
// request of a POST, or a batch's forwarded requests; nil for a GET
// stream, which answers none.
type owed struct {
	ids  []json.RawMessage
	done []bool
	left int
}

func newOwed(ids ...json.RawMessage) *owed {
	return &owed{ids: ids, done: make([]bool, len(ids)), left: len(ids)}
}

// answer marks the request id answered; it reports whether id was owed
// and not answered before.
func (o *owed) answer(id json.RawMessage) bool {
	for i, x := range o.ids {
		if !o.done[i] && bytes.Equal(x, id) {
			o.done[i] = true
			o.left--
			return true
		}
	}
	return false
}

// index is the position of id among the owed requests, answered or not;
// -1 when it is not one of them.
func (o *owed) index(id json.RawMessage) int {
	for i, x := range o.ids {
		if bytes.Equal(x, id) {
			return i
		}
	}
	return -1
}

// copyStream relays an SSE stream event by event, flushing after each.
// transform, when set, may rewrite an event's data (joined data lines) and
// reports whether it did (rewritten to nil: the event is dropped); it
// marks in due the requests the event answers.
// Without transform, copyStream marks them itself. A transform error ends
// the stream with an SSE event carrying a JSON-RPC error for each request
// still owed, so that nothing unfiltered leaks and the client's requests
// fail at once. A stream that ends before it answered every owed request
// (the upstream closes it, the connection breaks, it stays silent for
// IdleStreamTimeout, or it sends an event over MaxResponseBytes) is ended
// by the gateway with such error events too, never left for the client to
// wait on.
func (g *Gateway) copyStream(w http.ResponseWriter, body io.Reader, due *owed, transform func(data []byte) ([]byte, bool, error)) {
	rc := http.NewResponseController(w)
	flush := func() { _ = rc.Flush() }
	fail := func(why string) {
		if due == nil {
			return
		}
		for i, id := range due.ids {
			if !due.done[i] {
				_, _ = w.Write(errorEvent(id, errors.New(why)))
			}
		}
		flush()
	}
	flush() // the head now: a stream may stay silent for long
	sr := newEventReader(body, g.o.MaxResponseBytes)
	var silent atomic.Bool
	idle := time.AfterFunc(g.o.IdleStreamTimeout, func() {
		silent.Store(true)
		if c, ok := body.(io.Closer); ok {
			_ = c.Close()
		}
	})
	defer idle.Stop()
	for {
		ev, err := sr.next()
		idle.Reset(g.o.IdleStreamTimeout)
		if ev != nil {
			out := ev.raw
			if transform != nil && ev.bareCR() {
				fail("the upstream framed its stream with bare CR line endings, which the gateway does not read; the stream was cut")
				return
			}
			if ev.hasData {
				switch {
				case transform != nil:
					data, rewritten, terr := transform(ev.data)
					if terr != nil {
						fail(terr.Error())
						return
					}
					switch {
					case rewritten && data == nil:
						out = nil // dropped
					case rewritten:
						out = ev.withData(data)
					}
				case due != nil && due.left > 0:
					markAnswers(ev.data, due)
				}
			}
			if out != nil {
				if _, werr := w.Write(out); werr != nil {
					return // the client went away
				}
				flush()
			}
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, io.EOF) {
			g.log.Debug("gateway: upstream stream ended", "err", err)
		}
		if due == nil || due.left == 0 {
			return
		}
		switch {
		case errors.Is(err, errEventTooLarge):
			fail(fmt.Sprintf("the upstream sent an event over %d bytes; the stream was cut", g.o.MaxResponseBytes))
		case silent.Load():
			fail(fmt.Sprintf("the MCP server sent nothing for %v before answering; the stream was cut", g.o.IdleStreamTimeout))
		case errors.Is(err, io.EOF):
			fail("the MCP server ended its stream without answering the request")
		default:
			fail("the MCP server's stream broke before it answered the request")
		}
		return
	}
}

// markAnswers marks the owed requests that data (a JSON-RPC message or a
// batch of them) answers.
func markAnswers(data []byte, due *owed) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		var elems []json.RawMessage
		if json.Unmarshal(t, &elems) == nil {
			for _, e := range elems {
				markAnswers(e, due)
			}
		}
		return
	}
	if m, err := parseMessage(data); err == nil && m.IsResponse() {
		due.answer(m.ID)
	}
}

// errorEvent is an SSE event carrying a JSON-RPC error for the request id.
func errorEvent(id json.RawMessage, err error) []byte {
	b, _ := json.Marshal(rpcErrorResponse{JSONRPC: "2.0", ID: nullID(id), Error: &pep.JSONRPCError{Code: codeInternalError, Message: err.Error()}})
	return append(append([]byte("event: message\ndata: "), b...), '\n', '\n')
}

func isSSE(h http.Header) bool {
	ct := h.Get("Content-Type")
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/event-stream")
}

func isList(method string) bool {
	switch method {
	case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
		return true
	}
	return false
}

var errTooLarge = errors.New("is too large")

func readBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("could not be read (%v)", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w (over %d bytes)", errTooLarge, limit)
	}
	return b, nil
}

// refuseUndecided answers a message the core could not decide at all (a
// malformed message): 400 with the reason.
func (g *Gateway) refuseUndecided(w http.ResponseWriter, id json.RawMessage, err error) {
	status, code, why := g.undecided(err)
	writeRPCError(w, status, id, code, why)
}

// undecided is the answer to a message the core could not decide: 400 with
// the reason for a malformed one, 503 when the core failed.
func (g *Gateway) undecided(err error) (status, code int, why string) {
	var re *pep.RequestError
	if errors.As(err, &re) {
		return cmp.Or(re.Status, http.StatusBadRequest), codeInvalidRequest, re.Description
	}
	g.log.Error("gateway: decision failed", "err", err)
	return http.StatusServiceUnavailable, codeInternalError, "authorization unavailable"
}

// upstreamFailed answers a request the upstream did not answer.
func (g *Gateway) upstreamFailed(w http.ResponseWriter, id json.RawMessage, err error) {
	status, why := g.unreachable(err)
	writeRPCError(w, status, id, codeInternalError, why)
}

// unreachable logs a failed upstream request and says how to answer it.
func (g *Gateway) unreachable(err error) (status int, why string) {
	g.log.Warn("gateway: upstream request failed", "upstream", g.o.Upstream.Redacted(), "err", err)
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return http.StatusGatewayTimeout, "the MCP server did not answer in time"
	}
	return http.StatusBadGateway, "the MCP server could not be reached"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
