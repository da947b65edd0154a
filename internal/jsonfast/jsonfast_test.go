package jsonfast

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestStringEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		end  int
		okay bool
	}{
		{`"abc"`, 5, true},
		{`"a\"b"x`, 6, true},
		{`"a\\"x`, 5, true},   // an even run: the quote closes
		{`"a\\\"b"`, 8, true}, // an odd run: escaped
		{`"\\\\"`, 6, true},   // two escaped backslashes
		{`"unterminated`, 0, false},
		{`"a\"`, 0, false},
	} {
		end, ok := StringEnd([]byte(tc.in), 0)
		if end != tc.end || ok != tc.okay {
			t.Errorf("StringEnd(%s) = %d, %v; want %d, %v", tc.in, end, ok, tc.end, tc.okay)
		}
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`"plain"`, "plain", true},
		{`"t\u006fols"`, "tools", true},
		{`"\ud800"`, "\ufffd", true}, // as encoding/json decodes a lone surrogate
		{`"é"`, "é", true},
		{`1`, "", false},
		{`null`, "", false},
	} {
		got, ok := String([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("String(%s) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// On valid JSON, ValueEnd ends where the value ends, Members gives what
// decoding into a map of raw values gives (the last of repeated keys
// wins), and ElementsAt what decoding into a slice of raw values gives.
func FuzzWalk(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":[1,2,{"c":"}"}],"a":"x\"y"}`, `[1,"a",{"b":null},[]]`, `"s\\"`, `  {}  `, `[]`,
		`{"k\u0041":true,"kA":false}`, `123.5e-3`, `{"a":{"b":{"c":[[[]]]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		i := SkipSpace(b, 0)
		end, ok := ValueEnd(b, i)
		if !ok {
			return // deeper than MaxDepth
		}
		if got := len(bytes.TrimRight(b, " \t\r\n")); end != got {
			t.Fatalf("ValueEnd(%q) = %d, want %d", b, end, got)
		}
		switch b[i] {
		case '{':
			var want map[string]json.RawMessage
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			got := map[string]json.RawMessage{}
			e, ok := Members(b, i, func(k, v []byte) bool {
				s, ok := String(k)
				if !ok {
					t.Fatalf("key %s does not decode", k)
				}
				got[s] = v
				return true
			})
			if !ok || e != end {
				t.Fatalf("Members(%q) = %d, %v; want %d", b, e, ok, end)
			}
			if len(got) != len(want) {
				t.Fatalf("%q: %d members, encoding/json %d", b, len(got), len(want))
			}
			for k, v := range want {
				if !bytes.Equal(got[k], v) {
					t.Fatalf("%q: member %q = %s, encoding/json %s", b, k, got[k], v)
				}
			}
		case '[':
			var want []json.RawMessage
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			var got []json.RawMessage
			e, ok := ElementsAt(b, i, func(start int) (int, bool) {
				end, ok := ValueEnd(b, start)
				if ok {
					got = append(got, b[start:end])
				}
				return end, ok
			})
			if !ok || e != end || len(got) != len(want) {
				t.Fatalf("ElementsAt(%q) = %d, %v, %d elements; want %d, %d", b, e, ok, len(got), end, len(want))
			}
			for j := range want {
				if !bytes.Equal(got[j], want[j]) {
					t.Fatalf("%q: element %d = %s, encoding/json %s", b, j, got[j], want[j])
				}
			}
		}
	})
}
