package auditsink

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// rawMsg is one stored message as verify reads it.
type rawMsg struct {
	subject string
	seq     uint64
	data    []byte
}

func readRaw(t *testing.T, nc *nats.Conn, stream string) []rawMsg {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var out []rawMsg
	err = ReadRaw(testCtx(t), js, stream, func(subject string, seq uint64, data []byte) error {
		out = append(out, rawMsg{subject, seq, bytes.Clone(data)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func verifyMsgs(msgs []rawMsg, o VerifyOptions) *Report {
	v := NewVerifier(o)
	for _, m := range msgs {
		v.Add(m.data, fmt.Sprintf("stream sequence %d", m.seq))
	}
	return v.Report()
}

func testKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func recordN(t *testing.T, s *Sink, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// The chain across a clean restart, a crash and an interval checkpoint:
// every event linked, every checkpoint signed, verify finds nothing.
func TestChainAcrossRestarts(t *testing.T) {
	n := natstest.Start(t)
	nc := connect(t, n.URL())
	pub, priv := testKey(t)
	spoolDir := filepath.Join(t.TempDir(), "spool")
	cfg := baseConfig(t, spoolDir)
	cfg.SigningKey, cfg.CheckpointEvery = priv, 10

	s1 := newSink(t, cfg, nc)
	recordN(t, s1, 0, 25) // checkpoints at 10, 20
	waitDrained(t, s1)
	if err := s1.Close(context.Background()); err != nil { // final at 25
		t.Fatal(err)
	}
	s2 := newSink(t, cfg, nc) // clean: the same chain goes on
	if s2.chain.id != s1.chain.id || s2.chain.seq != 25 {
		t.Fatalf("after a clean stop: chain %s seq %d, want %s 25", s2.chain.id, s2.chain.seq, s1.chain.id)
	}
	recordN(t, s2, 25, 37) // seq 26-37: a checkpoint at 35 (10 after 25); 36-37 uncovered
	waitDrained(t, s2)
	s2.crash()
	s3 := newSink(t, cfg, nc) // unclean: a new chain, linked by its seq-0 checkpoint
	if s3.chain.id == s1.chain.id || s3.chain.after == nil || s3.chain.after.Chain != s1.chain.id {
		t.Fatalf("after a crash: chain %s after %+v", s3.chain.id, s3.chain.after)
	}
	recordN(t, s3, 37, 44) // seq 1-7 of the new chain
	waitDrained(t, s3)
	if err := s3.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	msgs := readRaw(t, nc, DefaultStream)
	r := verifyMsgs(msgs, VerifyOptions{Keys: []ed25519.PublicKey{pub}})
	if !r.OK() || len(r.Chains) != 2 || !r.SignaturesChecked {
		t.Fatalf("report %+v\n%s", r, FormatReport(r))
	}
	byID := map[string]ChainReport{}
	for _, c := range r.Chains {
		byID[c.Chain] = c
	}
	first, second := byID[s1.chain.id], byID[s3.chain.id]
	if first.Events != 37 || first.LastSeq != 37 || first.Covered != 35 || first.Final {
		t.Fatalf("first chain %+v", first)
	}
	if second.Events != 7 || second.Covered != 7 || !second.Final || second.AfterChain != s1.chain.id {
		t.Fatalf("second chain %+v", second)
	}
	// Without the key: the heads are checked, not the signatures; with
	// another key: every checkpoint is reported.
	if r := verifyMsgs(msgs, VerifyOptions{}); !r.OK() || r.SignaturesChecked {
		t.Fatalf("without keys: %s", FormatReport(r))
	}
	other, _ := testKey(t)
	r = verifyMsgs(msgs, VerifyOptions{Keys: []ed25519.PublicKey{other}})
	if len(r.Findings) == 0 {
		t.Fatal("checkpoints signed by an untrusted key pass")
	}
	for _, f := range r.Findings {
		if f.Kind != FindingBadSignature || !strings.Contains(f.Detail, "not trusted") {
			t.Fatalf("finding %+v", f)
		}
	}
}

// Tampering with a real stream, as someone with delete rights on it would:
// each change is found and named.
func TestVerifyFindsTampering(t *testing.T) {
	pub, priv := testKey(t)
	tests := []struct {
		name string
		// tamper changes the stream; it gets the events by seq (1-based)
		// and the checkpoints.
		tamper func(t *testing.T, st *tamperer)
		kind   string
		seq    uint64
	}{
		{"delete one event", func(t *testing.T, st *tamperer) { st.delete(t, st.events[12]) }, FindingGap, 12},
		{"delete the first event", func(t *testing.T, st *tamperer) { st.delete(t, st.events[1]) }, FindingGap, 1},
		{"delete the tail", func(t *testing.T, st *tamperer) {
			st.delete(t, st.events[29])
			st.delete(t, st.events[30])
		}, FindingGap, 29},
		{"modify an outcome", func(t *testing.T, st *tamperer) {
			st.replace(t, st.events[6], bytes.Replace(st.events[6].data, []byte(`"outcome":"deny"`), []byte(`"outcome":"allow"`), 1))
		}, FindingModified, 7},
		{"modify a checkpointed event", func(t *testing.T, st *tamperer) {
			st.replace(t, st.events[10], bytes.Replace(st.events[10].data, []byte(`"sub":"user-4"`), []byte(`"sub":"someone"`), 1))
		}, FindingModified, 10},
		{"reorder two events", func(t *testing.T, st *tamperer) {
			a, b := st.events[5], st.events[6]
			st.replace(t, a, bytes.Replace(a.data, []byte(`"seq":5,`), []byte(`"seq":6,`), 1))
			st.replace(t, b, bytes.Replace(b.data, []byte(`"seq":6,`), []byte(`"seq":5,`), 1))
		}, FindingReorder, 6},
		{"a duplicate seq", func(t *testing.T, st *tamperer) {
			st.publish(t, st.events[3].subject, bytes.Replace(st.events[3].data, []byte(`"id":"dec-000002"`), []byte(`"id":"forged-1"`), 1))
		}, FindingDuplicate, 3},
		{"forge a checkpoint", func(t *testing.T, st *tamperer) {
			cp := st.checkpoints[0]
			st.replace(t, cp, bytes.Replace(cp.data, []byte(`"seq":10`), []byte(`"seq":11`), 1))
		}, FindingBadSignature, 11},
		{"an unsigned checkpoint", func(t *testing.T, st *tamperer) {
			cp := st.checkpoints[0]
			signed, _, _ := SplitCheckpoint(cp.data)
			st.replace(t, cp, append(bytes.Clone(signed), '}'))
		}, FindingBadSignature, 10},
		{"a message that is no event", func(t *testing.T, st *tamperer) {
			st.publish(t, "mcp.audit.demo.tools/call.allow", []byte(`{"fake":`))
		}, FindingMalformed, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := natstest.Start(t)
			nc := connect(t, n.URL())
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			// A stream without deny-delete: the attacker's.
			scfg := StreamConfig(Config{})
			scfg.DenyDelete, scfg.DenyPurge = false, false
			str, err := js.CreateStream(testCtx(t), scfg)
			if err != nil {
				t.Fatal(err)
			}
			cfg := baseConfig(t, t.TempDir())
			cfg.SigningKey, cfg.CheckpointEvery, cfg.SkipStreamSetup = priv, 10, true
			s := newSink(t, cfg, nc)
			recordN(t, s, 0, 30) // checkpoints at 10, 20, 30
			waitDrained(t, s)
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			msgs := readRaw(t, nc, DefaultStream)
			if r := verifyMsgs(msgs, VerifyOptions{Keys: []ed25519.PublicKey{pub}}); !r.OK() {
				t.Fatalf("before tampering: %s", FormatReport(r))
			}
			st := &tamperer{str: str, js: js, events: map[uint64]rawMsg{}}
			for _, m := range msgs {
				var cm chainMsg
				if err := json.Unmarshal(m.data, &cm); err != nil {
					t.Fatal(err)
				}
				if cm.Schema == CheckpointSchema {
					st.checkpoints = append(st.checkpoints, m)
				} else {
					st.events[cm.Seq] = m
				}
			}
			tc.tamper(t, st)
			r := verifyMsgs(readRaw(t, nc, DefaultStream), VerifyOptions{Keys: []ed25519.PublicKey{pub}})
			found := false
			for _, f := range r.Findings {
				if f.Kind == tc.kind && f.Seq == tc.seq {
					found = true
				}
			}
			if !found {
				t.Fatalf("want a %s finding at seq %d:\n%s", tc.kind, tc.seq, FormatReport(r))
			}
			t.Logf("%s", FormatReport(r))
		})
	}
}

type tamperer struct {
	str         jetstream.Stream
	js          jetstream.JetStream
	events      map[uint64]rawMsg // by chain seq
	checkpoints []rawMsg
}

func (st *tamperer) delete(t *testing.T, m rawMsg) {
	t.Helper()
	if err := st.str.DeleteMsg(testCtx(t), m.seq); err != nil {
		t.Fatal(err)
	}
}

func (st *tamperer) publish(t *testing.T, subject string, data []byte) {
	t.Helper()
	if _, err := st.js.Publish(testCtx(t), subject, data); err != nil {
		t.Fatal(err)
	}
}

// replace deletes m and publishes data in its place (at the stream's end).
func (st *tamperer) replace(t *testing.T, m rawMsg, data []byte) {
	t.Helper()
	if bytes.Equal(m.data, data) {
		t.Fatal("the tampering changed nothing")
	}
	st.delete(t, m)
	st.publish(t, m.subject, data)
}
