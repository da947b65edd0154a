package gateway

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestWithMeta(t *testing.T) {
	meta := map[string]string{"io.github.mcp-pdp/identity": "A", DecisionMetaKey: "D"}
	tests := []struct {
		name, in string
		want     string // "" with wantErr
		wantErr  error
	}{
		{"no params", `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
			`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.github.mcp-pdp/identity":"A","io.github.mcp-pdp/decision-id":"D"}}}`, nil},
		{"null params", `{"jsonrpc":"2.0","id":1,"method":"ping","params":null}`,
			`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.github.mcp-pdp/identity":"A","io.github.mcp-pdp/decision-id":"D"}}}`, nil},
		{"params kept, _meta added", `{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"sum","arguments":{"a":1.50}}}`,
			`{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"sum","arguments":{"a":1.50},"_meta":{"io.github.mcp-pdp/identity":"A","io.github.mcp-pdp/decision-id":"D"}}}`, nil},
		{"client's _meta kept, forged keys replaced", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":7,"io.github.mcp-pdp/identity":"forged","io.github.mcp-pdp/decision-id":"forged"}}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":7,"io.github.mcp-pdp/identity":"A","io.github.mcp-pdp/decision-id":"D"}}}`, nil},
		{"_meta not an object is replaced", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":"x"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.github.mcp-pdp/identity":"A","io.github.mcp-pdp/decision-id":"D"}}}`, nil},
		{"params an array", `{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}`, "", errParamsNotObject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := withMeta([]byte(tc.in), meta)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("not JSON: %s", got)
			}
			_ = json.Unmarshal([]byte(tc.want), &w)
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
