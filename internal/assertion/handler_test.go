package assertion

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	s := newSigner(t, "")
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	do := func(method string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+"/.well-known/jwks.json", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}

	resp, body := do(http.MethodGet, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %s", resp.Status)
	}
	for k, want := range map[string]string{
		"Content-Type":                "application/jwk-set+json",
		"Cache-Control":               "public, max-age=300",
		"Etag":                        `"` + s.KeyID() + `"`,
		"Access-Control-Allow-Origin": "*",
		"X-Content-Type-Options":      "nosniff",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if string(body) != string(s.JWKS()) {
		t.Errorf("body %s, want the JWKS", body)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", body, err)
	}
	k := set.Keys[0]
	if _, private := k["d"]; private {
		t.Error("the JWKS has the private key")
	}
	if k["kid"] != s.KeyID() || k["alg"] != "ES256" || k["use"] != "sig" || k["kty"] != "EC" || k["crv"] != "P-256" {
		t.Errorf("key %v", k)
	}
	// What an upstream does: fetch the JWKS, verify.
	tok := mustSign(t, s, Claims{Subject: "alice", Audience: testAudience})
	if _, err := Verify(tok, body, testIssuer, testAudience, time.Now()); err != nil {
		t.Error(err)
	}

	resp, body = do(http.MethodHead, nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Type") != "application/jwk-set+json" {
		t.Errorf("HEAD: %s, %d bytes, %q", resp.Status, len(body), resp.Header.Get("Content-Type"))
	}
	resp, _ = do(http.MethodGet, map[string]string{"If-None-Match": `W/"other", "` + s.KeyID() + `"`})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %s", resp.Status)
	}
	resp, body = do(http.MethodGet, map[string]string{"If-None-Match": `"other"`})
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Errorf("If-None-Match other: %s", resp.Status)
	}
	resp, _ = do(http.MethodPost, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Errorf("POST: %s, Allow %q", resp.Status, resp.Header.Get("Allow"))
	}
}

func TestJWKSIsACopy(t *testing.T) {
	s := newSigner(t, "")
	b := s.JWKS()
	b[0] = 'x'
	if s.JWKS()[0] != '{' {
		t.Error("JWKS shares its bytes")
	}
}
