// Package api is the HTTP surface of mcp-pdp (echo v5): POST /v1/decide, the
// AuthZEN Authorization API (POST /access/v1/evaluation and evaluations, its
// metadata), the RFC 9728 protected resource metadata, health, readiness
// and metrics. It
// parses and limits requests and maps errors to status codes; deciding is
// the job of internal/core.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcp-pdp/pdp/internal/authzen"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/tracing"
	"github.com/mcp-pdp/pdp/pep"
)

// Decider is the decision core; *core.Service implements it.
type Decider interface {
	// DecideValid decides a request whose Message and Result are known to
	// be valid JSON (readRequest checks them), for the PEP named pepName.
	// A *pep.RequestError is answered with its status and body.
	DecideValid(ctx context.Context, req *pep.Request, pepName string) (*pep.Response, error)
	// Ready reports whether a policy is loaded.
	Ready() bool
	// Refund gives back the call of a decision's refund token
	// (pep.Response.Refund), for the PEP named pepName (reason is for
	// the log): refunded, or false when that refund was applied before. A *pep.RequestError is
	// answered with its status and body; any other error means the
	// counters could not be reached (503).
	Refund(ctx context.Context, token, pepName, reason string) (refunded bool, err error)
}

// MetadataDoc is one protected resource metadata document to serve.
type MetadataDoc struct {
	// Host is the resource URI's host, used when two resources share a path.
	Host     string
	Path     string
	Document stepup.Metadata
}

// ReadinessCheck reports a reason the PDP is not ready, or nil.
type ReadinessCheck func() error

// Options configure the HTTP API.
type Options struct {
	Core     Decider
	Metadata []MetadataDoc
	// MaxBodyBytes bounds a /v1/... request body (0 = DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// Ready checks beyond "a policy is loaded" (e.g. audit spool writable).
	Ready []ReadinessCheck
	// Status returns extra fields for /readyz (e.g. policy revision).
	Status   func() map[string]any
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// Mount adds extra routes (e.g. the dev issuer under /dev/).
	Mount func(e *echo.Echo)
	// Auth is how PEPs authenticate to /v1/... (see auth.go); zero: open.
	Auth PEPAuth
	// Limits are the per-PEP rate and the concurrency limit of /v1/... (see limits.go).
	Limits Limits
	// PublicURL is the PDP's base URL as clients reach it, the identifier
	// in its AuthZEN metadata; empty: the scheme and host of the request.
	PublicURL string
	// TraceContext takes the W3C trace context (traceparent) of a
	// /v1/decide request into the decision's context, for its spans to
	// join the PEP's trace (set when tracing is on).
	TraceContext bool
	// ResourceLabels name the configured resources on the decision
	// metrics (the resource label), by URI: the resource's key. Nil: each
	// resource of Metadata is labelled with its URI. A decision for any
	// other resource is labelled LabelOther.
	ResourceLabels map[string]string
}

// Server is the HTTP handler.
type Server struct {
	opts    Options
	echo    *echo.Echo
	log     *slog.Logger
	metrics *metrics
	auth    *authenticator
	limits  *limiter
	// authzen answers the AuthZEN routes (authzen.go); nil without them.
	authzen *authzen.Service
}

// DefaultMaxBodyBytes is Options.MaxBodyBytes's default
// (limits.max_body_bytes).
const DefaultMaxBodyBytes = 1 << 20

// New builds the handler.
func New(o Options) *Server {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	s := &Server{opts: o, log: o.Logger, metrics: newMetrics(o.Registry, resourceLabels(o), knownPEPs(o.Auth))}
	s.auth = newAuthenticator(o.Auth, o.Registry, o.Logger)
	s.limits = newLimiter(o.Limits, o.Registry)
	e := echo.New()
	e.Logger = o.Logger
	e.HTTPErrorHandler = s.handleRouteErrors
	e.Pre(s.guard)
	e.POST("/v1/decide", s.decide)
	e.POST("/v1/refund", s.refund)
	s.mountAuthZEN(e)
	e.GET(stepup.WellKnownPath, s.metadata)
	e.GET(stepup.WellKnownPath+"/*", s.metadata)
	e.GET("/healthz", func(c *echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{})))
	if o.Mount != nil {
		o.Mount(e)
	}
	s.echo = e
	return s
}

// resourceLabels are the resource labels of the decision metrics by URI:
// Options.ResourceLabels, else the URIs of Options.Metadata.
func resourceLabels(o Options) map[string]string {
	if o.ResourceLabels != nil {
		return o.ResourceLabels
	}
	labels := make(map[string]string, len(o.Metadata))
	for _, m := range o.Metadata {
		labels[m.Document.Resource] = m.Document.Resource
	}
	return labels
}

// knownPEPs are the PEP names the configuration lists (API key names, then
// mTLS allowed subjects), the first values of the pep label.
func knownPEPs(a PEPAuth) []string {
	names := make([]string, 0, len(a.APIKeys)+len(a.AllowedSubjects))
	for _, k := range a.APIKeys {
		names = append(names, k.Name)
	}
	if a.MTLS {
		names = append(names, a.AllowedSubjects...)
	}
	return names
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// apiError returns the error answered with status and the body
// {"error": code, "error_description": description}: the shape of every
// non-200 answer of the API, the core's request errors included.
func apiError(status int, code, description string) *pep.RequestError {
	return &pep.RequestError{Status: status, Code: code, Description: description}
}

func (s *Server) handleError(c *echo.Context, err error) {
	if resp, _ := echo.UnwrapResponse(c.Response()); resp != nil && resp.Committed {
		return
	}
	var ae *pep.RequestError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &he):
		ae = apiError(he.Code, strings.ReplaceAll(strings.ToLower(http.StatusText(he.Code)), " ", "_"), he.Message)
	default:
		s.log.Error("internal error", "path", c.Request().URL.Path, "err", err)
		ae = apiError(http.StatusInternalServerError, "internal_error", "internal error")
	}
	s.metrics.apiErrors.WithLabelValues(ae.Code).Inc()
	_ = writeJSON(c, ae.Status, ae)
}

func (s *Server) decide(c *echo.Context) error {
	start := time.Now()
	r := c.Request()
	if !s.opts.Core.Ready() {
		return apiError(http.StatusServiceUnavailable, "not_ready", "no policy is loaded yet")
	}
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		return apiError(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
	}
	pepName, ok := s.authenticatedPEP(c)
	if !ok {
		return s.auth.refuse(r, authMissing)
	}
	if r.ContentLength > s.opts.MaxBodyBytes {
		return apiError(http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("the body exceeds the limit of %d bytes", s.opts.MaxBodyBytes))
	}
	req, err := readRequest(r.Body, r.ContentLength, s.opts.MaxBodyBytes)
	if err != nil {
		return err
	}
	// readRequest read message and result with a decoder that checks them.
	ctx := r.Context()
	if s.opts.TraceContext {
		ctx = tracing.Extract(ctx, r.Header)
	}
	resp, err := s.opts.Core.DecideValid(ctx, req, pepName)
	if err != nil {
		return err
	}
	s.metrics.observe(resp, req.Resource, pepName, time.Since(start))
	return writeDecision(c, resp)
}

// maxRefundBody bounds a /v1/refund body: a token and a reason.
const maxRefundBody = 16 << 10

// refundRequest is the body of POST /v1/refund.
type refundRequest struct {
	Refund string `json:"refund"`
	// Reason is for the log (why the call failed), at most 256 bytes.
	Reason string `json:"reason,omitempty"`
}

// refundResponse is its answer (200).
type refundResponse struct {
	// Refunded: one call was given back now; false when this refund was
	// already applied (Detail says so).
	Refunded bool   `json:"refunded"`
	Detail   string `json:"detail,omitempty"`
}

// refund is POST /v1/refund: a PEP gives back to its quota an allowed
// call that failed.
func (s *Server) refund(c *echo.Context) error {
	r := c.Request()
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		return apiError(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
	}
	pepName, ok := s.authenticatedPEP(c)
	if !ok {
		return s.auth.refuse(r, authMissing)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRefundBody+1))
	if err != nil {
		return apiError(http.StatusBadRequest, "invalid_request", "reading the body: "+err.Error())
	}
	if len(body) > maxRefundBody {
		return apiError(http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("the body exceeds the limit of %d bytes", maxRefundBody))
	}
	var req refundRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return apiError(http.StatusBadRequest, "invalid_request", "the body must be {\"refund\": \"<token>\", \"reason\": \"...\"}: "+err.Error())
	}
	if req.Refund == "" {
		return apiError(http.StatusBadRequest, "invalid_request", "refund is required: the refund token of the allowed decision")
	}
	if len(req.Reason) > 256 {
		return apiError(http.StatusBadRequest, "invalid_request", "reason is longer than 256 bytes")
	}
	refunded, err := s.opts.Core.Refund(r.Context(), req.Refund, pepName, req.Reason)
	var re *pep.RequestError
	switch {
	case err == nil && refunded:
		s.metrics.refunds.WithLabelValues("refunded").Inc()
		return writeJSON(c, http.StatusOK, refundResponse{Refunded: true})
	case err == nil:
		s.metrics.refunds.WithLabelValues("already").Inc()
		return writeJSON(c, http.StatusOK, refundResponse{Detail: "already refunded"})
	case errors.As(err, &re):
		s.metrics.refunds.WithLabelValues(re.Code).Inc()
		return err
	default:
		s.metrics.refunds.WithLabelValues("unavailable").Inc()
		s.log.Warn("refund failed", "pep", pepName, "err", err)
		return apiError(http.StatusServiceUnavailable, "counters_unavailable", "the quota counters cannot be reached; try again")
	}
}

// isJSONContentType reports whether a Content-Type names application/json
// (parameters such as charset allowed). The plain spelling skips parsing.
func isJSONContentType(ct string) bool {
	if ct == "application/json" {
		return true
	}
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

func (s *Server) metadata(c *echo.Context) error {
	path := c.Request().URL.EscapedPath()
	host := c.Request().Host
	var match *MetadataDoc
	for i := range s.opts.Metadata {
		m := &s.opts.Metadata[i]
		if m.Path != path {
			continue
		}
		if match == nil || strings.EqualFold(m.Host, host) {
			match = m
		}
	}
	if match == nil {
		return apiError(http.StatusNotFound, "not_found", "no protected resource is configured for "+path)
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSON(http.StatusOK, match.Document)
}

func (s *Server) ready(c *echo.Context) error {
	body := map[string]any{"status": "ready"}
	if s.opts.Status != nil {
		for k, v := range s.opts.Status() {
			body[k] = v
		}
	}
	var problems []string
	if !s.opts.Core.Ready() {
		problems = append(problems, "no policy loaded")
	}
	for _, check := range s.opts.Ready {
		if err := check(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		body["status"] = "not_ready"
		body["problems"] = problems
		return c.JSON(http.StatusServiceUnavailable, body)
	}
	return c.JSON(http.StatusOK, body)
}
