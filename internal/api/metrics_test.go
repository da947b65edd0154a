package api_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// TestDecisionMetricLabels: the decision metrics carry the resource's
// key and the authenticated PEP's name, for /v1/decide and the AuthZEN
// evaluation alike; a request for a resource that is not configured is an
// API error, not a decision.
func TestDecisionMetricLabels(t *testing.T) {
	e := newServer(t, serverOptions{api: func(o *api.Options) {
		o.Auth = api.PEPAuth{APIKeys: []api.APIKey{mustKey(t, "gateway", "k1"), mustKey(t, "billing", "k2")}}
		o.ResourceLabels = map[string]string{resource: "shop"}
	}})
	alice := e.mint(t, devissuer.MintOptions{Scopes: []string{"qr:generate"}})
	call := func(authz, tool string) string {
		return `{"resource":"` + resource + `","authorization":"` + authz + `",` +
			`"message":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"gtin":"4006381333931"}}}}`
	}
	evaluation := `{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"lookup_product"}}`
	for _, s := range []struct {
		key, path, body string
		status          int
	}{
		{"k1", "/v1/decide", call(alice, "generate_qr_url"), 200},
		{"k1", "/v1/decide", call(alice, "generate_qr_url"), 200},
		{"k1", "/v1/decide", call("", "generate_qr_url"), 200},
		{"k2", "/v1/decide", call(alice, "internal_debug"), 200},
		{"k2", "/access/v1/evaluation", evaluation, 200},
		{"k2", "/v1/decide", `{"resource":"https://elsewhere.example/mcp","message":{"jsonrpc":"2.0","id":1,"method":"ping"}}`, 400},
	} {
		resp, out := e.do(t, nil, http.MethodPost, s.path, map[string]string{api.APIKeyHeader: s.key}, []byte(s.body))
		if resp.StatusCode != s.status {
			t.Fatalf("%s %s: %d %v", s.path, s.body, resp.StatusCode, out)
		}
	}
	for _, c := range []struct {
		series string
		want   float64
	}{
		{`pdp_decisions_total{http_status="200",outcome="allow",pep="gateway",resource="shop"}`, 2},
		{`pdp_decisions_total{http_status="401",outcome="challenge",pep="gateway",resource="shop"}`, 1},
		{`pdp_decisions_total{http_status="200",outcome="deny",pep="billing",resource="shop"}`, 1},
		{`pdp_decision_duration_seconds_count{pep="gateway",resource="shop"}`, 3},
		// The AuthZEN evaluation is counted, its latency is not.
		{`pdp_decisions_total{http_status="200",outcome="allow",pep="billing",resource="shop"}`, 1},
		{`pdp_decision_duration_seconds_count{pep="billing",resource="shop"}`, 1},
		{`pdp_api_errors_total{error="unknown_resource"}`, 1},
		{`pdp_decisions_total{http_status="200",outcome="allow",pep="billing",resource="other"}`, 0},
	} {
		if got := e.metric(t, c.series); got != c.want {
			t.Errorf("%s = %s, want %s", c.series, strconv.FormatFloat(got, 'g', -1, 64), strconv.FormatFloat(c.want, 'g', -1, 64))
		}
	}
}
