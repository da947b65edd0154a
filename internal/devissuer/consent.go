package devissuer

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// consentDelaySeconds is how long a browser shows the consent page before
// it follows the redirect by itself.
const consentDelaySeconds = 2

// consentPage is what a browser sees at GET /authorize: who is signed in,
// which client asks for which scopes for which resource, and where the
// browser goes next. The authorization is already approved; the page
// follows the redirect after a moment (meta refresh, no script), or at
// once with the link.
var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{{.Delay}};url={{.Continue}}">
<title>Approved: {{.ClientName}} — mcp-pdp dev authorization server</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}
h1{font-size:1.4em} code{background:#f3f3f3;padding:0 .25em;border-radius:3px;word-break:break-all}
.note{color:#666;font-size:.9em} .warn{color:#8a4b00} ul{padding-left:1.2em}
a.button{display:inline-block;margin-top:1em;padding:.5em 1.2em;background:#1a5fb4;color:#fff;border-radius:4px;text-decoration:none}
</style>
</head>
<body>
<h1>Approved: {{.ClientName}}</h1>
<p>Signed in as <strong id="subject">{{.Subject}}</strong>, the dev user (no password: every request is approved).</p>
<p>Client: <strong id="client">{{.ClientName}}</strong><br>
<span class="note">client_id <code>{{.ClientID}}</code>{{if .MetadataDocument}}, a Client ID Metadata Document on <strong>{{.ClientHost}}</strong>{{else}}, registered dynamically (RFC 7591){{end}}</span></p>
<p>Resource: <code id="resource">{{.Resource}}</code></p>
<p>Scopes granted:</p>
<ul id="scopes">{{range .Scopes}}<li><code>{{.}}</code></li>{{else}}<li>none</li>{{end}}</ul>
{{if .Dropped}}<p class="note">Asked for but not granted (not supported here): {{range $i, $s := .Dropped}}{{if $i}}, {{end}}<code>{{$s}}</code>{{end}}</p>{{end}}
<p>Returning to <strong id="redirect-host">{{.RedirectHost}}</strong> in {{.Delay}} seconds.{{if .LocalRedirect}}
<br><span class="warn">The redirect goes to a program on this machine ({{.RedirectHost}}): any local program can claim such an address.</span>{{end}}</p>
<p><a class="button" href="{{.Continue}}">Continue</a></p>
<p class="note">mcp-pdp dev authorization server ({{.Issuer}}). Development only: anyone who reaches it gets tokens.</p>
</body>
</html>
`))

// consentData is the content of the consent page.
type consentData struct {
	Subject, ClientName, ClientID, ClientHost, Resource, Issuer string
	MetadataDocument                                            bool
	Scopes, Dropped                                             []string
	RedirectHost                                                string
	LocalRedirect                                               bool
	// Continue is the redirect with the code; its scheme was checked when
	// the client registered (checkRedirectURIs), so it is safe to link.
	Continue template.URL
	Delay    int
}

// wantsConsentPage reports whether the authorization request comes from a
// browser that should see the consent page: it accepts HTML and did not
// ask for prompt=none. Other user agents (HTTP libraries, the SDKs' test
// harnesses, curl) get the redirect at once.
func wantsConsentPage(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html") && r.URL.Query().Get("prompt") != "none"
}

// redirectHost is what the page says the browser goes to: the host of an
// http(s) redirect URI, else its scheme (a native app's custom scheme).
func redirectHost(u *url.URL) (host string, local bool) {
	if u.Host == "" {
		return u.Scheme + ":", false
	}
	return u.Host, loopbackHost(u.Hostname())
}

// writeConsent answers the consent page.
func writeConsent(w http.ResponseWriter, d consentData) {
	var b bytes.Buffer
	if err := consentPage.Execute(&b, d); err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "rendering the consent page failed")
		return
	}
	pageHeaders(w)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

// errorPage is what a browser sees when the authorization request cannot
// be redirected back (an unknown client, a redirect URI it did not
// register): RFC 6749 §4.1.2.1 forbids redirecting then.
var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorization failed — mcp-pdp dev authorization server</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222} code{background:#f3f3f3;padding:0 .25em}</style></head>
<body><h1>Authorization failed</h1><p><code id="error">{{.Code}}</code>: <span id="description">{{.Description}}</span></p>
<p>The client sent you here with a request this dev authorization server cannot answer; nothing was approved.</p></body></html>
`))

// writeErrorPage answers an authorization error to a browser.
func writeErrorPage(w http.ResponseWriter, status int, code, desc string) {
	var b bytes.Buffer
	if err := errorPage.Execute(&b, struct{ Code, Description string }{code, desc}); err != nil {
		oauthError(w, status, code, desc)
		return
	}
	pageHeaders(w)
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// pageHeaders are the headers of the HTML pages: never cached, never
// framed, no script, no referrer.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}
