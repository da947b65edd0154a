package core

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-pdp/pdp/pep"
)

// child starts a child span of ctx's when tracing is on; a nil span
// otherwise (endSpan takes it).
func (s *Service) child(ctx context.Context, name string) (context.Context, trace.Span) {
	if s.tracer == nil {
		return ctx, nil
	}
	return s.tracer.Start(ctx, name)
}

// endSpan ends sp (nil: tracing off), marking err.
func endSpan(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	if err != nil {
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}

// endDecision ends the decision's span with what was decided: the
// resource, the message's method (never the token, the arguments or the
// reason, which may carry policy internals), the outcome, the HTTP status
// and the decision id, the audit event's.
func endDecision(sp trace.Span, req *pep.Request, resp *pep.Response, err error) {
	attrs := []attribute.KeyValue{attribute.String("mcp.resource", req.Resource)}
	if req.HTTPMethod != "" {
		attrs = append(attrs, attribute.String("http.request.method", req.HTTPMethod))
	}
	if resp != nil {
		attrs = append(attrs,
			attribute.String("pdp.decision_id", resp.DecisionID),
			attribute.String("pdp.outcome", resp.Outcome),
			attribute.Int("pdp.http_status", resp.HTTPStatus),
			attribute.Bool("pdp.allow", resp.Allow))
		if resp.PolicyRevision != "" {
			attrs = append(attrs, attribute.String("pdp.policy_revision", resp.PolicyRevision))
		}
	}
	sp.SetAttributes(attrs...)
	if err != nil {
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}
