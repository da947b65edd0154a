package auditsink

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// chainedMessages encodes n events (and their checkpoints, every 1000) as
// a sink would, without NATS.
func chainedMessages(b *testing.B, n int, key ed25519.PrivateKey) [][]byte {
	b.Helper()
	c := &chain{id: NewID(), started: true, every: DefaultCheckpointEvery, key: key, keyID: KeyID(key.Public().(ed25519.PublicKey)), pdp: "bench"}
	out := make([][]byte, 0, n+n/DefaultCheckpointEvery+1)
	now := time.Now()
	for i := range n {
		ev := testEvent(i)
		ev.ID = fmt.Sprintf("bench-%08d", i)
		data, err := marshalEvent(ev)
		if err != nil {
			b.Fatal(err)
		}
		it := &item{data: data}
		cps := c.link(it, now)
		out = append(out, it.data)
		for _, cp := range cps {
			out = append(out, cp.data)
		}
	}
	return out
}

// BenchmarkVerify: the Verifier's cost per message (parse, hash, sort,
// links, signatures), over one million events of one chain (the issue's
// target: pdp audit verify over 1,000,000 events within 30 s). Reading the
// source is measured by BenchmarkReadRaw.
func BenchmarkVerify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msgs := chainedMessages(b, 1_000_000, priv)
	b.ResetTimer()
	for range b.N {
		v := NewVerifier(VerifyOptions{Keys: []ed25519.PublicKey{pub}})
		for _, m := range msgs {
			v.Add(m, "bench")
		}
		if r := v.Report(); !r.OK() || r.Chains[0].Events != 1_000_000 {
			b.Fatalf("%s", FormatReport(r))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/1M-events")
}

// BenchmarkReadRaw: reading every message of a stream (embedded server in
// the same process) as `pdp audit verify` does; ns/op is per message.
func BenchmarkReadRaw(b *testing.B) {
	n := natstest.Start(b)
	nc := connect(b, n.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, StreamConfig(Config{})); err != nil {
		b.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	msgs := chainedMessages(b, b.N, priv)
	for i, m := range msgs {
		if _, err := js.PublishAsync("mcp.audit.demo.tools/call.allow", m); err != nil {
			b.Fatal(err)
		}
		if i%10000 == 0 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	b.ResetTimer()
	got := 0
	if err := ReadRaw(ctx, js, DefaultStream, func(_ string, _ uint64, data []byte) error {
		if len(data) > 0 && !bytes.HasPrefix(data, []byte("{")) {
			b.Fatal("not JSON")
		}
		got++
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	if got != len(msgs) {
		b.Fatalf("read %d of %d", got, len(msgs))
	}
}
