package auditsink

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// generous waits: these tests must pass on a loaded 2-core machine.
const waitLong = testkit.WaitTimeout

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLong)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("AUDITSINK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := Connect(context.Background(), url, ConnectOptions{RetryOnFailedConnect: true, ReconnectWait: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func baseConfig(t testing.TB, spoolDir string) Config {
	return Config{
		SpoolDir:   spoolDir,
		PDP:        "test-pdp",
		AckTimeout: 3 * time.Second,
		Logger:     testLogger(t),
	}
}

func newSink(t testing.TB, cfg Config, nc *nats.Conn) *Sink {
	t.Helper()
	s, err := New(testCtx(t), cfg, nc)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// waitDrained waits until every event handed to s is acked by JetStream.
func waitDrained(t testing.TB, s *Sink) {
	t.Helper()
	testkit.WaitFor(t, "the sink to drain", func() bool {
		st := s.Stats()
		return st.Pending == 0 && !st.Spooling && st.SpoolBytes == 0
	})
}

func testEvent(i int) *Event {
	outcomes := []string{OutcomeAllow, OutcomeDeny, OutcomeChallenge, OutcomeFiltered}
	ev := &Event{
		ID:               fmt.Sprintf("dec-%06d", i),
		Time:             time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		PEP:              "gateway-1",
		Resource:         "https://mcp.example.com/mcp",
		ResourceKey:      "demo",
		Method:           "tools/call",
		Target:           fmt.Sprintf("tool_%d", i%7),
		Outcome:          outcomes[i%4],
		HTTPStatus:       200,
		RequiredScopes:   []string{"qr:generate"},
		Reason:           "policy says so",
		Subject:          fmt.Sprintf("user-%d", i%5),
		ClientID:         fmt.Sprintf("client-%d", i%3),
		Act:              []Actor{{Subject: "agent-1", ClientID: "claude"}},
		Grant:            "user",
		Issuer:           "https://issuer.example.com",
		TokenFingerprint: "sha256:abcd",
		PolicyRevision:   "rev-1",
		LatencyMicros:    int64(100 + i%50),
	}
	if ev.Outcome == OutcomeFiltered {
		ev.Method = "tools/list"
		ev.Target = ""
		ev.Visible = []string{"a", "b"}
		ev.Hidden = []string{"c"}
	}
	if ev.Outcome == OutcomeDeny {
		ev.HTTPStatus = 403
		ev.MissingScopes = []string{"qr:generate"}
	}
	return ev
}

func ids(from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, testEvent(i).ID)
	}
	return out
}

// streamEvents reads every message of the stream (with a raw ordered
// consumer, not the code under test) and returns the events and the
// count of each Nats-Msg-Id.
func streamEvents(t testing.TB, nc *nats.Conn, stream string) ([]*Event, map[string]int) {
	t.Helper()
	ctx := testCtx(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var st jetstream.Stream
	testkit.WaitFor(t, "stream info", func() bool {
		st, err = js.Stream(ctx, stream)
		return err == nil
	})
	total := st.CachedInfo().State.Msgs
	counts := map[string]int{}
	var evs []*Event
	if total == 0 {
		return nil, counts
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	for read := uint64(0); read < total; read++ {
		nctx, cancel := context.WithTimeout(ctx, waitLong)
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			t.Fatalf("read stream after %d of %d messages: %v", read, total, err)
		}
		if strings.HasPrefix(msg.Subject(), "mcp.audit."+ChainToken+".") {
			continue // a checkpoint (chain_test.go checks them)
		}
		var ev Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		if h := msg.Headers().Get(jetstream.MsgIDHeader); h != ev.ID {
			t.Fatalf("Nats-Msg-Id %q != event id %q", h, ev.ID)
		}
		if want := ev.NATSSubject("mcp.audit"); msg.Subject() != want {
			t.Fatalf("subject %q, want %q", msg.Subject(), want)
		}
		counts[ev.ID]++
		evs = append(evs, &ev)
	}
	return evs, counts
}

// assertExactlyOnce checks that the stream holds each of want exactly once
// and nothing else.
func assertExactlyOnce(t testing.TB, counts map[string]int, want []string) {
	t.Helper()
	missing, dup := 0, 0
	for _, id := range want {
		switch c := counts[id]; {
		case c == 0:
			missing++
			if missing <= 5 {
				t.Errorf("event %s missing from the stream", id)
			}
		case c > 1:
			dup++
			if dup <= 5 {
				t.Errorf("event %s stored %d times", id, c)
			}
		}
	}
	if len(counts) != len(want) {
		t.Errorf("stream has %d distinct events, want %d", len(counts), len(want))
	}
	if missing+dup > 0 {
		t.Fatalf("%d missing, %d duplicated of %d", missing, dup, len(want))
	}
}

// crash stops s like a killed process. The spool is closed first, as it
// is (no cursor write, no fsync), so nothing that was only in memory (the
// queue, events awaiting their ack) reaches the disk: those are lost, as
// they would be. What reached the spool with write(2) is there for the
// next New. It stops the goroutines through the same channels as Close,
// so production code needs no test-only state for it.
func (s *Sink) crash() {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return
	}
	s.closed = true // Record refuses from now on
	s.closeMu.Unlock()
	s.cancel() // replayer and syncer
	s.bgWG.Wait()
	_ = s.sp.Close(false)
	// The publisher and ack watch: whatever they still hold fails to
	// spool (the spool is closed) instead of being flushed.
	s.abortOnce.Do(func() { close(s.abort) })
	close(s.queue)
	s.pubWG.Wait()
	_ = s.ackSub.Unsubscribe()
	_ = s.batchSub.Unsubscribe()
	s.js.CleanupPublisher()
	if s.m != nil {
		s.m.unregister()
	}
}

// The spool's on-disk format, as internal/spool documents it: segment
// files named *.seg start with an 8-byte magic, then frames of
// u32 LE length | u32 LE CRC-32C | payload. The tests read and damage
// segments through it; it is the compatibility boundary they hold the
// spool to.
const (
	segSuffix      = ".seg"
	segMagicLen    = 8
	frameHeaderLen = 8
)

// frameOffsets lists the start offset of every whole record in a segment.
func frameOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := int64(segMagicLen); off+frameHeaderLen <= int64(len(b)); {
		n := int64(binary.LittleEndian.Uint32(b[off:]))
		if n == 0 || off+frameHeaderLen+n > int64(len(b)) {
			break
		}
		offs = append(offs, off)
		off += frameHeaderLen + n
	}
	return offs
}
