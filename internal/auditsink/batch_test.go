package auditsink

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// ackProxy is a TCP proxy between the sink and a real NATS server that
// can hold back what the server sends (the acks) while the sink's
// messages still reach the server: an ack lost in the network, or a
// server that stored a batch and died before it answered.
type ackProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	gate  chan struct{} // non-nil while held: closed by release
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *ackProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ackProxy{ln: ln, target: target[len("nats://"):]}
	t.Cleanup(p.close)
	go p.serve()
	return p
}

func (p *ackProxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *ackProxy) serve() {
	for {
		cli, err := p.ln.Accept()
		if err != nil {
			return
		}
		srv, err := net.Dial("tcp", p.target)
		if err != nil {
			cli.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, cli, srv)
		p.mu.Unlock()
		go func() { // the sink's messages: always through
			_, _ = io.Copy(srv, cli)
			srv.Close()
			cli.Close()
		}()
		go func() { // the server's: held back while held
			buf := make([]byte, 32<<10)
			for {
				n, err := srv.Read(buf)
				if n > 0 {
					p.wait()
					if _, werr := cli.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			cli.Close()
			srv.Close()
		}()
	}
}

func (p *ackProxy) wait() {
	p.mu.Lock()
	g := p.gate
	p.mu.Unlock()
	if g != nil {
		<-g
	}
}

// hold stops passing on what the server sends, until release.
func (p *ackProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil {
		p.gate = make(chan struct{})
	}
}

func (p *ackProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

func (p *ackProxy) close() {
	p.ln.Close()
	p.release()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// streamMsgs is how many messages the stream holds (over nc, not the
// sink's connection).
func streamMsgs(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	st, err := js.Stream(testCtx(t), stream)
	if err != nil {
		return 0
	}
	return st.CachedInfo().State.Msgs
}

func recordRange(t *testing.T, s *Sink, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
}

// A batch the server stores but whose ack never comes (held back longer
// than the ack timeout): its events are spooled, replayed when the acks
// flow again, and dropped there as the duplicates they are.
func TestBatchAckTimeoutSpoolsThenReplays(t *testing.T) {
	n := natstest.Start(t)
	p := startProxy(t, n.URL())
	nc := connect(t, p.URL())
	direct := connect(t, n.URL())
	js, _ := jetstream.New(direct)
	cfg := baseConfig(t, t.TempDir())
	cfg.AckTimeout = 300 * time.Millisecond
	s := newSink(t, cfg, nc)
	if !s.batching.Load() {
		t.Fatal("the sink's own stream does not allow batch publishing")
	}
	p.hold()
	const total = 200
	recordRange(t, s, 0, total)
	testkit.WaitFor(t, "every event to time out into the spool", func() bool {
		st := s.Stats()
		return st.Spooled == total && st.InFlight == 0 && st.Queued == 0
	})
	st := s.Stats()
	if st.Published != 0 || st.Failed != 0 || st.Batches == 0 {
		t.Fatalf("acks held back: %+v, want nothing published, some batches sent", st)
	}
	if stored := streamMsgs(t, js, DefaultStream); stored == 0 {
		t.Fatal("the server stored nothing of the batches it was sent")
	}
	p.release()
	waitDrained(t, s)
	_, counts := streamEvents(t, direct, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, total))
	if st := s.Stats(); st.Duplicates == 0 || st.Failed != 0 {
		t.Fatalf("after the replay: %+v, want the batches' stored events dropped as duplicates", st)
	}
}

// NATS stops with a batch stored and not acked (the acks held back): the
// sink spools what was not confirmed; after the restart the replay keeps
// one copy of each event.
func TestNATSStoppedMidBatch(t *testing.T) {
	n := natstest.Start(t)
	p := startProxy(t, n.URL())
	nc := connect(t, p.URL())
	direct := connect(t, n.URL())
	js, _ := jetstream.New(direct)
	s := newSink(t, baseConfig(t, t.TempDir()), nc)
	p.hold()
	const total = 300
	recordRange(t, s, 0, total)
	testkit.WaitFor(t, "a batch stored by the server, its ack held back", func() bool {
		return s.Stats().Batches > 0 && streamMsgs(t, js, DefaultStream) > 0
	})
	n.Stop()
	testkit.WaitFor(t, "the unconfirmed events on the spool", func() bool {
		st := s.Stats()
		return st.Spooled == total && st.InFlight == 0 && st.Queued == 0
	})
	p.release()
	if st := s.Stats(); st.Published != 0 || st.Failed != 0 {
		t.Fatalf("before the restart: %+v", st)
	}
	n.Restart()
	recordRange(t, s, total, total+100)
	waitDrained(t, s)
	_, counts := streamEvents(t, direct, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, total+100))
	if st := s.Stats(); st.Duplicates == 0 || st.Failed != 0 {
		t.Fatalf("after the restart: %+v, want the stored batch dropped as duplicates on replay", st)
	}
}

// An operator's stream without allow_batched (audit.manage_stream: false):
// the sink publishes each event with its own ack, as before batches.
// Managed, the same stream gets allow_batched and the events go in
// batches.
func TestStreamWithoutBatchPublishing(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	js, _ := jetstream.New(nc)
	ctx := testCtx(t)
	sc := StreamConfig(Config{})
	sc.AllowBatchPublish = false
	if _, err := js.CreateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t, t.TempDir())
	cfg.SkipStreamSetup = true
	s := newSink(t, cfg, nc)
	if s.batching.Load() {
		t.Fatal("batching on a stream without allow_batched")
	}
	const total = 1500
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < total; i += 4 {
				if err := s.Record(context.Background(), testEvent(i)); err != nil {
					t.Errorf("Record %d: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	waitDrained(t, s)
	if st := s.Stats(); st.Batches != 0 || st.Failed != 0 || st.Spooled != 0 || st.Published != total+total/DefaultCheckpointEvery {
		t.Fatalf("per-event publishing: %+v", st)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := js.Stream(ctx, DefaultStream); got.CachedInfo().Config.AllowBatchPublish {
		t.Fatal("audit.manage_stream: false, yet the sink changed the stream")
	}

	// Managed: the sink adds allow_batched (and changes nothing else).
	cfg = baseConfig(t, t.TempDir())
	s2 := newSink(t, cfg, nc)
	got, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if c := got.CachedInfo().Config; !c.AllowBatchPublish || !s2.batching.Load() || !c.DenyDelete || !c.DenyPurge {
		t.Fatalf("managed stream: allow_batched %v, sink batching %v, %+v", c.AllowBatchPublish, s2.batching.Load(), c)
	}
	recordRange(t, s2, total, total+500)
	waitDrained(t, s2)
	if st := s2.Stats(); st.Batches == 0 || st.Failed != 0 {
		t.Fatalf("batches on the managed stream: %+v", st)
	}
	_, counts := streamEvents(t, nc, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, total+500))
}

// An operator turns batch publishing off while the sink publishes in
// batches: the batch the stream refuses is spooled and replayed, the sink
// goes on one ack per event, and every event is in the stream once.
func TestBatchPublishingTurnedOffWhileRunning(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	js, _ := jetstream.New(nc)
	ctx := testCtx(t)
	s := newSink(t, baseConfig(t, t.TempDir()), nc)
	recordRange(t, s, 0, 100)
	waitDrained(t, s)
	str, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	c := str.CachedInfo().Config
	c.AllowBatchPublish = false
	if _, err := js.UpdateStream(ctx, c); err != nil {
		t.Fatal(err)
	}
	recordRange(t, s, 100, 600)
	waitDrained(t, s)
	if s.batching.Load() {
		t.Fatal("still batching on a stream that refuses batches")
	}
	st := s.Stats()
	if st.Failed != 0 || st.Spooled == 0 {
		t.Fatalf("%+v: want the refused batch spooled, nothing lost", st)
	}
	_, counts := streamEvents(t, nc, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, 600))
}

// Events the stream already holds, in a batch: the server skips them
// (duplicate Nats-Msg-Id) and counts them in the batch's ack, first or
// further in; a batch of one such event is acked as a duplicate. One copy
// of each event either way, nothing spooled.
func TestDuplicatesInABatch(t *testing.T) {
	n := natstest.Start(t)
	p := startProxy(t, n.URL())
	nc := connect(t, p.URL())
	direct := connect(t, n.URL())
	s := newSink(t, baseConfig(t, t.TempDir()), nc)
	recordRange(t, s, 0, 10)
	waitDrained(t, s)
	// One batch in flight (its ack held back) while the next one queues:
	// the queued events then go out together as one batch.
	var pilots []string
	batchOf := func(evs ...int) {
		t.Helper()
		before := s.Stats().Batches
		p.hold()
		pilot := 100 + len(pilots)
		pilots = append(pilots, testEvent(pilot).ID)
		recordRange(t, s, pilot, pilot+1) // the batch in flight
		testkit.WaitFor(t, "a batch in flight", func() bool { return s.Stats().Batches == before+1 })
		for _, i := range evs {
			if err := s.Record(context.Background(), testEvent(i)); err != nil {
				t.Fatal(err)
			}
		}
		p.release()
		waitDrained(t, s)
		if got := s.Stats().Batches; got != before+2 {
			t.Fatalf("%d batches, want the %d queued events in one", got-before, len(evs))
		}
	}
	batchOf(3, 10, 11, 5, 12) // 3 and 5 are in the stream
	batchOf(13, 7, 14)        // 7 is
	if st := s.Stats(); st.Failed != 0 || st.Spooled != 0 || st.Published != 10+2+8 {
		t.Fatalf("%+v: want every event published, nothing spooled", st)
	}
	// A batch of one event the stream has: acked as a duplicate.
	time.Sleep(10 * DefaultBatchLinger) // a quiet spell: the next event goes alone
	before := s.Stats()
	recordRange(t, s, 4, 5)
	waitDrained(t, s)
	if st := s.Stats(); st.Batches != before.Batches+1 || st.Duplicates != before.Duplicates+1 || st.Spooled != 0 {
		t.Fatalf("%+v: want one batch, acked as a duplicate", st)
	}
	_, counts := streamEvents(t, direct, DefaultStream)
	want := append(ids(0, 15), pilots...)
	assertExactlyOnce(t, counts, want)
}

func TestJSONUint(t *testing.T) {
	for _, tc := range []struct {
		data, key string
		want      uint64
		ok        bool
	}{
		{`{"stream":"A","seq":12,"batch":"b","count":7}`, `"count":`, 7, true},
		{`{"type":"ack","seq":0,"msgs":500}`, `"seq":`, 0, true},
		{`{"count": 42}`, `"count":`, 42, true},
		{`{"count":"x"}`, `"count":`, 0, false},
		{`{}`, `"count":`, 0, false},
	} {
		got, ok := jsonUint([]byte(tc.data), tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("jsonUint(%s, %s) = %d, %v; want %d, %v", tc.data, tc.key, got, ok, tc.want, tc.ok)
		}
	}
}
