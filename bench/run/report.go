package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-pdp/pdp/bench/internal/fixture"
)

type report struct {
	b       *bench
	start   time.Time
	cells   map[cellKey][]sample
	order   []cellKey
	series  map[string]map[int][]sample
	sorder  map[string][]int
	before  facts
	after   facts
	profile []profileResult

	tokensStartRSS uint64
	retried        int
	auditEnd       map[string]float64
	auditExtEnd    map[string]float64
	// gw is the gateway series (-what gateway), nil when not run.
	gw *gwResults
	// introspections are, by main-table workload, the requests the
	// orchestrator's RFC 7662 endpoint answered while its servers ran.
	introspections map[string]fixture.IntrospectionCounts
}

type profileResult struct {
	Scenario   string
	File       string
	Sample     sample
	Top        string
	Allocs     string
	InUse      string
	Categories []category
	// Through is, for the audited workload, the share of the CPU samples
	// whose stack runs through the embedded NATS server, and through the
	// PDP's audit client (auditsink, nats.go), with what they call.
	Through []category
}

func newReport(b *bench) *report {
	return &report{b: b, start: time.Now(), cells: map[cellKey][]sample{}, series: map[string]map[int][]sample{}, sorder: map[string][]int{},
		introspections: map[string]fixture.IntrospectionCounts{}}
}

func (r *report) add(k cellKey, s sample) {
	if _, ok := r.cells[k]; !ok {
		r.order = append(r.order, k)
	}
	r.cells[k] = append(r.cells[k], s)
}

func (r *report) addSeries(name string, x int, s sample) {
	if r.series[name] == nil {
		r.series[name] = map[int][]sample{}
	}
	if _, ok := r.series[name][x]; !ok {
		r.sorder[name] = append(r.sorder[name], x)
	}
	r.series[name][x] = append(r.series[name][x], s)
}

// agg is the median of the runs of a cell.
type agg struct {
	n                 int
	rate              float64
	p50, p99, cpu     time.Duration
	auxCPU            time.Duration // the helper process's (external NATS)
	peakRSS, rss      uint64
	errors            uint64
	serverCores, gen  float64
	other             float64
	metrics           map[string]float64
	firstErr          string
	p50Spread, spread float64 // (max-min)/median of rate
}

func aggregate(xs []sample) agg {
	if len(xs) == 0 {
		return agg{}
	}
	a := agg{
		n:           len(xs),
		rate:        median(xs, func(s sample) float64 { return s.Rate }),
		p50:         time.Duration(median(xs, func(s sample) float64 { return float64(s.P50) })),
		p99:         time.Duration(median(xs, func(s sample) float64 { return float64(s.P99) })),
		cpu:         time.Duration(median(xs, func(s sample) float64 { return float64(s.CPUPerReq) })),
		auxCPU:      time.Duration(median(xs, func(s sample) float64 { return float64(s.AuxCPUPerReq) })),
		serverCores: median(xs, func(s sample) float64 { return s.ServerCores }),
		gen:         median(xs, func(s sample) float64 { return s.GenCores }),
		other:       median(xs, func(s sample) float64 { return s.OtherCores }),
		metrics:     map[string]float64{},
	}
	lo, hi := xs[0].Rate, xs[0].Rate
	for _, s := range xs {
		a.peakRSS = max(a.peakRSS, s.PeakRSS)
		a.rss = s.RSS
		a.errors += s.Errors
		if a.firstErr == "" {
			a.firstErr = s.FirstError
		}
		lo, hi = min(lo, s.Rate), max(hi, s.Rate)
		for k, v := range s.Metrics {
			if gauges[k] {
				a.metrics[k] = v // the last run's value
			} else {
				a.metrics[k] += v
			}
		}
	}
	if a.rate > 0 {
		a.spread = (hi - lo) / a.rate
	}
	return a
}

func (r *report) cell(scenario string, conns int, server string) (agg, bool) {
	xs, ok := r.cells[cellKey{scenario, conns, server}]
	return aggregate(xs), ok
}

type facts struct {
	When     time.Time
	NProc    int
	CPU      string
	MemTotal string
	Kernel   string
	Go       string
	Git      string
	LoadAvg  string
}

func machineFacts(root string) facts {
	f := facts{When: time.Now(), NProc: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				f.CPU = strings.TrimSpace(line[strings.IndexByte(line, ':')+1:])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				var kb uint64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "MemTotal:")), "%d", &kb)
				f.MemTotal = fmtBytes(kb << 10)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		f.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fs := strings.Fields(string(b))
		if len(fs) >= 3 {
			f.LoadAvg = strings.Join(fs[:3], " ")
		}
	}
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		f.Git = strings.TrimSpace(string(out))
	}
	return f
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	}
}

func fmtBytes(n uint64) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func fmtRate(r float64) string {
	s := fmt.Sprintf("%.0f", r)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func (r *report) markdown() string {
	b := r.b
	o := b.opts
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	f := r.before
	p("# mcp-pdp load benchmark, %s\n\n", f.When.Format("2006-01-02 15:04 MST"))
	p("Command: `%s`", commandLine())
	if o.quick {
		p(" (**quick smoke run: short windows, one run; not for publication**)")
	}
	p("\n\n")
	p("| machine | |\n|---|---|\n")
	p("| CPU | %s, %d cores (nproc) |\n| memory | %s |\n| kernel | %s |\n| Go | %s |\n| mcp-pdp | %s |\n",
		f.CPU, f.NProc, f.MemTotal, f.Kernel, f.Go, f.Git)
	p("| load average (1/5/15 min) | before %s, after %s |\n\n", f.LoadAvg, r.after.LoadAvg)
	p("Method: closed loop (each connection sends its next request when the answer is in), loopback, the generator (bench/loadgen) on the same %d cores as the server. "+
		"Every cell is the median of %d run(s) of %s after %s of warm-up; servers are interleaved run by run. "+
		"CPU/decision is the server process's user+system CPU (/proc/<pid>/stat) over the window divided by the decisions answered in it; peak RSS is VmHWM, reset before each run. "+
		"Request bodies: RS256 tokens; tools/call bodies carry a different JSON-RPC id and `arguments` on every request (a real session), so mcp-pdp's decision cache cannot answer them, except in the rows marked *identical body*. "+
		"OPA runs with its io.jwt verification cache on (10,000 entries, as mcp-pdp's token cache). "+
		"*other load* is the CPU (in cores) that processes outside the benchmark used during the window: the machine is shared; a run with more than %.2f cores of other load was run again up to %d time(s) and the quietest kept (%d runs were repeated).\n\n",
		f.NProc, o.runs, o.duration, o.warmup, o.noisy, o.retries, r.retried)

	if len(r.order) > 0 {
		p("## Decisions\n\n")
		p("| workload | conns | server | decisions/s | p50 | p99 | CPU/decision | peak RSS | ÷ OPA | ÷ floor | p99 ÷ floor p99 | other load |\n")
		p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, sc := range b.scenarios() {
			ref := sc.key
			if sc.ref != "" {
				ref = sc.ref
			}
			for _, c := range o.conns {
				for _, name := range sc.servers {
					a, ok := r.cell(sc.key, c, name)
					if !ok {
						continue
					}
					vsOPA, vsFloor, p99Floor := "", "", ""
					if name != "opa" && name != "floor" {
						if opa, ok := r.cell(ref, c, "opa"); ok && strings.HasPrefix(name, "mcp-pdp") {
							vsOPA = ratio(a.rate, opa.rate)
						}
						if fl, ok := r.cell(ref, c, "floor"); ok {
							vsFloor = ratio(a.rate, fl.rate)
							p99Floor = ratio(float64(a.p99), float64(fl.p99))
						}
					}
					errs := ""
					if a.errors > 0 {
						errs = fmt.Sprintf(" (%d errors!)", a.errors)
					}
					p("| %s | %d | %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %.2f |\n", sc.title, c, name, fmtRate(a.rate), errs,
						fmtDur(a.p50), fmtDur(a.p99), fmtDur(a.cpu), fmtBytes(a.peakRSS), vsOPA, vsFloor, p99Floor, a.other)
				}
			}
		}
		p("\n")
		if a, ok := r.cell("fresh", slices.Max(o.conns), "mcp-pdp"); ok {
			h, m := a.metrics["pdp_token_cache_hits_total"], a.metrics["pdp_token_cache_misses_total"]
			if h+m > 0 {
				p("Fresh-token rows: mcp-pdp's verified-token cache answered %.1f%% of lookups (%.0f hits, %.0f misses, warm-up included).\n", 100*h/(h+m), h, m)
				if h > 0.01*(h+m) {
					p("**The token pool (-pool %d) wrapped around: these fresh-token rows are not a cache-miss measurement; use a larger -pool.**\n", o.poolSize)
				}
			}
			dh, dm := a.metrics["pdp_decision_cache_hits_total"], a.metrics["pdp_decision_cache_misses_total"]
			if dh+dm > 0 {
				p("Its decision cache answered %.1f%% of those decisions (%.0f hits, %.0f evaluations): the pool's subjects share 500 clients and one scope, and the default policy reads the subject only to look it up in the revocation list, so the cache keys on that lookup (docs/policy.md, \"The decision cache\"). The *mcp-pdp-nocache* row evaluates the policy for every request.\n", 100*dh/(dh+dm), dh, dm)
			}
		}
		r.opaqueNote(p)
		var gens []string
		for _, k := range r.order {
			if k.conns == slices.Max(o.conns) && (k.scenario == "session" || k.scenario == "fresh") {
				gens = append(gens, fmt.Sprintf("%s %.2f", k.server, aggregate(r.cells[k]).gen))
			}
		}
		if len(gens) > 0 {
			p("Cores used by the load generator itself at %d connections (session, fresh): %s.\n", slices.Max(o.conns), strings.Join(gens, ", "))
		}
		p("\n")
		r.targets(p)
	}
	r.seriesMarkdown(p)
	r.gatewayMarkdown(p)
	if len(r.profile) > 0 {
		p("## CPU profile of the decision path under load\n\n")
		p("bench/pdpprof serves /v1/decide with the same packages and wiring as `pdp serve` plus net/http/pprof (a fresh process per workload), %d connections, audit off except in *session+audit* (async, embedded NATS in the same process) and *session+audit-ext* (async, a nats-server process on the same machine, whose CPU is not in this profile). "+
			"Where the server's CPU goes, by the package of the function that burns it (flat samples: Rego's deep stacks are truncated by the profiler, so cumulative figures under net/http undercount it); "+
			"µs/decision is the share times the measured CPU/decision.\n\n", slices.Max(o.conns))
		p("%s", "| | "+strings.Join(func() []string {
			var h []string
			for _, pr := range r.profile {
				h = append(h, fmt.Sprintf("%s (%s/s, %s CPU/decision)", pr.Scenario, fmtRate(pr.Sample.Rate), fmtDur(pr.Sample.CPUPerReq)))
			}
			return h
		}(), " | ")+" |\n")
		p("|---|%s\n", strings.Repeat("---:|", len(r.profile)))
		var names []string
		if len(r.profile) > 0 {
			for _, c := range r.profile[0].Categories {
				names = append(names, c.Name)
			}
		}
		for _, name := range names {
			p("| %s |", name)
			for _, pr := range r.profile {
				for _, c := range pr.Categories {
					if c.Name == name {
						p(" %.0f%% (%s) |", 100*c.Share, fmtDur(time.Duration(c.Share*float64(pr.Sample.CPUPerReq))))
					}
				}
			}
			p("\n")
		}
		p("\n")
		for _, pr := range r.profile {
			for _, c := range pr.Through {
				if c.Share == 0 {
					continue
				}
				p("In *%s*, stacks that run through %s hold %.0f%% of the CPU samples: %s per decision (the functions they call included; the garbage they leave for the collector not).\n\n",
					pr.Scenario, c.Name, 100*c.Share, fmtDur(time.Duration(c.Share*float64(pr.Sample.CPUPerReq))))
			}
		}
		for _, pr := range r.profile {
			p("<details><summary>%s: top functions (flat) of %s</summary>\n\n```\n%s\n```\n</details>\n\n", pr.Scenario, filepath.Base(pr.File), pr.Top)
			if pr.Allocs != "" {
				p("<details><summary>%s: allocations by function (alloc_space, flat, whole process life)</summary>\n\n```\n%s\n```\n</details>\n\n", pr.Scenario, pr.Allocs)
				p("<details><summary>%s: live heap at the end (inuse_space)</summary>\n\n```\n%s\n```\n</details>\n\n", pr.Scenario, pr.InUse)
			}
		}
	}
	var bad []string
	for _, k := range r.order {
		if a := aggregate(r.cells[k]); a.errors > 0 {
			bad = append(bad, fmt.Sprintf("- %s c=%d %s: %d errors, first: %s", k.scenario, k.conns, k.server, a.errors, a.firstErr))
		}
	}
	for name, m := range r.series {
		for x, xs := range m {
			if a := aggregate(xs); a.errors > 0 {
				bad = append(bad, fmt.Sprintf("- series %s=%d: %d errors, first: %s", name, x, a.errors, a.firstErr))
			}
		}
	}
	if r.gw != nil {
		for _, k := range r.gw.order {
			if a := aggregate(r.gw.cells[k]); a.errors > 0 {
				bad = append(bad, fmt.Sprintf("- gateway series %s %s: %d errors, first: %s", k.scenario, k.row, a.errors, a.firstErr))
			}
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		p("## Errors\n\n%s\n\n", strings.Join(bad, "\n"))
	}
	p("Run took %s.\n", time.Since(r.start).Round(time.Second))
	return w.String()
}

// opaqueNote says, under the main table, how often the opaque-token row's
// token was introspected: once is the measurement it claims to be (every
// decision in the windows answered from the token cache).
func (r *report) opaqueNote(p func(string, ...any)) {
	n, ok := r.introspections["session-opaque"]
	if !ok {
		return
	}
	var inWindows uint64
	var hits, misses float64
	for _, c := range r.b.opts.conns {
		for _, smp := range r.cells[cellKey{"session-opaque", c, pdpIntrospection}] {
			inWindows += smp.Introspections
			hits += smp.Metrics["pdp_token_cache_hits_total"]
			misses += smp.Metrics["pdp_token_cache_misses_total"]
		}
	}
	p("Opaque-token rows (*%s*: the resource with `introspection: {endpoint, client_id, client_secret_file, max_ttl: 1h}`, the bench's own RFC 7662 endpoint on loopback over TLS, client_secret_basic): "+
		"the endpoint answered **%d introspection request(s)** while the server ran (start-up, warm-ups and windows; %d active, %d inactive, %d refused), %d of them inside the measurement windows; "+
		"mcp-pdp's token cache answered %s lookups and missed %s in those runs (warm-ups included). "+
		"`max_ttl: 1h` keeps the one token cached for the whole run (the default, 1m, would introspect it again once a minute at most), so the row measures a cached introspected token.\n",
		pdpIntrospection, n.Requests, n.Active, n.Inactive, n.Refused, inWindows, fmtRate(hits), fmtRate(misses))
	if n.Requests != 1 || n.Active != 1 {
		p("**Expected exactly one request, answered active: the opaque-token rows are not a cached-token measurement.**\n")
	}
}

func (r *report) targets(p func(string, ...any)) {
	o := r.b.opts
	top := slices.Max(o.conns)
	p("## Targets (%d connections, same run)\n\n", top)
	p("*measured* compares decisions/s (and p99) of the same run. *CPU basis* compares the server's CPU per decision, which other load on a shared machine barely moves: it is the ratio the throughput would show on a quiet machine where the server has the cores to itself.\n\n")
	p("| target | measured | | CPU basis | |\n|---|---|---|---|---|\n")
	cpuRatio := func(a, b agg) float64 {
		if a.cpu <= 0 {
			return 0
		}
		return float64(b.cpu) / float64(a.cpu)
	}
	pdp, ok1 := r.cell("session", top, "mcp-pdp")
	opa, ok2 := r.cell("session", top, "opa")
	fl, ok3 := r.cell("session", top, "floor")
	if ok1 && ok2 {
		x, c := pdp.rate/opa.rate, cpuRatio(pdp, opa)
		p("| tools/call, reused token: ≥ 3× OPA REST decisions/s | %.2f× (%s vs %s /s) | %s | %.2f× (%s vs %s) | %s |\n", x, fmtRate(pdp.rate), fmtRate(opa.rate), verdict(x >= 3),
			c, fmtDur(pdp.cpu), fmtDur(opa.cpu), verdict(c >= 3))
	}
	if ok1 && ok3 {
		x, c := pdp.rate/fl.rate, cpuRatio(pdp, fl)
		p("| tools/call, reused token: ≥ 60%% of the floor | %.0f%% (%s vs %s /s) | %s | %.0f%% (%s vs %s) | %s |\n", 100*x, fmtRate(pdp.rate), fmtRate(fl.rate), verdict(x >= 0.6),
			100*c, fmtDur(pdp.cpu), fmtDur(fl.cpu), verdict(c >= 0.6))
		y := float64(pdp.p99) / float64(fl.p99)
		p("| tools/call, reused token: p99 ≤ 2× the floor's p99 | %.2f× (%s vs %s) | %s | | |\n", y, fmtDur(pdp.p99), fmtDur(fl.p99), verdict(y <= 2))
	}
	if same, ok := r.cell("session-same", top, "mcp-pdp"); ok && ok2 && ok3 {
		p("| *the same three, identical body (decision cache hit)* | %.2f× OPA, %.0f%% of floor, p99 %.2f× floor | %s / %s / %s | %.2f× OPA, %.0f%% of floor | %s / %s |\n",
			same.rate/opa.rate, 100*same.rate/fl.rate, float64(same.p99)/float64(fl.p99),
			verdict(same.rate >= 3*opa.rate), verdict(same.rate >= 0.6*fl.rate), verdict(same.p99 <= 2*fl.p99),
			cpuRatio(same, opa), 100*cpuRatio(same, fl), verdict(cpuRatio(same, opa) >= 3), verdict(cpuRatio(same, fl) >= 0.6))
	}
	if op, ok := r.cell("session-opaque", top, pdpIntrospection); ok && ok1 {
		x, c := op.rate/pdp.rate, cpuRatio(op, pdp)
		p("| tools/call, reused opaque token (introspected once, cached) within 10%% of the reused JWT | %.0f%% (%s vs %s /s; p99 %s vs %s) | %s | %.0f%% (%s vs %s) | %s |\n",
			100*x, fmtRate(op.rate), fmtRate(pdp.rate), fmtDur(op.p99), fmtDur(pdp.p99), verdict(x >= 0.9),
			100*c, fmtDur(op.cpu), fmtDur(pdp.cpu), verdict(c >= 0.9))
	}
	fp, ok1 := r.cell("fresh", top, "mcp-pdp")
	fo, ok2 := r.cell("fresh", top, "opa")
	if ok1 && ok2 {
		x, c := fp.rate/fo.rate, cpuRatio(fp, fo)
		p("| tools/call, fresh token per request: ≥ 1.5× OPA REST | %.2f× (%s vs %s /s) | %s | %.2f× (%s vs %s) | %s |\n", x, fmtRate(fp.rate), fmtRate(fo.rate), verdict(x >= 1.5),
			c, fmtDur(fp.cpu), fmtDur(fo.cpu), verdict(c >= 1.5))
	}
	if nc, ok := r.cell("fresh", top, "mcp-pdp-nocache"); ok && ok2 {
		x, c := nc.rate/fo.rate, cpuRatio(nc, fo)
		p("| *the same, decision cache off (every request evaluated)* | %.2f× (%s vs %s /s) | %s | %.2f× (%s vs %s) | %s |\n", x, fmtRate(nc.rate), fmtRate(fo.rate), verdict(x >= 1.5),
			c, fmtDur(nc.cpu), fmtDur(fo.cpu), verdict(c >= 1.5))
	}
	if au := r.series["audit"]; au != nil && len(au[0]) > 0 && len(au[1]) > 0 {
		off, on := aggregate(au[0]), aggregate(au[1])
		x, c := on.rate/off.rate, cpuRatio(on, off)
		p("| audit on (async) ≥ 90%% of audit off | %.0f%% (%s vs %s /s) | %s | %.0f%% (%s vs %s) | %s |\n", 100*x, fmtRate(on.rate), fmtRate(off.rate), verdict(x >= 0.9),
			100*c, fmtDur(on.cpu), fmtDur(off.cpu), verdict(c >= 0.9))
		if len(au[2]) > 0 {
			ext := aggregate(au[2])
			x, c := ext.rate/off.rate, cpuRatio(ext, off)
			p("| *the same, NATS in its own process (its CPU not counted in CPU basis)* | %.0f%% (%s vs %s /s) | %s | %.0f%% (%s vs %s; NATS server %s more) | %s |\n", 100*x, fmtRate(ext.rate), fmtRate(off.rate), verdict(x >= 0.9),
				100*c, fmtDur(ext.cpu), fmtDur(off.cpu), fmtDur(ext.auxCPU), verdict(c >= 0.9))
		}
	}
	if cs := r.series["catalog"]; len(cs) >= 2 {
		xs := slices.Sorted(mapKeys(cs))
		lo, hi := aggregate(cs[xs[0]]), aggregate(cs[xs[len(xs)-1]])
		x := float64(hi.p50) / float64(lo.p50)
		c := float64(hi.cpu) / float64(lo.cpu)
		p("| tools/call latency flat within 20%% from %d to %d catalog tools | p50 %+.0f%% (%s → %s), decisions/s %+.0f%% | %s | CPU/decision %+.0f%% (%s → %s) | %s |\n",
			xs[0], xs[len(xs)-1], 100*(x-1), fmtDur(lo.p50), fmtDur(hi.p50), 100*(hi.rate/lo.rate-1), verdict(x <= 1.2), 100*(c-1), fmtDur(lo.cpu), fmtDur(hi.cpu), verdict(c <= 1.2))
	}
	p("\n")
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (r *report) seriesMarkdown(p func(string, ...any)) {
	o := r.b.opts
	top := slices.Max(o.conns)
	if cs := r.series["catalog"]; cs != nil {
		p("## Series: catalog size\n\ntools/call of %s with the session token (distinct arguments), %d connections, mcp-pdp, one server per catalog size, interleaved, median of %d.\n\n", "generate_qr_url", top, o.runs)
		p("| tools in catalog | decisions/s | p50 | p99 | CPU/decision | peak RSS | p50 vs smallest | other load |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		xs := slices.Sorted(mapKeys(cs))
		base := aggregate(cs[xs[0]])
		for _, x := range xs {
			a := aggregate(cs[x])
			p("| %s | %s | %s | %s | %s | %s | %+.0f%% | %.2f |\n", fmtRate(float64(x)), fmtRate(a.rate), fmtDur(a.p50), fmtDur(a.p99), fmtDur(a.cpu), fmtBytes(a.peakRSS), 100*(float64(a.p50)/float64(base.p50)-1), a.other)
		}
		p("\n")
	}
	if ls := r.series["list"]; ls != nil {
		p("## Series: tools/list size\n\nOne tools/list decision over the first N tools of the catalog (session token; a distinct list on every request), mcp-pdp and OPA REST on the same catalog.\n\n")
		p("| tools listed | server | conns | decisions/s | p50 | p99 | CPU/decision | peak RSS | Go heap in use at end |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
		xs := slices.Sorted(mapKeys(ls))
		perTool := map[string][2]sample{}
		for _, x := range xs {
			byServer := map[string][]sample{}
			var names []string
			for _, s := range ls[x] {
				k := fmt.Sprintf("%s|%d", s.Server, s.Conns)
				if _, ok := byServer[k]; !ok {
					names = append(names, k)
				}
				byServer[k] = append(byServer[k], s)
			}
			for _, k := range names {
				a := aggregate(byServer[k])
				parts := strings.SplitN(k, "|", 2)
				p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", fmtRate(float64(x)), parts[0], parts[1], fmtRate(a.rate), fmtDur(a.p50), fmtDur(a.p99), fmtDur(a.cpu),
					fmtBytes(a.peakRSS), fmtBytes(uint64(a.metrics["go_memstats_heap_inuse_bytes"])))
				pt := perTool[k]
				if x == xs[0] {
					pt[0] = byServer[k][0]
				}
				if x == xs[len(xs)-1] {
					pt[1] = byServer[k][0]
				}
				perTool[k] = pt
			}
		}
		if len(xs) >= 2 {
			n := float64(xs[len(xs)-1] - xs[0])
			var lines []string
			for k, pt := range perTool {
				parts := strings.SplitN(k, "|", 2)
				if parts[1] != "1" {
					continue
				}
				lines = append(lines, fmt.Sprintf("%s %s of latency and %s of CPU per listed tool",
					parts[0], fmtDur(time.Duration(float64(pt[1].P50-pt[0].P50)/n)), fmtDur(time.Duration(float64(pt[1].CPUPerReq-pt[0].CPUPerReq)/n))))
			}
			slices.Sort(lines)
			if len(lines) > 0 {
				p("\nMarginal cost from %d to %d tools (1 connection): %s.\n", xs[0], xs[len(xs)-1], strings.Join(lines, "; "))
			}
		}
		p("\n")
	}
	if ts := r.series["tokens"]; ts != nil {
		p("## Series: distinct live tokens\n\ntools/call with K distinct RS256 tokens used in turn (every token sent once before the window), %d connections, one mcp-pdp process for the whole series (token cache %d entries by default). RSS at start: %s.\n\n", top, 10000, fmtBytes(r.tokensStartRSS))
		p("| distinct tokens | decisions/s | p50 | p99 | CPU/decision | token cache hits | cache entries | Go heap in use | RSS | peak RSS |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, x := range slices.Sorted(mapKeys(ts)) {
			a := aggregate(ts[x])
			h, m := a.metrics["pdp_token_cache_hits_total"], a.metrics["pdp_token_cache_misses_total"]
			hits := "—"
			if h+m > 0 {
				hits = fmt.Sprintf("%.1f%%", 100*h/(h+m))
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", fmtRate(float64(x)), fmtRate(a.rate), fmtDur(a.p50), fmtDur(a.p99), fmtDur(a.cpu),
				hits, fmtRate(a.metrics["pdp_token_cache_entries"]), fmtBytes(uint64(a.metrics["go_memstats_heap_inuse_bytes"])), fmtBytes(a.rss), fmtBytes(a.peakRSS))
		}
		p("\n")
	}
	if cs := r.series["cache"]; cs != nil {
		p("## Series: decision cache on vs off\n\ntools/call, session token, %d connections, mcp-pdp with the default decision cache (16,384 entries) and with `policy.decision_cache_size: -1`; median of %d, interleaved.\n\n", top, min(o.runs, 2))
		p("| body | decision cache | decisions/s | p50 | p99 | CPU/decision | peak RSS | Go heap in use at end | other load |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		labels := map[int][2]string{0: {"distinct arguments", "on (default)"}, 1: {"distinct arguments", "off"}, 2: {"identical body", "on (default)"}, 3: {"identical body", "off"}}
		for _, x := range []int{0, 1, 2, 3} {
			if len(cs[x]) == 0 {
				continue
			}
			a := aggregate(cs[x])
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %.2f |\n", labels[x][0], labels[x][1], fmtRate(a.rate), fmtDur(a.p50), fmtDur(a.p99), fmtDur(a.cpu),
				fmtBytes(a.peakRSS), fmtBytes(uint64(a.metrics["go_memstats_heap_inuse_bytes"])), a.other)
		}
		p("\n")
	}
	if gs := r.series["gogc"]; gs != nil {
		p("## Series: GOGC (tuning)\n\ntools/call, session token (distinct arguments), %d connections, mcp-pdp with GOGC=100 (Go's default) in its environment, with its own default (`runtime.gc_percent: 200`, no GOGC set) and with GOGC=400; median of %d, interleaved.\n\n", top, min(o.runs, 2))
		p("| GOGC | decisions/s | p50 | p99 | CPU/decision | peak RSS | other load |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, x := range []int{100, 200, 400} {
			if len(gs[x]) == 0 {
				continue
			}
			a := aggregate(gs[x])
			label := strconv.Itoa(x)
			if x == 200 {
				label = "200 (mcp-pdp default)"
			}
			p("| %s | %s | %s | %s | %s | %s | %.2f |\n", label, fmtRate(a.rate), fmtDur(a.p50), fmtDur(a.p99), fmtDur(a.cpu), fmtBytes(a.peakRSS), a.other)
		}
		p("\n")
	}
	if qs := r.series["quota"]; qs != nil && len(qs[0]) > 0 && len(qs[1]) > 0 {
		p("## Series: a quota on the called tool\n\ntools/call, session token (one subject: every call counts on one JetStream counter, the hottest case), %d connections, audit on (async, embedded NATS: the quota counters use its connection) without and with `quota: {limit: 1000000000, per: month, by: sub}` on the tool; median of %d, interleaved.\n\n", top, o.runs)
		p("| quota | decisions/s | p50 | p99 | CPU/decision | peak RSS | other load |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, x := range []int{0, 1} {
			a := aggregate(qs[x])
			p("| %s | %s | %s | %s | %s | %s | %.2f |\n", map[int]string{0: "none", 1: "on the tool"}[x], fmtRate(a.rate), fmtDur(a.p50), fmtDur(a.p99), fmtDur(a.cpu), fmtBytes(a.peakRSS), a.other)
		}
		none, with := aggregate(qs[0]), aggregate(qs[1])
		p("\nThe quota's round trip: %.0f%% of the decisions/s without it, %s more CPU per decision, p50 %s more.\n\n",
			100*with.rate/none.rate, fmtDur(with.cpu-none.cpu), fmtDur(with.p50-none.p50))
	}
	if au := r.series["audit"]; au != nil {
		p("## Series: audit on vs off\n\ntools/call, session token, %d connections; audit on = async mode to NATS JetStream (events deduplicated, spooled if NATS lags), either embedded in the PDP's process (the demo configuration) or a nats-server of the same version in its own process on the same machine, whose CPU is measured apart; median of %d, interleaved.\n\n", top, o.runs)
		p("| audit | decisions/s | p50 | p99 | CPU/decision (mcp-pdp) | CPU/decision (NATS server process) | peak RSS | other load |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, x := range []int{0, 1, 2} {
			if len(au[x]) == 0 {
				continue
			}
			a := aggregate(au[x])
			label := map[int]string{0: "off", 1: "on (async), embedded NATS (the demo configuration)", 2: "on (async), NATS server in its own process"}[x]
			aux := "—"
			if x == 2 {
				aux = fmtDur(a.auxCPU)
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %.2f |\n", label, fmtRate(a.rate), fmtDur(a.p50), fmtDur(a.p99), fmtDur(a.cpu), aux, fmtBytes(a.peakRSS), a.other)
		}
		if len(au[0]) > 0 && len(au[1]) > 0 {
			off, emb := aggregate(au[0]), aggregate(au[1])
			budget := off.cpu / 9 // audit may add a ninth of the decision's CPU: 90% throughput on a CPU-bound machine
			p("\nThe 90%% target leaves an audited decision %s of CPU more than an unaudited one (a ninth of %s); the embedded configuration adds %s.",
				fmtDur(budget), fmtDur(off.cpu), fmtDur(emb.cpu-off.cpu))
			if server, client, ok := r.auditProfileShares(); ok {
				p(" In the CPU profile of the audited session (below), the embedded NATS server's goroutines take %s per decision (%.1f× that budget) and the PDP's audit client %s (%.1f×). "+
					"As the server runs on the same cores, its work alone bounds the embedded configuration at %.0f%% of audit off on a CPU-bound machine, whatever the client costs.",
					fmtDur(server), float64(server)/float64(budget), fmtDur(client), float64(client)/float64(budget),
					100*float64(off.cpu)/float64(off.cpu+server))
			}
			if len(au[2]) > 0 {
				ext := aggregate(au[2])
				p(" With the NATS server in its own process, it spends %s per event there (loopback TCP included) and the PDP's side (encode, publish over TCP, read the ack) costs %s.",
					fmtDur(ext.auxCPU), fmtDur(ext.cpu-off.cpu))
			}
			p("\n")
		}
		for _, c := range []struct {
			name string
			e    map[string]float64
		}{{"embedded NATS", r.auditEnd}, {"NATS in its own process", r.auditExtEnd}} {
			if e := c.e; e != nil {
				p("\nAudit counters at the end, %s (after a 2 s drain): %.0f events published and acked, %.0f spooled, %.0f failed, %.0f pending.\n", c.name,
					e["mcp_pdp_audit_events_published_total"], e["mcp_pdp_audit_events_spooled_total"], e["mcp_pdp_audit_events_failed_total"], e["mcp_pdp_audit_events_pending"])
			}
		}
		p("\n")
	}
}

// auditProfileShares returns, from the CPU profile of the audited session
// (embedded NATS), the CPU per decision through the NATS server and
// through the PDP's audit client.
func (r *report) auditProfileShares() (server, client time.Duration, ok bool) {
	for _, pr := range r.profile {
		if pr.Scenario != "session+audit" || len(pr.Through) < 2 {
			continue
		}
		per := float64(pr.Sample.CPUPerReq)
		return time.Duration(pr.Through[0].Share * per), time.Duration(pr.Through[1].Share * per), true
	}
	return 0, 0, false
}

func commandLine() string {
	args := os.Args[1:]
	return strings.TrimSpace("go run ./bench/run " + strings.Join(args, " "))
}

func (r *report) write() error {
	md := r.markdown()
	fmt.Println(md)
	if err := os.MkdirAll(r.b.opts.outDir, 0o755); err != nil {
		return err
	}
	stamp := r.start.Format("2006-01-02-1504")
	if r.b.opts.quick {
		stamp += "-quick"
	}
	base := filepath.Join(r.b.opts.outDir, stamp)
	if err := os.WriteFile(base+".md", []byte(md), 0o644); err != nil {
		return err
	}
	raw := map[string]any{"before": r.before, "after": r.after, "options": map[string]any{
		"duration": r.b.opts.duration.String(), "warmup": r.b.opts.warmup.String(), "runs": r.b.opts.runs, "conns": r.b.opts.conns, "quick": r.b.opts.quick,
	}}
	cells := map[string][]sample{}
	for k, v := range r.cells {
		cells[fmt.Sprintf("%s/c=%d/%s", k.scenario, k.conns, k.server)] = v
	}
	raw["cells"] = cells
	series := map[string][]sample{}
	for name, m := range r.series {
		for x, v := range m {
			series[fmt.Sprintf("%s=%d", name, x)] = v
		}
	}
	raw["series"] = series
	if len(r.introspections) > 0 {
		raw["introspections"] = r.introspections
	}
	if gw := r.b.rep.gw; gw != nil {
		cells := map[string][]sample{}
		for k, v := range gw.cells {
			cells[k.scenario+"/"+k.row] = v
		}
		raw["gateway"] = map[string]any{"cells": cells, "idle_streams": gw.idle, "stdio": gw.stdio, "upstream_peak_rss": gw.upstreamRSS}
	}
	js, _ := json.MarshalIndent(raw, "", "  ")
	if err := os.WriteFile(base+".json", js, 0o644); err != nil {
		return err
	}
	logf("results: %s.md and .json", base)
	return nil
}
