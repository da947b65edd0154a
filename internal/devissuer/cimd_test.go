package devissuer_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// docServer serves a client metadata document at /client.json, written
// by doc from the document's own URL, and counts the fetches.
type docServer struct {
	*httptest.Server
	fetches atomic.Int64
}

func (d *docServer) clientID() string { return d.URL + "/client.json" }

func newDocServer(t *testing.T, tls bool, h func(w http.ResponseWriter, r *http.Request, self string)) *docServer {
	t.Helper()
	d := &docServer{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.fetches.Add(1)
		h(w, r, d.clientID())
	})
	if tls {
		d.Server = httptest.NewTLSServer(handler)
	} else {
		d.Server = httptest.NewServer(handler)
	}
	t.Cleanup(d.Close)
	return d
}

// jsonDoc answers a good document for self with these redirect URIs.
func jsonDoc(redirects ...string) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, _ *http.Request, self string) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"client_id": self, "client_name": "Doc Client", "redirect_uris": redirects,
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
			"token_endpoint_auth_method": "none",
		})
	}
}

func authorizeQuery(cid, redirect string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {cid}, "redirect_uri": {redirect},
		"code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}, "resource": {resource},
		"scope": {"a"}, "state": {"s"}}
}

// authorizeRaw is GET /authorize, its status and its JSON error.
func (f *asFixture) authorizeRaw(q url.Values, accept string) (*http.Response, map[string]string) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.base+"/authorize?"+q.Encode(), nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

// TestCIMDFlow: a client whose client_id is the URL of its metadata
// document (over http and over https with a self-signed certificate, both
// on loopback like the server) is fetched once, authorized for a redirect
// URI its document lists, and redeems the code and its refresh token
// under that client_id; the metadata advertises the feature.
func TestCIMDFlow(t *testing.T) {
	for _, tls := range []bool{false, true} {
		name := "http"
		if tls {
			name = "https self-signed"
		}
		t.Run(name, func(t *testing.T) {
			f := newAS(t, devissuer.AuthServerOptions{})
			const redirect = "http://127.0.0.1:1/cb"
			doc := newDocServer(t, tls, jsonDoc(redirect))
			cid := doc.clientID()

			resp, err := f.client.Get(strings.Replace(f.base, "/dev", "/.well-known/oauth-authorization-server/dev", 1))
			if err != nil {
				t.Fatal(err)
			}
			var meta map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&meta)
			resp.Body.Close()
			if meta["client_id_metadata_document_supported"] != true {
				t.Fatalf("metadata %v: want client_id_metadata_document_supported", meta)
			}

			q, status := f.authorize(authorizeQuery(cid, redirect))
			if status != http.StatusFound || q.Get("code") == "" {
				t.Fatalf("authorize: HTTP %d %v", status, q)
			}
			tok, status := f.token(url.Values{"grant_type": {"authorization_code"}, "client_id": {cid}, "code": {q.Get("code")},
				"redirect_uri": {redirect}, "code_verifier": {verifier}})
			if status != http.StatusOK || tok["refresh_token"] == nil {
				t.Fatalf("token: HTTP %d %v", status, tok)
			}
			if c := decodeSegment(t, tok["access_token"].(string), 1); c["client_id"] != cid || c["aud"] != resource {
				t.Fatalf("claims %v", c)
			}
			if r, status := f.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {cid}, "refresh_token": {tok["refresh_token"].(string)}}); status != http.StatusOK {
				t.Fatalf("refresh: HTTP %d %v", status, r)
			}
			if n := doc.fetches.Load(); n != 1 {
				t.Fatalf("the document was fetched %d times, want once (cached)", n)
			}
			// A redirect URI the document does not list is answered
			// directly, never redirected to.
			if resp, e := f.authorizeRaw(authorizeQuery(cid, "http://evil.example/cb"), ""); resp.StatusCode != http.StatusBadRequest || e["error"] != "invalid_request" {
				t.Fatalf("unlisted redirect: HTTP %d %v", resp.StatusCode, e)
			}
		})
	}
}

// TestCIMDRefusals: documents the server refuses, each answered directly
// (400 invalid_client, no redirect) and never cached.
func TestCIMDRefusals(t *testing.T) {
	const redirect = "http://127.0.0.1:1/cb"
	f := newAS(t, devissuer.AuthServerOptions{CIMD: devissuer.CIMDOptions{Timeout: 300 * time.Millisecond, MaxBytes: 2048}})
	target := newDocServer(t, false, jsonDoc(redirect)) // where a redirect would lead
	for _, tc := range []struct {
		name string
		h    func(http.ResponseWriter, *http.Request, string)
		want string
	}{
		{"mismatched client_id", func(w http.ResponseWriter, r *http.Request, self string) {
			jsonDoc(redirect)(w, r, "https://other.example/client.json")
		}, "is not its URL"},
		{"too large", func(w http.ResponseWriter, _ *http.Request, self string) {
			_ = json.NewEncoder(w).Encode(map[string]any{"client_id": self, "redirect_uris": []string{redirect}, "client_name": strings.Repeat("x", 4096)})
		}, "larger than 2048 bytes"},
		{"too large, chunked", func(w http.ResponseWriter, _ *http.Request, self string) {
			w.Write([]byte(`{"client_id": "` + self + `", "pad": "`))
			w.(http.Flusher).Flush()
			w.Write([]byte(strings.Repeat("x", 4096) + `"}`))
		}, "larger than 2048 bytes"},
		{"timeout", func(w http.ResponseWriter, r *http.Request, self string) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, "Timeout"},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request, _ string) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html><body>client</body></html>"))
		}, "not a JSON object"},
		{"a JSON array", func(w http.ResponseWriter, _ *http.Request, _ string) { w.Write([]byte(`[1]`)) }, "not a JSON object"},
		{"HTTP 404", func(w http.ResponseWriter, r *http.Request, _ string) { http.NotFound(w, r) }, "HTTP 404"},
		{"a redirect", func(w http.ResponseWriter, r *http.Request, _ string) {
			http.Redirect(w, r, target.clientID(), http.StatusFound)
		}, "redirects are not followed"},
		{"a client_secret", func(w http.ResponseWriter, _ *http.Request, self string) {
			_ = json.NewEncoder(w).Encode(map[string]any{"client_id": self, "redirect_uris": []string{redirect}, "client_secret": "s"})
		}, "client_secret"},
		{"a shared-secret method", func(w http.ResponseWriter, _ *http.Request, self string) {
			_ = json.NewEncoder(w).Encode(map[string]any{"client_id": self, "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "client_secret_basic"})
		}, "shared secret"},
		{"no redirect_uris", func(w http.ResponseWriter, _ *http.Request, self string) {
			_ = json.NewEncoder(w).Encode(map[string]any{"client_id": self})
		}, "redirect_uris is required"},
		{"a javascript redirect URI", func(w http.ResponseWriter, _ *http.Request, self string) {
			_ = json.NewEncoder(w).Encode(map[string]any{"client_id": self, "redirect_uris": []string{"javascript:alert(1)"}})
		}, "not accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := newDocServer(t, false, tc.h)
			start := time.Now()
			for range 2 {
				resp, e := f.authorizeRaw(authorizeQuery(doc.clientID(), redirect), "")
				if resp.StatusCode != http.StatusBadRequest || e["error"] != "invalid_client" || !strings.Contains(e["error_description"], tc.want) {
					t.Fatalf("HTTP %d %v, want 400 invalid_client saying %q", resp.StatusCode, e, tc.want)
				}
				if resp.Header.Get("Location") != "" {
					t.Fatal("a refused client was redirected")
				}
			}
			if n := doc.fetches.Load(); n != 2 {
				t.Fatalf("fetched %d times for two requests: a refused document must not be cached", n)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("two refusals took %v", d)
			}
		})
	}
	if n := target.fetches.Load(); n != 0 {
		t.Fatalf("the redirect target was fetched %d times: redirects must not be followed", n)
	}
}

// TestCIMDSpecialUse: documents on special-use addresses are not fetched
// (no connection is made), and loopback ones only when the server itself
// runs on loopback.
func TestCIMDSpecialUse(t *testing.T) {
	f := newAS(t, devissuer.AuthServerOptions{})
	for _, cid := range []string{"https://169.254.169.254/latest/meta-data", "https://10.0.0.1/client.json", "https://[fd00::1]/client.json"} {
		resp, e := f.authorizeRaw(authorizeQuery(cid, "http://127.0.0.1:1/cb"), "")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(e["error_description"], "special-use") {
			t.Errorf("%s: HTTP %d %v, want a special-use refusal", cid, resp.StatusCode, e)
		}
	}

	// A server whose issuer is not on loopback does not fetch loopback
	// documents (served here through a recorder, the issuer elsewhere).
	doc := newDocServer(t, false, jsonDoc("http://127.0.0.1:1/cb"))
	iss, err := devissuer.New("https://as.example/dev", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	h := iss.AuthServer(devissuer.AuthServerOptions{}).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/dev/authorize?"+authorizeQuery(doc.clientID(), "http://127.0.0.1:1/cb").Encode(), nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "special-use") || doc.fetches.Load() != 0 {
		t.Fatalf("loopback document for a non-loopback server: HTTP %d %s (fetches %d)", rec.Code, rec.Body, doc.fetches.Load())
	}
}

// TestCIMDDisabled: with CIMD off, the metadata does not advertise it and
// a URL client_id is an unknown client.
func TestCIMDDisabled(t *testing.T) {
	iss, err := devissuer.New("http://127.0.0.1:1/dev", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	as := iss.AuthServer(devissuer.AuthServerOptions{CIMD: devissuer.CIMDOptions{Disabled: true}})
	if strings.Contains(string(as.Metadata()), "client_id_metadata_document_supported") {
		t.Fatalf("metadata %s advertises CIMD", as.Metadata())
	}
	doc := newDocServer(t, false, jsonDoc("http://127.0.0.1:1/cb"))
	rec := httptest.NewRecorder()
	as.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/dev/authorize?"+authorizeQuery(doc.clientID(), "http://127.0.0.1:1/cb").Encode(), nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "unknown client_id") || doc.fetches.Load() != 0 {
		t.Fatalf("HTTP %d %s", rec.Code, rec.Body)
	}
}
