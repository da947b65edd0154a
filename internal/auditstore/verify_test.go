package auditstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// chainEvents is how many events the PDP of chainStream records: with a
// checkpoint every 10, checkpoints cover seqs 10, 20, 30 and (the final
// one, at Close) 35.
const chainEvents = 35

// chainStream records chainEvents events through a real auditsink.Sink
// (the chain and the signed checkpoints as a PDP writes them) and returns
// the checkpoint key and the number of messages in the stream.
func chainStream(t *testing.T, natsURL string, js jetstream.JetStream) (ed25519.PublicKey, uint64) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	sink, err := auditsink.New(ctx, auditsink.Config{Mode: auditsink.ModeSync, SpoolDir: t.TempDir(), PDP: "pdp-1",
		SigningKey: priv, CheckpointEvery: 10}, nc)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := []string{auditsink.OutcomeAllow, auditsink.OutcomeDeny, auditsink.OutcomeChallenge, auditsink.OutcomeDeny}
	for i := range chainEvents {
		ev := &auditsink.Event{ID: fmt.Sprintf("ev-%03d", i+1), Time: time.Date(2026, 3, 1, 10, 0, i, 0, time.UTC),
			Resource: "https://mcp.example.com/mcp", ResourceKey: "demo", Method: "tools/call",
			Target: fmt.Sprintf("tool_%d", i%3), Outcome: outcomes[i%4], HTTPStatus: 200, Subject: fmt.Sprintf("user-%d", i%5),
			ClientID: "client-1", LatencyMicros: int64(10 + i)}
		if err := sink.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	str, err := js.Stream(ctx, auditsink.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return pub, info.State.Msgs
}

// ingestAll runs a store (its own consumer) until it holds the stream's
// msgs messages, stops it and returns it open.
func ingestAll(t *testing.T, js jetstream.JetStream, db, consumer string, msgs uint64) *Store {
	t.Helper()
	st, err := Open(context.Background(), Config{DB: db, Consumer: consumer, Batch: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = st.Run(ctx, js) }()
	testkit.WaitFor(t, fmt.Sprintf("%d messages stored", msgs), func() bool { s := st.Stats(); return s.Rows+s.Checkpoints == msgs })
	cancel()
	wg.Wait()
	return st
}

// tamper changes the stored audit as someone with write access to the
// database could.
type tamper struct {
	t  *testing.T
	st *Store
}

func (tp tamper) exec(q string, args ...any) {
	tp.t.Helper()
	r, err := tp.st.db.ExecContext(context.Background(), tp.st.d.rebind(q), args...)
	if err != nil {
		tp.t.Fatalf("%s: %v", q, err)
	}
	if n, _ := r.RowsAffected(); n != 1 {
		tp.t.Fatalf("%s %v: %d rows changed, want 1", q, args, n)
	}
}

// event returns the id and raw bytes of the event of chain seq.
func (tp tamper) event(seq int) (string, []byte) {
	tp.t.Helper()
	var id string
	var raw []byte
	if err := tp.st.db.QueryRowContext(context.Background(), tp.st.d.rebind(`SELECT id, raw FROM audit_events WHERE seq = ?`), seq).Scan(&id, &raw); err != nil {
		tp.t.Fatalf("event seq %d: %v", seq, err)
	}
	return id, raw
}

// rewrite replaces old by new in the raw bytes of the event of seq.
func (tp tamper) rewrite(seq int, old, new string) {
	tp.t.Helper()
	id, raw := tp.event(seq)
	if !bytes.Contains(raw, []byte(old)) {
		tp.t.Fatalf("event seq %d has no %s: %s", seq, old, raw)
	}
	tp.exec(`UPDATE audit_events SET raw = ? WHERE id = ?`, bytes.Replace(raw, []byte(old), []byte(new), 1), id)
}

// Verify over the store: a chain stored as a PDP wrote it verifies clean
// (every event linked, every checkpoint signed and matching); each way of
// tampering with the database shows as its finding, from the chain
// verifier (the raw bytes) or from Store.Verify itself (a column that no
// longer says what the bytes say).
func TestVerifyStore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(tamper)
		// the finding wanted: its kind, its seq, and whether Store.Verify
		// (not the chain verifier) reports it, naming the event of seq.
		kind  string
		seq   uint64
		store bool
	}{
		{"delete a row", func(tp tamper) { tp.exec(`DELETE FROM audit_events WHERE seq = ?`, 12) }, auditsink.FindingGap, 12, false},
		{"delete the first row", func(tp tamper) { tp.exec(`DELETE FROM audit_events WHERE seq = ?`, 1) }, auditsink.FindingGap, 1, false},
		{"delete the tail", func(tp tamper) {
			tp.exec(`DELETE FROM audit_events WHERE seq = ?`, 35)
			tp.exec(`DELETE FROM audit_events WHERE seq = ?`, 34)
		}, auditsink.FindingGap, 34, false},
		{"update raw", func(tp tamper) { tp.rewrite(7, `"outcome":"challenge"`, `"outcome":"allow"`) }, auditsink.FindingModified, 8, false},
		{"update raw, a checkpointed event", func(tp tamper) { tp.rewrite(10, `"sub":"user-4"`, `"sub":"someone"`) }, auditsink.FindingModified, 10, false},
		{"update raw, and its column", func(tp tamper) { tp.rewrite(7, `"outcome":"challenge"`, `"outcome":"allow"`) }, auditsink.FindingModified, 7, true},
		{"update a column only", func(tp tamper) { tp.exec(`UPDATE audit_events SET outcome = 'allow' WHERE seq = ?`, 2) }, auditsink.FindingModified, 2, true},
		{"update a column only, the subject", func(tp tamper) { tp.exec(`UPDATE audit_events SET sub = 'someone' WHERE seq = ?`, 20) }, auditsink.FindingModified, 20, true},
		{"reorder two events", func(tp tamper) {
			tp.rewrite(5, `"seq":5,`, `"seq":6,`)
			tp.rewrite(6, `"seq":6,`, `"seq":5,`)
		}, auditsink.FindingReorder, 6, false},
		{"insert a forged event", func(tp tamper) {
			id, raw := tp.event(3)
			forged := bytes.Replace(raw, []byte(`"id":"`+id+`"`), []byte(`"id":"forged-1"`), 1)
			tp.exec(`INSERT INTO audit_events (id, time_us, time, outcome, chain, seq, prev, raw)
 SELECT 'forged-1', time_us, time, outcome, chain, seq, prev, ? FROM audit_events WHERE id = ?`, forged, id)
		}, auditsink.FindingDuplicate, 3, false},
		{"forge a checkpoint", func(tp tamper) {
			var id string
			var raw []byte
			if err := tp.st.db.QueryRowContext(context.Background(), `SELECT id, raw FROM audit_checkpoints WHERE seq = 10`).Scan(&id, &raw); err != nil {
				tp.t.Fatal(err)
			}
			tp.exec(`UPDATE audit_checkpoints SET raw = ? WHERE id = ?`, bytes.Replace(raw, []byte(`"seq":10`), []byte(`"seq":11`), 1), id)
		}, auditsink.FindingBadSignature, 11, false},
	}
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			newDB := be.start(t)
			srv, js := setup(t)
			key, msgs := chainStream(t, srv.URL(), js)
			if msgs < chainEvents+4 {
				t.Fatalf("%d messages in the stream, want %d events and checkpoints at 10, 20, 30, 35", msgs, chainEvents)
			}
			for i, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					st := ingestAll(t, js, newDB(t), fmt.Sprintf("verify-%d", i), msgs)
					v := auditsink.NewVerifier(auditsink.VerifyOptions{Keys: []ed25519.PublicKey{key}})
					findings, err := st.Verify(context.Background(), v)
					if err != nil {
						t.Fatal(err)
					}
					rep := v.Report()
					if len(findings) > 0 || !rep.OK() {
						t.Fatalf("before tampering: store findings %v\n%s", findings, auditsink.FormatReport(rep))
					}
					if len(rep.Chains) != 1 || rep.Chains[0].Events != chainEvents || rep.Chains[0].Covered != chainEvents ||
						!rep.Chains[0].Final || uint64(rep.Chains[0].Checkpoints) != msgs-chainEvents || !rep.SignaturesChecked {
						t.Fatalf("before tampering: the chain is not all there:\n%s", auditsink.FormatReport(rep))
					}
					tp := tamper{t: t, st: st}
					wantID, _ := tp.event(int(tc.seq))
					tc.tamper(tp)

					v = auditsink.NewVerifier(auditsink.VerifyOptions{Keys: []ed25519.PublicKey{key}})
					findings, err = st.Verify(context.Background(), v)
					if err != nil {
						t.Fatal(err)
					}
					rep = v.Report()
					got := rep.Findings
					if tc.store {
						got = findings
					}
					found := false
					for _, f := range got {
						if f.Kind == tc.kind && f.Seq == tc.seq && (!tc.store || slices.Contains(f.IDs, wantID)) {
							found = true
						}
					}
					if !found {
						t.Fatalf("want a %s finding at seq %d (from Store.Verify: %v); store findings %+v\n%s",
							tc.kind, tc.seq, tc.store, findings, auditsink.FormatReport(rep))
					}
					if strings.HasPrefix(tc.name, "update a column only") && !rep.OK() {
						t.Fatalf("a column changed, the bytes not: the chain verifier should find nothing:\n%s", auditsink.FormatReport(rep))
					}
				})
			}
		})
	}
}
