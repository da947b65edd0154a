package auditsink

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestParseAck(t *testing.T) {
	noResp := &nats.Msg{Header: nats.Header{"Status": []string{"503"}}}
	for _, tc := range []struct {
		name      string
		msg       *nats.Msg
		duplicate bool
		err       error // errors.Is target, or nil
		apiCode   jetstream.ErrorCode
	}{
		{name: "stored", msg: &nats.Msg{Data: []byte(`{"stream":"AUDIT","seq":7}`)}},
		{name: "duplicate", msg: &nats.Msg{Data: []byte(`{"stream":"AUDIT","seq":7,"duplicate":true}`)}, duplicate: true},
		{name: "with domain", msg: &nats.Msg{Data: []byte(` {"stream":"AUDIT","domain":"hub","seq":1}`)}},
		{name: "no responders", msg: noResp, err: nats.ErrNoResponders},
		{name: "api error", msg: &nats.Msg{Data: []byte(`{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"},"stream":"AUDIT","seq":0}`)},
			apiCode: jetstream.JSErrCodeStreamMessageExceedsMaximum},
		{name: "not json", msg: &nats.Msg{Data: []byte(`+OK`)}, err: jetstream.ErrInvalidJSAck},
		{name: "empty", msg: &nats.Msg{}, err: jetstream.ErrInvalidJSAck},
		{name: "object without stream", msg: &nats.Msg{Data: []byte(`{}`)}, err: jetstream.ErrInvalidJSAck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dup, err := parseAck(tc.msg)
			if dup != tc.duplicate {
				t.Errorf("duplicate = %v, want %v", dup, tc.duplicate)
			}
			switch {
			case tc.apiCode != 0:
				var apiErr *jetstream.APIError
				if !errors.As(err, &apiErr) || apiErr.ErrorCode != tc.apiCode {
					t.Fatalf("err = %v, want API error %d", err, tc.apiCode)
				}
				if !isPermanent(err) {
					t.Fatalf("%v: want permanent", err)
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			case err != nil:
				t.Fatalf("err = %v, want none", err)
			}
		})
	}
}

// An event whose ack never comes (something answers nothing on the
// subject) is spooled after the ack timeout, not kept in memory for ever;
// once the stream takes the subjects, the spool is replayed and every
// event is in the stream once.
func TestAckTimeoutSpoolsThenReplays(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	// The stream exists but does not take the sink's subjects yet; a plain
	// subscriber does, so publishes have interest and get no reply at all.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AUDIT_T", Subjects: []string{"elsewhere.>"}}); err != nil {
		t.Fatal(err)
	}
	silent, err := nc.Subscribe(DefaultSubjectPrefix+".>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t, t.TempDir())
	cfg.Stream, cfg.SkipStreamSetup = "AUDIT_T", true
	cfg.AckTimeout = 300 * time.Millisecond
	s := newSink(t, cfg, nc)
	const total = 50
	for i := range total {
		if err := s.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, "every event to time out into the spool", func() bool {
		st := s.Stats()
		return st.Spooled == total && st.InFlight == 0 && st.Queued == 0
	})
	if st := s.Stats(); st.Published != 0 || st.Failed != 0 || st.SpoolPending != total {
		t.Fatalf("after the timeouts: %+v", st)
	}
	// The stream now takes the subjects: the replay delivers everything.
	if err := silent.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: "AUDIT_T", Subjects: []string{DefaultSubjectPrefix + ".>"}}); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, s)
	_, counts := streamEvents(t, nc, "AUDIT_T")
	assertExactlyOnce(t, counts, ids(0, total))
}
