package auditsink

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// benchIDs makes event IDs unique across benchmark rounds.
var benchSeq atomic.Int64

func benchEvent() Event {
	ev := *testEvent(1)
	ev.ID = "bench-" + strconv.FormatInt(benchSeq.Add(1), 10)
	return ev
}

// BenchmarkRecordAsync: the cost of Record on the decision path (enqueue)
// and the sustained end-to-end rate (the timer also covers the wait until
// every event is acked by JetStream, embedded server in the same process).
func BenchmarkRecordAsync(b *testing.B) {
	for _, sustained := range []bool{false, true} {
		name := "enqueue"
		if sustained {
			name = "sustained"
		}
		b.Run(name, func(b *testing.B) {
			n := natstest.Start(b)
			nc := connect(b, n.URL())
			s := newSink(b, baseConfig(b, b.TempDir()), nc)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ev := benchEvent()
					if err := s.Record(context.Background(), &ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if sustained {
				waitDrained(b, s)
			}
			b.StopTimer()
			waitDrained(b, s)
			st := s.Stats()
			if st.Failed != 0 {
				b.Fatalf("lost events: %+v", st)
			}
			b.ReportMetric(float64(st.Spooled)/float64(b.N)*100, "%spooled")
		})
	}
}

// BenchmarkRecordSync: ns/op is the latency of a decision waiting for the
// JetStream ack (embedded single node, file store, no fsync per message).
func BenchmarkRecordSync(b *testing.B) {
	n := natstest.Start(b)
	nc := connect(b, n.URL())
	cfg := baseConfig(b, b.TempDir())
	cfg.Mode = ModeSync
	s := newSink(b, cfg, nc)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ev := benchEvent()
		t0 := time.Now()
		if err := s.Record(context.Background(), &ev); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	if st := s.Stats(); st.Spooled != 0 {
		b.Logf("note: %d events fell back to the spool", st.Spooled)
	}
}

// BenchmarkDecisionThroughput compares a synthetic decision (hash a token,
// decode a request, encode a response; "light" once, ~5µs, "heavy" 10
// times, closer to a real policy evaluation) with audit off and on (async,
// sustained: the timer covers the drain to JetStream, whose embedded
// server runs on the same 2 cores). The lead's end-to-end benchmark of the
// real decision path is the one to judge the 90% target by.
func BenchmarkDecisionThroughput(b *testing.B) {
	token := make([]byte, 900)
	req := []byte(`{"resource":"https://mcp.example.com/mcp","message":{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{"gtin":"04012345678901"}}}}`)
	decide := func(rounds int) *Event {
		var sum [32]byte
		var out []byte
		for range rounds {
			sum = sha256.Sum256(token)
			var m map[string]any
			if err := json.Unmarshal(req, &m); err != nil {
				b.Fatal(err)
			}
			out, _ = json.Marshal(map[string]any{"allow": true, "http_status": 200, "reason": "ok", "fp": sum[:8], "req": m})
		}
		ev := benchEvent()
		ev.TokenFingerprint = fmt.Sprintf("%x", sum[:8])
		ev.LatencyMicros = int64(len(out))
		return &ev
	}
	for _, weight := range []struct {
		name   string
		rounds int
	}{{"light", 1}, {"heavy", 10}} {
		for _, audit := range []string{"off", "async"} {
			b.Run(weight.name+"/audit="+audit, func(b *testing.B) {
				var s *Sink
				if audit != "off" {
					n := natstest.Start(b)
					nc := connect(b, n.URL())
					s = newSink(b, baseConfig(b, b.TempDir()), nc)
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						ev := decide(weight.rounds)
						if s != nil {
							if err := s.Record(context.Background(), ev); err != nil {
								b.Error(err)
								return
							}
						}
					}
				})
				if s != nil {
					waitDrained(b, s)
					b.StopTimer()
					b.ReportMetric(float64(s.Stats().Spooled)/float64(b.N)*100, "%spooled")
				}
			})
		}
	}
}
