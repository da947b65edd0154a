// Package prometheus_test checks the Grafana dashboard (deploy/grafana) and
// the Prometheus rules (deploy/prometheus) against a real Prometheus server
// scraping a real PDP under traffic: `promtool check rules` and `promtool
// test rules` pass, every query of the dashboard and every rule expression
// (each alert also without its thresholds) evaluates and returns data, and
// the alerts the traffic provokes go pending while the others stay silent.
//
// It needs Debian's prometheus package (prometheus and promtool on PATH);
// without them it skips, unless PDP_REQUIRE_PROMETHEUS is set (.ci/run).
package prometheus_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/servertest"
)

const (
	rulesFile     = "../../deploy/prometheus/mcp-pdp-rules.yml"
	rulesTestFile = "mcp-pdp-rules.test.yml"
	dashboardFile = "../../deploy/grafana/mcp-pdp.json"

	// The MCP servers the PDP decides for.
	shop     = "https://shop.example/mcp"
	billing  = "https://billing.example/mcp"
	jwksDown = "https://jwks-down.example/mcp" // its issuer answers 500
	opaque   = "https://opaque.example/mcp"    // its introspection endpoint answers 500

	// scrapeJob is the job name of the PDP in the test's Prometheus.
	scrapeJob = "mcp-pdp"
)

// The catalog: lookup_product allows 2 calls an hour per client, and
// generate_qr_url (scope qr:generate) 1 a day per subject.
const catalog = `mcp:
  default_catalog: demo
  catalogs:
    demo:
      unknown: {access: deny}
      tools:
        ping: {access: public}
        lookup_product:
          access: public
          rate: {limit: 2, per: 1h, by: client}
        generate_qr_url:
          access: step_up
          scopes: ["qr:generate"]
          quota: {limit: 1, per: day, by: sub}
`

// tools is a catalog with one more tool: the reload that succeeds.
const tools = catalog + `        search_products: {access: public}
`

// binaries returns the paths of prometheus and promtool, or skips.
func binaries(t *testing.T) (prom, promtool string) {
	t.Helper()
	prom, err1 := exec.LookPath("prometheus")
	promtool, err2 := exec.LookPath("promtool")
	if err1 != nil || err2 != nil {
		if os.Getenv("PDP_REQUIRE_PROMETHEUS") != "" {
			t.Fatalf("PDP_REQUIRE_PROMETHEUS is set but prometheus or promtool is not on PATH (%v, %v); apt-get install prometheus", err1, err2)
		}
		t.Skip("prometheus and promtool are not installed (Debian: apt-get install prometheus; .ci/run installs them)")
	}
	return prom, promtool
}

// TestPromtool: the rules are valid and their unit tests pass.
func TestPromtool(t *testing.T) {
	_, promtool := binaries(t)
	for _, c := range []struct {
		name, dir string
		args      []string
	}{
		{"check rules", ".", []string{"check", "rules", rulesFile}},
		{"test rules", filepath.Dir(rulesFile), []string{"test", "rules", rulesTestFile}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(promtool, c.args...)
			cmd.Dir = c.dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(c.args, " "), err, out)
			}
		})
	}
}

// TestDashboardAndRulesOnPrometheus: a PDP under traffic (allowed, denied,
// challenged, filtered and limited decisions, a quota, a JWKS and an
// introspection endpoint failing, API errors, a policy reload that
// succeeds and one that is refused), scraped every second by a real
// Prometheus with the rules loaded. Then every dashboard query (its
// template variables substituted) and every rule expression returns data.
func TestDashboardAndRulesOnPrometheus(t *testing.T) {
	prom, _ := binaries(t)
	start := time.Now()
	dash := readDashboard(t)
	rules := readRules(t)

	pdp, traffic := startPDP(t)
	p := startPrometheus(t, prom, pdp.URL)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { traffic(ctx) })
	t.Cleanup(func() { stop(); wg.Wait() })

	// A policy reload that succeeds, then one that is refused (the broken
	// file stays: the last reload failed).
	testkit.WriteFile(t, filepath.Join(pdp.PolicyDir, "data.yaml"), tools)
	p.waitFor(t, "a successful policy reload", `pdp_policy_reloads_total{result="success"} > 0`)
	testkit.WriteFile(t, filepath.Join(pdp.PolicyDir, "zz_broken.rego"), "package mcp.authz\n\nbroken := {\n")
	p.waitFor(t, "a refused policy reload", `pdp_policy_last_reload_successful == 0`)

	// Enough samples for rate() and the rules evaluated on them: the
	// counters that only exist once a decision or an error happened have
	// at least three samples each, and every recording rule has data.
	p.waitFor(t, "three samples of the decisions by outcome",
		`count(count by (outcome) (count_over_time(pdp_decisions_total[1m]) >= 3)) >= 5`)
	p.waitFor(t, "three samples of the API errors", `count_over_time(pdp_api_errors_total{error="unknown_resource"}[1m]) >= 3`)
	for _, r := range rules {
		if r.Record != "" {
			p.waitFor(t, "the recording rule "+r.Record, r.Record)
		}
	}
	p.waitRulesHealthy(t)
	t.Logf("PDP and Prometheus ready, rules evaluated: %s", time.Since(start).Round(time.Millisecond))

	t.Run("dashboard", func(t *testing.T) {
		for _, q := range dash.queries {
			p.mustReturnData(t, q.where, substitute(q.expr))
		}
		for _, v := range dash.variables {
			// label_values(selector, label): the selector has series with the label.
			p.mustReturnData(t, "variable "+v.name, fmt.Sprintf("count by (%s) (%s)", v.label, substitute(v.selector)))
		}
		t.Logf("%d queries and %d template variables evaluated", len(dash.queries), len(dash.variables))
	})
	t.Run("rules", func(t *testing.T) {
		n := 0
		for _, r := range rules {
			name := cmp.Or(r.Alert, r.Record)
			if r.Record != "" {
				p.mustReturnData(t, "recording rule "+name, r.Expr)
				continue
			}
			p.mustEvaluate(t, "alert "+name, r.Expr)
			bases, err := baseExprs(r.Expr)
			if err != nil {
				t.Errorf("alert %s: %v", name, err)
				continue
			}
			for _, b := range bases {
				p.mustReturnData(t, "alert "+name+" (base)", b)
				n++
			}
		}
		t.Logf("%d rules evaluated, %d base expressions of alerts", len(rules), n)
	})
	t.Run("labels", func(t *testing.T) {
		// The decision metrics by resource key and PEP name, as the traffic made them.
		key := config.ResourceKey
		for _, sel := range []string{
			`pdp_decisions_total{resource="` + key(shop) + `", pep="gateway-eu", outcome="allow"}`,
			`pdp_decisions_total{resource="` + key(shop) + `", pep="gateway-eu", outcome="filtered"}`,
			`pdp_decisions_total{resource="` + key(shop) + `", pep="gateway-eu", outcome="challenge", http_status="401"}`,
			`pdp_decisions_total{resource="` + key(shop) + `", pep="gateway-eu", outcome="deny"}`,
			`pdp_decisions_total{resource="` + key(shop) + `", pep="gateway-eu", outcome="limited", http_status="429"}`,
			`pdp_decisions_total{resource="` + key(billing) + `", pep="billing-pep", outcome="limited", http_status="429"}`,
			`pdp_decisions_total{resource="` + key(jwksDown) + `", pep="billing-pep", http_status="503"}`,
			`pdp_decisions_total{resource="` + key(opaque) + `", pep="billing-pep", http_status="503"}`,
			`pdp_decision_duration_seconds_count{resource="` + key(shop) + `", pep="gateway-eu"}`,
			`mcp_pdp_limited_total{limit="rate"} > 0`,
			`mcp_pdp_limited_total{limit="quota"} > 0`,
			`mcp_pdp_quota_takes_total{result="allowed"} > 0`,
			`pdp_jwks_fetch_errors_total > 0`,
			`pdp_pep_auth_failures_total{reason="invalid_api_key"} > 0`,
			`pdp_policy_reloads_total{result="error"} > 0`,
			`pdp_build_info{version="unknown", goversion="` + runtime.Version() + `"} == 1`,
		} {
			p.mustReturnData(t, "series", sel)
		}
		if n, err := p.query(`pdp_decisions_total{resource="other"} or pdp_decisions_total{pep=~"other|none"}`); err != nil || n != 0 {
			t.Errorf("decisions labelled other or none: %d series (%v)", n, err)
		}
	})
	t.Run("alerts", func(t *testing.T) {
		// The traffic provokes these (pending: their `for` has not run out)...
		provoked := []string{"PDPPolicyReloadFailing", "PDPDecisionsUnavailable", "PDPAPIErrors", "PDPJWKSFetchFailing", "PDPPEPAuthFailures"}
		// ...and not these: what they watch is healthy here.
		silent := []string{"PDPDown", "PDPAuditEventsLost", "PDPAuditUnhealthy", "PDPAuditSpoolGrowing", "PDPAuditLag", "PDPQuotaSettleLost", "PDPRateBucketsEvicted"}
		var active map[string]string
		deadline := time.Now().Add(30 * time.Second)
		for {
			active = p.activeAlerts(t)
			missing := slices.DeleteFunc(slices.Clone(provoked), func(a string) bool { return active[a] != "" })
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("alerts %v are not active; active: %v", missing, active)
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("active alerts: %v", active)
		for _, a := range silent {
			if s := active[a]; s != "" {
				t.Errorf("%s is %s on a healthy PDP", a, s)
			}
		}
	})
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// startPDP runs a dev PDP for shop and billing (PEPs gateway-eu and
// billing-pep, by API key), a resource whose signing keys cannot be
// fetched and one whose introspection endpoint fails, with the catalog
// in a policy directory watched every 200ms. traffic sends rounds of
// requests until its context ends.
func startPDP(t *testing.T) (*servertest.PDP, func(context.Context)) {
	failing := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for the test", http.StatusInternalServerError)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = failing.Serve(ln) }()
	t.Cleanup(func() { _ = failing.Close() })
	down := "http://" + ln.Addr().String()
	secret := filepath.Join(t.TempDir(), "introspection-secret")
	testkit.WriteFile(t, secret, "s3cret\n")

	keys := map[string]string{"gateway-eu": "key-gateway-eu", "billing-pep": "key-billing-pep"}
	pdp := servertest.Dev(t, servertest.Options{
		Resources: []string{shop, billing},
		Data:      catalog,
		Edit: func(c *config.Config) {
			for name, key := range keys {
				c.Auth.APIKeys = append(c.Auth.APIKeys, config.APIKey{Name: name, SHA256: api.HashAPIKey(key)})
			}
			every := config.Duration(200 * time.Millisecond)
			c.Policy.PollInterval = &every
			// The failing key set is fetched again at most every 500ms (10s by default).
			c.JWKS.MinRefetchInterval = config.Duration(500 * time.Millisecond)
			c.Resources = append(c.Resources,
				config.Resource{URI: jwksDown, Issuer: down, JWKSURI: down + "/jwks.json"},
				config.Resource{URI: opaque, Issuer: down, JWKSURI: down + "/jwks.json", Introspection: &config.Introspection{
					Endpoint: down + "/introspect", ClientID: "pdp", ClientSecretFile: secret,
				}})
		},
	})
	iss := pdp.Server.DevIssuer()
	mint := func(o devissuer.MintOptions) string {
		tok, err := iss.Mint(o)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	alice := mint(devissuer.MintOptions{Subject: "alice", ClientID: "agent", Audience: []string{shop, billing}, Scopes: []string{"qr:generate"}})
	// Signed by the dev issuer but naming the failing one: its keys are fetched, and fail.
	stranger := mint(devissuer.MintOptions{Subject: "bob", ClientID: "agent", Audience: []string{jwksDown}, Kid: "unknown-kid",
		Extra: map[string]any{"iss": down}})

	call := func(resource, authz, tool string) string {
		return `{"resource":"` + resource + `","authorization":"` + authz + `","rate_key":"192.0.2.7",` +
			`"message":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"gtin":"4006381333931"}}}}`
	}
	list := `{"resource":"` + shop + `","message":{"jsonrpc":"2.0","id":2,"method":"tools/list"},` +
		`"result":{"tools":[{"name":"ping","inputSchema":{"type":"object"}},{"name":"internal_debug","inputSchema":{"type":"object"}}]}}`
	evaluation := `{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"ping"},"context":{"mcp_server":"` + billing + `"}}`
	type request struct{ key, path, body string }
	round := []request{
		{"key-gateway-eu", "/v1/decide", call(shop, alice, "ping")},                         // allow
		{"key-gateway-eu", "/v1/decide", list},                                              // filtered
		{"key-gateway-eu", "/v1/decide", call(shop, "", "generate_qr_url")},                 // challenge
		{"key-gateway-eu", "/v1/decide", call(shop, alice, "internal_debug")},               // deny
		{"key-gateway-eu", "/v1/decide", call(shop, "", "lookup_product")},                  // allow twice, then limited (rate)
		{"key-billing-pep", "/v1/decide", call(billing, alice, "generate_qr_url")},          // allow once, then limited (quota)
		{"key-billing-pep", "/v1/decide", call(billing, alice, "ping")},                     // allow
		{"key-billing-pep", "/v1/decide", call(jwksDown, stranger, "ping")},                 // 503: signing keys unavailable
		{"key-billing-pep", "/v1/decide", call(opaque, "Bearer opaque-token-1234", "ping")}, // 503: introspection unavailable
		{"key-billing-pep", "/v1/decide", call("https://unknown.example/mcp", "", "ping")},  // API error unknown_resource
		{"wrong-key", "/v1/decide", call(shop, "", "ping")},                                 // 401 invalid_api_key
		// Three of them: PDPPEPAuthFailures (0.1/s over 5m) is over its threshold within seconds.
		{"wrong-key", "/v1/decide", call(shop, "", "ping")},
		{"wrong-key", "/v1/decide", call(shop, "", "ping")},
		{"key-billing-pep", "/access/v1/evaluation", evaluation}, // AuthZEN allow
	}
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(ctx context.Context, r request) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, pdp.URL+r.path, strings.NewReader(r.body))
		if err != nil {
			t.Error(err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(api.APIKeyHeader, r.key)
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("POST %s: %v", r.path, err)
			}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	traffic := func(ctx context.Context) {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, r := range round {
				send(ctx, r)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}
	return pdp, traffic
}

// promServer is a running Prometheus.
type promServer struct {
	url    string
	client *http.Client
}

// startPrometheus runs prometheus scraping target every second, with the
// rules loaded and evaluated every second; it stops when the test ends.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: %s
    static_configs: [{targets: [%q]}]
`, rules, scrapeJob, u.Host)
	testkit.WriteFile(t, filepath.Join(dir, "prometheus.yml"), cfg)
	var lastErr error
	for attempt := range 3 {
		addr := freeAddr(t)
		var logs bytes.Buffer
		cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
			"--web.listen-address="+addr, "--log.level=warn")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("start prometheus: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		p := &promServer{url: "http://" + addr, client: &http.Client{Timeout: 10 * time.Second}}
		deadline := time.Now().Add(30 * time.Second)
		for {
			select {
			case err := <-exited:
				lastErr = fmt.Errorf("prometheus exited (%v):\n%s", err, logs.String())
			default:
				if resp, err := p.client.Get(p.url + "/-/ready"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						t.Cleanup(func() {
							_ = cmd.Process.Kill()
							<-exited
							if t.Failed() {
								t.Logf("prometheus log:\n%s", logs.String())
							}
						})
						return p
					}
				}
				if time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				_ = cmd.Process.Kill()
				<-exited
				t.Fatalf("prometheus not ready within 30s:\n%s", logs.String())
			}
			break // exited: try another port
		}
	}
	t.Fatalf("prometheus did not start: %v", lastErr)
	return nil
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// apiResponse is the envelope of Prometheus's HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

// get calls the HTTP API and returns its data.
func (p *promServer) get(path string, q url.Values) (json.RawMessage, error) {
	resp, err := p.client.Get(p.url + path + "?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r apiResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %d, not JSON: %w", path, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// query evaluates expr now and returns the number of series (or 1 for a
// scalar or string).
func (p *promServer) query(expr string) (int, error) {
	data, err := p.get("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return 0, err
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return 0, err
	}
	if d.ResultType == "scalar" || d.ResultType == "string" {
		return 1, nil
	}
	var series []json.RawMessage
	if err := json.Unmarshal(d.Result, &series); err != nil {
		return 0, err
	}
	return len(series), nil
}

// mustEvaluate fails the test when expr is not valid PromQL.
func (p *promServer) mustEvaluate(t *testing.T, where, expr string) {
	t.Helper()
	if _, err := p.query(expr); err != nil {
		t.Errorf("%s: %v\n  %s", where, err, expr)
	}
}

// mustReturnData fails the test when expr is not valid or returns nothing.
func (p *promServer) mustReturnData(t *testing.T, where, expr string) {
	t.Helper()
	n, err := p.query(expr)
	switch {
	case err != nil:
		t.Errorf("%s: %v\n  %s", where, err, expr)
	case n == 0:
		t.Errorf("%s returns no data:\n  %s", where, expr)
	}
}

// waitFor polls until expr returns data.
func (p *promServer) waitFor(t *testing.T, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := p.query(expr)
		if err != nil {
			t.Fatalf("waiting for %s: %v\n  %s", what, err, expr)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n  %s", what, expr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitRulesHealthy waits until Prometheus has evaluated every rule and
// fails the test on a rule whose evaluation failed.
func (p *promServer) waitRulesHealthy(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := p.get("/api/v1/rules", nil)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatal(err)
		}
		var pending []string
		n := 0
		for _, g := range d.Groups {
			for _, r := range g.Rules {
				n++
				switch r.Health {
				case "ok":
				case "err":
					t.Fatalf("rule %s (group %s) fails: %s", r.Name, g.Name, r.LastError)
				default:
					pending = append(pending, r.Name)
				}
			}
		}
		if n == 0 {
			t.Fatal("Prometheus loaded no rules")
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules not evaluated: %v", pending)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// activeAlerts are the pending or firing alerts by name.
func (p *promServer) activeAlerts(t *testing.T) map[string]string {
	t.Helper()
	data, err := p.get("/api/v1/alerts", nil)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range d.Alerts {
		if out[a.Labels["alertname"]] != "firing" {
			out[a.Labels["alertname"]] = a.State
		}
	}
	return out
}

// rule is one rule of the rules file.
type rule struct {
	Record string `yaml:"record"`
	Alert  string `yaml:"alert"`
	Expr   string `yaml:"expr"`
}

func readRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", rulesFile)
	}
	return out
}

// rateInterval stands in for Grafana's $__rate_interval: four scrape
// intervals of the test's Prometheus and more.
const rateInterval = "30s"

// substitute replaces the dashboard's template variables as Grafana does
// with "All" selected.
func substitute(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", rateInterval, "${__rate_interval}", rateInterval,
		"$job", ".*", "$instance", ".*", "$resource", ".*", "$pep", ".*",
	).Replace(expr)
}

// dashboard is what the test reads of the dashboard.
type dashboard struct {
	queries []struct {
		where, expr string
	}
	variables []struct {
		name, selector, label string
	}
}

// labelValues is a Prometheus query variable: label_values(selector, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// readDashboard reads the dashboard and checks its shape: Grafana's
// schema 39, the datasource, job, instance, resource and pep variables,
// every panel on the Prometheus datasource variable, unique ids, panels
// within the 24-column grid, each query with a refId.
func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID           string `json:"uid"`
		Title         string `json:"title"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Query      any    `json:"query"`
				Definition string `json:"definition"`
				Datasource *struct {
					Type string `json:"type"`
					UID  string `json:"uid"`
				} `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("dashboard uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	var out dashboard
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type != "query" {
			continue
		}
		if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("variable %s: datasource %v, want ${datasource}", v.Name, v.Datasource)
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		out.variables = append(out.variables, struct{ name, selector, label string }{v.Name, m[1], m[2]})
	}
	for name, typ := range map[string]string{"datasource": "datasource", "job": "query", "instance": "query", "resource": "query", "pep": "query"} {
		if vars[name] != typ {
			t.Errorf("template variable %s: type %q, want %q", name, vars[name], typ)
		}
	}
	ids := map[int]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: id not unique", where)
			}
			ids[p.ID] = true
			if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("%s: gridPos %+v", where, g)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
				t.Errorf("%s: datasource %+v, want the ${datasource} variable", where, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no queries", where)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" || tg.RefID == "" {
					t.Errorf("%s: query %+v without expr or refId", where, tg)
				}
				out.queries = append(out.queries, struct{ where, expr string }{where + " " + tg.RefID, tg.Expr})
			}
		}
	}
	walk(d.Panels)
	if len(out.queries) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return out
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}
