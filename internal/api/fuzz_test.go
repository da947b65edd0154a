package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// validHeaderValue mirrors what a real HTTP server lets through.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// FuzzDecideRequest sends random bodies, content types and API keys through
// the real handler (PEP authentication, limits, request decoder, core with
// the default policy and a real token verifier). Every answer is JSON with a
// known status; errors carry a code and a description; only the right key
// gets past authentication.
func FuzzDecideRequest(f *testing.F) {
	const key = "pdpk_fuzz-key"
	e := newServer(f, serverOptions{api: func(o *api.Options) {
		k, err := api.ParseAPIKey("fuzzer", api.HashAPIKey(key))
		if err != nil {
			f.Fatal(err)
		}
		o.Auth = api.PEPAuth{APIKeys: []api.APIKey{k}}
	}})
	tok := e.iss.Mint(f, devissuer.MintOptions{Subject: "alice", Audience: []string{resource}, Scopes: []string{"qr:generate"}})
	for _, b := range []string{
		`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{"gtin":"1"}}},"authorization":"Bearer ` + tok + `"}`,
		`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_qr_url"}}}`,
		`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1,"method":"tools/list"},"result":{"tools":[{"name":"ping"},{"name":"x"}]}}`,
		`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","method":"notifications/initialized"}}`,
		`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1,"method":"tools/list"},"authorization":"Bearer ` + tok + `"}`,
		`{"resource":"` + resource + `","http_method":"GET","authorization":"Bearer ` + tok + `"}`,
		`{"resource":"` + resource + `","http_method":"DELETE","message":null}`,
		`{"resource":"` + resource + `","http_method":"PATCH"}`,
		`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1,"method":"ping"}} {}`,
		`{"resource":"https://other.example/mcp","message":{}}`,
		`{"resource":"` + resource + `","authorisation":"x","message":{}}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`,
		`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1e999,"method":"ping"}}`,
		`{"resource":"` + resource + `","message":{"jsonrpc":"2.0","id":1,"method":"\ud800"}}`,
		``, `null`, `"x"`, `{}`,
	} {
		f.Add([]byte(b), key, "application/json")
	}
	f.Add([]byte(`{}`), "", "application/json")
	f.Add([]byte(`{}`), "pdpk_wrong", "application/json; charset=utf-8")
	f.Add([]byte(`{}`), key, "text/plain")
	f.Add([]byte(`{}`), key, "")
	f.Fuzz(func(t *testing.T, body []byte, k, ctype string) {
		if !validHeaderValue(k) || !validHeaderValue(ctype) {
			t.Skip("not a valid header value: refused by net/http before the handler")
		}
		r := httptest.NewRequest(http.MethodPost, "/v1/decide", bytes.NewReader(body))
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		if k != "" {
			r.Header.Set(api.APIKeyHeader, k)
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("HTTP %d, body not a JSON object: %q", w.Code, w.Body.Bytes())
		}
		if strings.TrimSpace(k) != key {
			if w.Code != 401 || out["error"] != "unauthorized" {
				t.Fatalf("key %q: HTTP %d %v", k, w.Code, out)
			}
			return
		}
		if !slices.Contains([]int{200, 400, 413, 415}, w.Code) {
			t.Fatalf("HTTP %d %v", w.Code, out)
		}
		if w.Code != 200 {
			if c, _ := out["error"].(string); c == "" || c == "internal_error" {
				t.Fatalf("error %v", out)
			}
			if d, _ := out["error_description"].(string); d == "" {
				t.Fatalf("no description: %v", out)
			}
			return
		}
		if id, _ := out["decision_id"].(string); id == "" {
			t.Fatalf("no decision id: %v", out)
		}
		if out["allow"] == true && out["http_status"] != float64(200) {
			t.Fatalf("inconsistent allow: %v", out)
		}
		if strings.Contains(w.Body.String(), tok) {
			t.Fatal("the answer echoes the token")
		}
	})
}
