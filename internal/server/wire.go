package server

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/ratelimit"
	"github.com/mcp-pdp/pdp/internal/revoke"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/internal/tracing"
)

// tokenCacheMaxTTL bounds how long a verified token is served from the
// cache before it is verified again, so that a key removed from the JWKS
// stops being trusted within that bound.
const tokenCacheMaxTTL = 10 * time.Minute

// wire builds the decision pipeline: policy and reloader, signing keys,
// verifiers, audit, core and HTTP API.
func (s *Server) wire(ctx context.Context) error {
	cfg, log := s.cfg, s.log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	pol, watcher, err := loadPolicy(ctx, cfg.Policy, s.policyData, log)
	if err != nil {
		return err
	}
	s.engine = decision.NewEngine(pol)
	s.startPolicyReload(watcher, reg)

	s.keys = token.NewKeySets(token.KeySetsConfig{
		RefreshInterval:    cfg.JWKS.RefreshInterval.D(),
		MinRefetchInterval: cfg.JWKS.MinRefetchInterval.D(),
		FetchTimeout:       cfg.JWKS.FetchTimeout.D(),
		MaxBodyBytes:       cfg.JWKS.MaxBodyBytes,
		Logger:             log.With("component", "jwks"),
	})
	s.goBackground(s.keys.Run)
	s.cache = token.NewCacheWithConfig(token.CacheConfig{MaxEntries: cfg.Limits.TokenCacheSize, MaxTTL: tokenCacheMaxTTL})
	s.registerMetrics(reg)
	registerBuildInfo(reg, s.opts.Version)

	resources, docs, err := s.buildResources()
	if err != nil {
		return err
	}
	var auditor core.Auditor
	var ready []api.ReadinessCheck
	if cfg.Audit.IsEnabled() {
		if err := s.startAudit(ctx, reg); err != nil {
			return err
		}
		auditor = s.sink
		ready = append(ready, s.sink.Healthy)
		if cfg.Audit.Store.Runs(s.opts.Dev) {
			if err := s.startAuditStore(ctx, reg); err != nil {
				return err
			}
		}
	} else {
		log.Warn("audit is disabled: decisions are not recorded (not recommended)")
	}
	var revoked *revoke.Set
	if cfg.Audit.IsEnabled() && cfg.Revocation.IsEnabled() {
		if revoked, err = s.startRevocations(reg); err != nil {
			return err
		}
	}
	var quotaCounters core.Quotas
	var q *quotas
	if cfg.Audit.IsEnabled() {
		if q, err = s.startQuotas(); err != nil {
			return err
		}
		quotaCounters = q
	}
	rates := ratelimit.New(ratelimit.Options{})
	if err := registerLimitMetrics(reg, rates, q); err != nil {
		return err
	}
	if err := s.wireDPoP(ctx, resources); err != nil {
		return err
	}
	if t := cfg.Tracing; t.Endpoint != "" {
		s.tracing, err = tracing.New(ctx, tracing.Options{Endpoint: t.Endpoint, SampleRatio: t.SampleRatio, Headers: t.Headers,
			ServiceName: t.ServiceName, ServiceInstance: cfg.Instance, Version: s.opts.Version})
		if err != nil {
			return err
		}
		log.Info("tracing: spans exported over OTLP/HTTP", "endpoint", t.Endpoint)
	}
	s.core, err = core.New(core.Options{
		Tracer: s.tracing.Tracer(),
		Engine: s.engine, Resources: resources, Auditor: auditor,
		DenyUnaudited:   cfg.Audit.OnFailure == "deny",
		DecisionTimeout: cfg.Limits.DecisionTimeout.D(),
		Revocations:     revoked,
		Rates:           rates,
		Quotas:          quotaCounters,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	if err := registerLimitedMetric(reg, s.core); err != nil {
		return err
	}
	auth, err := s.pepAuth()
	if err != nil {
		return err
	}
	s.api = api.New(api.Options{
		Core: s.core, Metadata: docs, MaxBodyBytes: cfg.Limits.MaxBodyBytes, Ready: ready,
		Status:   s.status,
		Registry: reg, Logger: log, Mount: s.devMount(),
		Auth:      auth,
		Limits:    api.Limits{RatePerPEP: cfg.Limits.RatePerPEP, RateBurst: cfg.Limits.RateBurst, MaxConcurrent: cfg.Limits.MaxConcurrent},
		PublicURL: cfg.PublicURL,
		// W3C trace context from the PEP's request, with tracing on.
		TraceContext: s.tracing != nil,
		// The resource label of the decision metrics: the resource's key.
		ResourceLabels: resourceLabels(resources),
	})
	return nil
}

// status is the policy part of the status endpoint.
func (s *Server) status() map[string]any {
	p := s.engine.Policy()
	if p == nil {
		return nil
	}
	out := map[string]any{"policy_revision": p.Revision(), "policy_source": p.Source()}
	if s.revocations != nil {
		out["revocations"] = s.revocationStatus()
	}
	return out
}

// registerMetrics exports the token and decision caches and the key fetches.
func (s *Server) registerMetrics(reg prometheus.Registerer) {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(
		gauge("pdp_token_cache_entries", "Verified tokens cached.", func() float64 { return float64(s.cache.Len()) }),
		counter("pdp_token_cache_hits_total", "Verified-token cache hits.", func() float64 { return float64(s.cache.Hits()) }),
		counter("pdp_token_cache_misses_total", "Verified-token cache misses.", func() float64 { return float64(s.cache.Misses()) }),
		// The decision cache belongs to the active policy: these restart from
		// zero when a reload swaps it (Prometheus rate() handles the reset).
		counter("pdp_decision_cache_hits_total", "Decisions answered by the active policy's decision cache.", func() float64 { return float64(s.engine.Policy().CacheStats().Hits) }),
		counter("pdp_decision_cache_misses_total", "Decisions the active policy evaluated (cache on, no entry).", func() float64 { return float64(s.engine.Policy().CacheStats().Misses) }),
		gauge("pdp_decision_cache_entries", "Decisions cached by the active policy.", func() float64 { return float64(s.engine.Policy().CacheStats().Entries) }),
		counter("pdp_jwks_fetches_total", "JWKS and metadata fetches.", func() float64 { return float64(s.keys.Stats().Fetches) }),
		counter("pdp_jwks_fetch_errors_total", "Failed JWKS and metadata fetches.", func() float64 { return float64(s.keys.Stats().FetchErrors) }),
		counter("pdp_introspections_total", "RFC 7662 introspection requests (cache misses).", func() float64 { return float64(s.keys.Stats().Introspections) }),
		counter("pdp_introspection_failures_total", "Introspection requests with no usable answer (the endpoint unreachable, slow, refusing the PDP's credentials): their tokens were refused as unavailable.",
			func() float64 { return float64(s.keys.Stats().IntrospectionFailures) }),
	)
}

// buildResources makes, for each configured resource, its token verifier,
// its challenge parameters and its RFC 9728 metadata document. Outside dev
// mode the signing keys are fetched in the background, so that the first
// decisions do not wait for them.
func (s *Server) buildResources() ([]*core.Resource, []api.MetadataDoc, error) {
	var resources []*core.Resource
	var docs []api.MetadataDoc
	for i, r := range s.cfg.Resources {
		intro, err := introspection(r.Introspection)
		if err != nil {
			return nil, nil, fmt.Errorf("resources[%d] (%s): %w", i, r.URI, err)
		}
		v, err := token.NewVerifier(token.Config{
			Resource: r.URI, Issuer: r.Issuer, Audiences: r.Audiences, JWKSURI: r.JWKSURI,
			Algorithms: r.Algorithms, ClockSkew: r.ClockSkew.D(), Introspection: intro,
		}, s.keys, s.cache, s.log)
		if err != nil {
			return nil, nil, fmt.Errorf("resources[%d] (%s): %w", i, r.URI, err)
		}
		mdURL := r.ResourceMetadataURL
		if mdURL == "" {
			if mdURL, err = stepup.MetadataURL(r.URI); err != nil {
				return nil, nil, fmt.Errorf("resources[%d].uri: %w", i, err)
			}
		}
		path, err := stepup.MetadataPath(r.URI)
		if err != nil {
			return nil, nil, fmt.Errorf("resources[%d].uri: %w", i, err)
		}
		u, err := url.Parse(r.URI)
		if err != nil {
			return nil, nil, fmt.Errorf("resources[%d].uri: %w", i, err)
		}
		docs = append(docs, api.MetadataDoc{Host: u.Host, Path: path, Document: stepup.NewMetadata(r.URI, r.AuthorizationServers, r.ScopesSupported)})
		resources = append(resources, &core.Resource{
			URI: r.URI, Key: r.Key, Verifier: v,
			Challenge: stepup.Resource{
				URI: r.URI, MetadataURL: mdURL, Strategy: stepup.Strategy(r.ChallengeScopes), ScopesSupported: r.ScopesSupported,
				StructuredDenials: r.StructuredDenials,
			},
			AuditArguments: r.AuditArguments.Enabled, Redact: r.AuditArguments.Redact,
			OnCounterUnavailable: r.OnCounterUnavailable,
		})
		if s.iss == nil {
			s.goBackground(func(ctx context.Context) {
				if err := v.Warm(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("signing keys not fetched at start-up; will retry on demand", "resource", r.URI, "err", err)
				}
			})
		}
	}
	return resources, docs, nil
}

// pepAuth is how enforcement points authenticate to the API.
func (s *Server) pepAuth() (api.PEPAuth, error) {
	a := s.cfg.Auth
	auth := api.PEPAuth{MTLS: a.MTLS.ClientCA != "", AllowedSubjects: a.MTLS.AllowedSubjects}
	for i, k := range a.APIKeys {
		key, err := api.ParseAPIKey(k.Name, k.SHA256)
		if err != nil {
			return auth, fmt.Errorf("auth.api_keys[%d]: %w", i, err)
		}
		auth.APIKeys = append(auth.APIKeys, key)
	}
	return auth, nil
}

// devMount serves the dev issuer in dev mode: its JWKS and metadata, and
// its authorization server's endpoints (registration, authorization with
// PKCE, token), so that real OAuth clients can finish a flow.
func (s *Server) devMount() func(*echo.Echo) {
	if s.iss == nil {
		return nil
	}
	as := s.iss.AuthServer(devissuer.AuthServerOptions{Logger: s.log.With("component", "dev-authorization-server")})
	h := echo.WrapHandler(as.Handler())
	return func(e *echo.Echo) {
		e.GET("/dev/*", h)
		e.POST("/dev/*", h)
		e.OPTIONS("/dev/*", h)
		e.GET("/.well-known/oauth-authorization-server/dev", h)
		e.GET("/.well-known/openid-configuration/dev", h)
		e.OPTIONS("/.well-known/oauth-authorization-server/dev", h)
	}
}
