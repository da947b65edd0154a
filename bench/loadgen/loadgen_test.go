package loadgen

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {1, 10 * time.Millisecond}} {
		got := h.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d > 0.01 || d < -0.01 {
			t.Errorf("q%.2f = %v, want %v ±1%%", c.q, got, c.want)
		}
	}
	if h.Count() != 10000 {
		t.Fatalf("count %d", h.Count())
	}
	o := NewHistogram()
	o.Record(time.Second)
	h.Merge(o)
	if h.Max() != time.Second || h.Count() != 10001 {
		t.Fatalf("merge: max %v count %d", h.Max(), h.Count())
	}
}

func TestBucketsAreContiguous(t *testing.T) {
	prevHi := int64(-1)
	for i := 0; i < numBucket; i++ {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d [%d,%d] maps to %d,%d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		prevHi = hi
	}
}

func TestRunContentLengthAndChunked(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || string(b) != `{"x":1}` {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if n.Add(1)%2 == 0 {
			// Larger than net/http's 2 KiB buffer: sent chunked.
			w.Write([]byte(`{"big":"` + strings.Repeat("a", 5000) + `"}`))
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var started, stopped bool
	res, err := Run(context.Background(), Options{
		Addr: addr, Path: "/x", Conns: 4, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond,
		Body: func(dst []byte) []byte { return append(dst, `{"x":1}`...) },
		Check: func(status int, body []byte) error {
			if !strings.HasPrefix(string(body), `{"`) || !strings.HasSuffix(string(body), `}`) {
				return errors.New("bad body " + string(body))
			}
			return nil
		},
		CheckEvery: 1,
		OnStart:    func() { started = true },
		OnStop:     func() { stopped = true },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Fatalf("%d errors, first: %s", res.Errors, res.FirstError)
	}
	if res.Requests < 10 || !started || !stopped {
		t.Fatalf("requests %d started %v stopped %v", res.Requests, started, stopped)
	}
	if res.Hist.Quantile(0.5) <= 0 || res.Rate() <= 0 {
		t.Fatalf("p50 %v rate %v", res.Hist.Quantile(0.5), res.Rate())
	}
}

func TestRunCountsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusTeapot)
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Options{
		Addr: strings.TrimPrefix(srv.URL, "http://"), Path: "/", Conns: 1, Duration: 50 * time.Millisecond,
		Body: func(dst []byte) []byte { return append(dst, "{}"...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || !strings.Contains(res.FirstError, "418") {
		t.Fatalf("errors %d first %q", res.Errors, res.FirstError)
	}
}

func TestRunSendsHeaders(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Accept") != "application/json, text/event-stream" ||
			r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "missing headers", http.StatusBadRequest)
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Options{
		Addr: strings.TrimPrefix(srv.URL, "http://"), Path: "/mcp", Conns: 2, Duration: 100 * time.Millisecond,
		Headers: []string{"Authorization: Bearer tok", "Accept: application/json, text/event-stream"},
		Body:    func(dst []byte) []byte { return append(dst, "{}"...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Requests == 0 {
		t.Fatalf("requests %d errors %d, first: %s", res.Requests, res.Errors, res.FirstError)
	}
	if _, err := Run(context.Background(), Options{
		Addr: strings.TrimPrefix(srv.URL, "http://"), Path: "/mcp", Conns: 1, Duration: 10 * time.Millisecond,
		Headers: []string{"X: a\r\nInjected: b"},
		Body:    func(dst []byte) []byte { return append(dst, "{}"...) },
	}); err == nil {
		t.Fatal("a header with a line break was accepted")
	}
}
