package server

import (
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/auditstore"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/dpop"
	"github.com/mcp-pdp/pdp/internal/gateway"
	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/internal/policysource"
	"github.com/mcp-pdp/pdp/internal/revoke"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/internal/tracing"
)

// TestDocumentedDefaults pins the Default column of docs/configuration.md
// to the values the code uses: each key's default lives in the package that
// uses it, and the page must say what that package does. A row lists its
// default values in backticks, in this order.
func TestDocumentedDefaults(t *testing.T) {
	want := map[string][]string{
		"listen":                         {config.DefaultListen},
		"data_dir":                       {config.DefaultDataDir},
		"challenge_scopes":               {string(stepup.Operation)},
		"algorithms":                     {strings.Join(token.DefaultAlgorithms(), " ")},
		"clock_skew":                     {dur(token.DefaultClockSkew)},
		"policy.poll_interval":           {dur(defaultFilePoll), dur(defaultURLPoll)},
		"policy.decision_cache_size":     {strconv.Itoa(decision.DefaultCacheSize), "0"},
		"policy.verification.key_id":     {policysource.DefaultKeyID, "key_file"},
		"policy.verification.algorithm":  {policysource.DefaultAlgorithm, "key_file"},
		"limits.max_body_bytes":          {strconv.Itoa(api.DefaultMaxBodyBytes)},
		"limits.decision_timeout":        {dur(core.DefaultDecisionTimeout)},
		"limits.read_timeout":            {dur(DefaultReadTimeout)},
		"limits.write_timeout":           {dur(DefaultWriteTimeout)},
		"limits.idle_timeout":            {dur(DefaultIdleTimeout)},
		"limits.token_cache_size":        {strconv.Itoa(token.DefaultCacheEntries)},
		"limits.max_concurrent":          {strconv.Itoa(api.DefaultMaxConcurrent)},
		"jwks.refresh_interval":          {dur(token.DefaultRefreshInterval)},
		"jwks.min_refetch_interval":      {dur(token.DefaultMinRefetchInterval)},
		"jwks.fetch_timeout":             {dur(token.DefaultFetchTimeout)},
		"jwks.max_body_bytes":            {strconv.Itoa(token.DefaultMaxBodyBytes)},
		"audit.mode":                     {auditsink.ModeAsync},
		"audit.stream":                   {auditsink.DefaultStream},
		"audit.subject_prefix":           {auditsink.DefaultSubjectPrefix},
		"audit.replicas":                 {strconv.Itoa(auditsink.DefaultReplicas)},
		"audit.duplicate_window":         {dur(auditsink.DefaultDuplicateWindow)},
		"audit.queue_size":               {strconv.Itoa(auditsink.DefaultQueueSize)},
		"audit.spool_dir":                {"<data_dir>/" + DefaultSpoolDir},
		"audit.checkpoint.every":         {strconv.Itoa(auditsink.DefaultCheckpointEvery)},
		"audit.checkpoint.interval":      {dur(auditsink.DefaultCheckpointInterval)},
		"audit.checkpoint.signing_key":   {"<data_dir>/" + DefaultSigningKey},
		"audit.nats.url":                 {config.NATSEmbedded},
		"revocation.bucket":              {revoke.DefaultBucket},
		"revocation.snapshot_file":       {"<data_dir>/" + DefaultRevocationSnapshot},
		"audit.store.db":                 {"<data_dir>/" + auditstore.DefaultFile},
		"log.level":                      {strings.ToLower(slog.LevelInfo.String())},
		"log.format":                     {"text"},
		"runtime.gc_percent":             {strconv.Itoa(DefaultGCPercent), "0"},
		"upstream.response_timeout":      {dur(gateway.DefaultResponseTimeout)},
		"upstream.max_response_bytes":    {strconv.Itoa(gateway.DefaultMaxResponseBytes)},
		"upstream.connect_timeout":       {dur(gateway.DefaultConnectTimeout)},
		"upstream.idle_stream_timeout":   {dur(gateway.DefaultIdleStreamTimeout)},
		"upstream.max_request_bytes":     {strconv.Itoa(gateway.DefaultMaxBodyBytes)},
		"upstream.max_concurrent":        {strconv.Itoa(gateway.DefaultMaxConcurrent)},
		"upstream.max_processes":         {strconv.Itoa(stdio.DefaultMaxProcesses)},
		"upstream.idle_timeout":          {dur(stdio.DefaultIdleTimeout)},
		"gateway.assertion_key_file":     {"<data_dir>/" + defaultAssertionKeyFile},
		"introspection.auth_method":      {token.AuthClientSecretBasic},
		"introspection.timeout":          {dur(token.DefaultIntrospectionTimeout)},
		"introspection.max_ttl":          {dur(token.DefaultIntrospectionMaxTTL)},
		"introspection.negative_ttl":     {dur(token.DefaultIntrospectionNegativeTTL)},
		"introspection.discover":         {"false"},
		"introspection.jwt_response":     {"false"},
		"introspection.require_audience": {"false"},
		"dpop":                           {string(stepup.DPoPAllowed)},
		"dpop_algorithms":                {strings.Join(dpop.DefaultAlgorithms(), " ")},
		"dpop_window":                    {dur(dpop.DefaultWindow)},
		"dpop_nonce":                     {"false"},
		"tracing.sample_ratio":           {strconv.FormatFloat(tracing.DefaultSampleRatio, 'g', -1, 64)},
		"tracing.service_name":           {tracing.DefaultServiceName},
	}
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([^`]+)` \\|[^|]*\\|([^|]*)\\|")
	tick := regexp.MustCompile("`([^`]*)`")
	seen := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		exp, ok := want[m[1]]
		if !ok {
			continue
		}
		seen[m[1]] = true
		var got []string
		for _, v := range tick.FindAllStringSubmatch(m[2], -1) {
			got = append(got, v[1])
		}
		if strings.Join(got, "|") != strings.Join(exp, "|") {
			t.Errorf("docs/configuration.md: %s: the Default column says %q, the code uses %q", m[1], got, exp)
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("docs/configuration.md has no row for %s", k)
		}
	}
	// The logger's own default must be what the page says.
	if l, err := NewLogger(config.Log{}, os.Stderr); err != nil || !l.Enabled(t.Context(), slog.LevelInfo) || l.Enabled(t.Context(), slog.LevelDebug) {
		t.Errorf("NewLogger's default level is not info: %v", err)
	}
}

// dur writes a duration as the page does: 30s, 2m, 250ms.
func dur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
