package gateway_test

import (
	"bufio"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/gateway"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
)

// idleStreams is how many server streams TestGatewayIdleStreams holds open.
const idleStreams = 2000

// holdingUpstream answers every request with the head of an SSE stream
// and then sends nothing, holding the connection without a goroutine, so
// that what the test measures is the gateway's cost.
type holdingUpstream struct {
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted atomic.Int64
	done     chan struct{}
}

func newHoldingUpstream(t *testing.T) *holdingUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &holdingUpstream{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns = append(u.conns, c)
			u.mu.Unlock()
			// Read the request head, answer, and leave the connection idle:
			// this goroutine ends, the connection stays.
			go func() {
				r := bufio.NewReaderSize(c, 1024)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
				u.accepted.Add(1)
			}()
		}
	}()
	return u
}

func (u *holdingUpstream) close() {
	_ = u.ln.Close()
	<-u.done
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.conns {
		_ = c.Close()
	}
}

// TestGatewayIdleStreams: 2,000 clients hold the server's SSE stream (GET)
// open through the gateway while the upstream sends nothing: the gateway's
// heap and stacks stay under 200 MiB, and its streams end when the
// upstream goes away. Clients and upstream are raw connections without
// goroutines of their own, so the figure is the gateway's (and the test's
// 4,000 sockets). `make test` runs it without the race detector, which
// multiplies memory.
func TestGatewayIdleStreams(t *testing.T) {
	if raceEnabled {
		t.Skip("measures memory: run without -race (make test does)")
	}
	if testing.Short() {
		t.Skip("opens 2,000 streams")
	}
	env := coretest.New(t, coretest.Options{})
	up := newHoldingUpstream(t)
	u, _ := url.Parse("http://" + up.ln.Addr().String())
	g, err := gateway.New(gateway.Options{Decider: env.Service, Resource: coretest.Resource, Upstream: u})
	if err != nil {
		t.Fatal(err)
	}
	gs := httptest.NewServer(g)
	var clients []net.Conn
	t.Cleanup(func() {
		for _, c := range clients {
			_ = c.Close()
		}
		up.close() // ends the gateway's streams, so that Close does not wait
		gs.Close()
	})

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	addr := gs.Listener.Addr().String()
	for range idleStreams {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("client %d: %v", len(clients), err)
		}
		clients = append(clients, c)
		if _, err := io.WriteString(c, "GET /mcp HTTP/1.1\r\nHost: "+addr+"\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, "2,000 streams to reach the upstream", func() bool { return up.accepted.Load() >= idleStreams })
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(testkit.WaitTimeout))
		line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("client %d got %q, %v; want the stream's 200", i, line, err)
		}
	}
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	used := int64(during.HeapInuse+during.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	t.Logf("%d idle streams through the gateway: %.1f MiB of heap and stacks (%.1f KiB a stream), %d goroutines",
		idleStreams, float64(used)/(1<<20), float64(used)/idleStreams/1024, runtime.NumGoroutine())
	if used > 200<<20 {
		t.Fatalf("%d idle streams take %d MiB, over 200 MiB", idleStreams, used>>20)
	}
}
