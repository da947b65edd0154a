package pep

import (
	"encoding/json"
	"testing"
)

// TestPrivateCache: a filtered list result is a JSON object that says
// cacheScope "private" once, whatever it said before, with its other
// members intact.
func TestPrivateCache(t *testing.T) {
	for _, in := range []string{
		`{"tools":[{"name":"a"}],"nextCursor":"c"}`,
		`{}`,
		` { } `,
		`{"tools":[],"cacheScope":"public"}`,
		`{"tools":[{"name":"a","description":"\"cacheScope\" in a string"}]}`,
	} {
		out, err := privateCache(json.RawMessage(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var got, want map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s → invalid JSON %s: %v", in, out, err)
		}
		_ = json.Unmarshal([]byte(in), &want)
		want["cacheScope"] = "private"
		if g, _ := json.Marshal(got); string(g) != func() string { w, _ := json.Marshal(want); return string(w) }() {
			t.Errorf("%s → %s, want %v", in, out, want)
		}
	}
	for _, bad := range []string{`[]`, `"x"`, ``} {
		if _, err := privateCache(json.RawMessage(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
