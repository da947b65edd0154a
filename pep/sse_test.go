package pep

import (
	"bytes"
	"strings"
	"testing"
)

// TestSplitter: events come out the same however the stream is cut into
// writes, with LF and CRLF endings, blank lines between events, and an
// event over the limit refused.
func TestSplitter(t *testing.T) {
	stream := "\n\r\nid: 1\nevent: message\ndata: {\"a\":1}\n\n" +
		"data: line one\r\ndata: line two\r\n\r\n" +
		": a comment\n\n" +
		"data: " + strings.Repeat("x", 5000) + "\n\n"
	want := [][]string{
		{"id: 1", "event: message", `data: {"a":1}`},
		{"data: line one", "data: line two"},
		{": a comment"},
		{"data: " + strings.Repeat("x", 5000)},
	}
	for _, chunk := range []int{1, 2, 3, 7, 64, 4096, len(stream)} {
		s := splitter{limit: 1 << 20}
		var got [][]string
		for i := 0; i < len(stream); i += chunk {
			s.add([]byte(stream[i:min(i+chunk, len(stream))]))
			for {
				ev, err := s.next()
				if err != nil {
					t.Fatal(err)
				}
				if ev == nil {
					break
				}
				var lines []string
				for _, l := range ev.lines {
					lines = append(lines, string(l))
				}
				got = append(got, lines)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("chunks of %d: %d events %q, want %d", chunk, len(got), got, len(want))
		}
		for i := range want {
			if strings.Join(got[i], "|") != strings.Join(want[i], "|") {
				t.Fatalf("chunks of %d: event %d = %q, want %q", chunk, i, got[i], want[i])
			}
		}
	}
	s := splitter{limit: 100}
	s.add([]byte("data: " + strings.Repeat("y", 200) + "\n\n"))
	if _, err := s.next(); err != errEventTooLarge {
		t.Fatalf("an event over the limit: %v, want errEventTooLarge", err)
	}
	// Two data lines join with LF; one is a slice of the event.
	s = splitter{limit: 1 << 10}
	s.add([]byte("data: a\ndata: b\n\n"))
	if ev, _ := s.next(); ev == nil || !bytes.Equal(ev.data, []byte("a\nb")) {
		t.Fatalf("data %q, want a\\nb", ev.data)
	}
}
