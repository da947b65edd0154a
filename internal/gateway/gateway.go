// Package gateway is mcp-pdp as an MCP reverse proxy: it serves one
// protected resource's Streamable HTTP endpoint in front of an unmodified
// MCP server (the upstream), a Streamable HTTP endpoint or a stdio program
// it starts.
//
// The MCP side is pep.Middleware, deciding in-process with the decision
// core: every message is decided before anything reaches the upstream,
// list answers are filtered per caller, denials are answered as decided,
// sessions are bound to their users. What the gateway adds is the
// upstream: a forwarding handler that never passes the client's token on
// (an identity assertion instead), bounds connection, answer and stream
// times, and turns every failure of the upstream into a JSON-RPC error;
// or, for a stdio upstream, sessions it issues itself, one child process
// each.
package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/internal/tracing"
	"github.com/mcp-pdp/pdp/pep"
)

// Defaults of Options.
const (
	// DefaultMaxBodyBytes bounds a client's request body.
	DefaultMaxBodyBytes = pep.DefaultMaxBodyBytes
	// DefaultMaxResponseBytes bounds an upstream answer the gateway must
	// read whole (a list to filter, a JSON answer, one SSE event).
	DefaultMaxResponseBytes = pep.DefaultMaxResponseBytes
	// DefaultConnectTimeout bounds connecting to the upstream.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultResponseTimeout bounds the wait for the upstream's answer
	// headers (a tool call may take this long to start answering), and a
	// stdio child's whole answer.
	DefaultResponseTimeout = 5 * time.Minute
	// DefaultIdleStreamTimeout ends an SSE stream from the upstream that
	// sent nothing for this long.
	DefaultIdleStreamTimeout = 10 * time.Minute
	// DefaultMaxSessions bounds the sessions whose owners the gateway
	// remembers; the oldest is forgotten first.
	DefaultMaxSessions = pep.DefaultMaxSessions
	// DefaultMaxConcurrent bounds the POSTs in progress (open GET streams
	// are not counted).
	DefaultMaxConcurrent = 1024
	// MaxBatch bounds the messages of one JSON-RPC batch.
	MaxBatch = pep.MaxBatch
)

// JSON-RPC error codes of the gateway's own answers.
const (
	codeInvalidRequest = -32600
	codeInvalidParams  = -32602
	codeInternalError  = -32603
)

// Decider decides one message in-process; *core.Service is one.
type Decider interface {
	// DecideValid decides req, whose Message and Result are valid JSON.
	DecideValid(ctx context.Context, req *pep.Request, pepName string) (*pep.Response, error)
}

// Asserter makes the identity assertion that tells the upstream who calls.
type Asserter interface {
	// Assert returns the header value for an allowed request of caller
	// (nil: anonymous).
	Assert(caller *pep.Caller) (string, error)
}

// DecisionHeader carries the id of the decision that allowed a forwarded
// request (its audit event's id) to the upstream.
const DecisionHeader = "X-Mcp-Pdp-Decision-Id"

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
	// Tracer, when set, traces each request: a server span joining the
	// client's W3C trace context (traceparent), the decision's spans under
	// it, and a client span of the upstream call whose context goes
	// upstream in traceparent. Nil: no spans, and the client's
	// traceparent and tracestate are passed upstream as they are.
	Tracer trace.Tracer
	// ForwardToken sends the client's Authorization header upstream. Off
	// by default: MCP's security best practices forbid token passthrough.
	ForwardToken bool
	// Asserter, when set, adds an identity assertion to every request
	// forwarded upstream: in AssertionHeader for an HTTP upstream, in the
	// request's params._meta (under AssertionMetaKey) for a stdio one.
	Asserter Asserter
	// AssertionHeader names the assertion's header (required with Asserter
	// and Upstream).
	AssertionHeader string
	// AssertionMetaKey names the assertion's _meta key (required with
	// Asserter and Stdio).
	AssertionMetaKey string
	// MaxBodyBytes bounds a client request body (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxResponseBytes bounds what is read whole from the upstream (default
	// DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// ConnectTimeout (default DefaultConnectTimeout) and ResponseTimeout
	// (default DefaultResponseTimeout) shape the default Transport;
	// ResponseTimeout also bounds a stdio child's answer.
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
	// ("*": any); the resource's own origin always may.
	AllowedOrigins []string
	// Logger (default: discard).
	Logger *slog.Logger
}

// Gateway is the http.Handler of one resource's MCP endpoint.
type Gateway struct {
	o     Options
	slots chan struct{} // POSTs in progress
	mw    http.Handler  // pep.Middleware around the upstream
	stdio *stdioFront   // nil for an HTTP upstream
}

// pepName names the gateway as the enforcement point in audit events.
const pepName = "gateway"

// coreDecider is the in-process decision core as a pep.Decider. The
// middleware hands it only JSON it has checked (its message parse, and
// results cut from it), so it takes the core's trusted entry point.
type coreDecider struct{ d Decider }

func (c coreDecider) Decide(ctx context.Context, req *pep.Request) (*pep.Response, error) {
	return c.d.DecideValid(ctx, req, pepName)
}

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
	case o.Asserter != nil && o.Upstream != nil && o.AssertionHeader == "":
		return nil, errors.New("gateway: an asserter needs a header name")
	case o.Asserter != nil && o.Stdio != nil && o.AssertionMetaKey == "":
		return nil, errors.New("gateway: an asserter needs a _meta key for a stdio upstream")
	}
	o.ConnectTimeout = cmp.Or(o.ConnectTimeout, DefaultConnectTimeout)
	o.ResponseTimeout = cmp.Or(o.ResponseTimeout, DefaultResponseTimeout)
	o.IdleStreamTimeout = cmp.Or(o.IdleStreamTimeout, DefaultIdleStreamTimeout)
	o.MaxConcurrent = cmp.Or(o.MaxConcurrent, DefaultMaxConcurrent)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{o: o, slots: make(chan struct{}, o.MaxConcurrent)}
	var upstream http.Handler
	if o.Stdio != nil {
		so := *o.Stdio
		if so.Logger == nil {
			so.Logger = o.Logger
		}
		f, err := newStdioFront(so, o.ResponseTimeout, cmp.Or(o.MaxSessions, DefaultMaxSessions), o.Asserter, o.AssertionMetaKey, o.Logger)
		if err != nil {
			return nil, err
		}
		g.stdio, upstream = f, f
	} else {
		upstream = newForwarder(o)
	}
	g.mw = pep.Middleware(upstream, pep.Options{
		Decider: coreDecider{o.Decider}, Resource: o.Resource,
		MaxBodyBytes: o.MaxBodyBytes, MaxResponseBytes: o.MaxResponseBytes,
		AllowedOrigins: o.AllowedOrigins, MaxSessions: o.MaxSessions, Logger: o.Logger,
	})
	return g, nil
}

// ServeHTTP serves the MCP endpoint.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		select {
		case g.slots <- struct{}{}:
			defer func() { <-g.slots }()
		default:
			w.Header().Set("Retry-After", "1")
			pep.WriteError(w, http.StatusServiceUnavailable, nil, codeInternalError, "the gateway is overloaded; retry shortly")
			return
		}
	}
	if t := g.o.Tracer; t != nil {
		ctx, span := t.Start(tracing.Extract(r.Context(), r.Header), "pdp.gateway "+r.Method,
			trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("mcp.resource", g.o.Resource)))
		defer span.End()
		r = r.WithContext(ctx)
	}
	g.mw.ServeHTTP(w, r)
}

// Close stops the gateway's stdio children, if any, within ctx.
func (g *Gateway) Close(ctx context.Context) error {
	if g.stdio == nil {
		return nil
	}
	return g.stdio.pool.Close(ctx)
}

// forwarder is the handler behind the middleware for an HTTP upstream: it
// forwards what the middleware allowed and relays the answer as it
// arrives.
type forwarder struct {
	o      Options
	client *http.Client
	log    *slog.Logger
}

func newForwarder(o Options) *forwarder {
	t := o.Transport
	if t == nil {
		t = &http.Transport{
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
	return &forwarder{o: o, log: o.Logger, client: &http.Client{
		Transport: t,
		// The upstream answers itself; a redirect is an upstream error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Headers of Streamable HTTP that cross the gateway in each direction.
var requestHeaders = []string{
	"Content-Type", "Accept", "Mcp-Session-Id", "Mcp-Protocol-Version", "Last-Event-Id",
	"Mcp-Method", "Mcp-Name", "User-Agent",
}

var responseHeaders = []string{
	"Content-Type", "Content-Length", "Mcp-Session-Id", "Mcp-Protocol-Version", "Cache-Control", "Retry-After",
	"Www-Authenticate", // an upstream with its own authorization
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d, _ := pep.DecisionFrom(r.Context())
	up, err := f.forward(r, d)
	if err != nil {
		f.log.Warn("gateway: upstream request failed", "upstream", f.o.Upstream.Redacted(), "err", err)
		status, why := http.StatusBadGateway, "the MCP server could not be reached"
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			status, why = http.StatusGatewayTimeout, "the MCP server did not answer in time"
		}
		pep.WriteError(w, status, nil, codeInternalError, why)
		return
	}
	defer up.Body.Close()
	for _, h := range responseHeaders {
		if v := up.Header.Values(h); len(v) > 0 {
			w.Header()[h] = v
		}
	}
	w.WriteHeader(up.StatusCode)
	if err := f.copyBody(w, up, r.Method == http.MethodPost); err != nil {
		f.log.Debug("gateway: upstream answer ended", "err", err)
	}
}

// forward sends the request upstream: the allow-listed headers, no
// Authorization unless ForwardToken, the identity assertion when set.
func (f *forwarder) forward(r *http.Request, d *pep.Response) (*http.Response, error) {
	var body io.Reader
	if r.Method == http.MethodPost {
		body = r.Body
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, f.o.Upstream.String(), body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = r.ContentLength
	for _, h := range requestHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	if f.o.ForwardToken {
		if v := r.Header.Get("Authorization"); v != "" {
			req.Header.Set("Authorization", v)
		}
	}
	if d != nil {
		req.Header.Set(DecisionHeader, d.DecisionID)
		if f.o.Asserter != nil {
			a, err := f.o.Asserter.Assert(d.Caller)
			if err != nil {
				return nil, fmt.Errorf("identity assertion: %w", err)
			}
			req.Header.Set(f.o.AssertionHeader, a)
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		req.Header.Set("X-Forwarded-For", host)
	}
	t := f.o.Tracer
	if t == nil {
		for _, h := range [...]string{"Traceparent", "Tracestate"} {
			if v := r.Header.Values(h); len(v) > 0 {
				req.Header[h] = v
			}
		}
		return f.client.Do(req)
	}
	ctx, span := t.Start(req.Context(), "pdp.upstream "+req.Method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("server.address", req.URL.Host), attribute.String("url.path", req.URL.Path)))
	defer span.End() // at the answer's headers: the body streams on
	req = req.WithContext(ctx)
	tracing.Inject(ctx, req.Header)
	resp, err := f.client.Do(req)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, resp.Status)
	}
	return resp, nil
}

// copyBody relays the upstream's answer as it arrives, flushing after
// each read so that SSE events stream. An upstream silent for
// IdleStreamTimeout is cut (its body closed).
//
// The answer to a POST is read in large pieces (a pooled buffer: a list
// answer then arrives in the middleware in one or two writes, and is
// copied there once); a GET stream, which may stay open and idle for
// long, holds a small buffer of its own.
func (f *forwarder) copyBody(w http.ResponseWriter, up *http.Response, post bool) error {
	rc := http.NewResponseController(w)
	var silent atomic.Bool
	idle := time.AfterFunc(f.o.IdleStreamTimeout, func() {
		silent.Store(true)
		_ = up.Body.Close()
	})
	defer idle.Stop()
	_ = rc.Flush() // the head now: a stream may stay silent for long
	var buf []byte
	if post {
		bp := postBuffers.Get().(*[]byte)
		defer postBuffers.Put(bp) // the middleware keeps no byte of a write
		buf = *bp
	} else {
		buf = make([]byte, 4<<10) // small: an idle stream holds it for as long as it lasts
	}
	for {
		n, err := up.Body.Read(buf)
		idle.Reset(f.o.IdleStreamTimeout)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr // the client went away, or the middleware cut the stream
			}
			_ = rc.Flush()
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if silent.Load() {
				return fmt.Errorf("the upstream sent nothing for %v", f.o.IdleStreamTimeout)
			}
			return err
		}
	}
}

// postBuffers are the read buffers of answers to POSTs.
var postBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
