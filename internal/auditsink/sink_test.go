package auditsink

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Every decision answered produces exactly one event, with all fields, in
// the stream.
func TestEveryRecordIsOneEventInTheStream(t *testing.T) {
	for _, mode := range []string{ModeAsync, ModeSync} {
		t.Run(mode, func(t *testing.T) {
			n := natstest.Start(t)
			nc := connect(t, n.URL())
			cfg := baseConfig(t, t.TempDir())
			cfg.Mode = mode
			s := newSink(t, cfg, nc)
			const total = 1500
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < total; i += 4 {
						if err := s.Record(context.Background(), testEvent(i)); err != nil {
							t.Errorf("Record %d: %v", i, err)
						}
					}
				}()
			}
			wg.Wait()
			waitDrained(t, s)
			evs, counts := streamEvents(t, nc, DefaultStream)
			assertExactlyOnce(t, counts, ids(0, total))
			// The counters count checkpoints too: one after event 1000.
			if st := s.Stats(); st.Failed != 0 || st.Published+st.Replayed != total+total/DefaultCheckpointEvery {
				t.Fatalf("stats %+v: want Failed 0 and Published+Replayed %d", st, total+total/DefaultCheckpointEvery)
			}
			// Every field survives the trip; each event is linked into
			// the chain (chain_test.go checks the links).
			for _, got := range evs {
				if got.Chain == "" || got.Seq == 0 || (got.Seq > 1) != (got.Prev != "") {
					t.Fatalf("event %s not chained: %q %d %q", got.ID, got.Chain, got.Seq, got.Prev)
				}
				got.Chain, got.Seq, got.Prev = "", 0, ""
				i, err := strconv.Atoi(strings.TrimPrefix(got.ID, "dec-"))
				if err != nil {
					t.Fatal(err)
				}
				want := testEvent(i)
				want.Schema, want.PDP = SchemaVersion, "test-pdp"
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("event %s:\n got %+v\nwant %+v", got.ID, got, want)
				}
			}
		})
	}
}

// NATS stopped mid-load: decisions keep being answered; after NATS is back
// every decision id is in the stream exactly once.
func TestNATSRestartMidLoad(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	s := newSink(t, baseConfig(t, t.TempDir()), nc)
	const phase = 1000
	record := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := s.Record(context.Background(), testEvent(i)); err != nil {
				t.Fatalf("Record %d: %v", i, err)
			}
		}
	}
	// Load runs concurrently with the stop: some events are in flight when
	// the server goes away.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < phase; i++ {
			if err := s.Record(context.Background(), testEvent(i)); err != nil {
				t.Errorf("Record %d: %v", i, err)
				return
			}
			if i == phase/2 {
				n.Stop()
			}
		}
	}()
	<-done
	n.Stop()
	record(phase, 2*phase) // NATS is down: answered from the spool
	// On a loaded machine the sink may still be waiting for its in-flight
	// publishes to fail when the recording ends.
	testkit.WaitFor(t, "the sink to spool with NATS down", func() bool {
		st := s.Stats()
		return st.Spooled > 0 && st.Spooling
	})
	if err := s.Healthy(); err != nil {
		t.Fatalf("NATS down but spool fine: Healthy = %v, want nil", err)
	}
	n.Restart()
	record(2*phase, 3*phase)
	waitDrained(t, s)
	_, counts := streamEvents(t, nc, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, 3*phase))
	if st := s.Stats(); st.Failed != 0 || st.Replayed == 0 {
		t.Fatalf("stats %+v: want Failed 0 and some replayed", st)
	}
}

// PDP stopped, gracefully or killed, with events on the spool: the next
// start replays them exactly once.
func TestRestartReplaysSpool(t *testing.T) {
	tests := []struct {
		name   string
		stop   func(*Sink) error
		queued bool // events recorded while NATS is up (async queue)
	}{
		{name: "graceful close, NATS down", stop: func(s *Sink) error { return s.Close(context.Background()) }},
		{name: "killed after answering, NATS down", stop: func(s *Sink) error { s.crash(); return nil }},
		{name: "graceful close with a full queue and NATS up", queued: true,
			stop: func(s *Sink) error {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				return s.Close(ctx)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := natstest.Start(t)
			spoolDir := t.TempDir()
			const total = 800
			nc1 := connect(t, n.URL())
			s1, err := New(testCtx(t), baseConfig(t, spoolDir), nc1)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.queued {
				n.Stop()
				testkit.WaitFor(t, "client to notice", func() bool { return !nc1.IsConnected() })
			}
			for i := range total {
				if err := s1.Record(context.Background(), testEvent(i)); err != nil {
					t.Fatalf("Record %d: %v", i, err)
				}
			}
			if !tt.queued {
				// "Killed after answering": every answered event is on
				// the spool (written with write(2)), none only in memory.
				if st := s1.Stats(); st.Spooled != total {
					t.Fatalf("spooled %d of %d with NATS down: %+v", st.Spooled, total, st)
				}
			}
			if err := tt.stop(s1); err != nil {
				t.Fatalf("stop: %v", err)
			}
			nc1.Close()
			if tt.queued {
				n.Stop() // whatever Close published is in the store
			}
			n.Restart()
			nc2 := connect(t, n.URL())
			s2 := newSink(t, baseConfig(t, spoolDir), nc2)
			waitDrained(t, s2)
			_, counts := streamEvents(t, nc2, DefaultStream)
			assertExactlyOnce(t, counts, ids(0, total))
		})
	}
}

// A crash after JetStream acked but before the spool cursor moved replays
// events JetStream already has: the duplicate window drops them.
func TestReplayAfterLostAckIsDeduplicated(t *testing.T) {
	n := natstest.Start(t)
	spoolDir := filepath.Join(t.TempDir(), "spool")
	const total = 300
	nc := connect(t, n.URL())
	s1 := newSink(t, baseConfig(t, spoolDir), nc)
	n.Stop()
	testkit.WaitFor(t, "client to notice", func() bool { return !nc.IsConnected() })
	for i := range total {
		if err := s1.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Keep a copy of the spool as it was before the replay.
	copyDir(t, spoolDir, spoolDir+".copy")
	n.Restart()
	s2 := newSink(t, baseConfig(t, spoolDir), nc)
	waitDrained(t, s2)
	if err := s2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s3 := newSink(t, baseConfig(t, spoolDir+".copy"), nc)
	waitDrained(t, s3)
	// total events and the checkpoint of s1's Close.
	if st := s3.Stats(); st.Duplicates != total+1 || st.Replayed != total+1 {
		t.Fatalf("second replay: %+v, want %d duplicates", st, total+1)
	}
	_, counts := streamEvents(t, nc, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, total))
}

// A torn last record (or other damage) is detected and skipped; the other
// records are replayed.
func TestSpoolCorruptionIsDetectedAndRestReplayed(t *testing.T) {
	const total = 50
	tests := []struct {
		name    string
		damage  func(t *testing.T, path string, frames []int64)
		want    []string
		corrupt bool
	}{
		{
			name: "torn last record",
			damage: func(t *testing.T, path string, frames []int64) {
				fi, _ := os.Stat(path)
				truncate(t, path, fi.Size()-5)
			},
			want: ids(0, total-1), corrupt: true,
		},
		{
			name: "torn in the record header",
			damage: func(t *testing.T, path string, frames []int64) {
				truncate(t, path, frames[total-1]+3)
			},
			want: ids(0, total-1), corrupt: true,
		},
		{
			name: "checksum mismatch in the middle",
			damage: func(t *testing.T, path string, frames []int64) {
				flipByte(t, path, frames[20]+frameHeaderLen+10)
			},
			want: append(ids(0, 20), ids(21, total)...), corrupt: true,
		},
		{
			name: "garbage length in the middle",
			damage: func(t *testing.T, path string, frames []int64) {
				writeAt(t, path, frames[30], []byte{0xff, 0xff, 0xff, 0x7f})
			},
			want: ids(0, 30), corrupt: true,
		},
		{
			name: "zeroed tail after a crash",
			damage: func(t *testing.T, path string, frames []int64) {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.Write(make([]byte, 4096)); err != nil {
					t.Fatal(err)
				}
			},
			want: ids(0, total), corrupt: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := natstest.Start(t)
			spoolDir := t.TempDir()
			nc := connect(t, n.URL())
			s1, err := New(testCtx(t), baseConfig(t, spoolDir), nc)
			if err != nil {
				t.Fatal(err)
			}
			n.Stop()
			testkit.WaitFor(t, "client to notice", func() bool { return !nc.IsConnected() })
			for i := range total {
				if err := s1.Record(context.Background(), testEvent(i)); err != nil {
					t.Fatal(err)
				}
			}
			s1.crash()
			segs, _ := filepath.Glob(filepath.Join(spoolDir, "*"+segSuffix))
			if len(segs) != 1 {
				t.Fatalf("want 1 segment, have %v", segs)
			}
			frames := frameOffsets(t, segs[0])
			if len(frames) != total {
				t.Fatalf("segment has %d records, want %d", len(frames), total)
			}
			tt.damage(t, segs[0], frames)

			n.Restart()
			s2 := newSink(t, baseConfig(t, spoolDir), nc)
			waitDrained(t, s2)
			_, counts := streamEvents(t, nc, DefaultStream)
			assertExactlyOnce(t, counts, tt.want)
			if st := s2.Stats(); (st.Corrupt > 0) != tt.corrupt || st.Replayed != uint64(len(tt.want)) {
				t.Fatalf("stats %+v: want corrupt=%v replayed=%d", st, tt.corrupt, len(tt.want))
			}
			if left, _ := filepath.Glob(filepath.Join(spoolDir, "*"+segSuffix)); len(left) != 0 {
				t.Fatalf("replayed segments left behind: %v", left)
			}
		})
	}
}

// The spool cannot write: Healthy reports it, and Record fails for events
// that need the spool.
func TestSpoolUnwritable(t *testing.T) {
	t.Run("at start-up", func(t *testing.T) {
		n := natstest.Start(t)
		nc := connect(t, n.URL())
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := New(testCtx(t), baseConfig(t, filepath.Join(file, "spool")), nc); err == nil {
			t.Fatal("New with a spool dir under a regular file: want an error")
		}
	})
	if os.Geteuid() != 0 {
		t.Run("read-only dir at start-up", func(t *testing.T) {
			n := natstest.Start(t)
			nc := connect(t, n.URL())
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
			if _, err := New(testCtx(t), baseConfig(t, dir), nc); err == nil {
				t.Fatal("New with a read-only spool dir: want an error")
			}
		})
	}
	tests := []struct {
		name          string
		natsUp        bool
		wantRecordErr bool
	}{
		// The queue accepts the event and NATS acks it, but readiness
		// still fails: the next NATS outage would lose events.
		{name: "NATS up", natsUp: true, wantRecordErr: false},
		{name: "NATS down", natsUp: false, wantRecordErr: true},
	}
	for _, tt := range tests {
		t.Run("at run time, "+tt.name, func(t *testing.T) {
			n := natstest.Start(t)
			nc := connect(t, n.URL())
			spoolDir := filepath.Join(t.TempDir(), "spool")
			s := newSink(t, baseConfig(t, spoolDir), nc)
			if !tt.natsUp {
				n.Stop()
				testkit.WaitFor(t, "client to notice", func() bool { return !nc.IsConnected() })
			}
			// The spool directory disappears and a file takes its name
			// (as root, permissions cannot make a directory read-only).
			if err := os.RemoveAll(spoolDir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(spoolDir, []byte("not a dir"), 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.natsUp {
				// Nothing needs the spool yet; the syncer's probe finds out.
				testkit.WaitFor(t, "Healthy to report the spool", func() bool { return s.Healthy() != nil })
			}
			err := s.Record(context.Background(), testEvent(1))
			if (err != nil) != tt.wantRecordErr {
				t.Fatalf("Record error = %v, want error: %v", err, tt.wantRecordErr)
			}
			if err != nil && !errors.Is(err, ErrNotDurable) {
				t.Fatalf("Record error %v is not ErrNotDurable", err)
			}
			if err := s.Healthy(); err == nil {
				t.Fatal("Healthy = nil with an unwritable spool")
			}
			if !tt.natsUp && s.Stats().Failed == 0 {
				t.Fatal("Failed = 0 after a lost event")
			}
			// The directory comes back: health recovers, events flow.
			if err := os.Remove(spoolDir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(spoolDir, 0o700); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, "Healthy to recover", func() bool { return s.Healthy() == nil })
			if err := s.Record(context.Background(), testEvent(2)); err != nil {
				t.Fatalf("Record after recovery: %v", err)
			}
			if !tt.natsUp {
				n.Restart()
			}
			waitDrained(t, s)
			_, counts := streamEvents(t, nc, DefaultStream)
			want := ids(1, 3)
			if tt.wantRecordErr {
				want = ids(2, 3) // event 1 was refused, the caller knew
			}
			assertExactlyOnce(t, counts, want)
		})
	}
}

// Sync mode waits for the ack: when Record returns, the event is in the
// stream; with NATS down it is on the (fsynced) spool instead.
func TestSyncModeAcks(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	cfg := baseConfig(t, t.TempDir())
	cfg.Mode = ModeSync
	s := newSink(t, cfg, nc)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	str, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		ev := testEvent(i)
		if err := s.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
		msg, err := str.GetLastMsgForSubject(ctx, ev.NATSSubject(DefaultSubjectPrefix))
		if err != nil {
			t.Fatalf("event %d not in the stream right after Record: %v", i, err)
		}
		if msg.Header.Get(jetstream.MsgIDHeader) != ev.ID {
			t.Fatalf("last message on %s is %s, want %s", msg.Subject, msg.Header.Get(jetstream.MsgIDHeader), ev.ID)
		}
	}
	if st := s.Stats(); st.Published != 20 || st.InFlight != 0 || st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
	n.Stop()
	testkit.WaitFor(t, "client to notice", func() bool { return !nc.IsConnected() })
	if err := s.Record(ctx, testEvent(20)); err != nil {
		t.Fatalf("sync Record with NATS down must fall back to the spool: %v", err)
	}
	if st := s.Stats(); st.Spooled != 1 || st.SpoolPending != 1 {
		t.Fatalf("stats %+v: want 1 spooled", st)
	}
	n.Restart()
	waitDrained(t, s)
	_, counts := streamEvents(t, nc, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, 21))
}

// A tiny queue overflows into the spool instead of blocking; nothing is
// lost or duplicated.
func TestQueueFullSpillsToSpool(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	cfg := baseConfig(t, t.TempDir())
	cfg.QueueSize, cfg.MaxPending = 1, 1
	s := newSink(t, cfg, nc)
	const total = 2000
	for i := range total {
		if err := s.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitDrained(t, s)
	st := s.Stats()
	if st.Spooled == 0 {
		t.Logf("note: the queue never overflowed (%+v)", st)
	}
	_, counts := streamEvents(t, nc, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, total))
}

// NATS unreachable when the PDP starts: New succeeds, events are spooled,
// the stream is created when NATS comes.
func TestStartWithoutNATS(t *testing.T) {
	n := natstest.Start(t)
	n.Stop()
	nc := connect(t, n.URL())
	s := newSink(t, baseConfig(t, t.TempDir()), nc)
	for i := range 10 {
		if err := s.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	n.Restart()
	waitDrained(t, s)
	_, counts := streamEvents(t, nc, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, 10))
}

func TestOversizedEventIsTruncated(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	s := newSink(t, baseConfig(t, t.TempDir()), nc)
	ev := testEvent(1)
	ev.Arguments = map[string]any{"blob": strings.Repeat("x", maxEventBytes+10_000)}
	if err := s.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, s)
	evs, _ := streamEvents(t, nc, DefaultStream)
	if len(evs) != 1 || !evs[0].Truncated || evs[0].Arguments != nil || evs[0].ID != ev.ID {
		t.Fatalf("got %+v, want one truncated event without arguments", evs)
	}
	if ev.Arguments == nil {
		t.Fatal("Record modified the caller's event")
	}
}

func TestStreamSettings(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	cfg := baseConfig(t, t.TempDir())
	cfg.Stream, cfg.SubjectPrefix = "AUDIT_X", "corp.pdp.audit"
	cfg.MaxAge, cfg.DuplicateWindow = 24*time.Hour, time.Minute
	newSink(t, cfg, nc)
	js, _ := jetstream.New(nc)
	st, err := js.Stream(testCtx(t), "AUDIT_X")
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	if c.Storage != jetstream.FileStorage || c.Replicas != 1 || c.MaxAge != 24*time.Hour ||
		c.Duplicates != time.Minute || c.MaxBytes > 0 || c.Discard != jetstream.DiscardOld ||
		!reflect.DeepEqual(c.Subjects, []string{"corp.pdp.audit.>"}) {
		t.Fatalf("stream config %+v", c)
	}
	// Updating at the next start (new max age) works.
	cfg.MaxAge = 48 * time.Hour
	cfg.Registerer = nil
	s2 := newSink(t, cfg, nc)
	_ = s2
	st, _ = js.Stream(testCtx(t), "AUDIT_X")
	if st.CachedInfo().Config.MaxAge != 48*time.Hour {
		t.Fatal("stream not updated")
	}
	// A configuration the server refuses fails New.
	cfg.Replicas = 3
	if _, err := New(testCtx(t), cfg, nc); err == nil {
		t.Fatal("R3 on a single node: want an error")
	}
}

func TestMetrics(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	reg := prometheus.NewRegistry()
	cfg := baseConfig(t, t.TempDir())
	cfg.Registerer = reg
	s := newSink(t, cfg, nc)
	for i := range 10 {
		if err := s.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitDrained(t, s)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.Metric{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0]
	}
	if v := got["mcp_pdp_audit_events_published_total"].GetCounter().GetValue(); v != 10 {
		t.Fatalf("published_total = %v, want 10", v)
	}
	if v := got["mcp_pdp_audit_publish_latency_seconds"].GetHistogram().GetSampleCount(); v != 10 {
		t.Fatalf("latency samples = %v, want 10", v)
	}
	if v := got["mcp_pdp_audit_batches_total"].GetCounter().GetValue(); v < 1 || v > 10 {
		t.Fatalf("batches_total = %v, want 1 to 10 (the stream allows batches)", v)
	}
	for _, name := range []string{"events_spooled_total", "events_replayed_total", "events_failed_total", "events_pending", "spool_pending_events", "healthy", "spooling"} {
		if got["mcp_pdp_audit_"+name] == nil {
			t.Errorf("metric mcp_pdp_audit_%s missing", name)
		}
	}
	if v := got["mcp_pdp_audit_healthy"].GetGauge().GetValue(); v != 1 {
		t.Fatalf("healthy = %v", v)
	}
	// A second sink on the same registry is refused; after Close it is fine.
	if _, err := New(testCtx(t), cfg, nc); err == nil {
		t.Fatal("second sink on the same registry: want an error")
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	newSink(t, cfg, nc)
}

func TestRecordAfterClose(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	s := newSink(t, baseConfig(t, t.TempDir()), nc)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Record(context.Background(), testEvent(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after Close = %v, want ErrClosed", err)
	}
	if err := s.Healthy(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Healthy after Close = %v, want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantKey string
	}{
		{"defaults", func(*Config) {}, ""},
		{"bad mode", func(c *Config) { c.Mode = "fast" }, "audit.mode"},
		{"bad stream", func(c *Config) { c.Stream = "MCP.AUDIT" }, "audit.stream"},
		{"wildcard prefix", func(c *Config) { c.SubjectPrefix = "mcp.*" }, "audit.subject_prefix"},
		{"empty prefix token", func(c *Config) { c.SubjectPrefix = "mcp..audit" }, "audit.subject_prefix"},
		{"replicas", func(c *Config) { c.Replicas = 7 }, "audit.replicas"},
		{"dup window > max age", func(c *Config) { c.MaxAge = time.Minute; c.DuplicateWindow = time.Hour }, "audit.duplicate_window"},
		{"max age", func(c *Config) { c.MaxAge = -time.Second }, "audit.max_age"},
		{"queue size", func(c *Config) { c.QueueSize = -1 }, "audit.queue_size"},
		{"no spool dir", func(c *Config) { c.SpoolDir = "" }, "audit.spool_dir"},
		{"max pending", func(c *Config) { c.MaxPending = -1 }, "Config.MaxPending"},
		{"ack timeout", func(c *Config) { c.AckTimeout = -time.Second }, "Config.AckTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{SpoolDir: "/tmp/x"}
			tt.mutate(&c)
			c.applyDefaults()
			err := c.Validate()
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantKey) {
				t.Fatalf("error %v, want one naming %s", err, tt.wantKey)
			}
		})
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// Someone deletes the stream while the PDP runs: events are spooled and
// the stream is recreated.
func TestStreamDeletedIsRecreated(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	s := newSink(t, baseConfig(t, t.TempDir()), nc)
	for i := range 10 {
		if err := s.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitDrained(t, s)
	js, _ := jetstream.New(nc)
	if err := js.DeleteStream(testCtx(t), DefaultStream); err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 20; i++ {
		if err := s.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitDrained(t, s)
	_, counts := streamEvents(t, nc, DefaultStream)
	assertExactlyOnce(t, counts, ids(10, 20))
}
