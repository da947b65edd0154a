package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/policysource"
	"github.com/mcp-pdp/pdp/policies"
)

// Default poll intervals when policy.poll_interval is not set.
const (
	defaultFilePoll = 10 * time.Second
	defaultURLPoll  = 30 * time.Second
)

// newPolicyWatcher turns the policy section of the configuration into a
// policy source: the embedded policy when policy.path is empty, else a
// directory, bundle file or bundle URL, verified when keys are configured.
func newPolicyWatcher(pc config.Policy, log *slog.Logger) (*policysource.Watcher, error) {
	o := policysource.Options{Path: pc.Path, Logger: log.With("component", "policy-source")}
	if pc.Path == "" {
		if pc.Verification.Enabled() {
			return nil, errors.New("policy.verification is set but policy.path is empty: the embedded default policy is not a signed bundle; set policy.path")
		}
		o.FS = policies.FS
		return policysource.New(o)
	}
	if pc.Verification.Enabled() {
		v := pc.Verification
		vc, err := policysource.Verification(v.KeyFile, v.KeyID, v.Algorithm, v.Scope)
		if err != nil {
			return nil, fmt.Errorf("policy.verification: %w", err)
		}
		o.Verification = vc
	}
	isURL := strings.HasPrefix(pc.Path, "http://") || strings.HasPrefix(pc.Path, "https://")
	if isURL {
		h, err := bundleHeaders(pc)
		if err != nil {
			return nil, err
		}
		o.Headers, o.CACertFile = h, pc.CAFile
	}
	switch {
	case pc.PollInterval != nil:
		o.Interval = pc.PollInterval.D()
	case isURL:
		o.Interval = defaultURLPoll
	default:
		o.Interval = defaultFilePoll
	}
	// Retries after a failed download start at the poll interval (at most
	// 1s) and back off exponentially up to 5 minutes.
	o.MinRetry = min(policysource.DefaultMinRetry, max(o.Interval, time.Millisecond))
	w, err := policysource.New(o)
	if err != nil {
		return nil, fmt.Errorf("policy.path: %w", err)
	}
	return w, nil
}

// bundleHeaders are the headers of every request for a bundle URL:
// policy.headers and, from policy.bearer_token_file, Authorization.
func bundleHeaders(pc config.Policy) (map[string]string, error) {
	h := maps.Clone(pc.Headers)
	if pc.BearerTokenFile == "" {
		return h, nil
	}
	raw, err := os.ReadFile(pc.BearerTokenFile)
	if err != nil {
		return nil, fmt.Errorf("policy.bearer_token_file: %w", err)
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return nil, fmt.Errorf("policy.bearer_token_file: %s must hold one token (no spaces or line breaks)", pc.BearerTokenFile)
	}
	if h == nil {
		h = map[string]string{}
	}
	h["Authorization"] = "Bearer " + tok
	return h, nil
}

// LoadPolicy reads, verifies, compiles and validates the configured policy
// at start-up. Start-up fails when it cannot be served: there is no last
// good policy to fall back to yet.
func LoadPolicy(ctx context.Context, pc config.Policy, log *slog.Logger) (*decision.Policy, *policysource.Watcher, error) {
	return loadPolicy(ctx, pc, nil, log)
}

// loadPolicy is LoadPolicy with data merged under data.mcp of every
// bundle (dev mode's gateway catalog).
func loadPolicy(ctx context.Context, pc config.Policy, overlay map[string]any, log *slog.Logger) (*decision.Policy, *policysource.Watcher, error) {
	w, err := newPolicyWatcher(pc, log)
	if err != nil {
		return nil, nil, err
	}
	u, err := w.Fetch(ctx)
	if err == nil {
		mergePolicyData(u, overlay)
		var p *decision.Policy
		if p, err = decision.Prepare(ctx, u.Bundle, u.Source, decision.Options{CacheSize: pc.DecisionCacheSize, Locate: u.Locate}); err == nil {
			logWarnings(log, p)
			return p, w, nil
		}
	}
	// One log line per problem, with file:line, before the error stops the start.
	for _, pr := range decision.ProblemsOf(err) {
		logProblem(log, pr)
	}
	return nil, nil, err
}

// policyReloader swaps newly delivered policies into the engine: each new
// bundle is compiled and validated in the background and swapped in
// atomically (decisions under way finish on the policy they started with);
// a bundle that cannot be read, verified, compiled or validated is refused
// and the active policy stays.
type policyReloader struct {
	engine    *decision.Engine
	cacheSize int
	overlay   map[string]any // merged under data.mcp of every bundle
	log       *slog.Logger
	reloads   *prometheus.CounterVec
	info      *prometheus.GaugeVec
	lastOK    prometheus.Gauge
	lastOKAt  prometheus.Gauge
}

func newPolicyReloader(engine *decision.Engine, pc config.Policy, reg prometheus.Registerer, log *slog.Logger) *policyReloader {
	r := &policyReloader{
		engine: engine, cacheSize: pc.DecisionCacheSize, log: log.With("component", "policy"),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pdp_policy_reloads_total", Help: "Policy reloads by result: success (swapped in) or error (refused; the active policy stays).",
		}, []string{"result"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pdp_policy_info", Help: "The active policy: 1 for its revision.",
		}, []string{"revision"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pdp_policy_last_reload_successful", Help: "1 if the last policy reload (or the start-up load) succeeded, 0 if it was refused.",
		}),
		lastOKAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pdp_policy_last_reload_success_timestamp_seconds", Help: "When a policy was last loaded successfully (Unix time).",
		}),
	}
	r.reloads.WithLabelValues("success")
	r.reloads.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(r.reloads, r.info, r.lastOK, r.lastOKAt)
	}
	if p := engine.Policy(); p != nil {
		r.info.WithLabelValues(p.Revision()).Set(1)
		r.lastOK.Set(1)
		r.lastOKAt.SetToCurrentTime()
	}
	return r
}

// apply handles one report of the policy source.
func (r *policyReloader) apply(ctx context.Context, u *policysource.Update, err error) {
	if err != nil {
		r.refuse(err)
		return
	}
	mergePolicyData(u, r.overlay)
	p, err := decision.Prepare(ctx, u.Bundle, u.Source, decision.Options{CacheSize: r.cacheSize, Locate: u.Locate})
	if err != nil {
		r.refuse(err)
		return
	}
	old := r.engine.Swap(p)
	r.reloads.WithLabelValues("success").Inc()
	r.info.Reset()
	r.info.WithLabelValues(p.Revision()).Set(1)
	r.lastOK.Set(1)
	r.lastOKAt.SetToCurrentTime()
	oldRev := ""
	if old != nil {
		oldRev = old.Revision()
	}
	r.log.Info("policy reloaded", "revision", p.Revision(), "previous_revision", oldRev, "source", u.Source)
	logWarnings(r.log, p)
}

func (r *policyReloader) refuse(err error) {
	r.reloads.WithLabelValues("error").Inc()
	r.lastOK.Set(0)
	active := ""
	if p := r.engine.Policy(); p != nil {
		active = p.Revision()
	}
	problems := decision.ProblemsOf(err)
	if len(problems) == 0 {
		r.log.Error("new policy refused; the active policy stays", "active_revision", active, "err", err)
		return
	}
	r.log.Error("new policy refused; the active policy stays", "active_revision", active, "problems", len(problems))
	for i, p := range problems {
		if i == 20 {
			r.log.Error("more policy problems not shown", "count", len(problems)-i)
			break
		}
		logProblem(r.log, p)
	}
}

func logProblem(log *slog.Logger, p decision.Problem) {
	level := slog.LevelError
	if p.Warning {
		level = slog.LevelWarn
	}
	args := []any{"at", p.Location(), "code", p.Code, "problem", p.Message}
	if p.Path != "" {
		args = append(args, "data", "data."+p.Path)
	}
	if p.Hint != "" {
		args = append(args, "hint", p.Hint)
	}
	log.Log(context.Background(), level, "policy problem", args...)
}

func logWarnings(log *slog.Logger, p *decision.Policy) {
	for _, w := range p.Warnings() {
		logProblem(log, w)
	}
}

// startPolicyReload watches the policy source in the background until
// Close. Nothing is watched for the embedded policy or when
// policy.poll_interval is 0s.
func (s *Server) startPolicyReload(w *policysource.Watcher, reg prometheus.Registerer) *policyReloader {
	pc := s.cfg.Policy
	r := newPolicyReloader(s.engine, pc, reg, s.log)
	r.overlay = s.policyData
	if w == nil {
		return r
	}
	if w.Kind() != policysource.KindEmbedded && (pc.PollInterval == nil || pc.PollInterval.D() > 0) {
		r.log.Info("watching policy for changes", "source", w.String(), "kind", w.Kind())
	}
	s.goBackground(func(ctx context.Context) { w.Run(ctx, r.apply) })
	return r
}

// mergePolicyData merges overlay into the bundle's data.mcp: maps merge
// key by key, any other value of overlay replaces the bundle's.
func mergePolicyData(u *policysource.Update, overlay map[string]any) {
	if len(overlay) == 0 || u == nil || u.Bundle == nil {
		return
	}
	if u.Bundle.Data == nil {
		u.Bundle.Data = map[string]any{}
	}
	mcp, _ := u.Bundle.Data["mcp"].(map[string]any)
	if mcp == nil {
		mcp = map[string]any{}
	}
	u.Bundle.Data["mcp"] = mergeMaps(mcp, overlay)
}

func mergeMaps(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = mergeMaps(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}
