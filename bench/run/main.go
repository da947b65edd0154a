// Command run is the load benchmark of mcp-pdp (make loadbench). In one run
// on one machine it builds and starts, on loopback ports:
//
//   - floor: a plain net/http server that decodes the JSON body and writes
//     a fixed JSON decision (bench/floor), and floor+jwt, the same verifying
//     the RS256 token of every request with jwx v3;
//   - mcp-pdp: `pdp serve --config` with the demo policy (policies/*.rego)
//     on a catalog of 100 tools and a real JWKS served over HTTP;
//   - mcp-pdp+introspection: the same with RFC 7662 introspection of
//     opaque tokens, against an endpoint the orchestrator serves (TLS on
//     loopback), for the opaque-token session row;
//   - opa: OPA's REST server (`opa run --server`, built from the OPA module
//     version of go.mod through its tool directive) on the equivalent policy
//     bench/opa/policy.rego (io.jwt.decode_verify against the same JWKS, the
//     same catalog and scope logic);
//
// and drives each with the same closed-loop generator (bench/loadgen) and
// the same request bodies, the servers interleaved (A B C, B C A, C A B...)
// so that a change of machine load hits them alike. It prints, and writes to
// bench/results/, one table (decisions/s, p50, p99, server CPU per decision,
// peak RSS, and mcp-pdp's ratios to OPA and to the floor), the targets, and
// the series: catalog size, list size, distinct live tokens, audit on/off.
//
// All traffic goes to 127.0.0.1; every run is bounded in time and every
// process it starts is stopped before it exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mcp-pdp/pdp/bench/internal/fixture"
	"github.com/mcp-pdp/pdp/internal/devissuer"
)

type options struct {
	duration, warmup time.Duration
	runs             int
	conns            []int
	what             map[string]bool
	only             map[string]bool // scenario keys of the main table; empty = all
	quick            bool
	poolSize         int
	outDir           string
	keep             bool
	noisy            float64
	retries          int
	maxRetries       int

	catalog       int
	listSize      int
	seriesCatalog []int
	seriesList    []int
	seriesTokens  []int
	profileFor    time.Duration
}

type binaries struct {
	pdp, opa, floor, pdpprof, nats string
	// The gateway series' fixtures (bench/mcpupstream, bench/proxy,
	// bench/twohop, bench/mcpstdio).
	upstream, proxy, twohop, mcpstdio string
}

type bench struct {
	opts    options
	root    string
	work    string
	bins    binaries
	iss     *devissuer.Issuer
	jwks    []byte
	jwksURL string
	session string
	// intro is the RFC 7662 endpoint of the opaque-token row, served over
	// TLS on loopback at introURL; introCA is the PEM file of its
	// certificate (SSL_CERT_FILE of the PDP that introspects).
	intro    *fixture.Introspection
	introURL string
	introCA  string
	pool     []string
	servers  []*server
	rep      *report
	step     int
	steps    int
	started  time.Time
}

func main() {
	var o options
	var conns, what, catalogs, lists, tokens, only string
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measurement window of one run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unrecorded warm-up before each window")
	flag.IntVar(&o.runs, "runs", 3, "runs of each cell (the table shows medians)")
	flag.StringVar(&conns, "conns", "1,32", "connection counts")
	flag.StringVar(&what, "what", "main,series,gateway", "what to run: main, series, gateway, profile, audit (the series' audit part alone), quota (a quota on the called tool vs none) (comma-separated)")
	flag.StringVar(&only, "scenarios", "", "main-table and profile workloads to run (comma-separated keys: session, fresh, anon, list, session-same, list-same, session-opaque; profile: session+audit, session+audit-ext too; empty = all)")
	flag.BoolVar(&o.quick, "quick", false, "smoke run: short windows, one run, small pools and series")
	flag.IntVar(&o.poolSize, "pool", 100000, "distinct tokens minted for the fresh-token and live-token runs")
	flag.StringVar(&o.outDir, "out", "bench/results", "directory for the results (relative to the module root)")
	flag.Float64Var(&o.noisy, "noisy", 0.35, "a run during which other processes used more cores than this is run again")
	flag.IntVar(&o.retries, "retries", 1, "times a noisy run is run again (the quietest is kept)")
	flag.IntVar(&o.maxRetries, "max-retries", 15, "repeated runs in all (bounds the time a busy machine adds)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binaries, configs, server logs)")
	flag.StringVar(&catalogs, "series-catalog", "10,100,1000,10000", "catalog sizes of the catalog series")
	flag.StringVar(&lists, "series-list", "10,100,1000", "list sizes of the list series")
	flag.StringVar(&tokens, "series-tokens", "1,100,10000,100000", "distinct live tokens of the token series")
	flag.DurationVar(&o.profileFor, "profile-seconds", 10*time.Second, "length of each CPU profile (-what profile)")
	flag.Parse()
	o.catalog, o.listSize = 100, 100
	if o.quick {
		setIfDefault := func(name string, apply func()) {
			set := false
			flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
			if !set {
				apply()
			}
		}
		setIfDefault("duration", func() { o.duration = 1500 * time.Millisecond })
		setIfDefault("warmup", func() { o.warmup = 500 * time.Millisecond })
		setIfDefault("runs", func() { o.runs = 1 })
		setIfDefault("pool", func() { o.poolSize = 30000 })
		setIfDefault("series-catalog", func() { catalogs = "10,1000" })
		setIfDefault("series-list", func() { lists = "10,100" })
		setIfDefault("series-tokens", func() { tokens = "1,1000,10000" })
		setIfDefault("retries", func() { o.retries = 0 })
		setIfDefault("profile-seconds", func() { o.profileFor = 3 * time.Second })
	}
	var err error
	if o.conns, err = ints(conns); err != nil {
		fatal(err)
	}
	if o.seriesCatalog, err = ints(catalogs); err != nil {
		fatal(err)
	}
	if o.seriesList, err = ints(lists); err != nil {
		fatal(err)
	}
	if o.seriesTokens, err = ints(tokens); err != nil {
		fatal(err)
	}
	o.only = map[string]bool{}
	for _, k := range strings.Split(only, ",") {
		if k = strings.TrimSpace(k); k != "" {
			o.only[k] = true
		}
	}
	o.what = map[string]bool{}
	for _, w := range strings.Split(what, ",") {
		w = strings.TrimSpace(w)
		if w != "main" && w != "series" && w != "gateway" && w != "profile" && w != "audit" && w != "quota" {
			fatal(fmt.Errorf("-what: %q is not one of main, series, gateway, profile, audit", w))
		}
		o.what[w] = true
	}
	for _, t := range o.seriesTokens {
		if t > o.poolSize {
			fatal(fmt.Errorf("-series-tokens %d exceeds -pool %d", t, o.poolSize))
		}
	}
	if o.runs < 1 || o.duration <= 0 {
		fatal(fmt.Errorf("-runs must be >= 1 and -duration > 0"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{opts: o, started: time.Now()}
	err = b.run(ctx)
	b.stopAll()
	if b.work != "" && !o.keep {
		os.RemoveAll(b.work)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "loadbench:", err)
	os.Exit(1)
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list %q", s)
	}
	return out, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (b *bench) run(ctx context.Context) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	b.root = root
	if !filepath.IsAbs(b.opts.outDir) {
		b.opts.outDir = filepath.Join(root, b.opts.outDir)
	}
	if b.work, err = os.MkdirTemp("", "loadbench-"); err != nil {
		return err
	}
	b.rep = newReport(b)
	logf("work directory %s", b.work)
	if err := b.build(ctx); err != nil {
		return err
	}
	if err := b.fixtures(ctx); err != nil {
		return err
	}
	b.rep.before = machineFacts(b.root)
	if b.opts.what["main"] {
		if err := b.mainTable(ctx); err != nil {
			return err
		}
	}
	if b.opts.what["series"] {
		if err := b.series(ctx); err != nil {
			return err
		}
	} else if b.opts.what["audit"] {
		if err := b.auditOnly(ctx); err != nil {
			return err
		}
	}
	if b.opts.what["quota"] {
		if err := b.quotaSeries(ctx); err != nil {
			return err
		}
	}
	if b.opts.what["gateway"] {
		if err := b.gatewaySeries(ctx); err != nil {
			return err
		}
	}
	if b.opts.what["profile"] {
		if err := b.profile(ctx); err != nil {
			return err
		}
	}
	b.rep.after = machineFacts(b.root)
	return b.rep.write()
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run from inside the mcp-pdp module")
	}
	return filepath.Dir(mod), nil
}

// build compiles every binary with the module's toolchain; OPA comes from
// the `tool github.com/open-policy-agent/opa` directive of go.mod, so it is
// the OPA version the product links.
func (b *bench) build(ctx context.Context) error {
	bin := filepath.Join(b.work, "bin")
	b.bins = binaries{
		pdp: filepath.Join(bin, "pdp"), opa: filepath.Join(bin, "opa"),
		floor: filepath.Join(bin, "floor"), pdpprof: filepath.Join(bin, "pdpprof"),
		nats:     filepath.Join(bin, "nats-server"),
		upstream: filepath.Join(bin, "mcpupstream"), proxy: filepath.Join(bin, "proxy"),
		twohop: filepath.Join(bin, "twohop"), mcpstdio: filepath.Join(bin, "mcpstdio"),
	}
	builds := [][2]string{{b.bins.pdp, "./cmd/pdp"}, {b.bins.opa, "github.com/open-policy-agent/opa"}, {b.bins.floor, "./bench/floor"}}
	if b.opts.what["profile"] {
		builds = append(builds, [2]string{b.bins.pdpprof, "./bench/pdpprof"})
	}
	if b.opts.what["series"] || b.opts.what["profile"] || b.opts.what["audit"] {
		// The NATS server the product embeds, as its own process, for the
		// audit series' external-NATS row (the version go.mod pins).
		builds = append(builds, [2]string{b.bins.nats, "github.com/nats-io/nats-server/v2"})
	}
	if b.opts.what["gateway"] {
		builds = append(builds, [2]string{b.bins.upstream, "./bench/mcpupstream"}, [2]string{b.bins.proxy, "./bench/proxy"},
			[2]string{b.bins.twohop, "./bench/twohop"}, [2]string{b.bins.mcpstdio, "./bench/mcpstdio"})
	}
	for _, bl := range builds {
		logf("go build -o %s %s", filepath.Base(bl[0]), bl[1])
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bl[0], bl[1])
		cmd.Dir = b.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", bl[1], err, out)
		}
	}
	return nil
}
