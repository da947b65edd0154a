package auditsink

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/nats-io/nats.go/jetstream"
)

// A 3-node JetStream cluster on loopback with an R3 stream: the stream
// leader is killed during load, and nothing is lost or duplicated.
func TestClusterR3NodeKilledDuringLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	ctx := testCtx(t)
	cl, err := natsembed.StartCluster(ctx, natsembed.ClusterOptions{BaseDir: filepath.Join(t.TempDir(), "cluster"), Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Shutdown)

	nc := connect(t, cl.ClientURLs())
	cfg := baseConfig(t, t.TempDir())
	cfg.Replicas = 3
	var s *Sink
	// Right after start-up the meta group may still be settling; New
	// degrades to spooling in that case, so simply wait for the stream.
	s = newSink(t, cfg, nc)
	testkit.WaitFor(t, "the R3 stream", func() bool { return s.streamReady.Load() })

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	leader := func() string {
		st, err := js.Stream(ctx, DefaultStream)
		if err != nil || st.CachedInfo().Cluster == nil {
			return ""
		}
		return st.CachedInfo().Cluster.Leader
	}
	var name string
	testkit.WaitFor(t, "a stream leader", func() bool { name = leader(); return name != "" })
	if st, _ := js.Stream(ctx, DefaultStream); st.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("stream replicas = %d, want 3", st.CachedInfo().Config.Replicas)
	}

	const total = 3000
	var recorded atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			if err := s.Record(context.Background(), testEvent(i)); err != nil {
				t.Errorf("Record %d: %v", i, err)
				return
			}
			recorded.Add(1)
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // spread the load over the kill
			}
		}
	}()
	testkit.WaitFor(t, "a third of the load", func() bool { return recorded.Load() >= total/3 })
	killed := cl.Index(name)
	if killed < 0 {
		t.Fatalf("leader %q is not a cluster member", name)
	}
	cl.Stop(killed)
	t.Logf("stopped stream leader %s after %d events", name, recorded.Load())
	<-done
	waitDrained(t, s)
	testkit.WaitFor(t, "a new stream leader", func() bool { l := leader(); return l != "" && l != name })

	_, counts := streamEvents(t, nc, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, total))
	st := s.Stats()
	if st.Failed != 0 {
		t.Fatalf("stats %+v: lost events", st)
	}
	t.Logf("stats after the kill: %+v", st)
}
