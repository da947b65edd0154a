package spool

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzSegment: a segment of n valid records followed by arbitrary bytes (a
// torn write, garbage, a zeroed tail) never panics the reader, and the n
// valid records always come back first, in order.
func FuzzSegment(f *testing.F) {
	f.Add(uint8(3), []byte{})
	f.Add(uint8(2), []byte{0x10, 0, 0})
	f.Add(uint8(1), make([]byte, 64))
	f.Add(uint8(0), []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5})
	frame, _ := encodeFrame("mcp.audit.x.m.allow", "id-x", []byte(`{"id":"id-x"}`))
	f.Add(uint8(4), frame[:len(frame)-2])
	f.Fuzz(func(t *testing.T, n uint8, tail []byte) {
		valid := int(n % 8)
		dir := t.TempDir()
		data := []byte(segMagic)
		for i := range valid {
			fr, err := encodeFrame("mcp.audit.k.m.allow", fmt.Sprintf("id-%d", i), []byte(`{"x":1}`))
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, fr...)
		}
		data = append(data, tail...)
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		sp, err := Open(dir, Options{SyncEvery: 1, SyncInterval: time.Second, ProbeInterval: time.Second, SegmentBytes: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close(false)
		var got []string
		for range 1000 {
			b, err := sp.ReadBatch(4, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Records) == 0 && b.End == sp.Cursor() {
				break
			}
			for _, r := range b.Records {
				got = append(got, r.ID)
			}
			if err := sp.Commit(b.End, len(b.Records)); err != nil {
				t.Fatal(err)
			}
		}
		if len(got) < valid {
			t.Fatalf("recovered %d records, want at least the %d valid ones", len(got), valid)
		}
		for i := range valid {
			if got[i] != fmt.Sprintf("id-%d", i) {
				t.Fatalf("record %d = %s", i, got[i])
			}
		}
		if st := sp.Stats(); st.Segments != 0 {
			t.Fatalf("segment not consumed: %+v", st)
		}
	})
}

// readAll reads and commits every record from the cursor on.
func readAll(t *testing.T, sp *Spool) []Record {
	t.Helper()
	var out []Record
	for range 1000 {
		b, err := sp.ReadBatch(3, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Records) == 0 && b.End == sp.Cursor() {
			return out
		}
		out = append(out, b.Records...)
		if err := sp.Commit(b.End, len(b.Records)); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("ReadBatch does not make progress")
	return nil
}

func appendN(t *testing.T, sp *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := sp.Append("mcp.audit.k.m.allow", fmt.Sprintf("id-%d", i), []byte(fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
}

// Records survive a restart, come back in order across segments, and a
// committed prefix is not replayed again.
func TestRecordsSurviveRestartInOrder(t *testing.T) {
	dir := t.TempDir()
	opt := Options{SegmentBytes: 256} // a few records per segment
	sp, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, sp, 0, 10)
	if st := sp.Stats(); st.Pending != 10 || st.Segments < 2 || st.Bytes == 0 {
		t.Fatalf("stats after 10 appends: %+v", st)
	}
	// Replay the first 4, then stop gracefully.
	b, err := sp.ReadBatch(4, 1<<20)
	if err != nil || len(b.Records) != 4 {
		t.Fatalf("ReadBatch: %d records, %v", len(b.Records), err)
	}
	if err := sp.Commit(b.End, len(b.Records)); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(true); err != nil {
		t.Fatal(err)
	}
	if err := sp.Append("s", "late", nil); err == nil {
		t.Fatal("Append after Close: want an error")
	}

	sp, err = Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close(false)
	if st := sp.Stats(); st.Pending != 6 {
		t.Fatalf("pending after restart = %d, want 6", st.Pending)
	}
	appendN(t, sp, 10, 12) // a new run appends to a new segment, after the old ones
	var got []string
	for _, r := range readAll(t, sp) {
		if r.Subject != "mcp.audit.k.m.allow" || string(r.Data) != fmt.Sprintf(`{"i":%s}`, r.ID[len("id-"):]) {
			t.Fatalf("record %+v", r)
		}
		got = append(got, r.ID)
	}
	var want []string
	for i := 4; i < 12; i++ {
		want = append(want, fmt.Sprintf("id-%d", i))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
	drained := false
	if !sp.Drained(func() { drained = true }) || !drained {
		t.Fatal("Drained = false after everything was committed")
	}
	if st := sp.Stats(); st.Pending != 0 || st.Segments != 0 || st.Corrupt != 0 {
		t.Fatalf("stats after the replay: %+v", st)
	}
	if err := sp.Healthy(); err != nil {
		t.Fatalf("Healthy = %v", err)
	}
}

// A subject or id longer than the frame format allows is refused, not
// truncated.
func TestAppendRefusesOversizedFields(t *testing.T) {
	sp, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close(false)
	long := string(make([]byte, 1<<16))
	for _, tc := range []struct{ subject, id string }{{long, "id"}, {"s", long}} {
		if err := sp.Append(tc.subject, tc.id, nil); err == nil {
			t.Fatalf("Append with a %d-byte subject and %d-byte id: want an error", len(tc.subject), len(tc.id))
		}
	}
	if st := sp.Stats(); st.Pending != 0 {
		t.Fatalf("pending = %d after refused appends", st.Pending)
	}
}
