package pep

import (
	"bytes"
	"testing"
)

// FuzzScanMessage holds scanMessage to encoding/json's reading: wherever
// the one-pass scanner accepts a message, encoding/json reads the same.
func FuzzScanMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"get_sum","arguments":{"a":[1,2.5e3,"x\u00e9"]}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x","name":5}}`,
		`{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"a","inputSchema":{"type":"object"}}],"nextCursor":"c"}}`,
		`{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":null}`,
		`{"jsonrpc":"2.0","id":null,"result":null}`,
		`{"jsonrpc":"2.0","Method":"x","ID":1}`,
		`{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}`,
		`{"jsonrpc":"2.0","id":-0.5e-3,"method":"x","params":{"name":"n","name":"m"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\xff"}}`,
		` {"jsonrpc" : "2.0" , "id" : 7 , "method" : "ping" } `,
		`{"jsonrpc":"2.0","id":1,"method":"x","params":{"NAME":"y"}}`,
		`{"jsonrpc":"2.0","id":{},"method":"x"}`,
		`{"jsonrpc":"2.0","id":1,"method":""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		trimmed := bytes.TrimSpace(b)
		if len(trimmed) > 0 && trimmed[0] == '[' {
			return
		}
		got, ok := scanMessage(b, trimmed)
		if !ok {
			return
		}
		want, err := parseMessageJSON(b, trimmed)
		if err != nil {
			t.Fatalf("%q: the scanner read %+v, encoding/json refused it: %v", b, got, err)
		}
		same := bytes.Equal(got.id, want.id) && (got.id == nil) == (want.id == nil) &&
			got.method == want.method && got.name == want.name &&
			bytes.Equal(got.result, want.result) && (got.result == nil) == (want.result == nil) &&
			bytes.Equal(got.err, want.err) && (got.err == nil) == (want.err == nil)
		if !same {
			t.Fatalf("%q:\nscan %+v\njson %+v", b, got, want)
		}
	})
}

// TestPlain8 holds the eight-byte test to the byte-by-byte one.
func TestPlain8(t *testing.T) {
	plain := func(c byte) bool { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\' }
	var buf [8]byte
	for c := 0; c < 256; c++ {
		for pos := range 8 {
			for i := range buf {
				buf[i] = 'a'
			}
			buf[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(buf[i])
			}
			if got := plain8(x); got != plain(byte(c)) {
				t.Fatalf("byte %#x at %d: plain8 %v", c, pos, got)
			}
		}
	}
}
