package auditsink

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzSpoolSegment: a segment of n valid records followed by arbitrary
// bytes (a torn write, garbage, a zeroed tail) never panics the reader,
// and the n valid records always come back first, in order.
func FuzzSpoolSegment(f *testing.F) {
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
		sp, err := openSpool(dir, spoolOptions{syncEvery: 1, syncInterval: time.Second, probeInterval: time.Second, segmentBytes: 1 << 20, log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.close(false)
		var got []string
		for range 1000 {
			b, err := sp.readBatch(4, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.recs) == 0 && b.end == sp.cursorPos() {
				break
			}
			for _, r := range b.recs {
				got = append(got, r.id)
			}
			if err := sp.commit(b.end, len(b.recs)); err != nil {
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
		if st := sp.stats(); st.segments != 0 {
			t.Fatalf("segment not consumed: %+v", st)
		}
	})
}
