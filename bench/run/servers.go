package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcp-pdp/pdp/bench/internal/fixture"
	opabench "github.com/mcp-pdp/pdp/bench/opa"
)

// Server kinds.
const (
	kindFloor = "floor"
	kindPDP   = "pdp"
	kindOPA   = "opa"
	kindNATS  = "nats"
)

// server is one process under test, started by the orchestrator on a
// loopback port.
type server struct {
	name    string
	kind    string
	addr    string
	path    string
	shape   fixture.Shape
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
	// env is added to the server's environment (e.g. GOGC=400).
	env []string
	// cursor is this server's position in the fresh-token pool.
	cursor atomic.Uint64
	// aux is a process this server depends on whose CPU is reported
	// apart (the NATS server of the external-NATS audit row).
	aux *server
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// freePort asks the kernel for a free loopback port.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start runs the command with its output in logPath and waits until
// readyURL answers 200.
func (b *bench) start(ctx context.Context, s *server, readyURL string, args ...string) error {
	f, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if len(s.env) > 0 {
		cmd.Env = append(os.Environ(), s.env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(s.done)
	}()
	b.servers = append(b.servers, s)
	deadline := time.Now().Add(90 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited at start-up; its log (%s):\n%s", s.name, s.logPath, tail(s.logPath, 30))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := client.Get(readyURL)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 90s (%v); log %s:\n%s", s.name, err, s.logPath, tail(s.logPath, 30))
		}
	}
}

// stop ends a server this orchestrator started: SIGTERM, then SIGKILL after
// 15 s. Only the process group of that one child is signalled.
func (b *bench) stop(s *server) {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(-s.pid(), syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-s.pid(), syscall.SIGKILL)
		<-s.done
	}
	b.stop(s.aux) // after the server: it may still be flushing to it
}

func (b *bench) stopAll() {
	for i := len(b.servers) - 1; i >= 0; i-- {
		b.stop(b.servers[i])
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (b *bench) startFloor(ctx context.Context, name string, verify bool) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &server{name: name, kind: kindFloor, addr: addr, path: "/v1/decide", shape: fixture.PDP,
		logPath: filepath.Join(b.work, name+".log")}
	args := []string{b.bins.floor, "--listen", addr}
	if verify {
		args = append(args, "--jwks", b.jwksURL, "--issuer", fixture.Issuer, "--audience", fixture.Resource)
	}
	return s, b.start(ctx, s, "http://"+addr+"/health", args...)
}

// pdpConfig is the mcp-pdp configuration of the benchmark: the demo policy
// (policies/*.rego) with a catalog of n tools, one resource whose JWKS is
// the orchestrator's loopback JWKS server, audit off or on (async, embedded
// NATS), introspection of opaque tokens in pdpIntrospect mode, everything
// else at its default.
func (b *bench) pdpConfig(dir, addr string, catalog int, mode pdpMode, natsURL string) (string, error) {
	pol := filepath.Join(dir, "policy")
	write := fixture.WritePDPPolicy
	if mode == pdpQuota {
		write = fixture.WritePDPPolicyQuota
	}
	if err := write(pol, catalog); err != nil {
		return "", err
	}
	auditYAML := "audit:\n  enabled: false\n"
	switch mode {
	case pdpAudit, pdpQuota:
		auditYAML = "audit:\n  enabled: true\n  mode: async\n"
	case pdpAuditExternal:
		auditYAML = fmt.Sprintf("audit:\n  enabled: true\n  mode: async\n  nats:\n    url: %q\n", natsURL)
	}
	cacheYAML := ""
	if mode == pdpNoCache {
		cacheYAML = "  decision_cache_size: -1\n"
	}
	introYAML := ""
	if mode == pdpIntrospect {
		// The one opaque token is introspected once: max_ttl 1h (the
		// longest allowed) keeps it cached for the whole run, where the
		// default (1m) would introspect it again every minute.
		secret := filepath.Join(dir, "introspection-secret")
		if err := os.WriteFile(secret, []byte(b.intro.ClientSecret()+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("introspection secret: %w", err)
		}
		introYAML = fmt.Sprintf("    introspection:\n      endpoint: %q\n      client_id: %q\n      client_secret_file: %q\n      max_ttl: 1h\n",
			b.introURL, fixture.IntrospectionClientID, secret)
	}
	cfg := fmt.Sprintf(`# written by bench/run (make loadbench)
listen: %q
data_dir: %q
instance: loadbench
resources:
  - uri: %q
    issuer: %q
    jwks_uri: %q
    scopes_supported: [%q]
%spolicy:
  path: %q
%s%slog:
  level: warn
`, addr, filepath.Join(dir, "data"), fixture.Resource, fixture.Issuer, b.jwksURL, fixture.Scope, introYAML, pol, cacheYAML, auditYAML)
	path := filepath.Join(dir, "pdp.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

func (b *bench) startPDP(ctx context.Context, name string, catalog int, mode pdpMode) (*server, error) {
	return b.startPDPBinary(ctx, name, b.bins.pdp, catalog, mode, true)
}

func (b *bench) startPDPBinary(ctx context.Context, name, bin string, catalog int, mode pdpMode, serve bool) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var aux *server
	natsURL := ""
	if mode == pdpAuditExternal {
		if aux, natsURL, err = b.startNATS(ctx, name+"-nats"); err != nil {
			return nil, err
		}
	}
	cfg, err := b.pdpConfig(dir, addr, catalog, mode, natsURL)
	if err != nil {
		return nil, err
	}
	s := &server{name: name, kind: kindPDP, addr: addr, path: "/v1/decide", shape: fixture.PDP,
		logPath: filepath.Join(b.work, name+".log"), aux: aux}
	switch mode {
	case pdpGOGC:
		s.env = []string{"GOGC=400"}
	case pdpGOGC100:
		s.env = []string{"GOGC=100"}
	case pdpIntrospect:
		// The endpoint's self-signed certificate is this process's only
		// root: it talks to nothing else over TLS.
		s.env = []string{"SSL_CERT_FILE=" + b.introCA}
	}
	args := []string{bin, "--config", cfg}
	if serve {
		args = []string{bin, "serve", "--config", cfg}
	}
	return s, b.start(ctx, s, "http://"+addr+"/readyz", args...)
}

// startNATS runs the NATS server (JetStream on, its store under the work
// directory, loopback only) as its own process and returns its client URL.
func (b *bench) startNATS(ctx context.Context, name string) (*server, string, error) {
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	mon, err := freePort()
	if err != nil {
		return nil, "", err
	}
	host, port, _ := net.SplitHostPort(addr)
	_, mport, _ := net.SplitHostPort(mon)
	dir := filepath.Join(b.work, name)
	s := &server{name: name, kind: kindNATS, addr: addr, logPath: filepath.Join(b.work, name+".log")}
	err = b.start(ctx, s, "http://"+mon+"/healthz?js-enabled-only=true", b.bins.nats,
		"-a", host, "-p", port, "-m", mport, "-js", "-sd", dir)
	return s, "nats://" + addr, err
}

// startOPA runs OPA's REST server on the equivalent policy. The io.jwt
// verification cache (off by default in OPA) is turned on with as many
// entries as mcp-pdp's token cache, so OPA is measured at its best.
func (b *bench) startOPA(ctx context.Context, name string, catalog int) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.work, name)
	if err := fixture.WriteOPAPolicy(filepath.Join(dir, "policy"), catalog, b.jwks); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "opa.yaml")
	if err := os.WriteFile(cfg, []byte(`# written by bench/run (make loadbench)
caching:
  inter_query_builtin_value_cache:
    named:
      io_jwt:
        disabled: false
        max_num_entries: 10000
`), 0o644); err != nil {
		return nil, err
	}
	s := &server{name: name, kind: kindOPA, addr: addr, path: opabench.Query, shape: fixture.OPA,
		logPath: filepath.Join(b.work, name+".log")}
	return s, b.start(ctx, s, "http://"+addr+"/health", b.bins.opa, "run", "--server",
		"--addr", addr, "--config-file", cfg, "--log-level", "error", "--skip-version-check",
		filepath.Join(dir, "policy"))
}

// procCPU returns the user+system CPU time of pid (/proc/<pid>/stat; the
// kernel's USER_HZ is 100 on Linux).
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields start after the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// After ')': state(3) ... utime is field 14, stime 15 (1-based) => index 11, 12.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// procMem returns VmHWM (peak RSS) and VmRSS in bytes.
func procMem(pid int) (hwm, rss uint64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var dst *uint64
		switch {
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &hwm
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		default:
			continue
		}
		fs := strings.Fields(line)
		if len(fs) >= 2 {
			kb, _ := strconv.ParseUint(fs[1], 10, 64)
			*dst = kb << 10
		}
	}
	return hwm, rss
}

// resetPeak resets VmHWM to the current RSS (Linux clear_refs "5").
func resetPeak(pid int) {
	_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// metric reads one sample (sum over label sets) from a Prometheus text endpoint.
func metric(url string, names ...string) map[string]float64 {
	out := map[string]float64{}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, n := range names {
			if !strings.HasPrefix(line, n) {
				continue
			}
			rest := line[len(n):]
			if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			fs := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
			if len(fs) == 0 {
				continue
			}
			v, err := strconv.ParseFloat(fs[0], 64)
			if err == nil {
				out[n] += v
			}
		}
	}
	return out
}

// machineCPU returns the busy and total CPU time of the whole machine
// (/proc/stat, all cores), to tell how much other processes ran during a
// window.
func machineCPU() (busy, total time.Duration) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	var v [10]uint64
	for i := 1; i < len(f) && i <= 10; i++ {
		v[i-1], _ = strconv.ParseUint(f[i], 10, 64)
	}
	// user nice system idle iowait irq softirq steal (guest is inside user).
	b := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	t := b + v[3] + v[4]
	return time.Duration(b) * 10 * time.Millisecond, time.Duration(t) * 10 * time.Millisecond
}
