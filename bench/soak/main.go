// Command soak is the soak benchmark of mcp-pdp (make soak). It starts the
// real `pdp serve --config` as a subprocess on a loopback port (PEP API
// keys, rate limits, audit to the embedded NATS), with a development token
// issuer served by this process, and drives mixed traffic at a fixed rate
// (open loop: latency counts from the scheduled send time) for a few
// minutes: anonymous and authorized calls and lists, fresh tokens, hostile
// tokens (expired, forged, unknown kid, alg none, oversized, wrong
// audience), hostile bodies, unauthenticated callers and one PEP above its
// rate limit. It reports p50/p99 latency, answers and errors by kind, and
// the server's RSS, Go heap, goroutines and open files at start and end,
// and fails when an answer is wrong or resources grow beyond the tolerance.
//
// Traffic only goes to the loopback listener this program started.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/devissuer"
)

const resource = "https://mcp.soak.example/mcp"

type options struct {
	pdp        string
	duration   time.Duration
	warmup     time.Duration
	rate       float64
	workers    int
	sample     time.Duration
	audit      bool
	memTol     float64
	memSlackMB float64
	goTol      int
	maxErrRate float64
	keep       bool
	prefill    int
	bigArgs    float64
}

func main() {
	var o options
	flag.StringVar(&o.pdp, "pdp", "bin/pdp", "the pdp binary to soak (make build)")
	flag.DurationVar(&o.duration, "duration", 3*time.Minute, "measured traffic after the warm-up")
	flag.DurationVar(&o.warmup, "warmup", 20*time.Second, "traffic before the start measurement (caches, JIT of the policy, NATS)")
	flag.Float64Var(&o.rate, "rate", 400, "requests per second, all kinds together")
	flag.IntVar(&o.workers, "workers", 128, "concurrent requests at most (the generator's pool)")
	flag.DurationVar(&o.sample, "sample", 5*time.Second, "resource sampling interval")
	flag.IntVar(&o.prefill, "prefill", 20000, "distinct tokens sent before the warm-up to fill the token and decision caches to their bounds")
	flag.BoolVar(&o.audit, "audit", true, "audit decisions to the embedded NATS JetStream")
	flag.Float64Var(&o.memTol, "mem-tolerance", 0.25, "allowed relative growth of RSS and Go heap from start to end")
	flag.Float64Var(&o.memSlackMB, "mem-slack-mb", 24, "allowed absolute growth (MiB) on top of the relative tolerance")
	flag.IntVar(&o.goTol, "goroutine-tolerance", 10, "allowed growth of goroutines (and open files) from start to end, both quiesced")
	flag.Float64Var(&o.maxErrRate, "max-error-rate", 0.001, "allowed fraction of wrong answers and transport errors")
	flag.Float64Var(&o.bigArgs, "big-args-rate", 0, "extra anonymous calls per second with distinct ~0.5 MB arguments (a memory attack through a legitimate PEP; see docs/security.md, known issue 1)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (config, logs, NATS store)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// ---- the issuer (JWKS) ----

type issuer struct {
	*devissuer.Issuer
	url  string
	hits atomic.Int64
	srv  *http.Server
}

func startIssuer() (*issuer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	url := "http://" + ln.Addr().String()
	di, err := devissuer.New(url, "ES256")
	if err != nil {
		ln.Close()
		return nil, err
	}
	is := &issuer{Issuer: di, url: url}
	h := di.Handler()
	is.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.hits.Add(1)
		h.ServeHTTP(w, r)
	})}
	go func() { _ = is.srv.Serve(ln) }()
	return is, nil
}

// ---- the PDP under test ----

type pdp struct {
	cmd  *exec.Cmd
	base string
	done chan error
}

func randomKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "pdpk_" + base64.RawURLEncoding.EncodeToString(b)
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

const (
	tokenCacheSize = 10000 // the default
	pepCount       = 8
	ratePerPEP     = 200 // per second: the normal PEPs stay below it
	noisyRate      = 250 // the noisy PEP's offered rate: a fifth is refused
)

func startPDP(ctx context.Context, o options, dir string, is *issuer, keys map[string]string) (*pdp, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "listen: %s\ndata_dir: %s\ninstance: soak\n", addr, filepath.Join(dir, "data"))
	fmt.Fprintf(&cfg, "resources:\n  - uri: %s\n    issuer: %s\n    jwks_uri: %s\n    scopes_supported: [qr:generate]\n", resource, is.url, is.JWKSURI())
	cfg.WriteString("auth:\n  api_keys:\n")
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&cfg, "    - name: %s\n      sha256: %s\n", n, api.HashAPIKey(keys[n]))
	}
	fmt.Fprintf(&cfg, "limits:\n  token_cache_size: %d\n  max_concurrent: 512\n  rate_per_pep: %d\n  rate_burst: %d\n", tokenCacheSize, ratePerPEP, ratePerPEP/4)
	fmt.Fprintf(&cfg, "audit:\n  enabled: %v\n", o.audit)
	cfg.WriteString("log:\n  level: warn\n  format: json\n")
	cfgPath := filepath.Join(dir, "pdp.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "pdp.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.pdp, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", o.pdp, err)
	}
	p := &pdp{cmd: cmd, base: "http://" + addr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("pdp exited: %v (see %s)", err, logf.Name())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, errors.New("pdp not ready after 60s")
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *pdp) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("pdp did not stop within 30s of SIGTERM; killed")
	}
}

// ---- resources of the server ----

type sample struct {
	at         time.Duration
	rssMB      float64
	heapMB     float64 // in use, live and garbage
	liveMB     float64 // live heap at the last GC, from the GC's goal
	goroutines float64
	fds        int
	tokens     float64
}

func (p *pdp) sample(start time.Time) (sample, error) {
	s := sample{at: time.Since(start).Round(time.Second)}
	pid := p.cmd.Process.Pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			s.rssMB = kb / 1024
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(fds)
	}
	resp, err := http.Get(p.base + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	goal, gogc := 0.0, 100.0
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(val, 64)
		switch name {
		case "go_goroutines":
			s.goroutines = f
		case "go_memstats_heap_inuse_bytes":
			s.heapMB = f / (1 << 20)
		case "go_memstats_next_gc_bytes":
			goal = f
		case "go_gc_gogc_percent":
			gogc = f
		case "pdp_token_cache_entries":
			s.tokens = f
		}
	}
	if gogc > 0 {
		// At the end of a cycle the GC sets its next goal to about
		// live * (1 + GOGC/100): the live heap, without forcing a GC.
		s.liveMB = goal / (1 + gogc/100) / (1 << 20)
	}
	return s, sc.Err()
}

func (s sample) String() string {
	return fmt.Sprintf("t=%-5s rss=%6.1fMiB heap=%6.1fMiB live=%6.1fMiB goroutines=%4.0f fds=%3d token_cache=%5.0f", s.at, s.rssMB, s.heapMB, s.liveMB, s.goroutines, s.fds, s.tokens)
}

// ---- traffic ----

// A kind of request and the answers that are right for it.
type kind struct {
	name   string
	weight int
	build  func(g *gen) (hdr map[string]string, body []byte)
	check  func(status int, out map[string]any) bool
}

type gen struct {
	is     *issuer
	keys   []string // the normal PEPs' keys
	pool   []string // valid tokens
	list   []byte
	expTTL time.Duration
}

func (g *gen) pep() map[string]string {
	return map[string]string{"X-PDP-API-Key": g.keys[mrand.IntN(len(g.keys))]}
}

func (g *gen) mint(o devissuer.MintOptions) string {
	if o.Audience == nil {
		o.Audience = []string{resource}
	}
	if o.Subject == "" {
		o.Subject = fmt.Sprintf("user-%d", mrand.IntN(1_000_000))
	}
	if o.TTL == 0 {
		o.TTL = g.expTTL
	}
	t, err := g.is.Mint(o)
	if err != nil {
		panic(err)
	}
	return "Bearer " + t
}

func callBody(authz, tool string) []byte {
	b, _ := json.Marshal(map[string]any{"resource": resource, "authorization": authz,
		"message": map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": tool, "arguments": map[string]any{"gtin": "4006381333931"}}}})
	return b
}

func listBody(authz string, result []byte) []byte {
	b, _ := json.Marshal(map[string]any{"resource": resource, "authorization": authz,
		"message": map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, "result": json.RawMessage(result)})
	return b
}

func decision(allow bool, statuses ...int) func(int, map[string]any) bool {
	return func(status int, out map[string]any) bool {
		if status != 200 || out["allow"] != allow || out["decision_id"] == nil {
			return false
		}
		hs, _ := out["http_status"].(float64)
		return slices.Contains(statuses, int(hs))
	}
}

func apiError(status int, code string) func(int, map[string]any) bool {
	return func(s int, out map[string]any) bool { return s == status && out["error"] == code }
}

func tamper(tok string) string {
	b := []byte(tok)
	i := len(b) - 5
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func kinds() []kind {
	allowed := decision(true, 200)
	challenged := decision(false, 401)
	refused := decision(false, 400, 401)
	return []kind{
		{"anon_call_public", 12, func(g *gen) (map[string]string, []byte) { return g.pep(), callBody("", "lookup_product") }, allowed},
		{"anon_call_stepup", 8, func(g *gen) (map[string]string, []byte) { return g.pep(), callBody("", "generate_qr_url") }, challenged},
		{"token_call", 18, func(g *gen) (map[string]string, []byte) {
			return g.pep(), callBody(g.pool[mrand.IntN(len(g.pool))], "generate_qr_url")
		}, allowed},
		{"fresh_token_call", 4, func(g *gen) (map[string]string, []byte) {
			return g.pep(), callBody(g.mint(devissuer.MintOptions{Scopes: []string{"qr:generate"}}), "generate_qr_url")
		}, allowed},
		{"anon_list", 8, func(g *gen) (map[string]string, []byte) { return g.pep(), listBody("", g.list) }, allowed},
		{"token_list", 8, func(g *gen) (map[string]string, []byte) {
			return g.pep(), listBody(g.pool[mrand.IntN(len(g.pool))], g.list)
		}, allowed},
		{"expired_token", 3, func(g *gen) (map[string]string, []byte) {
			return g.pep(), callBody(g.mint(devissuer.MintOptions{TTL: -time.Hour}), "generate_qr_url")
		}, challenged},
		{"forged_signature", 3, func(g *gen) (map[string]string, []byte) {
			return g.pep(), callBody(tamper(g.pool[mrand.IntN(len(g.pool))]), "generate_qr_url")
		}, challenged},
		{"unknown_kid", 3, func(g *gen) (map[string]string, []byte) {
			return g.pep(), callBody(g.mint(devissuer.MintOptions{Kid: fmt.Sprintf("kid-%d", mrand.Int64())}), "generate_qr_url")
		}, challenged},
		{"alg_none", 2, func(g *gen) (map[string]string, []byte) {
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
			p := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"sub":"mallory","aud":%q,"iss":%q,"exp":%d,"scope":"qr:generate"}`, resource, g.is.url, time.Now().Add(time.Hour).Unix()))
			return g.pep(), callBody("Bearer "+h+"."+p+".", "generate_qr_url")
		}, refused},
		{"wrong_audience", 2, func(g *gen) (map[string]string, []byte) {
			return g.pep(), callBody(g.mint(devissuer.MintOptions{Audience: []string{"https://other.example/mcp"}, Scopes: []string{"qr:generate"}}), "generate_qr_url")
		}, challenged},
		{"oversized_token", 2, func(g *gen) (map[string]string, []byte) {
			return g.pep(), callBody("Bearer "+strings.Repeat("A", 9000), "generate_qr_url")
		}, refused},
		{"garbage_authorization", 2, func(g *gen) (map[string]string, []byte) {
			b := make([]byte, 64)
			_, _ = rand.Read(b)
			return g.pep(), callBody("Bearer "+hex.EncodeToString(b), "lookup_product")
		}, challenged},
		{"malformed_json", 2, func(g *gen) (map[string]string, []byte) {
			return g.pep(), []byte(`{"resource":"` + resource + `","message":{"jsonrpc":`)
		}, apiError(400, "invalid_json")},
		{"deep_nesting", 1, func(g *gen) (map[string]string, []byte) {
			return g.pep(), []byte(strings.Repeat("[", 50_000))
		}, apiError(400, "invalid_json")},
		{"oversized_body", 1, func(g *gen) (map[string]string, []byte) {
			return g.pep(), bytes.Repeat([]byte(" "), 2<<20)
		}, apiError(413, "request_too_large")},
		{"unknown_resource", 1, func(g *gen) (map[string]string, []byte) {
			b, _ := json.Marshal(map[string]any{"resource": "https://nope.example/mcp", "message": map[string]any{"jsonrpc": "2.0", "id": 1, "method": "ping"}})
			return g.pep(), b
		}, apiError(400, "unknown_resource")},
		{"no_pep_key", 3, func(g *gen) (map[string]string, []byte) { return nil, callBody("", "lookup_product") }, apiError(401, "unauthorized")},
		{"wrong_pep_key", 3, func(g *gen) (map[string]string, []byte) {
			return map[string]string{"Authorization": "Bearer " + randomKey()}, callBody("", "lookup_product")
		}, apiError(401, "unauthorized")},
	}
}

var bigArgs = kind{name: "big_arguments", check: decision(true, 200)}

// bigArgsJob is a public call with ~0.5 MB of arguments never seen before.
func bigArgsJob(g *gen) job {
	n := mrand.Int64()
	var b strings.Builder
	b.WriteString(`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_product","arguments":{"q":[`)
	for j := range 5000 {
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%d-%d-%090d"`, n, j, j)
	}
	b.WriteString(`]}}}}`)
	return job{k: &bigArgs, hdr: g.pep(), body: []byte(b.String())}
}

// noisy is the PEP above its rate limit: 200 or 429, nothing else.
var noisy = kind{name: "noisy_pep", check: func(status int, out map[string]any) bool {
	return (status == 200 && out["allow"] == true) || (status == 429 && out["error"] == "rate_limited")
}}

type job struct {
	k     *kind
	hdr   map[string]string
	body  []byte
	sched time.Time
}

type stats struct {
	mu       sync.Mutex
	lat      map[string][]time.Duration
	answers  map[string]map[string]int // kind -> status/outcome -> n
	wrong    map[string]int            // kind -> wrong answers
	errs     map[string]int            // error kind -> n
	examples map[string]string
	dropped  atomic.Int64
	measure  atomic.Bool
	paused   atomic.Bool
	inFlight atomic.Int64
}

func newStats() *stats {
	return &stats{lat: map[string][]time.Duration{}, answers: map[string]map[string]int{}, wrong: map[string]int{}, errs: map[string]int{}, examples: map[string]string{}}
}

func (s *stats) record(k string, d time.Duration, answer string, ok bool, errKind, example string) {
	if !s.measure.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lat[k] = append(s.lat[k], d)
	if s.answers[k] == nil {
		s.answers[k] = map[string]int{}
	}
	s.answers[k][answer]++
	if errKind != "" {
		s.errs[errKind]++
	}
	if !ok {
		s.wrong[k]++
		if _, seen := s.examples[k]; !seen {
			s.examples[k] = example
		}
	}
}

// send does one request and checks the answer.
func send(ctx context.Context, client *http.Client, base string, j job) (answer string, ok bool, errKind, example string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/decide", bytes.NewReader(j.body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range j.hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		ek := "transport"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			ek = "timeout"
		}
		return ek, false, ek, err.Error()
	}
	raw, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	answer = strconv.Itoa(resp.StatusCode)
	if oc, _ := out["outcome"].(string); oc != "" {
		answer += "/" + oc
	} else if e, _ := out["error"].(string); e != "" {
		answer += "/" + e
	}
	ok = rerr == nil && j.k.check(resp.StatusCode, out)
	switch {
	case rerr != nil:
		errKind = "read_body"
	case !ok && strings.Contains(fmt.Sprint(out["reason"]), "signing keys unavailable"):
		errKind = "keys_unavailable" // failed closed: a key fetch did not finish in the budget
	case !ok && strings.HasPrefix(fmt.Sprint(out["reason"]), "decision failed: policy evaluation stopped"):
		errKind = "budget_exceeded" // failed closed: the decision budget ran out (CPU starved?)
	case !ok:
		errKind = "wrong_answer"
	}
	return answer, ok, errKind, fmt.Sprintf("HTTP %d %.300s", resp.StatusCode, raw)
}

func worker(ctx context.Context, client *http.Client, base string, jobs <-chan job, st *stats, wg *sync.WaitGroup) {
	defer wg.Done()
	for j := range jobs {
		answer, ok, ek, ex := send(ctx, client, base, j)
		st.inFlight.Add(-1)
		if ctx.Err() != nil {
			continue
		}
		st.record(j.k.name, time.Since(j.sched), answer, ok, ek, ex)
	}
}

// schedule sends jobs at rate per second until ctx ends; a job that finds
// every worker busy and the queue full is counted as dropped (the generator
// is saturated: the result is then not a fixed-rate measurement). While
// paused it sends nothing and resumes at the rate, without catching up.
func schedule(ctx context.Context, rate float64, jobs chan<- job, st *stats, next func() job) {
	const tick = 5 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	sent := 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if st.paused.Load() {
				start, sent = now, 0
				continue
			}
			due := rate * now.Sub(start).Seconds()
			for sent+1 <= due {
				sent++
				j := next()
				j.sched = start.Add(time.Duration(sent / rate * float64(time.Second)))
				st.inFlight.Add(1)
				select {
				case jobs <- j:
				default:
					st.inFlight.Add(-1)
					if st.measure.Load() {
						st.dropped.Add(1)
					}
				}
			}
		}
	}
}

// quiesce pauses the traffic, waits for the requests in flight, closes the
// client's idle connections and lets the server settle, then samples: the
// goroutines and open files of a PDP with no client connected.
func quiesce(ctx context.Context, p *pdp, st *stats, client *http.Client, t0 time.Time) (sample, error) {
	st.paused.Store(true)
	defer st.paused.Store(false)
	deadline := time.Now().Add(30 * time.Second)
	for st.inFlight.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	client.CloseIdleConnections()
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	return p.sample(t0)
}

// prefill fills the PDP's bounded caches (verified tokens, decisions) with
// distinct tokens before the measurement, so that the measurement sees
// them at their bound (evicting) rather than growing towards it.
func prefill(ctx context.Context, client *http.Client, base string, g *gen, n int) (wrong int) {
	var wg sync.WaitGroup
	var bad atomic.Int64
	work := make(chan job, 64)
	allowed := kind{name: "prefill", check: decision(true, 200)}
	for range 32 {
		wg.Go(func() {
			for j := range work {
				for {
					answer, ok, _, _ := send(ctx, client, base, j)
					if answer == "429/rate_limited" && ctx.Err() == nil {
						time.Sleep(50 * time.Millisecond) // the PEP's rate limit: slow down
						continue
					}
					if !ok {
						bad.Add(1)
					}
					break
				}
			}
		})
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		tok := g.mint(devissuer.MintOptions{Subject: fmt.Sprintf("prefill-%d", i), Scopes: []string{"qr:generate"}})
		work <- job{k: &allowed, hdr: g.pep(), body: callBody(tok, "generate_qr_url")}
	}
	close(work)
	wg.Wait()
	return int(bad.Load())
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func run(ctx context.Context, o options) error {
	if _, err := os.Stat(o.pdp); err != nil {
		return fmt.Errorf("pdp binary: %w (run `make build` or pass --pdp)", err)
	}
	dir, err := os.MkdirTemp("", "pdp-soak-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("work directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	is, err := startIssuer()
	if err != nil {
		return err
	}
	defer is.srv.Close()

	keys := map[string]string{"noisy-pep": randomKey()}
	g := &gen{is: is, expTTL: o.warmup + o.duration + time.Hour}
	for i := range pepCount {
		k := randomKey()
		keys[fmt.Sprintf("pep-%d", i)] = k
		g.keys = append(g.keys, k)
	}
	for i := range 500 {
		g.pool = append(g.pool, g.mint(devissuer.MintOptions{Subject: fmt.Sprintf("pool-%d", i), Scopes: []string{"qr:generate"}, ClientID: "soak"}))
	}
	var tools []map[string]any
	for _, n := range []string{"ping", "lookup_product", "generate_qr_url", "internal_debug", "search_products"} {
		for j := range 10 {
			name := n
			if j > 0 {
				name = fmt.Sprintf("%s_%d", n, j)
			}
			tools = append(tools, map[string]any{"name": name, "description": "soak", "inputSchema": map[string]any{"type": "object"}})
		}
	}
	g.list, _ = json.Marshal(map[string]any{"tools": tools})

	p, err := startPDP(ctx, o, dir, is, keys)
	if err != nil {
		return err
	}
	pdpStopped := false
	defer func() {
		if !pdpStopped {
			_ = p.stop()
		}
	}()
	t0 := time.Now()
	idleBefore, err := p.sample(t0)
	if err != nil {
		return err
	}
	fmt.Printf("mcp-pdp soak: %s at %.0f req/s (+ %d req/s from a PEP over its limit) after %s warm-up, %d workers, audit=%v, pid %d\n",
		o.duration, o.rate, noisyRate, o.warmup, o.workers, o.audit, p.cmd.Process.Pid)
	fmt.Println("idle      ", idleBefore)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.workers, MaxConnsPerHost: o.workers}}
	if o.prefill > 0 {
		// Not measured; a few budget denies on a starved machine are tolerated.
		bad := prefill(ctx, client, p.base, g, o.prefill)
		if bad > o.prefill/100 {
			return fmt.Errorf("prefill: %d of %d answers wrong", bad, o.prefill)
		}
		s, _ := p.sample(t0)
		fmt.Printf("prefilled  %s (%d distinct tokens, %d not allowed)\n", s, o.prefill, bad)
	}

	ks := kinds()
	var wsum int
	for _, k := range ks {
		wsum += k.weight
	}
	pick := func() job {
		r := mrand.IntN(wsum)
		for i := range ks {
			if r < ks[i].weight {
				hdr, body := ks[i].build(g)
				return job{k: &ks[i], hdr: hdr, body: body}
			}
			r -= ks[i].weight
		}
		panic("unreachable")
	}
	noisyKey := keys["noisy-pep"]
	noisyJob := func() job {
		return job{k: &noisy, hdr: map[string]string{"X-PDP-API-Key": noisyKey}, body: callBody("", "lookup_product")}
	}

	st := newStats()
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	jobs := make(chan job, o.workers)
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go worker(trafficCtx, client, p.base, jobs, st, &wg)
	}
	var sched sync.WaitGroup
	sched.Go(func() { schedule(trafficCtx, o.rate, jobs, st, pick) })
	sched.Go(func() { schedule(trafficCtx, noisyRate, jobs, st, noisyJob) })
	if o.bigArgs > 0 {
		sched.Go(func() { schedule(trafficCtx, o.bigArgs, jobs, st, func() job { return bigArgsJob(g) }) })
	}

	// Warm-up, then measure.
	select {
	case <-time.After(o.warmup):
	case <-ctx.Done():
	}
	startQ, err := quiesce(ctx, p, st, client, t0)
	if err != nil {
		return err
	}
	fmt.Println("start     ", startQ, "(quiesced)")
	jwksBefore := is.hits.Load()
	st.measure.Store(true)
	mStart := time.Now()
	var samples []sample
	end := time.After(o.duration)
	tk := time.NewTicker(o.sample)
loop:
	for {
		select {
		case <-tk.C:
			s, err := p.sample(t0)
			if err != nil {
				fmt.Println("sample:", err)
				continue
			}
			samples = append(samples, s)
			fmt.Println("          ", s)
		case <-end:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	tk.Stop()
	st.measure.Store(false)
	measured := time.Since(mStart)
	jwksFetches := is.hits.Load() - jwksBefore
	endQ, err := quiesce(ctx, p, st, client, t0)
	if err != nil {
		return err
	}
	fmt.Println("end       ", endQ, "(quiesced)")
	stopTraffic()
	sched.Wait()
	close(jobs)
	wg.Wait()
	stopErr := p.stop()
	pdpStopped = true

	// ---- report ----
	st.mu.Lock()
	defer st.mu.Unlock()
	var all []time.Duration
	names := make([]string, 0, len(st.lat))
	total, wrong := 0, 0
	for k, l := range st.lat {
		names = append(names, k)
		slices.Sort(l)
		all = append(all, l...)
		total += len(l)
		wrong += st.wrong[k]
	}
	sort.Strings(names)
	slices.Sort(all)
	fmt.Printf("\n%d requests in %s (%.0f/s), dropped by a saturated generator: %d\n", total, measured.Round(time.Second), float64(total)/measured.Seconds(), st.dropped.Load())
	fmt.Printf("latency (from the scheduled send time)  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n\n",
		percentile(all, 50), percentile(all, 90), percentile(all, 99), percentile(all, 99.9), percentile(all, 100))
	fmt.Printf("%-22s %7s %10s %10s %10s %6s  answers\n", "kind", "n", "p50", "p99", "max", "wrong")
	for _, k := range names {
		l := st.lat[k]
		var ans []string
		for a, n := range st.answers[k] {
			ans = append(ans, fmt.Sprintf("%s:%d", a, n))
		}
		sort.Strings(ans)
		fmt.Printf("%-22s %7d %10s %10s %10s %6d  %s\n", k, len(l), percentile(l, 50).Round(time.Microsecond), percentile(l, 99).Round(time.Microsecond), percentile(l, 100).Round(time.Microsecond), st.wrong[k], strings.Join(ans, " "))
	}
	errKinds := make([]string, 0, len(st.errs))
	for e, n := range st.errs {
		errKinds = append(errKinds, fmt.Sprintf("%s=%d", e, n))
	}
	sort.Strings(errKinds)
	fmt.Printf("\nerrors: %s\n", strings.Join(append([]string{fmt.Sprintf("total=%d", wrong)}, errKinds...), " "))
	for k, ex := range st.examples {
		fmt.Printf("  first wrong answer for %s: %s\n", k, ex)
	}
	fmt.Printf("JWKS fetches during the measurement: %d (unknown kids must not cause a refetch storm)\n", jwksFetches)

	heapStart, heapEnd := startQ.liveMB, endQ.liveMB
	fmt.Printf("\nresources                  start        end     growth\n")
	fmt.Printf("RSS MiB (quiesced)     %9.1f  %9.1f  %+8.1f   trend under load %+.2f MiB/min\n", startQ.rssMB, endQ.rssMB, endQ.rssMB-startQ.rssMB, slope(samples, func(s sample) float64 { return s.rssMB }))
	fmt.Printf("live heap MiB (at GC)  %9.1f  %9.1f  %+8.1f   trend under load %+.2f MiB/min\n", heapStart, heapEnd, heapEnd-heapStart, slope(samples, func(s sample) float64 { return s.liveMB }))
	fmt.Printf("heap in use MiB        %9.1f  %9.1f  %+8.1f   (live and garbage: depends on the GC phase)\n", startQ.heapMB, endQ.heapMB, endQ.heapMB-startQ.heapMB)
	fmt.Printf("goroutines (quiesced)  %9.0f  %9.0f  %+8.0f   (idle before traffic %.0f)\n", startQ.goroutines, endQ.goroutines, endQ.goroutines-startQ.goroutines, idleBefore.goroutines)
	fmt.Printf("open files (quiesced)  %9d  %9d  %+8d   (idle before traffic %d)\n", startQ.fds, endQ.fds, endQ.fds-startQ.fds, idleBefore.fds)
	fmt.Printf("token cache entries    %9.0f  %9.0f             (bound %d)\n", startQ.tokens, endQ.tokens, tokenCacheSize)

	var fails []string
	if total == 0 {
		fails = append(fails, "no requests measured")
	} else if float64(wrong)/float64(total) > o.maxErrRate {
		fails = append(fails, fmt.Sprintf("%d wrong answers or errors of %d (limit %.2f%%)", wrong, total, o.maxErrRate*100))
	}
	switch d := float64(st.dropped.Load()); {
	case d > 0.05*float64(total):
		fails = append(fails, fmt.Sprintf("the generator could not keep the rate (%.0f dropped): lower --rate or raise --workers", d))
	case d > 0.005*float64(total):
		fmt.Printf("\nWARNING: %.0f requests dropped: every worker was busy (latency spikes, a starved machine?); the latencies above understate the worst case\n", d)
	}
	grew := func(name string, a, b float64) {
		if lim := a*(1+o.memTol) + o.memSlackMB; b > lim {
			fails = append(fails, fmt.Sprintf("%s grew from %.1f to %.1f MiB (limit %.1f)", name, a, b, lim))
		}
	}
	grew("RSS", startQ.rssMB, endQ.rssMB)
	grew("live heap", heapStart, heapEnd)
	if endQ.goroutines > startQ.goroutines+float64(o.goTol) {
		fails = append(fails, fmt.Sprintf("goroutines grew from %.0f to %.0f", startQ.goroutines, endQ.goroutines))
	}
	if endQ.fds > startQ.fds+o.goTol {
		fails = append(fails, fmt.Sprintf("open files grew from %d to %d", startQ.fds, endQ.fds))
	}
	if endQ.tokens > tokenCacheSize {
		fails = append(fails, fmt.Sprintf("token cache above its bound: %.0f", endQ.tokens))
	}
	if stopErr != nil {
		fails = append(fails, "pdp shutdown: "+stopErr.Error())
	}
	if len(fails) > 0 {
		return errors.New("FAIL:\n  " + strings.Join(fails, "\n  "))
	}
	fmt.Println("\nPASS: answers right; memory, goroutines and open files flat")
	return nil
}

// slope fits a line through the samples (MiB per minute).
func slope(s []sample, f func(sample) float64) float64 {
	if len(s) < 2 {
		return 0
	}
	var n, sx, sy, sxx, sxy float64
	for _, x := range s {
		t, y := x.at.Minutes(), f(x)
		n++
		sx += t
		sy += y
		sxx += t * t
		sxy += t * y
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}
