package main

import (
	"fmt"
	"time"

	"github.com/mcp-pdp/pdp/bench/internal/mcpbench"
)

// gatewayMarkdown writes the gateway series: the table, the targets of
// issue #12 §5, the idle streams and the stdio first answer.
func (r *report) gatewayMarkdown(p func(string, ...any)) {
	gw := r.gw
	if gw == nil {
		return
	}
	o := r.b.opts
	p("## Gateway series (issue #12 §5)\n\n")
	p("One upstream for every row: bench/mcpupstream, a stateless Streamable HTTP endpoint on plain net/http (POST /mcp answers JSON, POST /sse one SSE event; %d tools listed). "+
		"Rows: **gateway** = `pdp serve` with two resources whose `upstream.url` are the upstream's /mcp and /sse, the gateway on its own listener, audit off (as the main table's mcp-pdp rows), the default policy rules on a catalog of %d public and %d step-up tools (the last %d listed tools are not in it: hidden); "+
		"**proxy** = `httputil.ReverseProxy` (bench/proxy), no decision; **twohop** = a minimal PEP (bench/twohop) that asks a second `pdp serve` (same config, no gateway) at `/v1/decide` over loopback keep-alive, then the upstream (a list: the request decided, then the upstream's result sent with `result` to be filtered). "+
		"The token: RS256, scope %s (tools/call of the step-up tool %s is allowed), verified once then cached. "+
		"%d connections, closed loop, every cell the median of %d run(s) of %s after %s of warm-up, rows interleaved. "+
		"*CPU/request* is the row's processes' CPU (the two-hop row: PEP + its PDP); the upstream's is shown apart; *all CPU/request* adds the upstream's and the load generator's (on 2 shared cores it is what bounds the throughput). Peak RSS sums the row's processes' VmHWM.\n\n",
		mcpbench.Tools, mcpbench.Public, mcpbench.StepUp, mcpbench.Tools-mcpbench.Visible, mcpbench.StepUpScope, mcpbench.CallTool, gwConns, o.runs, o.duration, o.warmup)
	p("| workload | row | requests/s | p50 | p99 | CPU/request | upstream CPU/request | all CPU/request | peak RSS | ÷ proxy | p99 ÷ proxy p99 | ÷ twohop | other load |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, sc := range r.b.gwScenarios() {
		proxy, okP := r.gwCell(sc.key, rowProxy)
		two, okT := r.gwCell(sc.key, rowTwoHop)
		for _, row := range sc.rows {
			a, ok := r.gwCell(sc.key, row)
			if !ok {
				continue
			}
			vsP, p99P, vsT := "", "", ""
			if row != rowProxy && okP {
				vsP, p99P = ratio(a.rate, proxy.rate), ratio(float64(a.p99), float64(proxy.p99))
			}
			if row == rowGateway && okT {
				vsT = ratio(a.rate, two.rate)
			}
			errs := ""
			if a.errors > 0 {
				errs = fmt.Sprintf(" (%d errors!)", a.errors)
			}
			p("| %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f |\n", sc.title, row, fmtRate(a.rate), errs, fmtDur(a.p50), fmtDur(a.p99),
				fmtDur(a.cpu), fmtDur(a.auxCPU), fmtDur(allCPU(a)), fmtBytes(a.peakRSS), vsP, p99P, vsT, a.other)
		}
	}
	p("\nUpstream peak RSS over the runs: %s.\n\n", fmtBytes(gw.upstreamRSS))

	p("### Gateway targets (same run)\n\n")
	p("*measured* compares requests/s and p99 of the same run, everything sharing the machine's cores. *CPU basis* compares the CPU per request of the rows' own processes: the ratio of their throughputs when the proxy layer has its cores to itself and the upstream runs elsewhere.\n\n")
	p("| target | measured | | CPU basis | |\n|---|---|---|---|---|\n")
	rateTarget := func(label, key, base string, want float64, pct bool) {
		g, ok1 := r.gwCell(key, rowGateway)
		x, ok2 := r.gwCell(key, base)
		if !ok1 || !ok2 || x.rate <= 0 || g.cpu <= 0 {
			return
		}
		m, c := g.rate/x.rate, float64(x.cpu)/float64(g.cpu)
		f := func(v float64) string {
			if pct {
				return fmt.Sprintf("%.0f%%", 100*v)
			}
			return fmt.Sprintf("%.2f×", v)
		}
		p("| %s | %s (%s vs %s /s) | %s | %s (%s vs %s) | %s |\n", label, f(m), fmtRate(g.rate), fmtRate(x.rate), verdict(m >= want),
			f(c), fmtDur(g.cpu), fmtDur(x.cpu), verdict(c >= want))
	}
	rateTarget("tools/call through the gateway ≥ 80% of the plain proxy", "call", rowProxy, 0.8, true)
	if g, ok := r.gwCell("call", rowGateway); ok {
		if x, ok := r.gwCell("call", rowProxy); ok && x.p99 > 0 {
			y := float64(g.p99) / float64(x.p99)
			p("| tools/call: p99 ≤ 1.5× the proxy's p99 | %.2f× (%s vs %s) | %s | | |\n", y, fmtDur(g.p99), fmtDur(x.p99), verdict(y <= 1.5))
		}
	}
	rateTarget(fmt.Sprintf("tools/list of %d, JSON ≥ 70%% of the proxy", mcpbench.Tools), "list-json", rowProxy, 0.7, true)
	rateTarget(fmt.Sprintf("tools/list of %d, SSE ≥ 60%% of the proxy", mcpbench.Tools), "list-sse", rowProxy, 0.6, true)
	rateTarget("tools/call ≥ 1.5× the two-hop set-up", "call", rowTwoHop, 1.5, false)
	if id := gw.idle; id != nil {
		ok := id.Opened == id.Streams && id.RSSOpen <= 200<<20
		p("| %s idle streams ≤ 200 MiB RSS | %s with %d/%d open (%s before) | %s | | |\n", fmtRate(float64(id.Streams)), fmtBytes(id.RSSOpen), id.Opened, id.Streams, fmtBytes(id.RSSBefore), verdict(ok))
	}
	if st := gw.stdio; st != nil && len(st.Direct) > 0 {
		d, g := medianDur(st.Direct), medianDur(st.Gateway)
		x := float64(g) / float64(d)
		p("| stdio: a new session's first answer within 2× the child's own start-up | %.2f× (%s vs %s, medians) | %s | | |\n", x, fmtDur(g), fmtDur(d), verdict(x <= 2))
	}
	p("\n")

	if id := gw.idle; id != nil {
		p("### Idle streams\n\n")
		p("A fresh gateway process (same config), warmed with 32 tools/call requests, then %s GET streams opened at once through it on raw sockets (`Accept: text/event-stream`, the token; the upstream answers each with SSE headers and a comment, then holds it open and silent); measured 2 s after the last opened (VmRSS of the gateway process; goroutines and heap from its /metrics).\n\n", fmtRate(float64(id.Streams)))
		p("| | before | with the streams open | per stream |\n|---|---:|---:|---:|\n")
		per := func(a, b float64) string {
			if id.Opened == 0 {
				return "—"
			}
			return fmt.Sprintf("%.1f KiB", (b-a)/float64(id.Opened)/1024)
		}
		p("| gateway RSS | %s | %s | %s |\n", fmtBytes(id.RSSBefore), fmtBytes(id.RSSOpen), per(float64(id.RSSBefore), float64(id.RSSOpen)))
		p("| gateway Go heap in use | %s | %s | %s |\n", fmtBytes(uint64(id.HeapBefore)), fmtBytes(uint64(id.HeapOpen)), per(id.HeapBefore, id.HeapOpen))
		gor := "—"
		if id.Opened > 0 {
			gor = fmt.Sprintf("%.1f", (id.GoroutinesOpen-id.GoroutinesBefore)/float64(id.Opened))
		}
		p("| gateway goroutines | %.0f | %.0f | %s |\n", id.GoroutinesBefore, id.GoroutinesOpen, gor)
		p("| upstream RSS | %s | %s | %s |\n\n", fmtBytes(id.UpRSSBefore), fmtBytes(id.UpRSSOpen), per(float64(id.UpRSSBefore), float64(id.UpRSSOpen)))
		p("%d of %d streams opened in %s; the upstream held %d. Gateway RSS 2 s after closing them: %s.", id.Opened, id.Streams, id.OpenTook.Round(time.Millisecond), id.UpstreamStreams, fmtBytes(id.RSSAfterClose))
		if id.FirstError != "" {
			p(" First error: %s.", id.FirstError)
		}
		p("\n\n")
	}
	if st := gw.stdio; st != nil && len(st.Direct) > 0 {
		p("### Stdio: a new session's first answer\n\n")
		p("bench/mcpstdio (a Go binary: newline-delimited JSON-RPC, answers initialize, tools/list, tools/call). *Child alone*: the orchestrator spawns it, writes initialize, reads the answer. *New session through the gateway*: `POST /mcp` initialize without `Mcp-Session-Id` on a keep-alive connection to a gateway whose resource has `upstream.command` (the gateway starts a child for the session and relays its answer), the session ended with DELETE afterwards. *Open session*: a tools/call on that session before it ends. %d samples each, interleaved, after one unrecorded round.\n\n", len(st.Direct))
		p("| | median | min | max |\n|---|---:|---:|---:|\n")
		for _, c := range []struct {
			name string
			xs   []time.Duration
		}{{"child alone: spawn → first answer", st.Direct}, {"new session through the gateway: POST initialize → answer", st.Gateway}, {"open session through the gateway: tools/call → answer", st.Warm}} {
			lo, hi := minMaxDur(c.xs)
			p("| %s | %s | %s | %s |\n", c.name, fmtDur(medianDur(c.xs)), fmtDur(lo), fmtDur(hi))
		}
		p("\n")
	}
}

// gwCell is the median of a gateway-series cell.
func (r *report) gwCell(scenario, row string) (agg, bool) {
	xs, ok := r.gw.cells[gwKey{scenario, row}]
	return aggregate(xs), ok
}

// allCPU is the CPU of every benchmark process per request: the row's,
// the upstream's and the load generator's.
func allCPU(a agg) time.Duration {
	gen := time.Duration(0)
	if a.rate > 0 {
		gen = time.Duration(a.gen / a.rate * float64(time.Second))
	}
	return a.cpu + a.auxCPU + gen
}
