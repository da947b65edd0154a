package devissuer_test

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/devissuer"
)

// browserAccept is the Accept header of a browser's navigation.
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// getPage is GET /authorize as a browser.
func (f *asFixture) getPage(q url.Values) (*http.Response, string) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.base+"/authorize?"+q.Encode(), nil)
	req.Header.Set("Accept", browserAccept)
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var refreshURL = regexp.MustCompile(`<meta http-equiv="refresh" content="(\d+);url=([^"]+)">`)

// TestConsentPage: a browser at /authorize sees a page naming the dev
// user, the client (by its registered name, escaped), the granted and the
// dropped scopes, the resource and the redirect's host; the page follows
// the redirect by itself (meta refresh) and links it; the code it carries
// is redeemable. prompt=none, and user agents that do not ask for HTML,
// get the redirect at once.
func TestConsentPage(t *testing.T) {
	f := newAS(t, devissuer.AuthServerOptions{Scopes: []string{"a", "b"}})
	const redirect = "http://127.0.0.1:1/cb"
	body, _ := json.Marshal(map[string]any{"redirect_uris": []string{redirect}, "client_name": `Agent <b>"X"</b>`})
	resp, err := f.client.Post(f.base+"/register", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		ClientID string `json:"client_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	q := authorizeQuery(reg.ClientID, redirect)
	q.Set("scope", "a zzz b")

	resp, page := f.getPage(q)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Cache-Control"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("the page has no %s", h)
		}
	}
	for _, want := range []string{
		`<strong id="subject">alice</strong>`,
		`<strong id="client">Agent &lt;b&gt;&#34;X&#34;&lt;/b&gt;</strong>`,
		`<code>` + reg.ClientID + `</code>, registered dynamically`,
		`<code id="resource">` + resource + `</code>`,
		`<li><code>a</code></li><li><code>b</code></li>`,
		`not supported here): <code>zzz</code>`,
		`<strong id="redirect-host">127.0.0.1:1</strong>`,
		`a program on this machine`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s:\n%s", want, page)
		}
	}
	if strings.Contains(page, "<b>") {
		t.Fatal("the client name was not escaped")
	}
	m := refreshURL.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no meta refresh:\n%s", page)
	}
	next, err := url.Parse(html.UnescapeString(m[2]))
	if err != nil || !strings.HasPrefix(next.String(), redirect+"?") || next.Query().Get("state") != "s" || next.Query().Get("iss") != f.base {
		t.Fatalf("the page continues to %q", m[2])
	}
	if !strings.Contains(page, `href="`+m[2]+`"`) {
		t.Fatal("the page does not link its redirect")
	}
	tok, status := f.token(url.Values{"grant_type": {"authorization_code"}, "client_id": {reg.ClientID}, "code": {next.Query().Get("code")},
		"redirect_uri": {redirect}, "code_verifier": {verifier}})
	if status != http.StatusOK || tok["scope"] != "a b" {
		t.Fatalf("the page's code: HTTP %d %v", status, tok)
	}

	q.Set("prompt", "none")
	if resp, _ := f.getPage(q); resp.StatusCode != http.StatusFound {
		t.Fatalf("prompt=none: HTTP %d, want the redirect at once", resp.StatusCode)
	}
	q.Del("prompt")
	if resp, _ := f.authorizeRaw(q, "*/*"); resp.StatusCode != http.StatusFound {
		t.Fatalf("Accept */*: HTTP %d, want the redirect at once", resp.StatusCode)
	}

	// Errors that cannot be redirected are a page too, for a browser.
	q.Set("client_id", "nobody")
	if resp, page := f.getPage(q); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, `<code id="error">invalid_request</code>`) {
		t.Fatalf("unknown client: HTTP %d\n%s", resp.StatusCode, page)
	}
}

// TestConsentPageCIMD: for a metadata document client the page names the
// document's client_name and its host.
func TestConsentPageCIMD(t *testing.T) {
	f := newAS(t, devissuer.AuthServerOptions{})
	const redirect = "https://app.example/cb"
	doc := newDocServer(t, false, jsonDoc(redirect))
	resp, page := f.getPage(authorizeQuery(doc.clientID(), redirect))
	u, _ := url.Parse(doc.URL)
	for _, want := range []string{`<strong id="client">Doc Client</strong>`, "a Client ID Metadata Document on <strong>" + u.Host + "</strong>",
		`<strong id="redirect-host">app.example</strong>`} {
		if !strings.Contains(page, want) {
			t.Errorf("HTTP %d: the page lacks %s:\n%s", resp.StatusCode, want, page)
		}
	}
	if strings.Contains(page, "a program on this machine") {
		t.Error("a warning about a local redirect for app.example")
	}
}

// TestRegisterRefusesScriptRedirects: a redirect URI the consent page
// would link to must not run script on the server's origin.
func TestRegisterRefusesScriptRedirects(t *testing.T) {
	f := newAS(t, devissuer.AuthServerOptions{})
	for _, ru := range []string{"javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", "file:///etc/passwd"} {
		body, _ := json.Marshal(map[string]any{"redirect_uris": []string{ru}})
		resp, err := f.client.Post(f.base+"/register", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400", ru, resp.StatusCode)
		}
	}
	// Native apps' own schemes stay accepted.
	if cid := f.register("cursor://anysphere.cursor-retrieval/oauth/callback"); cid == "" {
		t.Fatal("a custom scheme was refused")
	}
}

// TestMintEndpoint: POST {issuer}/mint mints for the server's resources
// (the first by default), refuses others and names the ones it has, and
// answers neither browsers nor other machines; without MintEndpoint there
// is no such route.
func TestMintEndpoint(t *testing.T) {
	const other = "http://127.0.0.1:3000/mcp"
	f := newAS(t, devissuer.AuthServerOptions{MintEndpoint: true, Resources: []string{resource, other}})
	base := strings.TrimSuffix(f.base, "/dev")
	ctx := context.Background()

	out, err := devissuer.MintRemote(ctx, nil, base, devissuer.MintRequest{Scope: "qr:generate x", JKT: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	c := decodeSegment(t, out.AccessToken, 1)
	if c["aud"] != resource || c["sub"] != devissuer.DefaultDevSubject || c["client_id"] != "demo" || c["scope"] != "qr:generate x" ||
		c["cnf"].(map[string]any)["jkt"] != "abc" || out.Resource != resource || out.ExpiresIn != 3600 {
		t.Fatalf("default mint: %+v %v", out, c)
	}
	out, err = devissuer.MintRemote(ctx, nil, base, devissuer.MintRequest{Resource: other, Subject: "bob", ClientID: "agent", TTLSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	if c := decodeSegment(t, out.AccessToken, 1); c["aud"] != other || c["sub"] != "bob" || c["exp"].(float64)-c["iat"].(float64) != 60 {
		t.Fatalf("mint for %s: %v", other, c)
	}

	_, err = devissuer.MintRemote(ctx, nil, base, devissuer.MintRequest{Resource: "https://nope.example/mcp"})
	var me *devissuer.MintError
	if !errors.As(err, &me) || me.Status != http.StatusBadRequest || me.Code != "invalid_target" || len(me.Resources) != 2 {
		t.Fatalf("an unknown resource: %v", err)
	}

	post := func(ct string, hdr map[string]string) int {
		req, _ := http.NewRequest(http.MethodPost, f.base+"/mint", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", ct)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Error("the mint endpoint answers with CORS headers")
		}
		return resp.StatusCode
	}
	if s := post("application/json", map[string]string{"Origin": "https://evil.example"}); s != http.StatusForbidden {
		t.Errorf("a browser's request: HTTP %d, want 403", s)
	}
	if s := post("text/plain", nil); s != http.StatusUnsupportedMediaType {
		t.Errorf("a text/plain body: HTTP %d, want 415", s)
	}
	if resp, err := f.client.Get(f.base + "/mint"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v", resp.StatusCode, err)
	}

	iss, _ := devissuer.New("http://127.0.0.1:1/dev", "ES256")
	h := iss.AuthServer(devissuer.AuthServerOptions{MintEndpoint: true, Resources: []string{resource}}).Handler()
	req := httptest.NewRequest(http.MethodPost, "/dev/mint", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "10.1.2.3:4567"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("from another machine: HTTP %d, want 403", rec.Code)
	}

	plain := newAS(t, devissuer.AuthServerOptions{})
	if _, err := devissuer.MintRemote(ctx, nil, strings.TrimSuffix(plain.base, "/dev"), devissuer.MintRequest{Resource: resource}); !errors.As(err, &me) || me.Status != http.StatusNotFound {
		t.Fatalf("without MintEndpoint: %v, want 404", err)
	}
}

// TestAuthServerDefaults: the options an issuer carries apply to its
// authorization server where the caller leaves them zero.
func TestAuthServerDefaults(t *testing.T) {
	iss, _ := devissuer.New("http://127.0.0.1:1/dev", "ES256")
	d := iss.WithAuthServerDefaults(devissuer.AuthServerOptions{Scopes: []string{"s"}, Resources: []string{resource}, MintEndpoint: true})
	if d.KeyID() != iss.KeyID() || d.IssuerURL() != iss.IssuerURL() {
		t.Fatal("the copy has another key or URL")
	}
	var meta map[string]any
	_ = json.Unmarshal(d.AuthServer(devissuer.AuthServerOptions{}).Metadata(), &meta)
	if s, _ := meta["scopes_supported"].([]any); len(s) != 1 || s[0] != "s" {
		t.Fatalf("metadata %v: the defaults' scopes are missing", meta)
	}
	_ = json.Unmarshal(d.AuthServer(devissuer.AuthServerOptions{Scopes: []string{"x", "y"}}).Metadata(), &meta)
	if s, _ := meta["scopes_supported"].([]any); len(s) != 2 {
		t.Fatalf("metadata %v: the caller's scopes must win", meta)
	}
	meta = nil
	_ = json.Unmarshal(iss.AuthServer(devissuer.AuthServerOptions{}).Metadata(), &meta)
	if _, ok := meta["scopes_supported"]; ok {
		t.Fatal("the original issuer took the copy's defaults")
	}
}
