package core

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The fast path gives what encoding/json gives, or stands aside.
func FuzzParseMessageFast(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{"gtin":"1"}}}`,
		`{"jsonrpc":"2.0","id":"a","method":"tools/list"}`,
		`{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"ui://x","_meta":{}}}`,
		`{"jsonrpc":"2.0","Method":"tools/call","method":"x"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"a","name":"b"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`,
		`{"jsonrpc":"2.0","id":null,"method":"t\u006fols/call","params":{"name":"\u00e9"}}`,
		`{"jsonrpc":"2.0","method":null}`, `{"jsonrpc":2}`, `{"params":null}`, `{"params":[1]}`,
		`{"\u006dethod":"x"}`, `{"K\u212a":1}`, ` {} `, `[]`, `{"a":1} x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var msg message
		var p callParams
		if !parseMessageFast(raw, false, &msg, &p) {
			return
		}
		var wantMsg message
		if err := json.Unmarshal(raw, &wantMsg); err != nil {
			t.Fatalf("fast path took %q, encoding/json: %v", raw, err)
		}
		if !reflect.DeepEqual(msg, wantMsg) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", raw, msg, wantMsg)
		}
		var wantP callParams
		if len(wantMsg.Params) > 0 {
			if err := json.Unmarshal(wantMsg.Params, &wantP); err != nil {
				t.Fatalf("fast path took the params of %q, encoding/json: %v", raw, err)
			}
		}
		if !reflect.DeepEqual(p, wantP) {
			t.Fatalf("%q: fast params %+v, encoding/json %+v", raw, p, wantP)
		}
	})
}

func TestParseMessageFastShapes(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		fast   bool
		method string
		name   string
	}{
		{`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{"gtin":"1"}}}`, true, "tools/call", "generate_qr_url"},
		{`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, true, "tools/list", ""},
		{`{"jsonrpc":"2.0","method":"t\u006fols/call","params":{"name":"\u00e9"}}`, true, "tools/call", "é"},
		{`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a","name":"b"}}`, true, "tools/call", "b"}, // last wins, as encoding/json
		// Left to encoding/json:
		{`{"jsonrpc":"2.0","Method":"tools/call"}`, false, "", ""},      // a key that matches only up to case
		{`{"jsonrpc":"2.0","method":"x","params":null}`, false, "", ""}, // params not an object
		{`{"jsonrpc":"2.0","method":1}`, false, "", ""},                 // a method that is not a string
		{`{"jsonrpc":"2.0","method":"x"} {}`, false, "", ""},            // trailing data
		{`{"jsonrpc":"2.0","method":"x"`, false, "", ""},                // not JSON
	} {
		var msg message
		var p callParams
		fast := parseMessageFast([]byte(tc.raw), false, &msg, &p)
		if fast != tc.fast {
			t.Fatalf("%s: fast = %v, want %v", tc.raw, fast, tc.fast)
		}
		if fast && (msg.Method != tc.method || p.Name != tc.name) {
			t.Fatalf("%s: method %q name %q, want %q %q", tc.raw, msg.Method, p.Name, tc.method, tc.name)
		}
	}
}
