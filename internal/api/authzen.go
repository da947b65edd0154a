package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/mcp-pdp/pdp/internal/authzen"
	"github.com/mcp-pdp/pdp/pep"
)

// The AuthZEN Authorization API 1.0 routes (docs/authzen.md): served when
// Options.Core also decides for verified callers (authzen.Decider, as
// *core.Service does). The evaluation endpoints are under /access/v1,
// behind the same PEP authentication and limits as /v1/decide (the guard);
// the metadata document is public, like the RFC 9728 documents.

// requestIDHeader is the request identifier the Authorization API's HTTPS
// binding recommends; the PDP answers it back unchanged.
const requestIDHeader = "X-Request-ID"

// mountAuthZEN adds the AuthZEN routes when the core supports them.
func (s *Server) mountAuthZEN(e *echo.Echo) {
	d, ok := s.opts.Core.(authzen.Decider)
	if !ok {
		return
	}
	var resources []string
	for _, m := range s.opts.Metadata {
		resources = append(resources, m.Document.Resource)
	}
	// The decisions are counted in pdp_decisions_total, as /v1/decide's.
	svc, err := authzen.New(authzen.Options{Core: countDecisions(d, s.metrics), Resources: resources})
	if err != nil {
		s.log.Error("authzen routes not served", "err", err)
		return
	}
	s.authzen = svc
	e.POST(authzen.EvaluationPath, s.accessEvaluation)
	e.POST(authzen.EvaluationsPath, s.accessEvaluations)
	e.GET(authzen.WellKnownPath, s.authzenConfiguration)
}

// verifiedDecider is authzen.Decider with the verified caller's type a
// type parameter: the API passes the caller through without importing the
// token package (docs/architecture.md).
type verifiedDecider[C any] interface {
	DecideVerified(ctx context.Context, req *pep.Request, caller C, pepName string) (*pep.Response, error)
}

// countingDecider counts the decisions of an AuthZEN evaluation in
// pdp_decisions_total, labelled with the request's resource and PEP.
type countingDecider[C any] struct {
	core    verifiedDecider[C]
	metrics *metrics
}

// countDecisions wraps d (C is inferred from its method).
func countDecisions[C any](d verifiedDecider[C], m *metrics) countingDecider[C] {
	return countingDecider[C]{core: d, metrics: m}
}

// DecideVerified decides with the core and counts the decision.
func (d countingDecider[C]) DecideVerified(ctx context.Context, req *pep.Request, caller C, pepName string) (*pep.Response, error) {
	resp, err := d.core.DecideVerified(ctx, req, caller, pepName)
	if err == nil {
		d.metrics.decision(resp.Outcome, resp.HTTPStatus, req.Resource, pepName).count.Inc()
	}
	return resp, err
}

// authzenBody checks and reads the body of an AuthZEN evaluation request
// as /v1/decide's: a policy is loaded, JSON content type, an authenticated
// PEP, the body limit. It also answers the request's X-Request-ID.
func (s *Server) authzenBody(c *echo.Context) (body []byte, pepName string, err error) {
	r := c.Request()
	if id := r.Header.Get(requestIDHeader); id != "" {
		c.Response().Header().Set(requestIDHeader, id)
	}
	if !s.opts.Core.Ready() {
		return nil, "", apiError(http.StatusServiceUnavailable, "not_ready", "no policy is loaded yet")
	}
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		return nil, "", apiError(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
	}
	pepName, ok := s.authenticatedPEP(c)
	if !ok {
		return nil, "", s.auth.refuse(r, authMissing)
	}
	limit := s.opts.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, "", apiError(http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("the body exceeds the limit of %d bytes", limit))
	}
	body, err = readBody(r.Body, nil, r.ContentLength, limit)
	if err != nil {
		return nil, "", apiError(http.StatusBadRequest, "invalid_request", "reading the body failed: "+err.Error())
	}
	if int64(len(body)) > limit {
		return nil, "", apiError(http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("the body exceeds the limit of %d bytes", limit))
	}
	return body, pepName, nil
}

// accessEvaluation is POST /access/v1/evaluation.
func (s *Server) accessEvaluation(c *echo.Context) error {
	return authzenAnswer(s, c, s.authzen.Evaluate)
}

// accessEvaluations is POST /access/v1/evaluations.
func (s *Server) accessEvaluations(c *echo.Context) error {
	return authzenAnswer(s, c, s.authzen.Evaluations)
}

// authzenAnswer reads an evaluation request's body and answers what
// decide makes of it.
func authzenAnswer[T any](s *Server, c *echo.Context, decide func(ctx context.Context, body []byte, pepName string) (T, error)) error {
	body, pepName, err := s.authzenBody(c)
	if err != nil {
		return err
	}
	answer, err := decide(c.Request().Context(), body, pepName)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, answer)
}

// authzenConfiguration is GET /.well-known/authzen-configuration: the PDP's
// identifier is the configured public URL, else the scheme and host the
// request was sent to (Forwarded headers are not trusted: behind a proxy,
// configure public_url).
func (s *Server) authzenConfiguration(c *echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	base := s.opts.PublicURL
	if base == "" {
		r := c.Request()
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
		c.Response().Header().Set("Vary", "Host")
	}
	return writeJSON(c, http.StatusOK, authzen.NewConfiguration(base))
}
