package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mcp-pdp/pdp/pep"
)

// decodeStd is the reference: what readRequest did before the fast path,
// encoding/json with unknown fields refused and nothing after the object.
func decodeStd(buf []byte) (*pep.Request, error) {
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.DisallowUnknownFields()
	var req pep.Request
	if err := dec.Decode(&req); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more")
	}
	return &req, nil
}

func TestDecodeFast(t *testing.T) {
	const tok = "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
	tests := []struct {
		name string
		body string
		fast bool // decodeFast takes it (else encoding/json decides)
	}{
		{"typical", `{"resource":"https://mcp.example.com/mcp","authorization":"` + tok + `","message":{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"s":"a\"}\\"}}}}`, true},
		{"list with result", `{"resource":"r","message":{"method":"tools/list"},"result":{"tools":[{"name":"a"},{"name":"b"}]}}`, true},
		{"list without result", `{"resource":"r","message":{"method":"tools/list"}}`, true},
		{"transport request", `{"resource":"r","authorization":"` + tok + `","http_method":"GET"}`, true},
		{"transport request, null message", `{"http_method":"DELETE","message":null,"resource":"r"}`, true},
		{"empty http_method", `{"http_method":""}`, true},
		{"escape in http_method", `{"http_method":"G\u0045T"}`, false},
		{"null http_method", `{"http_method":null}`, false},
		{"number http_method", `{"http_method":1}`, false},
		{"duplicate http_method", `{"http_method":"GET","http_method":"DELETE"}`, false},
		{"other case http_method", `{"HTTP_METHOD":"GET"}`, false},
		{"whitespace everywhere", " \t\r\n{ \"resource\" : \"r\" ,\n\"message\" :\t[1, 2] } \n", true},
		{"empty object", `{}`, true},
		{"message is a string", `{"message":"x\u00e9y"}`, true},
		{"message is a number", `{"message":-1.5e3}`, true},
		{"message is null", `{"message":null}`, true},
		{"message is true", `{"message":true,"resource":"r"}`, true},
		{"empty resource", `{"resource":""}`, true},
		{"DEL in a string", "{\"resource\":\"a\x7fb\"}", true},
		// encoding/json's territory: same result or the precise error.
		{"trailing object", `{"message":{}} {}`, false},
		{"trailing brace (accepted by More)", `{"message":{}}}`, false},
		{"trailing garbage", `{"message":{}}x`, false},
		{"unknown field", `{"resource":"r","authorisation":"x"}`, false},
		{"other case key", `{"Resource":"r"}`, false},
		{"escaped key", `{"res\u006furce":"r"}`, false},
		{"duplicate key", `{"resource":"a","resource":"b"}`, false},
		{"duplicate message", `{"message":{"a":1},"message":[2]}`, false},
		{"escape in resource", `{"resource":"a\/b"}`, false},
		{"non-ASCII resource", `{"resource":"é"}`, false},
		{"invalid UTF-8 resource", "{\"resource\":\"\xff\"}", false},
		{"control byte in resource", "{\"resource\":\"a\tb\"}", false},
		{"null resource", `{"resource":null}`, false},
		{"number resource", `{"resource":1}`, false},
		{"bad literal", `{"message":tru}`, false},
		{"bad number", `{"message":01}`, false},
		{"unbalanced message", `{"message":{"a":[1}}`, false},
		{"missing value", `{"message":}`, false},
		{"missing colon", `{"message" {}}`, false},
		{"trailing comma", `{"message":{},}`, false},
		{"unterminated", `{"message":{"a":1}`, false},
		{"unterminated string", `{"resource":"abc`, false},
		{"array", `[]`, false},
		{"null", `null`, false},
		{"deep message", `{"message":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`, false},
		{"too deep message", `{"message":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, false},
		{"BOM", "\ufeff{}", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got pep.Request
			fast := decodeFast([]byte(tc.body), &got)
			if fast != tc.fast {
				t.Fatalf("decodeFast = %v, want %v", fast, tc.fast)
			}
			want, err := decodeStd([]byte(tc.body))
			if fast && (err != nil || !reflect.DeepEqual(&got, want)) {
				t.Fatalf("fast %+v, encoding/json %+v %v", got, want, err)
			}
		})
	}
}

// FuzzDecodeFast: whatever decodeFast accepts, encoding/json accepts too,
// with the same Request.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`{"resource":"r","authorization":"Bearer x","message":{"a":[1,"}"]},"result":null}`,
		`{"message":"\"]"}`, `{}`, ` { "message" : 1 } `, `{"message":{}}}`, `{"result":[{"a":"\\"}]}`,
		`{"resource":"r","authorization":"Bearer x","http_method":"GET"}`, `{"http_method":"DELETE","message":null}`,
		`{"http_method":"G\u0045T"}`, `{"http_method":null}`, `{"Http_Method":"GET"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got pep.Request
		if !decodeFast(body, &got) {
			return
		}
		want, err := decodeStd(body)
		if err != nil {
			t.Fatalf("decodeFast accepted %q, encoding/json: %v", body, err)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", body, got, *want)
		}
	})
}

func TestReadRequestBody(t *testing.T) {
	body := `{"resource":"r","message":{"method":"ping"}}`
	tests := []struct {
		name   string
		r      io.Reader
		size   int64
		limit  int64
		status int // 0: decoded
	}{
		{"size known", strings.NewReader(body), int64(len(body)), 1 << 10, 0},
		{"size unknown", strings.NewReader(body), -1, 1 << 10, 0},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader(body)), -1, 1 << 10, 0},
		{"size understated", strings.NewReader(body), 3, 1 << 10, 0},
		{"exactly the limit", strings.NewReader(body), -1, int64(len(body)), 0},
		{"one byte over", strings.NewReader(body), -1, int64(len(body)) - 1, 413},
		{"over, size unknown", strings.NewReader(strings.Repeat(" ", 10<<10) + body), -1, 1 << 10, 413},
		{"larger than the pooled buffers", strings.NewReader(strings.Repeat(" ", 100<<10) + body), -1, 1 << 20, 0},
		{"read error", iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader(body))), -1, 1 << 10, 400},
		{"empty", strings.NewReader(" \n"), 2, 1 << 10, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := readRequest(tc.r, tc.size, tc.limit)
			if tc.status == 0 {
				if err != nil || req.Resource != "r" || string(req.Message) != `{"method":"ping"}` {
					t.Fatalf("%+v %v", req, err)
				}
				return
			}
			var ae *pep.RequestError
			if !errors.As(err, &ae) || ae.Status != tc.status {
				t.Fatalf("error %v, want HTTP %d", err, tc.status)
			}
		})
	}
}
