package devissuer_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// asFixture is a dev authorization server on a real HTTP listener.
type asFixture struct {
	t      *testing.T
	base   string // issuer URL
	client *http.Client
}

func newAS(t *testing.T, o devissuer.AuthServerOptions) *asFixture {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss, err := devissuer.New(srv.URL+"/dev", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", iss.AuthServer(o).Handler())
	return &asFixture{t: t, base: srv.URL + "/dev", client: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (f *asFixture) register(redirect string, grants ...string) string {
	f.t.Helper()
	body, _ := json.Marshal(map[string]any{"redirect_uris": []string{redirect}, "grant_types": grants, "client_name": "t"})
	resp, err := f.client.Post(f.base+"/register", "application/json", strings.NewReader(string(body)))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ClientID string `json:"client_id"`
	}
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&out) != nil || out.ClientID == "" {
		f.t.Fatalf("register: HTTP %d", resp.StatusCode)
	}
	return out.ClientID
}

// authorize returns the redirect's query (code, state, iss, or error), or
// the status of a direct error answer.
func (f *asFixture) authorize(q url.Values) (url.Values, int) {
	f.t.Helper()
	resp, err := f.client.Get(f.base + "/authorize?" + q.Encode())
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, resp.StatusCode
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		f.t.Fatal(err)
	}
	return u.Query(), resp.StatusCode
}

func (f *asFixture) token(form url.Values) (map[string]any, int) {
	f.t.Helper()
	resp, err := f.client.PostForm(f.base+"/token", form)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out, resp.StatusCode
}

const verifier = "dev-verifier-0123456789-0123456789-0123456789-abcdef"

func challenge(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// TestAuthServerCodeFlow: registration, an approved authorization with
// PKCE and a resource indicator, the code redeemed once for a token whose
// aud is the resource and whose scope is what was asked and supported, a
// refresh that may narrow the scope but not widen it.
func TestAuthServerCodeFlow(t *testing.T) {
	f := newAS(t, devissuer.AuthServerOptions{Scopes: []string{"a", "b"}})
	const redirect = "http://127.0.0.1:1/cb"
	cid := f.register(redirect, "authorization_code", "refresh_token")
	q, _ := f.authorize(url.Values{"response_type": {"code"}, "client_id": {cid}, "redirect_uri": {redirect},
		"code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}, "resource": {resource},
		"scope": {"a unknown b a"}, "state": {"s1"}})
	if q.Get("code") == "" || q.Get("state") != "s1" || q.Get("iss") != f.base {
		t.Fatalf("authorization redirect %v: want a code, the state and iss", q)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {cid}, "code": {q.Get("code")},
		"redirect_uri": {redirect}, "code_verifier": {verifier}, "resource": {resource}}
	tok, status := f.token(form)
	if status != http.StatusOK || tok["scope"] != "a b" || tok["refresh_token"] == nil {
		t.Fatalf("token: HTTP %d %v", status, tok)
	}
	claims := decodeSegment(t, tok["access_token"].(string), 1)
	if claims["aud"] != resource || claims["sub"] != devissuer.DefaultDevSubject || claims["client_id"] != cid || claims["iss"] != f.base {
		t.Fatalf("claims %v", claims)
	}
	if again, status := f.token(form); status != http.StatusBadRequest || again["error"] != "invalid_grant" {
		t.Fatalf("a code redeemed twice: HTTP %d %v", status, again)
	}
	refresh := url.Values{"grant_type": {"refresh_token"}, "client_id": {cid}, "refresh_token": {tok["refresh_token"].(string)}}
	refresh.Set("scope", "a")
	if r, status := f.token(refresh); status != http.StatusOK || r["scope"] != "a" {
		t.Fatalf("narrowing refresh: HTTP %d %v", status, r)
	}
	refresh.Set("scope", "a c")
	if r, status := f.token(refresh); status != http.StatusBadRequest || r["error"] != "invalid_scope" {
		t.Fatalf("widening refresh: HTTP %d %v", status, r)
	}
}

// TestAuthServerRefusals: what the dev authorization server refuses, and
// how: errors before the redirect URI is trusted are answered directly,
// later ones are redirected with error; bad codes and verifiers fail at
// the token endpoint.
func TestAuthServerRefusals(t *testing.T) {
	f := newAS(t, devissuer.AuthServerOptions{Resources: []string{resource}})
	const redirect = "http://127.0.0.1:1/cb"
	cid := f.register(redirect)
	good := func() url.Values {
		return url.Values{"response_type": {"code"}, "client_id": {cid}, "redirect_uri": {redirect},
			"code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}, "resource": {resource}}
	}
	tests := []struct {
		name   string
		edit   func(url.Values)
		status int    // direct answer
		err    string // redirected error
	}{
		{"unknown client", func(q url.Values) { q.Set("client_id", "nobody") }, http.StatusBadRequest, ""},
		{"unregistered redirect", func(q url.Values) { q.Set("redirect_uri", "http://evil.example/cb") }, http.StatusBadRequest, ""},
		{"no PKCE", func(q url.Values) { q.Del("code_challenge") }, 0, "invalid_request"},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain") }, 0, "invalid_request"},
		{"no resource", func(q url.Values) { q.Del("resource") }, 0, "invalid_target"},
		{"two resources", func(q url.Values) { q.Add("resource", "https://other.example/mcp") }, 0, "invalid_target"},
		{"another resource", func(q url.Values) { q.Set("resource", "https://other.example/mcp") }, 0, "invalid_target"},
		{"implicit flow", func(q url.Values) { q.Set("response_type", "token") }, 0, "unsupported_response_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := good()
			tc.edit(q)
			back, status := f.authorize(q)
			if tc.status != 0 {
				if status != tc.status {
					t.Fatalf("HTTP %d, want %d answered directly", status, tc.status)
				}
				return
			}
			if back.Get("error") != tc.err || back.Get("code") != "" {
				t.Fatalf("redirect %v, want error %s and no code", back, tc.err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		form url.Values
		want string
	}{
		{"wrong verifier", url.Values{"code_verifier": {verifier + "x"}}, "invalid_grant"},
		{"short verifier", url.Values{"code_verifier": {"short"}}, "invalid_grant"},
		{"another redirect", url.Values{"redirect_uri": {"http://127.0.0.1:2/cb"}}, "invalid_grant"},
		{"unknown grant type", url.Values{"grant_type": {"password"}}, "unsupported_grant_type"},
		{"unknown client", url.Values{"client_id": {"nobody"}}, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			back, _ := f.authorize(good()) // a fresh code: a failed redemption uses it up
			code := back.Get("code")
			form := url.Values{"grant_type": {"authorization_code"}, "client_id": {cid}, "code": {code},
				"redirect_uri": {redirect}, "code_verifier": {verifier}}
			for k, v := range tc.form {
				form[k] = v
			}
			if out, _ := f.token(form); out["error"] != tc.want {
				t.Fatalf("token: %v, want %s", out, tc.want)
			}
		})
	}
}
