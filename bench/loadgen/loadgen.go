// Package loadgen is a closed-loop HTTP/1.1 load generator for the load
// benchmark (make loadbench). Each connection sends one POST, reads the whole
// answer, and sends the next at once, like wrk: the offered load is whatever
// the server sustains at that concurrency. It writes requests and parses
// answers on raw keep-alive TCP connections (no net/http client), so that
// the generator, which shares the machine's cores with the server under
// test, costs as little CPU per request as possible. Latency (write of the
// request to the last byte of the answer) goes into per-connection
// log-linear histograms that are merged at the end.
//
// Traffic only ever goes to the address given, which the benchmark
// orchestrator sets to a loopback listener it started itself; Run stops by
// itself after Warmup+Duration.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options describe one run.
type Options struct {
	// Addr is host:port of the server (loopback).
	Addr string
	// Path of the POST, e.g. /v1/decide.
	Path string
	// Headers are extra request header lines ("Name: value", no line
	// ending), sent with every request after the fixed ones (Host,
	// User-Agent, Content-Type: application/json, Content-Length), e.g.
	// Authorization and Accept for an MCP endpoint.
	Headers []string
	// Conns is the number of connections, each with one request in flight.
	Conns int
	// Warmup runs before the measurement window and is not recorded.
	Warmup time.Duration
	// WarmupRequests, when set, extends the warmup until that many answers
	// have come back (e.g. to show the server every token of a pool once),
	// for at most MaxWarmup (default 2 minutes).
	WarmupRequests uint64
	MaxWarmup      time.Duration
	// Duration of the measurement window.
	Duration time.Duration
	// Body appends the body of the next request to dst. It is called
	// concurrently by all connections.
	Body func(dst []byte) []byte
	// Check validates an answer (status and body). It is called for the
	// first answer of every connection and then every CheckEvery answers
	// (0 = only the first). A failed check counts as an error.
	Check      func(status int, body []byte) error
	CheckEvery int
	// OnStart and OnStop run when the measurement window opens and closes
	// (e.g. to sample the server's CPU time).
	OnStart, OnStop func()
}

// Result is what one run measured inside its window.
type Result struct {
	Conns    int
	Requests uint64 // answers completed inside the window
	Errors   uint64 // transport errors, non-200 answers and failed checks (whole run)
	// FirstError describes the first error, if any.
	FirstError string
	Elapsed    time.Duration // length of the window
	Hist       *Histogram
	// BytesOut and BytesIn count request and answer bytes inside the window.
	BytesOut, BytesIn uint64
}

// Rate is completed requests per second inside the window.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

type shared struct {
	phase    atomic.Int32
	warmed   atomic.Uint64
	errors   atomic.Uint64
	firstErr atomic.Pointer[string]
}

func (s *shared) fail(err error) {
	s.errors.Add(1)
	msg := err.Error()
	s.firstErr.CompareAndSwap(nil, &msg)
}

// Run drives the server and returns when the window has closed and every
// connection has finished its last request (or ctx is done).
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Conns < 1 {
		return nil, errors.New("loadgen: Conns must be at least 1")
	}
	if o.Duration <= 0 {
		return nil, errors.New("loadgen: Duration must be positive")
	}
	if o.Body == nil {
		return nil, errors.New("loadgen: Body is required")
	}
	var extra []byte
	for _, h := range o.Headers {
		name, _, ok := strings.Cut(h, ":")
		if !ok || name == "" || strings.ContainsAny(h, "\r\n") {
			return nil, fmt.Errorf("loadgen: header %q is not one \"Name: value\" line", h)
		}
		extra = append(append(extra, h...), "\r\n"...)
	}
	// Fail early and clearly when nothing listens.
	c, err := net.DialTimeout("tcp", o.Addr, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	c.Close()

	sh := &shared{}
	workers := make([]*worker, o.Conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{o: &o, sh: sh, hist: NewHistogram(), extra: extra}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx)
		}()
	}
	timer := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var start, stop time.Time
	ok := o.Warmup <= 0 || timer(o.Warmup)
	if ok && o.WarmupRequests > 0 {
		limit := o.MaxWarmup
		if limit <= 0 {
			limit = 2 * time.Minute
		}
		deadline := time.Now().Add(limit)
		for ok && sh.warmed.Load() < o.WarmupRequests && time.Now().Before(deadline) {
			ok = timer(20 * time.Millisecond)
		}
	}
	if ok {
		if o.OnStart != nil {
			o.OnStart()
		}
		start = time.Now()
		sh.phase.Store(phaseMeasure)
		ok = timer(o.Duration)
		sh.phase.Store(phaseDone)
		stop = time.Now()
		if o.OnStop != nil {
			o.OnStop()
		}
	}
	sh.phase.Store(phaseDone)
	wg.Wait()
	if !ok {
		return nil, ctx.Err()
	}
	res := &Result{Conns: o.Conns, Elapsed: stop.Sub(start), Hist: NewHistogram(), Errors: sh.errors.Load()}
	if p := sh.firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	for _, w := range workers {
		res.Hist.Merge(w.hist)
		res.BytesOut += w.bytesOut
		res.BytesIn += w.bytesIn
	}
	res.Requests = res.Hist.Count()
	return res, nil
}

type worker struct {
	o    *Options
	sh   *shared
	hist *Histogram

	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	body    []byte
	head    []byte
	resp    []byte
	checked uint64
	// extra are the Options' Headers as request header lines.
	extra []byte

	bytesOut, bytesIn uint64
}

func (w *worker) loop(ctx context.Context) {
	defer func() {
		if w.conn != nil {
			w.conn.Close()
		}
	}()
	for w.sh.phase.Load() != phaseDone && ctx.Err() == nil {
		if w.conn == nil {
			if err := w.dial(); err != nil {
				w.sh.fail(err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		w.body = w.o.Body(w.body[:0])
		w.head = appendHead(w.head[:0], w.o.Path, w.o.Addr, w.extra, len(w.body))
		t0 := time.Now()
		status, err := w.roundTrip()
		t1 := time.Now()
		if err != nil {
			w.sh.fail(err)
			w.conn.Close()
			w.conn = nil
			continue
		}
		switch w.sh.phase.Load() {
		case phaseWarmup:
			if w.o.WarmupRequests > 0 {
				w.sh.warmed.Add(1)
			}
		case phaseMeasure:
			w.hist.Record(t1.Sub(t0))
			w.bytesOut += uint64(len(w.head) + len(w.body))
			w.bytesIn += uint64(len(w.resp))
		}
		if status != 200 {
			w.sh.fail(fmt.Errorf("HTTP %d: %.300s", status, w.resp))
			continue
		}
		if w.o.Check != nil && (w.checked == 0 || (w.o.CheckEvery > 0 && w.checked%uint64(w.o.CheckEvery) == 0)) {
			if err := w.o.Check(status, w.resp); err != nil {
				w.sh.fail(err)
			}
		}
		w.checked++
	}
}

func (w *worker) dial() error {
	c, err := net.DialTimeout("tcp", w.o.Addr, 2*time.Second)
	if err != nil {
		return err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	w.conn = c
	w.br = bufio.NewReaderSize(c, 64<<10)
	w.bw = bufio.NewWriterSize(c, 64<<10)
	return nil
}

func appendHead(b []byte, path, host string, extra []byte, n int) []byte {
	b = append(b, "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: mcp-pdp-loadgen\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, "\r\n"...)
	b = append(b, extra...)
	return append(b, "\r\n"...)
}

// roundTrip writes the request and reads the answer into w.resp.
func (w *worker) roundTrip() (int, error) {
	_ = w.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := w.bw.Write(w.head); err != nil {
		return 0, err
	}
	if _, err := w.bw.Write(w.body); err != nil {
		return 0, err
	}
	if err := w.bw.Flush(); err != nil {
		return 0, err
	}
	return w.readResponse()
}

var (
	hContentLength    = []byte("content-length:")
	hTransferEncoding = []byte("transfer-encoding:")
	hConnection       = []byte("connection:")
)

func hasPrefixFold(line, prefix []byte) bool {
	return len(line) >= len(prefix) && bytes.EqualFold(line[:len(prefix)], prefix)
}

func (w *worker) readResponse() (int, error) {
	line, err := w.br.ReadSlice('\n')
	if err != nil {
		return 0, fmt.Errorf("reading status line: %w", err)
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("malformed status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("malformed status line %q", line)
	}
	length := -1
	chunked, closeConn := false, false
	for {
		line, err = w.br.ReadSlice('\n')
		if err != nil {
			return 0, fmt.Errorf("reading headers: %w", err)
		}
		if len(line) <= 2 {
			break
		}
		switch {
		case hasPrefixFold(line, hContentLength):
			n, err := strconv.Atoi(string(bytes.TrimSpace(line[len(hContentLength):])))
			if err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", line)
			}
			length = n
		case hasPrefixFold(line, hTransferEncoding):
			chunked = bytes.Contains(bytes.ToLower(line), []byte("chunked"))
		case hasPrefixFold(line, hConnection):
			closeConn = bytes.Contains(bytes.ToLower(line), []byte("close"))
		}
	}
	w.resp = w.resp[:0]
	switch {
	case chunked:
		if err := w.readChunked(); err != nil {
			return 0, err
		}
	case length >= 0:
		w.resp = grow(w.resp, length)
		if _, err := io.ReadFull(w.br, w.resp); err != nil {
			return 0, fmt.Errorf("reading body: %w", err)
		}
	default:
		return 0, errors.New("answer has neither Content-Length nor chunked encoding")
	}
	if closeConn {
		w.conn.Close()
		w.conn = nil
	}
	return status, nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func (w *worker) readChunked() error {
	for {
		line, err := w.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("reading chunk size: %w", err)
		}
		line = bytes.TrimSpace(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseUint(string(line), 16, 32)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			// Trailers, then the empty line.
			for {
				t, err := w.br.ReadSlice('\n')
				if err != nil {
					return fmt.Errorf("reading trailer: %w", err)
				}
				if len(t) <= 2 {
					return nil
				}
			}
		}
		off := len(w.resp)
		w.resp = slices.Grow(w.resp, int(n))[:off+int(n)]
		if _, err := io.ReadFull(w.br, w.resp[off:]); err != nil {
			return fmt.Errorf("reading chunk: %w", err)
		}
		if _, err := w.br.Discard(2); err != nil {
			return fmt.Errorf("reading chunk end: %w", err)
		}
	}
}
