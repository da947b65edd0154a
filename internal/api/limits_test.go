package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
)

// TestPEPRateLimit: each PEP has its own bucket; over it, 429 with
// Retry-After; the other PEP is not affected.
func TestPEPRateLimit(t *testing.T) {
	e := newServer(t, serverOptions{api: func(o *api.Options) {
		o.Auth = api.PEPAuth{APIKeys: []api.APIKey{mustKey(t, "noisy", "pdpk_noisy"), mustKey(t, "quiet", "pdpk_quiet")}}
		// One token per 100 s: the bucket does not refill during the test.
		o.Limits = api.Limits{RatePerPEP: 0.01, RateBurst: 3}
	}})
	body := req("", call("lookup_product", nil))
	noisy := map[string]string{"X-PDP-API-Key": "pdpk_noisy"}
	for i := range 3 {
		if resp, out := e.decide(t, noisy, body); resp.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d %v", i, resp.StatusCode, out)
		}
	}
	resp, out := e.decide(t, noisy, body)
	if resp.StatusCode != 429 || out["error"] != "rate_limited" {
		t.Fatalf("over the burst: %d %v", resp.StatusCode, out)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 101 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if resp, out := e.decide(t, map[string]string{"X-PDP-API-Key": "pdpk_quiet"}, body); resp.StatusCode != 200 {
		t.Fatalf("other PEP: %d %v", resp.StatusCode, out)
	}
	// Unauthenticated calls do not spend any PEP's tokens.
	for range 5 {
		e.decide(t, map[string]string{"X-PDP-API-Key": "pdpk_wrong"}, body)
	}
	if e.metric(t, "pdp_rate_limited_total") != 1 {
		t.Fatalf("pdp_rate_limited_total = %v", e.metric(t, "pdp_rate_limited_total"))
	}
}

// gate holds every decision until released, to fill the concurrency limit
// with real requests.
type gate struct {
	api.Decider
	entered chan struct{}
	release chan struct{}
}

func (g *gate) DecideValid(ctx context.Context, r *pep.Request, pepName string) (*pep.Response, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Decider.DecideValid(ctx, r, pepName)
}

// TestConcurrencyLimit: with max_concurrent requests in progress, the next
// one is answered 503 overloaded at once, whoever sends it; when one
// finishes, requests are accepted again.
func TestConcurrencyLimit(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 64), release: make(chan struct{})}
	e := newServer(t, serverOptions{
		api:  func(o *api.Options) { o.Limits = api.Limits{MaxConcurrent: 2} },
		wrap: func(d api.Decider) api.Decider { g.Decider = d; return g },
	})
	body := req("", call("lookup_product", nil))
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range 2 {
		wg.Go(func() {
			resp, _ := e.decide(t, nil, body)
			codes[i] = resp.StatusCode
		})
	}
	for range 2 {
		select {
		case <-g.entered:
		case <-time.After(60 * time.Second):
			t.Fatal("requests did not reach the core")
		}
	}
	if got := e.metric(t, "pdp_api_in_flight"); got != 2 {
		t.Errorf("in flight = %v", got)
	}
	resp, out := e.decide(t, nil, body)
	if resp.StatusCode != 503 || out["error"] != "overloaded" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d %v %v", resp.StatusCode, out, resp.Header)
	}
	// Public endpoints are not counted against the limit.
	if resp, _ := e.do(t, nil, http.MethodGet, "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("healthz under load = %d", resp.StatusCode)
	}
	close(g.release)
	wg.Wait()
	if !slices.Equal(codes, []int{200, 200}) {
		t.Fatalf("held requests: %v", codes)
	}
	if resp, _ := e.decide(t, nil, body); resp.StatusCode != 200 {
		t.Fatalf("after release: %d", resp.StatusCode)
	}
	if e.metric(t, "pdp_overloaded_total") != 1 || e.metric(t, "pdp_api_in_flight") != 0 {
		t.Fatalf("overloaded=%v in_flight=%v", e.metric(t, "pdp_overloaded_total"), e.metric(t, "pdp_api_in_flight"))
	}
}

// TestTokenCacheBounded: many distinct valid tokens keep the verified-token
// cache at its bound, and every one of them is still verified correctly.
func TestTokenCacheBounded(t *testing.T) {
	const bound, n = 16, 300
	e := newServer(t, serverOptions{cacheSize: bound})
	for i := range n {
		tok := e.mint(t, devissuer.MintOptions{Subject: fmt.Sprintf("user-%d", i), Scopes: []string{"qr:generate"}})
		_, out := e.decide(t, nil, req(tok, call("generate_qr_url", nil)))
		if out["allow"] != true {
			t.Fatalf("token %d: %v", i, out)
		}
		if l := e.cache.Len(); l > bound {
			t.Fatalf("cache holds %d entries, bound %d", l, bound)
		}
	}
	// Garbage tokens are never cached.
	for i := range 50 {
		e.decide(t, nil, req(fmt.Sprintf("Bearer eyJ%d.eyJ.sig", i), call("ping", nil)))
	}
	if l := e.cache.Len(); l > bound {
		t.Fatalf("cache holds %d entries", l)
	}
}

// TestTokenCacheBoundsRetainedClaims: many distinct valid tokens keep no
// more than limits.token_cache_size verified tokens' worth of memory.
//
// KNOWN ISSUE, skipped until fixed in internal/core: the core's token memo
// (policy view of each *token.Claims, 10000 entries, cleared when full)
// also keeps the Claims alive after the token cache evicted them, whatever
// token_cache_size says; in a soak it shows as a sawtooth of up to ~60 MiB
// with a period of 10000 new tokens. Set PDP_TEST_KNOWN_ISSUES=1 to run it.
func TestTokenCacheBoundsRetainedClaims(t *testing.T) {
	if os.Getenv("PDP_TEST_KNOWN_ISSUES") == "" {
		t.Skip("known issue: the core's token memo is not bounded by the token cache (see the comment); PDP_TEST_KNOWN_ISSUES=1 runs it")
	}
	// Without the decision cache, which keeps inputs by design (16384 entries).
	pol := coretest.DefaultPolicy(t, decision.Options{CacheSize: -1})
	e := newServer(t, serverOptions{cacheSize: 16, core: func(o *core.Options) { o.Engine = decision.NewEngine(pol) }})
	toks := make([]string, 3000)
	for i := range toks {
		toks[i] = e.mint(t, devissuer.MintOptions{Subject: fmt.Sprintf("user-%d", i), Scopes: []string{"qr:generate"},
			Extra: map[string]any{"pad": fmt.Sprintf("%02000d", i)}})
	}
	heap := func() int64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	for i, tok := range toks {
		if _, out := e.decide(t, nil, req(tok, call("generate_qr_url", nil))); out["allow"] != true {
			t.Fatalf("token %d: %v", i, out)
		}
	}
	if grew := heap() - before; grew > 4<<20 {
		t.Fatalf("%d MiB kept for %d distinct tokens with a token cache of 16", grew>>20, len(toks))
	}
}

// TestRunawayPolicyDeniesThroughAPI: a policy that loops or explodes is
// stopped by the evaluation budget; the PEP gets a deny with the reason,
// and the PDP keeps answering.
func TestRunawayPolicyDeniesThroughAPI(t *testing.T) {
	policies := map[string]string{
		"long loop": `package mcp.authz

decision := {"allow": count([x | some x in numbers.range(1, 100000000); x % 7 == 0]) > 0}
`,
		"combinatorial explosion": `package mcp.authz

decision := {"allow": count([y | some i in numbers.range(1, 2000); some j in numbers.range(1, 2000); some k in numbers.range(1, 2000); y := i * j * k]) > 0}
`,
	}
	for name, src := range policies {
		t.Run(name, func(t *testing.T) {
			p := coretest.PolicyFiles(t, map[string]string{"authz.rego": src}, decision.Options{CacheSize: -1})
			e := newServer(t, serverOptions{core: func(o *core.Options) {
				o.Engine = decision.NewEngine(p)
				o.DecisionTimeout = 100 * time.Millisecond
			}})
			bodies := map[string]any{
				"call": req(e.mint(t, devissuer.MintOptions{Scopes: []string{"qr:generate"}}), call("generate_qr_url", nil)),
				"list": json.RawMessage(listBody(3)),
			}
			for kind, body := range bodies {
				raw, _ := json.Marshal(body)
				resp, out := e.decide(t, nil, raw)
				if resp.StatusCode != 200 || out["allow"] != false || out["outcome"] != "deny" || out["http_status"] != float64(503) {
					t.Fatalf("%s: HTTP %d %v", kind, resp.StatusCode, out)
				}
				if r, _ := out["reason"].(string); !strings.HasPrefix(r, "decision failed: policy evaluation stopped") {
					t.Fatalf("%s: reason %q", kind, r)
				}
				if rpc, _ := out["jsonrpc_error"].(map[string]any); rpc == nil || rpc["code"] != float64(-32603) {
					t.Fatalf("%s: jsonrpc_error %v", kind, out["jsonrpc_error"])
				}
			}
			e.audit.mu.Lock()
			defer e.audit.mu.Unlock()
			if len(e.audit.events) != 2 || !strings.HasPrefix(e.audit.events[0].Reason, "decision failed: policy evaluation stopped") {
				t.Fatalf("audit events %+v", e.audit.events)
			}
		})
	}
}
