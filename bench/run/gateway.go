package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcp-pdp/pdp/bench/internal/fixture"
	"github.com/mcp-pdp/pdp/bench/internal/mcpbench"
	"github.com/mcp-pdp/pdp/bench/loadgen"
	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// The gateway series (issue #12 §5): the MCP gateway of `pdp serve` against
// Go's httputil.ReverseProxy (bench/proxy: the floor of any proxy) and the
// two-hop set-up of today (bench/twohop: a PEP calling /v1/decide of a
// second `pdp serve`, then the upstream), all in front of the same minimal
// upstream (bench/mcpupstream), driven by the same loadgen at 32
// connections; then 2,000 idle SSE streams through the gateway, and the
// first answer of a new stdio session (bench/mcpstdio) against the child's
// own start-up time.

// Row names of the gateway series.
const (
	rowGateway = "gateway"
	rowProxy   = "proxy"
	rowTwoHop  = "twohop"
)

// gwResourceSSE is the second gateway resource: the same upstream
// answering as SSE.
const gwResourceSSE = "https://mcp.example.com/sse"

// gwConns is the connection count of the series (issue #12 §5).
const gwConns = 32

// gwIdleStreams is the number of idle SSE streams held open at once.
const gwIdleStreams = 2000

// gwRow is one thing under test: where loadgen connects and the processes
// whose CPU and memory are the row's (the two-hop row is two processes:
// the PEP and its PDP).
type gwRow struct {
	name  string
	addr  string
	procs []*server
}

// gwScenario is one workload of the series.
type gwScenario struct {
	key, title string
	rows       []string
	path       string // the POST's path on every row: /mcp (JSON) or /sse
	body       func(dst []byte) []byte
	// check validates an answer of the named row.
	check func(row string) func(int, []byte) error
}

// gwKey files a sample of the series.
type gwKey struct{ scenario, row string }

// gwResults is what the series measured, for the report.
type gwResults struct {
	order []gwKey
	cells map[gwKey][]sample
	idle  *idleResult
	stdio *stdioResult
	// upstreamRSS is the upstream's peak RSS over the load runs.
	upstreamRSS uint64
}

// idleResult is the idle-stream measurement (RSS is VmRSS).
type idleResult struct {
	Streams          int           `json:"streams"`
	Opened           int           `json:"opened"`
	FirstError       string        `json:"first_error,omitempty"`
	OpenTook         time.Duration `json:"open_took"`
	RSSBefore        uint64        `json:"rss_before"`
	RSSOpen          uint64        `json:"rss_open"`
	RSSAfterClose    uint64        `json:"rss_after_close"`
	GoroutinesBefore float64       `json:"goroutines_before"`
	GoroutinesOpen   float64       `json:"goroutines_open"`
	HeapBefore       float64       `json:"heap_inuse_before"`
	HeapOpen         float64       `json:"heap_inuse_open"`
	UpstreamStreams  int           `json:"upstream_streams"`
	UpRSSBefore      uint64        `json:"upstream_rss_before"`
	UpRSSOpen        uint64        `json:"upstream_rss_open"`
}

// stdioResult is the stdio first-answer measurement: the child's own
// start-up to its first answer, a new session's first answer through the
// gateway, and a request on an open session through it.
type stdioResult struct {
	Direct  []time.Duration `json:"direct"`
	Gateway []time.Duration `json:"gateway_new_session"`
	Warm    []time.Duration `json:"gateway_open_session"`
}

func (b *bench) gwScenarios() []gwScenario {
	var seq atomic.Uint64
	call := func(dst []byte) []byte {
		n := seq.Add(1)
		dst = append(dst, `{"jsonrpc":"2.0","id":`...)
		dst = strconv.AppendUint(dst, n, 10)
		dst = append(dst, `,"method":"tools/call","params":{"name":"`+mcpbench.CallTool+`","arguments":{"q":"`...)
		dst = strconv.AppendUint(dst, n, 10)
		return append(dst, `"}}}`...)
	}
	list := func(dst []byte) []byte {
		dst = append(dst, `{"jsonrpc":"2.0","id":`...)
		dst = strconv.AppendUint(dst, seq.Add(1), 10)
		return append(dst, `,"method":"tools/list","params":{}}`...)
	}
	callCheck := func(string) func(int, []byte) error {
		want := []byte(`"text":"` + mcpbench.CallText + `"`)
		return func(_ int, body []byte) error {
			if !bytes.Contains(body, want) || bytes.HasPrefix(body, []byte("event:")) {
				return fmt.Errorf("not the tools/call result as JSON: %.300s", body)
			}
			return nil
		}
	}
	listCheck := func(sse bool) func(string) func(int, []byte) error {
		return func(row string) func(int, []byte) error {
			filtered := row != rowProxy
			return func(_ int, body []byte) error {
				if sse != bytes.Contains(body, []byte("data: ")) {
					return fmt.Errorf("SSE answer wanted: %v: %.200s", sse, body)
				}
				return mcpbench.CheckList(body, filtered)
			}
		}
	}
	return []gwScenario{
		{key: "call", title: "tools/call of a step-up tool (allowed), JSON answer", rows: []string{rowGateway, rowProxy, rowTwoHop},
			path: "/mcp", body: call, check: callCheck},
		{key: "list-json", title: fmt.Sprintf("tools/list of %d tools, JSON answer (gateway and two-hop filter it to %d)", mcpbench.Tools, mcpbench.Visible),
			rows: []string{rowGateway, rowProxy, rowTwoHop}, path: "/mcp", body: list, check: listCheck(false)},
		{key: "list-sse", title: fmt.Sprintf("tools/list of %d tools, one SSE event (the gateway filters it to %d)", mcpbench.Tools, mcpbench.Visible),
			rows: []string{rowGateway, rowProxy}, path: "/sse", body: list, check: listCheck(true)},
	}
}

// gwRuns is the number of measured runs of the series.
func (b *bench) gwRuns() int {
	n := 0
	for _, sc := range b.gwScenarios() {
		n += len(sc.rows) * b.opts.runs
	}
	return n
}

// gwToken mints the series' token: alice with the step-up scope, for both
// gateway resources.
func (b *bench) gwToken() (string, error) {
	return b.iss.Mint(devissuer.MintOptions{Subject: "alice", ClientID: "bench", Audience: []string{fixture.Resource, gwResourceSSE},
		Scopes: []string{mcpbench.StepUpScope}, TTL: 6 * time.Hour})
}

// gwPolicy writes the default policy (policies/*.rego) with the series'
// catalog (bench/internal/mcpbench) as its data.
func gwPolicy(dir string) error {
	if err := fixture.WritePDPPolicy(dir, 9); err != nil {
		return err
	}
	data, err := json.Marshal(mcpbench.Catalog())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "data.json"), data, 0o644)
}

// gwUpstream is the upstream of a gateway config.
type gwUpstream struct {
	url     string // base URL of bench/mcpupstream: resources /mcp (JSON) and /sse
	command string // or the stdio server binary: one resource /mcp
}

// gwConfig writes a `pdp serve` config: the API on its own loopback port,
// audit off (as the main table's mcp-pdp rows), the series' catalog, and,
// when up is set, the gateway on gatewayAddr in front of it.
func (b *bench) gwConfig(dir, apiAddr, gatewayAddr string, up *gwUpstream) (string, error) {
	pol := filepath.Join(dir, "policy")
	if err := gwPolicy(pol); err != nil {
		return "", err
	}
	res := func(uri, upstream string) string {
		return fmt.Sprintf("  - uri: %q\n    issuer: %q\n    jwks_uri: %q\n    scopes_supported: [%q]\n%s", uri, fixture.Issuer, b.jwksURL, mcpbench.StepUpScope, upstream)
	}
	var resources, gw string
	switch {
	case up == nil:
		resources = res(fixture.Resource, "")
	case up.command != "":
		gw = fmt.Sprintf("gateway:\n  listen: %q\n", gatewayAddr)
		resources = res(fixture.Resource, fmt.Sprintf("    upstream:\n      command: [%q]\n", up.command))
	default:
		gw = fmt.Sprintf("gateway:\n  listen: %q\n", gatewayAddr)
		resources = res(fixture.Resource, fmt.Sprintf("    upstream:\n      url: %q\n", up.url+"/mcp")) +
			res(gwResourceSSE, fmt.Sprintf("    upstream:\n      url: %q\n", up.url+"/sse"))
	}
	cfg := fmt.Sprintf(`# written by bench/run (make loadbench, gateway series)
listen: %q
data_dir: %q
instance: loadbench
%sresources:
%spolicy:
  path: %q
audit:
  enabled: false
log:
  level: warn
`, apiAddr, filepath.Join(dir, "data"), gw, resources, pol)
	path := filepath.Join(dir, "pdp.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// startGatewayPDP runs `pdp serve` with the gateway in front of up and
// waits until both listeners answer. It returns the process and the
// gateway's address.
func (b *bench) startGatewayPDP(ctx context.Context, name string, up *gwUpstream) (*server, string, error) {
	api, err := freePort()
	if err != nil {
		return nil, "", err
	}
	gwAddr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(b.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	var cfg string
	if up != nil {
		cfg, err = b.gwConfig(dir, api, gwAddr, up)
	} else {
		cfg, err = b.gwConfig(dir, api, "", nil)
	}
	if err != nil {
		return nil, "", err
	}
	s := &server{name: name, kind: kindPDP, addr: api, logPath: filepath.Join(b.work, name+".log")}
	if err := b.start(ctx, s, "http://"+api+"/readyz", b.bins.pdp, "serve", "--config", cfg); err != nil {
		return nil, "", err
	}
	if up == nil {
		return s, "", nil
	}
	// The gateway's listener: its resource metadata document.
	return s, gwAddr, waitOK(ctx, "http://"+gwAddr+"/.well-known/oauth-protected-resource/mcp", s)
}

// waitOK polls url until it answers 200, s exits, or 30 s pass.
func waitOK(ctx context.Context, url string, s *server) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not ready after 30s: %v; log %s:\n%s", s.name, url, err, s.logPath, tail(s.logPath, 30))
		}
		select {
		case <-s.done:
			return fmt.Errorf("%s exited at start-up; its log:\n%s", s.name, tail(s.logPath, 30))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startPlain runs one of the series' helper binaries with --listen on a
// free port and waits for its /health.
func (b *bench) startPlain(ctx context.Context, name, bin string, args ...string) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &server{name: name, kind: name, addr: addr, logPath: filepath.Join(b.work, name+".log")}
	return s, b.start(ctx, s, "http://"+addr+"/health", append([]string{bin, "--listen", addr}, args...)...)
}

// gatewaySeries runs the whole series.
func (b *bench) gatewaySeries(ctx context.Context) error {
	b.rep.gw = &gwResults{cells: map[gwKey][]sample{}}
	token, err := b.gwToken()
	if err != nil {
		return err
	}
	b.steps, b.step, b.started = b.gwRuns(), 0, time.Now()
	logf("gateway series: %d runs of %s at %d connections (gateway, ReverseProxy, two-hop; one upstream), then %d idle streams and the stdio first answer",
		b.steps, b.opts.duration, gwConns, gwIdleStreams)
	upstream, err := b.startPlain(ctx, "mcpupstream", b.bins.upstream)
	if err != nil {
		return err
	}
	upURL := "http://" + upstream.addr
	gwPDP, gwAddr, err := b.startGatewayPDP(ctx, "gateway", &gwUpstream{url: upURL})
	if err != nil {
		return err
	}
	proxy, err := b.startPlain(ctx, "proxy", b.bins.proxy, "--upstream", upURL)
	if err != nil {
		return err
	}
	thPDP, _, err := b.startGatewayPDP(ctx, "twohop-pdp", nil)
	if err != nil {
		return err
	}
	twohop, err := b.startPlain(ctx, "twohop", b.bins.twohop, "--upstream", upURL,
		"--decide", "http://"+thPDP.addr+"/v1/decide", "--resource", fixture.Resource)
	if err != nil {
		return err
	}
	rows := map[string]*gwRow{
		rowGateway: {name: rowGateway, addr: gwAddr, procs: []*server{gwPDP}},
		rowProxy:   {name: rowProxy, addr: proxy.addr, procs: []*server{proxy}},
		rowTwoHop:  {name: rowTwoHop, addr: twohop.addr, procs: []*server{twohop, thPDP}},
	}
	headers := []string{"Authorization: Bearer " + token, "Accept: application/json, text/event-stream"}
	resetPeak(upstream.pid())
	for _, sc := range b.gwScenarios() {
		for run := 0; run < b.opts.runs; run++ {
			for _, name := range rotate(sc.rows, run) {
				row := rows[name]
				smp, err := b.gwMeasure(ctx, row, upstream, sc, headers)
				if err != nil {
					return err
				}
				k := gwKey{sc.key, name}
				if _, ok := b.rep.gw.cells[k]; !ok {
					b.rep.gw.order = append(b.rep.gw.order, k)
				}
				b.rep.gw.cells[k] = append(b.rep.gw.cells[k], smp)
				b.progress("gw "+sc.key, smp)
			}
		}
	}
	b.rep.gw.upstreamRSS, _ = procMem(upstream.pid())
	for _, s := range []*server{gwPDP, proxy, twohop, thPDP} {
		b.stop(s)
	}

	idle, err := b.idleStreams(ctx, upstream, upURL, token)
	if err != nil {
		return err
	}
	b.rep.gw.idle = idle
	b.stop(upstream)
	st, err := b.stdioFirstAnswer(ctx, token)
	if err != nil {
		return err
	}
	b.rep.gw.stdio = st
	return nil
}

// gwMeasure runs one window of sc against row, run again (like measure)
// when other processes used more than -noisy cores during it.
func (b *bench) gwMeasure(ctx context.Context, row *gwRow, up *server, sc gwScenario, headers []string) (sample, error) {
	best, err := b.gwMeasureOnce(ctx, row, up, sc, headers)
	for try := 0; err == nil && try < b.opts.retries && best.OtherCores > b.opts.noisy && b.rep.retried < b.opts.maxRetries; try++ {
		logf("  %s: other processes used %.2f cores during the run; running it again", row.name, best.OtherCores)
		b.rep.retried++
		smp, err2 := b.gwMeasureOnce(ctx, row, up, sc, headers)
		if err2 != nil {
			return best, err2
		}
		smp.Retried = best.Retried + 1
		if smp.OtherCores < best.OtherCores {
			best = smp
		} else {
			best.Retried = smp.Retried
		}
	}
	return best, err
}

// gwMeasureOnce: CPUPerReq is the row's processes' CPU, AuxCPUPerReq the
// upstream's; PeakRSS sums the row's processes' VmHWM (reset before).
func (b *bench) gwMeasureOnce(ctx context.Context, row *gwRow, up *server, sc gwScenario, headers []string) (sample, error) {
	for _, p := range row.procs {
		resetPeak(p.pid())
	}
	rowCPU := func() time.Duration {
		var d time.Duration
		for _, p := range row.procs {
			c, _ := procCPU(p.pid())
			d += c
		}
		return d
	}
	var cpu0, cpu1, up0, up1, self0, self1, m0, m1 time.Duration
	res, err := loadgen.Run(ctx, loadgen.Options{
		Addr: row.addr, Path: sc.path, Headers: headers, Conns: gwConns,
		Warmup: b.opts.warmup, Duration: b.opts.duration,
		Body: sc.body, Check: sc.check(row.name), CheckEvery: 997,
		OnStart: func() {
			cpu0 = rowCPU()
			up0, _ = procCPU(up.pid())
			self0, _ = procCPU(os.Getpid())
			m0, _ = machineCPU()
		},
		OnStop: func() {
			cpu1 = rowCPU()
			up1, _ = procCPU(up.pid())
			self1, _ = procCPU(os.Getpid())
			m1, _ = machineCPU()
		},
	})
	if err != nil {
		return sample{}, fmt.Errorf("%s %s: %w", sc.key, row.name, err)
	}
	smp := sample{
		Server: row.name, Conns: gwConns, Rate: res.Rate(),
		P50: res.Hist.Quantile(0.50), P90: res.Hist.Quantile(0.90), P99: res.Hist.Quantile(0.99), Max: res.Hist.Max(),
		Requests: res.Requests, Errors: res.Errors, FirstError: res.FirstError,
	}
	if res.Requests > 0 {
		smp.CPUPerReq = (cpu1 - cpu0) / time.Duration(res.Requests)
		smp.AuxCPUPerReq = (up1 - up0) / time.Duration(res.Requests)
	}
	if res.Elapsed > 0 {
		smp.ServerCores = float64(cpu1-cpu0) / float64(res.Elapsed)
		smp.GenCores = float64(self1-self0) / float64(res.Elapsed)
		smp.OtherCores = max(0, float64((m1-m0)-(cpu1-cpu0)-(up1-up0)-(self1-self0))/float64(res.Elapsed))
	}
	for _, p := range row.procs {
		hwm, rss := procMem(p.pid())
		smp.PeakRSS += hwm
		smp.RSS += rss
	}
	if smp.Errors > 0 {
		logf("  WARNING %s %s: %d errors; first: %s", sc.key, row.name, smp.Errors, smp.FirstError)
	}
	return smp, nil
}

// idleStreams starts a fresh gateway in front of the upstream, warms its
// decision path, reads its RSS, opens gwIdleStreams GET streams through it
// at once (raw sockets: the status line and headers are read, then the
// sockets stay open and silent) and reads its RSS with them open.
func (b *bench) idleStreams(ctx context.Context, upstream *server, upURL, token string) (*idleResult, error) {
	logf("gateway series: %d idle SSE streams through a fresh gateway", gwIdleStreams)
	gw, gwAddr, err := b.startGatewayPDP(ctx, "gateway-idle", &gwUpstream{url: upURL})
	if err != nil {
		return nil, err
	}
	defer b.stop(gw)
	// Warm the decision path (token verified once, then cached) and the
	// upstream connections, as a running gateway would be.
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range 32 {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{"q":"x"}}}`, i, mcpbench.CallTool)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+gwAddr+"/mcp", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("idle streams: warm-up: %w", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("idle streams: warm-up: HTTP %d", resp.StatusCode)
		}
	}
	client.CloseIdleConnections()
	time.Sleep(time.Second)
	metrics := "http://" + gw.addr + "/metrics"
	r := &idleResult{Streams: gwIdleStreams}
	_, r.RSSBefore = procMem(gw.pid())
	_, r.UpRSSBefore = procMem(upstream.pid())
	m := metric(metrics, "go_goroutines", "go_memstats_heap_inuse_bytes")
	r.GoroutinesBefore, r.HeapBefore = m["go_goroutines"], m["go_memstats_heap_inuse_bytes"]

	conns := make([]net.Conn, gwIdleStreams)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var opened atomic.Int64
	next := atomic.Int64{}
	t0 := time.Now()
	req := []byte("GET /mcp HTTP/1.1\r\nHost: " + gwAddr + "\r\nAuthorization: Bearer " + token + "\r\nAccept: text/event-stream\r\nUser-Agent: mcp-pdp-loadbench\r\n\r\n")
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= gwIdleStreams || ctx.Err() != nil {
					return
				}
				c, err := openStream(gwAddr, req)
				if err != nil {
					mu.Lock()
					if r.FirstError == "" {
						r.FirstError = err.Error()
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
				opened.Add(1)
			}
		}()
	}
	wg.Wait()
	r.OpenTook = time.Since(t0)
	r.Opened = int(opened.Load())
	time.Sleep(2 * time.Second) // let the streams' goroutines settle
	_, r.RSSOpen = procMem(gw.pid())
	_, r.UpRSSOpen = procMem(upstream.pid())
	m = metric(metrics, "go_goroutines", "go_memstats_heap_inuse_bytes")
	r.GoroutinesOpen, r.HeapOpen = m["go_goroutines"], m["go_memstats_heap_inuse_bytes"]
	r.UpstreamStreams = upstreamStreams("http://" + upstream.addr + "/health")
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	time.Sleep(2 * time.Second)
	_, r.RSSAfterClose = procMem(gw.pid())
	logf("  %d/%d streams open in %s: gateway RSS %s -> %s (goroutines %.0f -> %.0f), upstream holds %d streams",
		r.Opened, r.Streams, r.OpenTook.Round(time.Millisecond), fmtBytes(r.RSSBefore), fmtBytes(r.RSSOpen), r.GoroutinesBefore, r.GoroutinesOpen, r.UpstreamStreams)
	if r.FirstError != "" {
		logf("  WARNING idle streams: first error: %s", r.FirstError)
	}
	return r, nil
}

// openStream opens one SSE GET stream through the gateway on a raw socket
// and reads its status line and headers.
func openStream(addr string, req []byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 1024)
	status, err := br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("stream: status line: %w", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 200") {
		c.Close()
		return nil, fmt.Errorf("stream: %s", strings.TrimSpace(status))
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("stream: headers: %w", err)
		}
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// upstreamStreams reads the upstream's count of open GET streams.
func upstreamStreams(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var n int
	body, _ := io.ReadAll(resp.Body)
	if _, err := fmt.Sscanf(string(body), "ok %d streams", &n); err != nil {
		return -1
	}
	return n
}

// gwStdioSamples is the number of samples of each stdio measurement.
const gwStdioSamples = 15

// stdioFirstAnswer measures, interleaved, (a) bench/mcpstdio's own
// start-up time to its first answer (spawn it, send initialize, read the
// answer) and (b) a new session's first answer through the gateway (POST
// initialize without Mcp-Session-Id: the gateway starts a child for the
// session), each session ended with DELETE afterwards; and, for
// reference, a request on an open session.
func (b *bench) stdioFirstAnswer(ctx context.Context, token string) (*stdioResult, error) {
	logf("gateway series: stdio first answer (%d samples each, interleaved)", gwStdioSamples)
	gw, gwAddr, err := b.startGatewayPDP(ctx, "gateway-stdio", &gwUpstream{command: b.bins.mcpstdio})
	if err != nil {
		return nil, err
	}
	defer b.stop(gw)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	endpoint := "http://" + gwAddr + "/mcp"
	post := func(sid, body string) (string, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
		if err != nil {
			return "", nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", nil, err
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, out)
		}
		return resp.Header.Get("Mcp-Session-Id"), out, err
	}
	end := func(sid string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, endpoint, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Mcp-Session-Id", sid)
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + mcpbench.ProtocolVersion + `","capabilities":{},"clientInfo":{"name":"loadbench","version":"0"}}}`
	const call = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + mcpbench.CallTool + `","arguments":{"q":"x"}}}`
	gateway := func() (time.Duration, time.Duration, error) {
		t0 := time.Now()
		sid, out, err := post("", initialize)
		d := time.Since(t0)
		if err != nil {
			return 0, 0, fmt.Errorf("stdio through the gateway: initialize: %w", err)
		}
		if sid == "" || !bytes.Contains(out, []byte(`"protocolVersion"`)) {
			return 0, 0, fmt.Errorf("stdio through the gateway: initialize answered without a session or result: %.200s", out)
		}
		t1 := time.Now()
		_, out, err = post(sid, call)
		warm := time.Since(t1)
		if err == nil && !bytes.Contains(out, []byte(mcpbench.CallText)) {
			err = fmt.Errorf("not the call's result: %.200s", out)
		}
		end(sid)
		if err != nil {
			return 0, 0, fmt.Errorf("stdio through the gateway: tools/call on the session: %w", err)
		}
		return d, warm, nil
	}
	r := &stdioResult{}
	// One unrecorded round of each: page cache, the gateway's token cache.
	if _, err := stdioDirect(ctx, b.bins.mcpstdio, initialize); err != nil {
		return nil, err
	}
	if _, _, err := gateway(); err != nil {
		return nil, err
	}
	for range gwStdioSamples {
		d, err := stdioDirect(ctx, b.bins.mcpstdio, initialize)
		if err != nil {
			return nil, err
		}
		r.Direct = append(r.Direct, d)
		time.Sleep(50 * time.Millisecond)
		g, warm, err := gateway()
		if err != nil {
			return nil, err
		}
		r.Gateway, r.Warm = append(r.Gateway, g), append(r.Warm, warm)
		time.Sleep(50 * time.Millisecond)
	}
	logf("  child alone %s, new session through the gateway %s (medians)", fmtDur(medianDur(r.Direct)), fmtDur(medianDur(r.Gateway)))
	return r, nil
}

// stdioDirect spawns the stdio server, sends initialize and returns the
// time from the spawn to the answer's last byte.
func stdioDirect(ctx context.Context, bin, initialize string) (time.Duration, error) {
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("stdio direct: %w", err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	if _, err := io.WriteString(stdin, initialize+"\n"); err != nil {
		return 0, fmt.Errorf("stdio direct: write: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("stdio direct: read: %w", err)
	}
	if !bytes.Contains(line, []byte(`"protocolVersion"`)) {
		return 0, errors.New("stdio direct: not an initialize result: " + string(line))
	}
	return d, nil
}

func medianDur(xs []time.Duration) time.Duration {
	return time.Duration(median(xs, func(d time.Duration) float64 { return float64(d) }))
}

func minMaxDur(xs []time.Duration) (time.Duration, time.Duration) {
	if len(xs) == 0 {
		return 0, 0
	}
	return slices.Min(xs), slices.Max(xs)
}
