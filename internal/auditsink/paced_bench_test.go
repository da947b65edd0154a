package auditsink

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// BenchmarkPaced records events at a fixed rate (4 goroutines, as a PDP's
// HTTP handlers would), as the load benchmark's audited PDP does, and
// reports the CPU each event costs: cpu-µs/event is this process's CPU
// (user + system) per event, the producer's own work included (the
// "none" case measures that alone: subtract it); nats-cpu-µs/event is the
// CPU of the NATS server process (external only); rw-syscalls/event the
// read and write system calls (sockets and files) of each process per
// event. ns/op is only the pace.
//
//	embedded: the NATS server in this process, connected without a socket
//	          (natsembed.InProcessConn, as `pdp serve` does);
//	external: a nats-server process (of the version go.mod pins, built
//	          on first use, or $AUDITSINK_BENCH_NATS_SERVER) over loopback
//	          TCP, whose CPU is read from /proc.
//
// go test -run '^$' -bench Paced -benchtime 40000x ./internal/auditsink
func BenchmarkPaced(b *testing.B) {
	const rate = 10000 // events/s, about the load benchmark's audited rate
	for _, where := range []string{"none", "embedded", "external"} {
		b.Run(where, func(b *testing.B) {
			var s *Sink
			serverPID := 0
			switch where {
			case "embedded":
				n := natstest.Start(b)
				nc, err := Connect(context.Background(), n.URL(), ConnectOptions{InProcess: n.Embedded(), Logger: testLogger(b)})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(nc.Close)
				s = newSink(b, pacedConfig(b), nc)
			case "external":
				var url string
				url, serverPID = startNATSProcess(b)
				nc := connect(b, url)
				s = newSink(b, pacedConfig(b), nc)
			}
			// Warm up: the stream's first blocks, the pools.
			for i := range 2000 {
				ev := benchEvent()
				ev.LatencyMicros = int64(i)
				if s != nil {
					if err := s.Record(context.Background(), &ev); err != nil {
						b.Fatal(err)
					}
				}
			}
			if s != nil {
				waitDrained(b, s)
			}
			var st0 Stats
			if s != nil {
				st0 = s.Stats()
			}
			// The events are made before the clock starts: the CPU measured
			// is the sink's (and the pacing's, which "none" measures).
			tmpl := benchEvent()
			evIDs := make([]string, b.N)
			for i := range evIDs {
				evIDs[i] = tmpl.ID + "-" + strconv.Itoa(i)
			}
			var srv0 procUse
			if serverPID != 0 {
				srv0 = usage(b, serverPID)
			}
			self0 := usage(b, os.Getpid())
			b.ResetTimer()
			paced(b, rate, 4, func(i int) {
				ev := tmpl
				ev.ID = evIDs[i]
				if s != nil {
					if err := s.Record(context.Background(), &ev); err != nil {
						b.Error(err)
					}
				}
			})
			if s != nil {
				waitDrained(b, s)
			}
			b.StopTimer()
			self := usage(b, os.Getpid()).sub(self0)
			n := float64(b.N)
			b.ReportMetric(float64(self.cpu.Microseconds())/n, "cpu-µs/event")
			b.ReportMetric(float64(self.syscalls)/n, "rw-syscalls/event")
			if serverPID != 0 {
				srv := usage(b, serverPID).sub(srv0)
				b.ReportMetric(float64(srv.cpu.Microseconds())/n, "nats-cpu-µs/event")
				b.ReportMetric(float64(srv.syscalls)/n, "nats-rw-syscalls/event")
			}
			if s != nil {
				st := s.Stats()
				if st.Failed != 0 {
					b.Fatalf("lost events: %+v", st)
				}
				b.ReportMetric(float64(st.Spooled-st0.Spooled)/float64(b.N)*100, "%spooled")
				if n := st.Batches - st0.Batches; n > 0 {
					b.ReportMetric(float64(st.Published-st0.Published)/float64(n), "events/batch")
				}
			}
		})
	}
}

// pacedConfig is the sink's configuration in BenchmarkPaced:
// $AUDITSINK_BENCH_LINGER sets BatchLinger (e.g. 5ms, or -1ns for none).
func pacedConfig(b *testing.B) Config {
	cfg := baseConfig(b, b.TempDir())
	if v := os.Getenv("AUDITSINK_BENCH_LINGER"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		cfg.BatchLinger = d
	}
	return cfg
}

// paced calls f(0) to f(b.N-1) from workers goroutines, at rate calls
// per second in all, in bursts of one millisecond's share.
func paced(b *testing.B, rate, workers int, f func(int)) {
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := 0 // calls f(w), f(w+workers), ...
			n := (b.N - w + workers - 1) / workers
			for done < n {
				due := int(time.Since(start).Seconds() * float64(rate) / float64(workers))
				for ; done < min(due, n); done++ {
					f(w + done*workers)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
}

// procUse is what a process has used: CPU (user + system, from /proc in
// clock ticks of 10ms, or getrusage for this process) and read and write
// system calls (syscr + syscw: sockets and files alike).
type procUse struct {
	cpu      time.Duration
	syscalls int64
}

func (u procUse) sub(v procUse) procUse {
	return procUse{u.cpu - v.cpu, u.syscalls - v.syscalls}
}

func usage(b *testing.B, pid int) procUse {
	var u procUse
	if pid == os.Getpid() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	} else {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// The fields after the command name (in parentheses): state is
		// field 3, utime 14, stime 15.
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		u.cpu = time.Duration(ut+st) * 10 * time.Millisecond
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		if k == "syscr" || k == "syscw" {
			n, _ := strconv.ParseInt(v, 10, 64)
			u.syscalls += n
		}
	}
	return u
}

var natsBinary struct {
	once sync.Once
	path string
	err  error
}

// startNATSProcess runs nats-server with JetStream as its own process on a
// loopback port, stopped at the end of the benchmark.
func startNATSProcess(b *testing.B) (url string, pid int) {
	b.Helper()
	natsBinary.once.Do(func() {
		if p := os.Getenv("AUDITSINK_BENCH_NATS_SERVER"); p != "" {
			natsBinary.path = p
			return
		}
		natsBinary.path = filepath.Join(os.TempDir(), "auditsink-bench", "nats-server")
		out, err := exec.Command("go", "build", "-o", natsBinary.path, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsBinary.err = fmt.Errorf("build nats-server: %v: %s", err, out)
		}
	})
	if natsBinary.err != nil {
		b.Skip(natsBinary.err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	args := []string{"-a", "127.0.0.1", "-p", port, "-js", "-sd", b.TempDir()}
	if p := os.Getenv("AUDITSINK_BENCH_NATS_PROFILE"); p != "" {
		args = append(args, "-profile", p) // pprof over HTTP on 127.0.0.1:p
	}
	cmd := exec.Command(natsBinary.path, args...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url = "nats://127.0.0.1:" + port
	testkit.WaitFor(b, "nats-server to accept connections", func() bool {
		nc, err := nats.Connect(url)
		if err != nil {
			return false
		}
		nc.Close()
		return true
	})
	return url, cmd.Process.Pid
}
