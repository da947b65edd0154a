package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mcp-pdp/pdp/bench/internal/fixture"
)

// profile takes CPU profiles of the decision path under load: bench/pdpprof
// (the same packages and wiring as `pdp serve`, plus net/http/pprof) driven
// at the highest connection count with the session and fresh-token bodies.
func (b *bench) profile(ctx context.Context) error {
	top := slices.Max(b.opts.conns)
	stamp := b.rep.start.Format("2006-01-02-1504")
	if err := os.MkdirAll(b.opts.outDir, 0o755); err != nil {
		return err
	}
	for _, sc := range []struct {
		key  string
		body fixture.Body
		mode pdpMode
	}{
		{"session", fixture.CallBody(fixture.PDP, fixture.ProtectedTool, fixture.Same(b.session), true), pdpDefault},
		{"session-same", fixture.CallBody(fixture.PDP, fixture.ProtectedTool, fixture.Same(b.session), false), pdpDefault},
		{"fresh", fixture.CallBody(fixture.PDP, fixture.ProtectedTool, fixture.Cycle(b.pool, new(atomic.Uint64)), true), pdpDefault},
		{"list", fixture.ListBody(fixture.PDP, b.opts.listSize, fixture.Same(b.session), true), pdpDefault},
		{"session+audit", fixture.CallBody(fixture.PDP, fixture.ProtectedTool, fixture.Same(b.session), true), pdpAudit},
		{"session+audit-ext", fixture.CallBody(fixture.PDP, fixture.ProtectedTool, fixture.Same(b.session), true), pdpAuditExternal},
	} {
		if len(b.opts.only) > 0 && !b.opts.only[sc.key] {
			continue
		}
		// A fresh process per workload: one's decision cache and heap do not
		// weigh on the next.
		s, err := b.startPDPBinary(ctx, "pdpprof-"+strings.ReplaceAll(sc.key, "+", "-"), b.bins.pdpprof, b.opts.catalog, sc.mode, false)
		if err != nil {
			return err
		}
		file := filepath.Join(b.opts.outDir, fmt.Sprintf("%s-profile-%s.pprof", stamp, strings.ReplaceAll(sc.key, "+", "-")))
		secs := int(b.opts.profileFor.Seconds())
		if secs < 1 {
			secs = 1
		}
		errc := make(chan error, 1)
		go func() {
			// The profile starts after the warm-up and ends inside the window.
			time.Sleep(b.opts.warmup + 200*time.Millisecond)
			errc <- fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.addr, secs), file)
		}()
		saved := b.opts.duration
		b.opts.duration = time.Duration(secs)*time.Second + 500*time.Millisecond
		smp, err := b.measure(ctx, s, runSpec{conns: top, body: sc.body, resetPeak: true})
		b.opts.duration = saved
		if err != nil {
			return err
		}
		if err := <-errc; err != nil {
			return err
		}
		heap := strings.TrimSuffix(file, ".pprof") + "-heap.pprof"
		if err := fetch(fmt.Sprintf("http://%s/debug/pprof/allocs", s.addr), heap); err != nil {
			return err
		}
		b.stop(s)
		smp.Server = "pdpprof"
		b.progress("profile "+sc.key, smp)
		pr := profileResult{Scenario: sc.key, File: file, Sample: smp}
		pr.Top = pprofTop(b.root, b.bins.pdpprof, file, false)
		pr.Categories = categorize(b.root, b.bins.pdpprof, file)
		if sc.mode == pdpAudit || sc.mode == pdpAuditExternal {
			for _, f := range []struct{ name, focus string }{
				{"the embedded NATS server", "github.com/nats-io/nats-server/"},
				{"the PDP's audit client (auditsink, nats.go)", "internal/auditsink|github.com/nats-io/nats%2ego"},
			} {
				if share, ok := focusShare(b.root, b.bins.pdpprof, file, f.focus); ok {
					pr.Through = append(pr.Through, category{Name: f.name, Share: share})
				}
			}
		}
		pr.Allocs = pprofTopArgs(b.root, b.bins.pdpprof, heap, "-sample_index=alloc_space", "-nodecount=20")
		pr.InUse = pprofTopArgs(b.root, b.bins.pdpprof, heap, "-sample_index=inuse_space", "-nodecount=12")
		b.rep.profile = append(b.rep.profile, pr)
	}
	return nil
}

func fetch(url, file string) error {
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func pprofTop(root, bin, file string, cum bool) string {
	if cum {
		return pprofTopArgs(root, bin, file, "-cum", "-nodecount=30")
	}
	return pprofTopArgs(root, bin, file, "-nodecount=30")
}

func pprofTopArgs(root, bin, file string, extra ...string) string {
	args := append([]string{"tool", "pprof", "-top"}, extra...)
	args = append(args, bin, file)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof: %v\n%s", err, out)
	}
	// Drop the header lines (file, type, time).
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "flat") {
			return strings.Join(lines[max(0, i-2):], "\n")
		}
	}
	return strings.Join(lines, "\n")
}

// category is a share of a profile's CPU samples.
type category struct {
	Name  string
	Share float64
}

// categories, in report order: the first matching prefix of a function's
// name wins (flat samples only, so that deep Rego stacks that the profiler
// truncates are still counted where they burn CPU).
var categoryRules = []struct{ name, prefix string }{
	{"Rego evaluation (OPA topdown, ast, rego)", "github.com/open-policy-agent/"},
	{"token verification (crypto, jwx)", "crypto/"},
	{"token verification (crypto, jwx)", "math/big"},
	{"token verification (crypto, jwx)", "github.com/lestrrat-go/"},
	{"mcp-pdp's own code", "github.com/mcp-pdp/"},
	{"audit (NATS client and server, JetStream)", "github.com/nats-io/"},
	{"audit (NATS client and server, JetStream)", "github.com/klauspost/"},
	{"audit (NATS client and server, JetStream)", "github.com/minio/highwayhash"},
	{"syscalls (loopback I/O)", "internal/runtime/syscall"},
	{"syscalls (loopback I/O)", "syscall."},
	{"HTTP, JSON, echo", "net/"},
	{"HTTP, JSON, echo", "bufio."},
	{"HTTP, JSON, echo", "encoding/json"},
	{"HTTP, JSON, echo", "github.com/labstack/"},
	{"HTTP, JSON, echo", "mime"},
	{"Go scheduler", "runtime.schedule"},
	{"Go scheduler", "runtime.findRunnable"},
	{"Go scheduler", "runtime.futex"},
	{"Go scheduler", "runtime.netpoll"},
	{"Go scheduler", "runtime.stealWork"},
	{"Go scheduler", "runtime.runqgrab"},
	{"Go scheduler", "runtime.usleep"},
	{"Go scheduler", "runtime.nanotime"},
	{"Go scheduler", "runtime.park_m"},
	{"Go scheduler", "runtime.mcall"},
	{"GC and allocation (Go runtime)", "runtime."},
	{"GC and allocation (Go runtime)", "gcWriteBarrier"},
	{"GC and allocation (Go runtime)", "memeqbody"},
	{"GC and allocation (Go runtime)", "aeshash"},
}

// focusShare is the share of the profile's samples whose stack has a
// frame matching the regexp focus (pprof -focus).
func focusShare(root, bin, file, focus string) (float64, bool) {
	cmd := exec.Command("go", "tool", "pprof", "-top", "-nodecount=1000000", "-nodefraction=0", "-focus="+focus, bin, file)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return 0, false
	}
	// "Showing nodes accounting for 2s, 17.29% of 11.57s total"
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "Showing nodes accounting for "); i >= 0 {
			f := strings.Fields(line[i+len("Showing nodes accounting for "):])
			if len(f) >= 2 {
				var pct float64
				if _, err := fmt.Sscanf(strings.TrimSuffix(f[1], "%"), "%g", &pct); err == nil {
					return pct / 100, true
				}
			}
		}
	}
	return 0, false
}

const otherCategory = "other (maps, strings, sync, ...)"

func categorize(root, bin, file string) []category {
	cmd := exec.Command("go", "tool", "pprof", "-top", "-nodecount=1000000", bin, file)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil
	}
	sums := map[string]float64{}
	var total float64
	started := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 1 && f[0] == "flat" {
			started = true
			continue
		}
		if !started || len(f) < 6 {
			continue
		}
		d, err := time.ParseDuration(f[0])
		if err != nil {
			continue
		}
		name := strings.Join(f[5:], " ")
		cat := otherCategory
		for _, r := range categoryRules {
			if strings.HasPrefix(name, r.prefix) {
				cat = r.name
				break
			}
		}
		sums[cat] += d.Seconds()
		total += d.Seconds()
	}
	if total == 0 {
		return nil
	}
	var cats []category
	seen := map[string]bool{}
	for _, r := range append(categoryRules, struct{ name, prefix string }{otherCategory, ""}) {
		if seen[r.name] {
			continue
		}
		seen[r.name] = true
		cats = append(cats, category{r.name, sums[r.name] / total})
	}
	slices.SortStableFunc(cats, func(a, b category) int {
		switch {
		case a.Share > b.Share:
			return -1
		case a.Share < b.Share:
			return 1
		}
		return 0
	})
	return cats
}
