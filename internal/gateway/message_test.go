package gateway

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParseMessage holds readFieldsFast to encoding/json's reading of the
// same message: wherever the fast path answers, it answers the same.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"get_sum","arguments":{"a":1}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x","name":5}}`,
		`{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"a"}]}}`,
		`{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":null}`,
		`{"jsonrpc":"2.0","id":null,"method":null,"result":null}`,
		`{"jsonrpc":"2.0","Method":"x","ID":1}`,
		`{"jsonrpc":"2.0","id":1,"method":"a","method":"b","params":{"name":"x"},"params":{"uri":"y"}}`,
		`{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/call","params":{"n\u0061me":"\u00e9"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,2]}`,
		`{"jsonrpc":2,"id":1,"method":"x"}`,
		`{"jsonrpc":"2.0","id":1,"method":"x","params":{"NAME":"y"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\xff"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		trimmed := bytes.TrimSpace(b)
		if !json.Valid(trimmed) || len(trimmed) == 0 || trimmed[0] == '[' {
			return
		}
		fast, ok := readFieldsFast(trimmed)
		if !ok {
			return
		}
		ref, err := readFields(trimmed)
		if err != nil {
			t.Fatalf("%q: the fast path read %+v, encoding/json failed: %v", b, fast, err)
		}
		same := fast.jsonrpc == ref.jsonrpc && bytes.Equal(fast.id, ref.id) &&
			(fast.method == nil) == (ref.method == nil) && (fast.method == nil || *fast.method == *ref.method) &&
			bytes.Equal(fast.result, ref.result) && bytes.Equal(fast.error, ref.error) &&
			(fast.result == nil) == (ref.result == nil) && (fast.error == nil) == (ref.error == nil) &&
			fast.name == ref.name && fast.uri == ref.uri
		if !same {
			t.Fatalf("%q:\nfast %+v\nref  %+v", b, fast, ref)
		}
	})
}

// TestParseMessage: what the gateway reads of messages, through both paths.
func TestParseMessage(t *testing.T) {
	tests := []struct {
		in, method, name, id string
		response             bool
		err                  string
	}{
		{in: `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, method: "tools/list", id: "3"},
		{in: `{"jsonrpc":"2.0","id": "x y" ,"method":"tools/call","params":{"name":"a b"}}`, method: "tools/call", name: "a b", id: `"x y"`},
		{in: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a","name":"n"}}`, method: "resources/read", name: "file:///a", id: "1"},
		{in: `{"jsonrpc":"2.0","ID":1,"Method":"tools/call","Params":{"Name":"folded"}}`, method: "tools/call", name: "folded", id: "1"},
		{in: `{"jsonrpc":"2.0","id":3,"result":{}}`, id: "3", response: true},
		{in: `{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"m"}}`, id: "3", response: true},
		{in: `{"jsonrpc":"2.0","method":"notifications/initialized"}`, method: "notifications/initialized"},
		{in: `{"jsonrpc":"1.0","id":1,"method":"x"}`, err: `jsonrpc must be "2.0"`},
		{in: `{"jsonrpc":"2.0","id":1,"method":""}`, err: "method must not be empty"},
		{in: `{"jsonrpc":"2.0","id":{},"method":"x"}`, err: "the id must be a string or a number"},
		{in: `{"jsonrpc":"2.0","id":1}`, err: "a message needs a method"},
		{in: `{"jsonrpc":"2.0","id":1,"method":5}`, err: "not a JSON-RPC message object"},
		{in: `{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}`, err: "not a JSON-RPC message object"},
		{in: `{"jsonrpc":"2.0"`, err: "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			m, err := parseMessage([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.err)) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Method != tc.method || m.Name != tc.name || string(m.ID) != tc.id || m.IsResponse() != tc.response {
				t.Fatalf("got method %q name %q id %s response %v", m.Method, m.Name, m.ID, m.IsResponse())
			}
		})
	}
}
