package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/quota"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
	"github.com/mcp-pdp/pdp/pep"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// limitedPolicy is the default policy with a catalog whose
// lookup_product allows 2 calls an hour per client and whose
// generate_qr_url has a daily quota of 5 per subject.
func limitedPolicy(t *testing.T) string {
	return coretest.DefaultPolicyDir(t, `mcp:
  default_catalog: demo
  catalogs:
    demo:
      unknown: {access: deny}
      tools:
        lookup_product:
          access: public
          rate: {limit: 2, per: 1h, by: client}
        generate_qr_url:
          access: step_up
          scopes: ["qr:generate"]
          quota: {limit: 5, per: day, by: sub}
`)
}

// hCounting is a PDP with the limited policy and audit on, hence the
// quota counters, on an embedded NATS of its own.
type hCounting struct {
	base string
	iss  *devissuertest.Server
	nats *natstest.Server
	c    *http.Client
}

// hStartCounting starts it; edit (may be nil) changes the configuration
// first (cfg.Policy.Path is the limited policy's directory).
func hStartCounting(t *testing.T, edit func(*config.Config)) *hCounting {
	t.Helper()
	h := &hCounting{iss: devissuertest.New(t, "ES256"), nats: natstest.Start(t), c: &http.Client{Timeout: 10 * time.Second}}
	cfg := hConfig(t, h.iss)
	cfg.Policy.Path = limitedPolicy(t)
	cfg.Audit = config.Audit{NATS: config.NATS{URL: h.nats.URL()}}
	if edit != nil {
		edit(cfg)
	}
	cfg.ApplyDefaults()
	h.base = hStart(t, cfg)
	return h
}

// token mints a bearer token for sub with the scope qr:generate and the
// claims extra.
func (h *hCounting) token(t *testing.T, sub, client string, extra map[string]any) string {
	return "Bearer " + h.iss.Mint(t, devissuer.MintOptions{Subject: sub, ClientID: client, Audience: []string{hResource}, Scopes: []string{"qr:generate"}, Extra: extra})
}

// decide decides a tools/call of tool for authz; while the counter stream
// is not made yet (503: it is made in the background at start), it asks
// again.
func (h *hCounting) decide(t *testing.T, authz, tool string) map[string]any {
	t.Helper()
	var out map[string]any
	testkit.WaitFor(t, "the counter stream", func() bool {
		var err error
		_, out, err = hPost(t, h.c, h.base+"/v1/decide", nil, hCallBody(authz, tool))
		return err == nil && out["http_status"] != float64(503)
	})
	return out
}

// TestRateLimitEndToEnd: a catalog's rate limit through the running PDP:
// within the burst allowed, then 429 with Retry-After and the in-band
// forms, for that client only; the limited decision is one audit event
// with outcome limited and the limit. A quota is counted in JetStream
// across the subject's clients and refused, limited, once spent.
func TestRateLimitEndToEnd(t *testing.T) {
	h := hStartCounting(t, nil)
	base, c, srv := h.base, h.c, h.nats
	agent7, agent8 := h.token(t, "alice", "agent-7", nil), h.token(t, "alice", "agent-8", nil)
	decide := func(authz, tool string) map[string]any {
		t.Helper()
		status, out, err := hPost(t, c, base+"/v1/decide", nil, hCallBody(authz, tool))
		if err != nil || status != 200 {
			t.Fatalf("decide: %d %v %v", status, out, err)
		}
		return out
	}
	for i := range 2 {
		if out := decide(agent7, "lookup_product"); out["allow"] != true {
			t.Fatalf("call %d within the limit: %v", i+1, out)
		}
	}
	out := decide(agent7, "lookup_product")
	retry, _ := out["retry_after"].(float64)
	if out["allow"] != false || out["outcome"] != "limited" || out["http_status"] != float64(429) || retry < 1700 || retry > 1800 {
		t.Fatalf("over the limit: %v, want limited, 429, retry_after about 1800 s", out)
	}
	rpcErr, _ := out["jsonrpc_error"].(map[string]any)
	tool, _ := out["tool_result"].(map[string]any)
	if rpcErr["code"] != float64(-32029) || !strings.Contains(rpcErr["message"].(string), "Rate limit exceeded for lookup_product (2 calls per 1h0m0s per client)") || tool["isError"] != true {
		t.Fatalf("in-band forms: %v %v", rpcErr, tool)
	}
	limitedID, _ := out["decision_id"].(string)
	if out := decide(agent8, "lookup_product"); out["allow"] != true {
		t.Fatalf("another client has its own budget: %v", out)
	}
	// The quota: counted in JetStream, five a day for alice whatever her
	// client, then limited until the day (UTC) ends.
	for i := range 5 {
		tok := agent7
		if i%2 == 1 {
			tok = agent8
		}
		if q := h.decide(t, tok, "generate_qr_url"); q["allow"] != true {
			t.Fatalf("quota call %d: %v", i+1, q)
		}
	}
	q := decide(agent8, "generate_qr_url")
	untilMidnight := time.Until(time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)).Seconds()
	if got, _ := q["retry_after"].(float64); q["outcome"] != "limited" || got < untilMidnight-5 || got > untilMidnight+5 ||
		!strings.Contains(q["jsonrpc_error"].(map[string]any)["message"].(string), "Quota exceeded for generate_qr_url (5 calls per day per sub)") {
		t.Fatalf("over the quota: %v, want limited until midnight UTC (%.0f s)", q, untilMidnight)
	}

	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mcp_pdp_quota_takes_total{result="allowed"} 5`, `mcp_pdp_quota_takes_total{result="denied"} 1`,
		`mcp_pdp_rate_buckets 2`, `pdp_decisions_total{http_status="429",outcome="limited",pep="none",resource="` + config.ResourceKey(hResource) + `"} 2`, "mcp_pdp_quota_circuit_open 0", `mcp_pdp_limited_total{limit="rate"} 1`, `mcp_pdp_limited_total{limit="quota"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var ev *auditsink.Event
	testkit.WaitFor(t, "the limited decision's audit event", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = auditsink.Read(ctx, js, auditsink.DefaultStream, auditsink.DefaultSubjectPrefix, auditsink.Filter{}, false, func(e *auditsink.Event) error {
			if e.ID == limitedID {
				ev = e
			}
			return nil
		})
		return ev != nil
	})
	want := auditsink.Limit{Kind: "rate", Limit: 2, Per: "1h0m0s", By: "client"}
	if ev.Outcome != auditsink.OutcomeLimited || ev.HTTPStatus != 429 || ev.Limit == nil || *ev.Limit != want || ev.ClientID != "agent-7" {
		b, _ := json.Marshal(ev)
		t.Fatalf("audit event %s, want outcome limited with %+v", b, want)
	}
}

// TestQuotaAcrossReplicas (issue #18 §4): three PDP replicas on a 3-node
// NATS cluster share a quota of 100 under concurrent calls from 32
// callers (one subject, 32 clients: by sub); a NATS node is stopped during
// the run. Never more than 100 calls are allowed, and with the node
// stopped in an orderly way (its leaderships handed over) exactly 100.
func TestQuotaAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster and three PDPs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pol := coretest.DefaultPolicyDir(t, `mcp:
  default_catalog: demo
  catalogs:
    demo:
      unknown: {access: deny}
      tools:
        generate_qr_url: {access: step_up, scopes: ["qr:generate"], quota: {limit: 100, per: month, by: sub}}
`)
	cl, iss, bases := hReplicas(t, ctx, pol, nil)
	c := &http.Client{Timeout: 10 * time.Second}
	probe := iss.Mint(t, devissuer.MintOptions{Subject: "probe", ClientID: "p", Audience: []string{hResource}, Scopes: []string{"qr:generate"}})
	for _, b := range bases { // the counter stream is made in the background
		testkit.WaitFor(t, "quota counting on "+b, func() bool {
			_, out, err := hPost(t, c, b+"/v1/decide", nil, hCallBody("Bearer "+probe, "generate_qr_url"))
			return err == nil && out["allow"] == true
		})
	}

	var allowed, limited, unavailable, other atomic.Int64
	var wg sync.WaitGroup
	var calls atomic.Int64
	stopped := make(chan struct{})
	for i := range 32 {
		tok := "Bearer " + iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: fmt.Sprintf("agent-%d", i), Audience: []string{hResource}, Scopes: []string{"qr:generate"}})
		wg.Go(func() {
			for range 8 { // 256 calls in all
				_, out, err := hPost(t, c, bases[i%3]+"/v1/decide", nil, hCallBody(tok, "generate_qr_url"))
				switch {
				case err != nil:
					other.Add(1)
				case out["allow"] == true:
					allowed.Add(1)
				case out["outcome"] == "limited":
					limited.Add(1)
				case out["http_status"] == float64(503):
					unavailable.Add(1)
				default:
					other.Add(1)
				}
				if calls.Add(1) == 60 {
					close(stopped)
				}
			}
		})
	}
	<-stopped
	// The quota stream's leader killed mid-run: the calls whose
	// increment it took without an acknowledgement are refused (503) and
	// settled, so they do not count.
	leader := quotaStreamLeader(t, ctx, cl)
	cl.Stop(leader)
	wg.Wait()
	t.Logf("leader %d stopped: allowed %d, limited %d, unavailable %d, other %d", leader, allowed.Load(), limited.Load(), unavailable.Load(), other.Load())
	if allowed.Load() > 100 {
		t.Fatalf("%d calls allowed, the quota is 100", allowed.Load())
	}
	if other.Load() != 0 {
		t.Fatalf("%d answers neither allowed, limited nor unavailable", other.Load())
	}
	for _, b := range bases {
		testkit.WaitFor(t, "failed takes settled on "+b, func() bool {
			v, ok := hMetric(t, c, b, "mcp_pdp_quota_unsettled")
			return ok && v == 0
		})
		if v, _ := hMetric(t, c, b, "mcp_pdp_quota_settle_lost_total"); v != 0 {
			t.Fatalf("%s: %v failed takes could not be settled", b, v)
		}
	}
	// The rest of the budget, spent after the run: exactly 100 in all.
	tok := "Bearer " + iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "late", Audience: []string{hResource}, Scopes: []string{"qr:generate"}})
	late := 0
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, out, err := hPost(t, c, bases[(leader+1)%3]+"/v1/decide", nil, hCallBody(tok, "generate_qr_url"))
		if err != nil {
			t.Fatal(err)
		}
		if out["allow"] == true {
			late++
			continue
		}
		if out["outcome"] == "limited" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quota cannot be spent after the run: %v", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("then %d allowed", late)
	if n := allowed.Load() + int64(late); n != 100 {
		t.Fatalf("%d calls allowed in all (%d during the run, %d after it), want exactly 100", n, allowed.Load(), late)
	}
}

// quotaStreamLeader is the index of the node leading the quota counter
// stream.
func quotaStreamLeader(t *testing.T, ctx context.Context, cl *natsembed.Cluster) int {
	t.Helper()
	nc, err := nats.Connect(cl.ClientURLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	str, err := js.Stream(ctx, quota.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info := str.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("quota stream without a leader: %+v", info.Cluster)
	}
	return cl.Index(info.Cluster.Leader)
}

// hMetric reads the value of a series (a metric's name, with its labels
// as /metrics writes them) from base's /metrics.
func hMetric(t *testing.T, c *http.Client, base, name string) (float64, bool) {
	t.Helper()
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestQuotaBudgetInInput: a policy that reads input.budget sees what is
// left of the call's quota (read from the counters the first time, then
// as this replica saw it): here it keeps the last two calls of the
// window for the pro plan, so a free caller is refused (the policy's
// reason) two calls early and a pro caller spends the quota.
func TestQuotaBudgetInInput(t *testing.T) {
	h := hStartCounting(t, func(cfg *config.Config) {
		testkit.WriteFile(t, filepath.Join(cfg.Policy.Path, "budget.rego"), `package mcp.authz

deny contains "the last 2 calls of the day are kept for the pro plan" if {
	input.budget.quota.remaining <= 2
	input.token.claims.plan != "pro"
}
`)
	})
	for _, tc := range []struct {
		sub, plan string
		want      []string // outcomes of 6 calls
	}{
		{"free-user", "free", []string{"allow", "allow", "allow", "deny", "deny", "deny"}},
		{"pro-user", "pro", []string{"allow", "allow", "allow", "allow", "allow", "limited"}},
	} {
		tok := h.token(t, tc.sub, "agent", map[string]any{"plan": tc.plan})
		for i, want := range tc.want {
			out := h.decide(t, tok, "generate_qr_url")
			if out["outcome"] != want {
				t.Fatalf("%s call %d: %v, want %s", tc.sub, i+1, out, want)
			}
			if want == "deny" && !strings.Contains(out["reason"].(string), "kept for the pro plan") {
				t.Fatalf("%s call %d: %v", tc.sub, i+1, out)
			}
		}
	}
}

// TestSharedRateAcrossReplicas: a rate with shared: true is counted by
// the replicas together (fixed windows of per in the quota counters):
// two PDPs on one NATS allow 4 calls an hour between them, then both
// answer limited with the time to the window's end; a rate without it
// is per replica (4 on each).
func TestSharedRateAcrossReplicas(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	srv := natstest.Start(t)
	cfg := hConfig(t, iss)
	cfg.Policy.Path = coretest.DefaultPolicyDir(t, `mcp:
  default_catalog: demo
  catalogs:
    demo:
      unknown: {access: deny}
      tools:
        generate_qr_url: {access: step_up, scopes: ["qr:generate"], rate: {limit: 4, per: 1h, by: sub, shared: true}}
        lookup_product: {access: step_up, scopes: ["qr:generate"], rate: {limit: 4, per: 1h, by: sub}}
`)
	cfg.Audit = config.Audit{NATS: config.NATS{URL: srv.URL()}}
	cfg.ApplyDefaults()
	bases := []string{hStart(t, cfg), hStart(t, cfg)}
	c := &http.Client{Timeout: 10 * time.Second}
	tok := "Bearer " + iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "agent", Audience: []string{hResource}, Scopes: []string{"qr:generate"}})
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the counter stream", func() bool { // made in the background
		_, err := js.Stream(context.Background(), quota.DefaultStream)
		return err == nil
	})
	count := func(tool string) (allowed int, last map[string]any) {
		for i := range 10 {
			_, out, err := hPost(t, c, bases[i%2]+"/v1/decide", nil, hCallBody(tok, tool))
			if err != nil {
				t.Fatal(err)
			}
			if out["allow"] == true {
				allowed++
			} else {
				last = out
			}
		}
		return allowed, last
	}
	allowed, last := count("generate_qr_url")
	untilHour := time.Until(time.Now().Truncate(time.Hour).Add(time.Hour)).Seconds()
	if got, _ := last["retry_after"].(float64); allowed != 4 || last["outcome"] != "limited" || got < untilHour-5 || got > untilHour+5 {
		t.Fatalf("shared: %d allowed, last %v; want 4, then limited for about %.0f s", allowed, last, untilHour)
	}
	if reason, _ := last["reason"].(string); !strings.Contains(reason, "shared by the replicas") {
		t.Fatalf("reason %q", reason)
	}
	if allowed, _ := count("lookup_product"); allowed != 8 {
		t.Fatalf("per replica: %d allowed, want 4 on each", allowed)
	}
}

// TestQuotaAllowedWhileNATSIsAway: with on_counter_unavailable: allow,
// the calls made while NATS is down are allowed (their audit events say
// uncounted, and the audit spool keeps them) and counted once NATS is
// back: a quota of 5 with one call before and 2 such calls has 2 left.
func TestQuotaAllowedWhileNATSIsAway(t *testing.T) {
	h := hStartCounting(t, func(cfg *config.Config) { cfg.Resources[0].OnCounterUnavailable = "allow" })
	base, c, srv := h.base, h.c, h.nats
	tok := h.token(t, "alice", "agent", nil)
	decide := func() map[string]any {
		t.Helper()
		_, out, err := hPost(t, c, base+"/v1/decide", nil, hCallBody(tok, "generate_qr_url"))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// One call, counted (at once, or settled once the stream is made).
	if out := decide(); out["allow"] != true {
		t.Fatalf("first call: %v", out)
	}
	testkit.WaitFor(t, "the first call counted", func() bool {
		v, ok := hMetric(t, c, base, "mcp_pdp_quota_unsettled")
		return ok && v == 0
	})
	srv.Stop()
	for i := range 2 {
		if out := decide(); out["allow"] != true {
			t.Fatalf("call %d with NATS down: %v", i+1, out)
		}
	}
	if v, _ := hMetric(t, c, base, "mcp_pdp_quota_unsettled"); v != 2 {
		t.Fatalf("%v calls waiting to be counted, want 2", v)
	}
	srv.Restart()
	testkit.WaitFor(t, "the calls counted", func() bool {
		v, ok := hMetric(t, c, base, "mcp_pdp_quota_unsettled")
		return ok && v == 0
	})
	left := 0
	for {
		out := decide()
		if out["allow"] != true {
			if out["outcome"] != "limited" {
				t.Fatalf("after the restart: %v", out)
			}
			break
		}
		left++
	}
	if left != 2 {
		t.Fatalf("%d calls left of the quota of 5 after 1 counted and 2 allowed while NATS was away, want 2", left)
	}
}

// TestRefund: an allowed call a quota counted carries a refund token;
// POST /v1/refund (pep.Client.Refund) gives the call back once, however
// often it is asked; a malformed token or one naming another resource is
// refused; a call without a quota has no token.
func TestRefund(t *testing.T) {
	h := hStartCounting(t, nil)
	base, c := h.base, h.c
	client, err := pep.NewClient(base, pep.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok := h.token(t, "alice", "agent", nil)
	decide := func(tool string) map[string]any { t.Helper(); return h.decide(t, tok, tool) }
	var refunds []string
	for i := range 5 {
		out := decide("generate_qr_url")
		r, _ := out["refund"].(string)
		if out["allow"] != true || !strings.HasPrefix(r, "r1.") {
			t.Fatalf("call %d: %v", i+1, out)
		}
		hFitsSchema(t, out)
		refunds = append(refunds, r)
	}
	if out := decide("generate_qr_url"); out["outcome"] != "limited" || out["refund"] != nil {
		t.Fatalf("over the quota: %v", out)
	} else {
		hFitsSchema(t, out)
	}
	ctx := context.Background()
	if ok, err := client.Refund(ctx, refunds[0], "the QR service failed"); err != nil || !ok {
		t.Fatalf("refund: %v, %v", ok, err)
	}
	for range 2 {
		if ok, err := client.Refund(ctx, refunds[0], ""); err != nil || ok {
			t.Fatalf("the same refund again: %v, %v; want not refunded, no error", ok, err)
		}
	}
	if out := decide("generate_qr_url"); out["allow"] != true {
		t.Fatalf("after the refund: %v", out)
	}
	if out := decide("generate_qr_url"); out["outcome"] != "limited" {
		t.Fatalf("after the refunded call was used again: %v", out)
	}
	if out := decide("lookup_product"); out["allow"] != true || out["refund"] != nil {
		t.Fatalf("a call without a quota: %v", out)
	}

	other := strings.Replace(refunds[1], "r1.", "", 1)
	raw, _ := base64.RawURLEncoding.DecodeString(other)
	forged := "r1." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), hResource, "https://elsewhere.example/mcp", 1)))
	for name, bad := range map[string]string{
		"garbage":          "not a token",
		"not base64":       "r1.!!!",
		"not json":         "r1." + base64.RawURLEncoding.EncodeToString([]byte("{")),
		"unknown field":    "r1." + base64.RawURLEncoding.EncodeToString([]byte(`{"d":"x","r":"`+hResource+`","m":"tools/call","b":"sub","l":5,"p":"day","w":1,"x":1}`)),
		"bad quota":        "r1." + base64.RawURLEncoding.EncodeToString([]byte(`{"d":"x","r":"`+hResource+`","m":"tools/call","b":"sub","l":-5,"p":"day","w":1}`)),
		"another resource": forged,
	} {
		_, err := client.Refund(ctx, bad, "")
		var re *pep.RequestError
		if !errors.As(err, &re) || re.Status != 400 || re.Code != "invalid_refund" {
			t.Errorf("%s: %v, want 400 invalid_refund", name, err)
		}
	}
	status, out, err := hPost(t, c, base+"/v1/refund", nil, []byte(`{"refund": 5}`))
	if err != nil || status != 400 {
		t.Fatalf("a body that is not a refund: %d %v %v", status, out, err)
	}
	if v, _ := hMetric(t, c, base, `pdp_refunds_total{result="refunded"}`); v != 1 {
		t.Fatalf("pdp_refunds_total refunded = %v", v)
	}

	// A refund into a window that counted nothing (its call made 40 days
	// ago, in another month): 409, and the counter is left as it was.
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	claims["w"], claims["d"] = time.Now().Add(-40*24*time.Hour).UnixMilli(), "old-decision"
	old, _ := json.Marshal(claims)
	_, err = client.Refund(ctx, "r1."+base64.RawURLEncoding.EncodeToString(old), "")
	var re *pep.RequestError
	if !errors.As(err, &re) || re.Status != 409 || re.Code != "nothing_to_refund" {
		t.Fatalf("a refund into an empty window: %v, want 409 nothing_to_refund", err)
	}
	// The counters out of reach: 503, try again.
	h.nats.Stop()
	_, err = client.Refund(ctx, refunds[2], "")
	if !errors.As(err, &re) || re.Status != 503 || re.Code != "counters_unavailable" {
		t.Fatalf("a refund with NATS down: %v, want 503 counters_unavailable", err)
	}
}

// hFitsSchema checks a /v1/decide answer against pep/decide.schema.json
// (the answers internal/api's schema test cannot produce: limited, with
// a refund token).
func hFitsSchema(t *testing.T, answer map[string]any) {
	t.Helper()
	f, err := os.Open("../../pep/decide.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("decide.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("decide.schema.json#/$defs/Response")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(answer)
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("the answer does not fit the schema: %v\n%s", err, b)
	}
}
