package api_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestDecideSchema: pep/decide.schema.json, the machine-readable contract
// of POST /v1/decide, holds every request sent here and every real answer
// of every kind: allowed, filtered, challenged (401, 403), denied in band,
// transport requests, session hijack, and the PDP's refusals.
func TestDecideSchema(t *testing.T) {
	f, err := os.Open("../../pep/decide.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	const loc = "decide.schema.json"
	if err := c.AddResource(loc, doc); err != nil {
		t.Fatal(err)
	}
	schema := func(def string) *jsonschema.Schema {
		s, err := c.Compile(loc + "#/$defs/" + def)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	reqSchema, respSchema, errSchema := schema("Request"), schema("Response"), schema("RequestError")

	e := setup(t)
	tok := e.token(t, "qr:generate")
	weak := e.token(t)
	res := `"resource":"` + resource + `"`
	call := func(name string) string {
		return `"message":{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
	}
	list := `"message":{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	owner := `"session_owner":{"issuer":"` + e.iss.URL + `","sub":"bob"}`
	tests := []struct {
		name, body string
		status     int
		outcome    string
	}{
		{"allowed call", `{` + res + `,"authorization":"` + tok + `",` + call("generate_qr_url") + `}`, 200, `"outcome":"allow"`},
		{"anonymous public call", `{` + res + `,` + call("lookup_product") + `}`, 200, `"outcome":"allow"`},
		{"401 challenge with a tool result", `{` + res + `,` + call("generate_qr_url") + `}`, 200, `"outcome":"challenge"`},
		{"403 insufficient scope", `{` + res + `,"authorization":"` + weak + `",` + call("generate_qr_url") + `}`, 200, `"http_status":403`},
		{"invalid token", `{` + res + `,"authorization":"Bearer not-a-jwt",` + call("lookup_product") + `}`, 200, `invalid_token`},
		{"hidden tool", `{` + res + `,"authorization":"` + tok + `",` + call("internal_debug") + `}`, 200, `"outcome":"deny"`},
		{"invalid params", `{` + res + `,"message":{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}}`, 200, `-32602`},
		{"list request phase", `{` + res + `,"authorization":"` + tok + `",` + list + `}`, 200, `"outcome":"allow"`},
		{"filtered list", `{` + res + `,"authorization":"` + tok + `",` + list + `,"result":{"tools":[{"name":"lookup_product","inputSchema":{"type":"object"}},{"name":"internal_debug","inputSchema":{"type":"object"}}]}}`, 200, `"outcome":"filtered"`},
		{"GET", `{` + res + `,"authorization":"` + tok + `","http_method":"GET"}`, 200, `"outcome":"allow"`},
		{"session hijack", `{` + res + `,"authorization":"` + tok + `",` + call("lookup_product") + `,` + owner + `}`, 200, `session hijack`},
		{"unknown resource", `{"resource":"https://other.example/mcp",` + call("lookup_product") + `}`, 400, `unknown_resource`},
		{"no message", `{` + res + `}`, 400, `invalid_request`},
		{"unknown field", `{` + res + `,"authorisation":"x"}`, 400, `invalid_json`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status == 200 {
				req, err := jsonschema.UnmarshalJSON(strings.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				if err := reqSchema.Validate(req); err != nil {
					t.Fatalf("the request does not fit the schema: %v", err)
				}
			}
			resp, err := http.Post(e.srv.URL+"/v1/decide", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !bytes.Contains(raw, []byte(tc.outcome)) {
				t.Fatalf("HTTP %d %s: want %d with %s", resp.StatusCode, raw, tc.status, tc.outcome)
			}
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			s := respSchema
			if resp.StatusCode != http.StatusOK {
				s = errSchema
			}
			if err := s.Validate(v); err != nil {
				t.Fatalf("the answer %s does not fit the schema: %v", raw, err)
			}
		})
	}
}
