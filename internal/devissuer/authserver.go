package devissuer

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of AuthServerOptions.
const (
	// DefaultDevSubject is the user the dev authorization server signs in.
	DefaultDevSubject = "alice"
	// DefaultMaxClients bounds the registered clients; the oldest is
	// forgotten first.
	DefaultMaxClients = 10_000
	// codeTTL is how long an authorization code may be redeemed.
	codeTTL = time.Minute
	// maxPending bounds the unredeemed codes and the live refresh tokens.
	maxPending = 10_000
	// maxFormBytes bounds a token or registration request body.
	maxFormBytes = 64 << 10
)

// Endpoint paths of the dev authorization server, relative to the issuer
// URL.
const (
	AuthorizePath = "/authorize"
	TokenPath     = "/token"
	RegisterPath  = "/register"
)

// AuthServerOptions configure the dev authorization server.
type AuthServerOptions struct {
	// Subject is the user every authorization signs in (default
	// DefaultDevSubject).
	Subject string
	// Scopes are scopes_supported; an authorization grants the requested
	// scopes that are in it and drops the others (RFC 6749 §3.3). Empty:
	// any requested scope is granted.
	Scopes []string
	// Resources, when set, are the only resource indicators (RFC 8707) it
	// issues tokens for.
	Resources []string
	// TTL of access tokens (0 = DefaultTTL).
	TTL time.Duration
	// MaxClients bounds registered clients (0 = DefaultMaxClients).
	MaxClients int
	// Logger (default: discard).
	Logger *slog.Logger
	// CIMD configures Client ID Metadata Documents: a client_id that is
	// an https URL (or, in development, an http URL on localhost,
	// 127.0.0.1 or [::1]) names the client's metadata document, which the
	// server fetches instead of asking the client to register.
	CIMD CIMDOptions
	// MintEndpoint serves POST {issuer}/mint (MintRequest), a token for
	// any subject and any of Resources, to processes on this machine
	// (loopback, no browser): `pdp token --url`.
	MintEndpoint bool
}

// WithAuthServerDefaults returns a copy of i (same key, same issuer URL)
// whose AuthServer takes the options of d that its own options leave
// zero (Subject, Scopes, Resources, TTL, MaxClients, Logger, CIMD,
// MintEndpoint when true). The dev server sets them where it knows its
// resources, and mounts the authorization server elsewhere.
func (i *Issuer) WithAuthServerDefaults(d AuthServerOptions) *Issuer {
	c := *i
	c.asDefaults = &d
	return &c
}

// AuthServer is a minimal OAuth 2.1 authorization server for development
// on top of an Issuer: RFC 8414 metadata with real endpoints, RFC 7591
// dynamic registration of public clients, the authorization code grant
// with PKCE S256 (auto-approved for Subject: no login, no consent), RFC
// 8707 resource indicators (the token's aud), RFC 9207 iss in the
// authorization response, and refresh tokens. State is in memory and
// bounded. It is for development only: anyone who reaches it gets tokens.
type AuthServer struct {
	iss  *Issuer
	o    AuthServerOptions
	path string // the issuer URL's path, without a trailing slash
	log  *slog.Logger

	// docs fetches Client ID Metadata Documents; nil when disabled.
	docs *cimdFetcher

	mu       sync.Mutex
	clients  map[string]*devClient
	order    []string // client ids, oldest first
	codes    map[string]*devGrant
	refreshs map[string]*devGrant
	cimd     map[string]*cimdEntry // fetched documents by client_id URL
	cimdAge  []string              // their URLs, oldest first
}

type devClient struct {
	ID           string   `json:"client_id"`
	RedirectURIs []string `json:"redirect_uris"`
	GrantTypes   []string `json:"grant_types"`
	Name         string   `json:"client_name,omitempty"`
	// metadataDocument: the client is a Client ID Metadata Document.
	metadataDocument bool
}

// cimdEntry is a cached metadata document.
type cimdEntry struct {
	client  *devClient
	expires time.Time
}

type devGrant struct {
	clientID, redirectURI, challenge, resource string
	scopes                                     []string
	expires                                    time.Time
}

// AuthServer returns the dev authorization server of i. Options left zero
// take i's defaults (WithAuthServerDefaults), then the package defaults.
func (i *Issuer) AuthServer(o AuthServerOptions) *AuthServer {
	if d := i.asDefaults; d != nil {
		o.Subject = cmp.Or(o.Subject, d.Subject)
		o.TTL = cmp.Or(o.TTL, d.TTL)
		o.MaxClients = cmp.Or(o.MaxClients, d.MaxClients)
		if o.Scopes == nil {
			o.Scopes = d.Scopes
		}
		if o.Resources == nil {
			o.Resources = d.Resources
		}
		if o.Logger == nil {
			o.Logger = d.Logger
		}
		if o.CIMD == (CIMDOptions{}) {
			o.CIMD = d.CIMD
		}
		o.MintEndpoint = o.MintEndpoint || d.MintEndpoint
	}
	o.Subject = cmp.Or(o.Subject, DefaultDevSubject)
	o.TTL = cmp.Or(o.TTL, DefaultTTL)
	o.MaxClients = cmp.Or(o.MaxClients, DefaultMaxClients)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	u, _ := url.Parse(i.url) // validated in build
	a := &AuthServer{
		iss: i, o: o, path: strings.TrimSuffix(u.EscapedPath(), "/"), log: o.Logger,
		clients: map[string]*devClient{}, codes: map[string]*devGrant{}, refreshs: map[string]*devGrant{},
		cimd: map[string]*cimdEntry{},
	}
	if !o.CIMD.Disabled {
		// Loopback documents are fetched when the server itself runs on
		// loopback (draft-ietf-oauth-client-id-metadata-document §8.6).
		a.docs = newCIMDFetcher(o.CIMD, loopbackHost(u.Hostname()))
	}
	return a
}

// Metadata is the RFC 8414 document, with the endpoints.
func (a *AuthServer) Metadata() []byte {
	base := strings.TrimSuffix(a.iss.url, "/")
	doc := map[string]any{
		"issuer":                                         a.iss.url,
		"jwks_uri":                                       a.iss.JWKSURI(),
		"authorization_endpoint":                         base + AuthorizePath,
		"token_endpoint":                                 base + TokenPath,
		"registration_endpoint":                          base + RegisterPath,
		"response_types_supported":                       []string{"code"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported":          []string{"none"},
		"code_challenge_methods_supported":               []string{"S256"},
		"authorization_response_iss_parameter_supported": true,
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{a.iss.alg},
	}
	if len(a.o.Scopes) > 0 {
		doc["scopes_supported"] = a.o.Scopes
	}
	if a.docs != nil {
		doc["client_id_metadata_document_supported"] = true
	}
	b, _ := json.Marshal(doc) // cannot fail
	return b
}

// Handler serves, relative to the host root of the issuer URL, what
// Issuer.Handler serves (with this metadata) and the endpoints:
// POST {issuer}/register, GET {issuer}/authorize, POST {issuer}/token,
// and, with MintEndpoint, POST {issuer}/mint. Browser-based clients may
// call every route but mint (CORS, any origin).
func (a *AuthServer) Handler() http.Handler {
	meta := a.Metadata()
	static := map[string][]byte{
		a.path + JWKSPath: a.iss.jwks,
		"/.well-known/oauth-authorization-server" + a.path: meta,
		"/.well-known/openid-configuration" + a.path:       meta,
		a.path + "/.well-known/openid-configuration":       meta,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.o.MintEndpoint && r.URL.EscapedPath() == a.path+MintPath {
			if r.Method != http.MethodPost {
				w.Header().Set("Allow", http.MethodPost)
				oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST a JSON mint request")
				return
			}
			a.mint(w, r)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
			w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Authorization, Mcp-Protocol-Version")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		p := r.URL.EscapedPath()
		if body, ok := static[p]; ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			ct := "application/json"
			if p == a.path+JWKSPath {
				ct = "application/jwk-set+json"
			}
			w.Header().Set("Content-Type", ct)
			w.Header().Set("Cache-Control", "max-age=60")
			_, _ = w.Write(body)
			return
		}
		switch {
		case p == a.path+RegisterPath && r.Method == http.MethodPost:
			a.register(w, r)
		case p == a.path+AuthorizePath && r.Method == http.MethodGet:
			a.authorize(w, r)
		case p == a.path+TokenPath && r.Method == http.MethodPost:
			a.token(w, r)
		default:
			oauthError(w, http.StatusNotFound, "not_found", r.Method+" "+p+" is not an endpoint of the dev authorization server")
		}
	})
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// register is RFC 7591 for public clients (token_endpoint_auth_method
// "none"): redirect_uris are required, absolute, without fragments, and
// not of a scheme that runs script or reads files (checkRedirectURIs).
func (a *AuthServer) register(w http.ResponseWriter, r *http.Request) {
	var m struct {
		RedirectURIs []string `json:"redirect_uris"`
		GrantTypes   []string `json:"grant_types"`
		Name         string   `json:"client_name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes)).Decode(&m); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_client_metadata", "the body is not a JSON client metadata document")
		return
	}
	if err := checkRedirectURIs(m.RedirectURIs); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_redirect_uri", err.Error())
		return
	}
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{"authorization_code"}
	}
	c := &devClient{ID: "dev-client-" + randomToken()[:16], RedirectURIs: m.RedirectURIs, GrantTypes: m.GrantTypes, Name: truncate(m.Name, 200)}
	a.mu.Lock()
	if len(a.order) >= a.o.MaxClients {
		delete(a.clients, a.order[0])
		a.order = a.order[1:]
	}
	a.clients[c.ID] = c
	a.order = append(a.order, c.ID)
	a.mu.Unlock()
	a.log.Info("dev authorization server: client registered", "client_id", c.ID, "client_name", c.Name)
	writeJSON(w, http.StatusCreated, map[string]any{
		"client_id": c.ID, "client_id_issued_at": time.Now().Unix(), "client_name": c.Name,
		"redirect_uris": c.RedirectURIs, "grant_types": c.GrantTypes, "response_types": []string{"code"},
		"token_endpoint_auth_method": "none",
	})
}

// client is the client of id: a registered one, or the client of a
// Client ID Metadata Document (from the cache, or fetched). It is nil,
// with the reason, when there is none.
func (a *AuthServer) client(ctx context.Context, id string) (*devClient, error) {
	if a.docs != nil && isCIMDClientID(id) {
		return a.documentClient(ctx, id)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.clients[id]; c != nil {
		return c, nil
	}
	return nil, errors.New("unknown client_id: register first (" + a.iss.url + RegisterPath + ")")
}

// documentClient is the client of a metadata document URL: cached while
// the document's cache lifetime lasts, else fetched (and never cached
// when the fetch or the document fails: draft §5.2).
func (a *AuthServer) documentClient(ctx context.Context, id string) (*devClient, error) {
	now := time.Now()
	a.mu.Lock()
	if e := a.cimd[id]; e != nil && now.Before(e.expires) {
		a.mu.Unlock()
		return e.client, nil
	}
	a.mu.Unlock()
	c, ttl, err := a.docs.fetch(ctx, id)
	if err != nil {
		a.log.Warn("dev authorization server: client metadata document refused", "client_id", truncate(id, 200), "err", err)
		return nil, err
	}
	a.log.Info("dev authorization server: client metadata document fetched", "client_id", id, "client_name", c.Name, "cache", ttl)
	if ttl > 0 {
		a.mu.Lock()
		if _, ok := a.cimd[id]; !ok {
			if len(a.cimdAge) >= maxCIMDCached {
				delete(a.cimd, a.cimdAge[0])
				a.cimdAge = a.cimdAge[1:]
			}
			a.cimdAge = append(a.cimdAge, id)
		}
		a.cimd[id] = &cimdEntry{client: c, expires: now.Add(ttl)}
		a.mu.Unlock()
	}
	return c, nil
}

// authorize approves at once for the dev user, with PKCE S256 and exactly
// one resource indicator required, and redirects with code, state and iss.
// A browser (wantsConsentPage) sees the consent page first, which follows
// the same redirect after a moment.
func (a *AuthServer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	browser := wantsConsentPage(r)
	direct := func(code, desc string) {
		if browser {
			writeErrorPage(w, http.StatusBadRequest, code, desc)
			return
		}
		oauthError(w, http.StatusBadRequest, code, desc)
	}
	// Errors before the redirect URI is trusted are answered here
	// (RFC 6749 §4.1.2.1), never redirected.
	c, err := a.client(r.Context(), q.Get("client_id"))
	if err != nil {
		code := "invalid_request"
		if isCIMDClientID(q.Get("client_id")) {
			code = "invalid_client"
		}
		direct(code, err.Error())
		return
	}
	redirect := q.Get("redirect_uri")
	if !slices.Contains(c.RedirectURIs, redirect) {
		direct("invalid_request", "redirect_uri is not one the client registered")
		return
	}
	back, _ := url.Parse(redirect) // checked at registration
	bq := back.Query()
	if s := q.Get("state"); s != "" {
		bq.Set("state", s)
	}
	bq.Set("iss", a.iss.url)
	fail := func(code, desc string) {
		bq.Set("error", code)
		bq.Set("error_description", desc)
		back.RawQuery = bq.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
	}
	resources := q["resource"]
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code")
		return
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
		return
	case len(resources) != 1:
		fail("invalid_target", "exactly one resource parameter (RFC 8707) is required: the MCP server's URI")
		return
	case len(a.o.Resources) > 0 && !slices.Contains(a.o.Resources, resources[0]):
		fail("invalid_target", "this dev authorization server issues tokens for "+strings.Join(a.o.Resources, ", ")+" only")
		return
	}
	asked := strings.Fields(q.Get("scope"))
	g := &devGrant{
		clientID: c.ID, redirectURI: redirect, challenge: q.Get("code_challenge"), resource: resources[0],
		scopes: a.grant(asked), expires: time.Now().Add(codeTTL),
	}
	code := randomToken()
	a.mu.Lock()
	a.prune(a.codes)
	a.codes[code] = g
	a.mu.Unlock()
	a.log.Info("dev authorization server: approved", "client_id", c.ID, "sub", a.o.Subject, "resource", g.resource, "scopes", strings.Join(g.scopes, " "), "consent_page", browser)
	bq.Set("code", code)
	back.RawQuery = bq.Encode()
	if !browser {
		http.Redirect(w, r, back.String(), http.StatusFound)
		return
	}
	d := consentData{
		Subject: a.o.Subject, ClientName: cmp.Or(c.Name, c.ID), ClientID: c.ID, Resource: g.resource, Issuer: a.iss.url,
		MetadataDocument: c.metadataDocument, Scopes: g.scopes, Continue: template.URL(back.String()), Delay: consentDelaySeconds,
	}
	if c.metadataDocument {
		cu, _ := url.Parse(c.ID) // checked by the fetch
		d.ClientHost = cu.Host
		if c.Name == "" {
			d.ClientName = cu.Host
		}
	}
	for _, s := range asked {
		if !slices.Contains(g.scopes, s) && !slices.Contains(d.Dropped, s) {
			d.Dropped = append(d.Dropped, s)
		}
	}
	d.RedirectHost, d.LocalRedirect = redirectHost(back)
	writeConsent(w, d)
}

// grant is the requested scopes this server grants, in order, once each.
func (a *AuthServer) grant(requested []string) []string {
	var out []string
	for _, s := range requested {
		if (len(a.o.Scopes) == 0 || slices.Contains(a.o.Scopes, s)) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// prune drops expired codes, and the oldest entries beyond maxPending.
// Called with a.mu held.
func (a *AuthServer) prune(m map[string]*devGrant) {
	now := time.Now()
	for k, g := range m {
		if !g.expires.IsZero() && now.After(g.expires) {
			delete(m, k)
		}
	}
	for k := range m {
		if len(m) < maxPending {
			break
		}
		delete(m, k)
	}
}

// token redeems an authorization code (PKCE checked) or a refresh token
// (scope may narrow, never widen) for an access token whose aud is the
// resource.
func (a *AuthServer) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return
	}
	f := r.PostForm
	c, err := a.client(r.Context(), f.Get("client_id"))
	if err != nil {
		oauthError(w, http.StatusUnauthorized, "invalid_client", err.Error())
		return
	}
	var g *devGrant
	switch f.Get("grant_type") {
	case "authorization_code":
		a.mu.Lock()
		g = a.codes[f.Get("code")]
		delete(a.codes, f.Get("code")) // single use
		a.mu.Unlock()
		switch {
		case g == nil || time.Now().After(g.expires) || g.clientID != c.ID:
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown, used or expired code")
			return
		case g.redirectURI != f.Get("redirect_uri"):
			oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request")
			return
		case !pkceMatches(f.Get("code_verifier"), g.challenge):
			oauthError(w, http.StatusBadRequest, "invalid_grant", "the code_verifier does not match the code_challenge")
			return
		}
	case "refresh_token":
		a.mu.Lock()
		old := a.refreshs[f.Get("refresh_token")]
		a.mu.Unlock()
		if old == nil || old.clientID != c.ID {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown refresh token")
			return
		}
		ng := *old
		g = &ng
		if s := f.Get("scope"); s != "" {
			asked := strings.Fields(s)
			for _, x := range asked {
				if !slices.Contains(old.scopes, x) {
					oauthError(w, http.StatusBadRequest, "invalid_scope", "a refresh may narrow the scope, not widen it ("+x+")")
					return
				}
			}
			g.scopes = asked
		}
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
		return
	}
	if res := f.Get("resource"); res != "" && res != g.resource {
		oauthError(w, http.StatusBadRequest, "invalid_target", "resource differs from the grant's")
		return
	}
	tok, err := a.iss.Mint(MintOptions{Subject: a.o.Subject, ClientID: c.ID, Audience: []string{g.resource}, Scopes: g.scopes, TTL: a.o.TTL})
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "minting the token failed")
		return
	}
	body := map[string]any{
		"access_token": tok, "token_type": "Bearer", "expires_in": int(a.o.TTL / time.Second),
		"scope": strings.Join(g.scopes, " "),
	}
	if slices.Contains(c.GrantTypes, "refresh_token") {
		rt := randomToken()
		a.mu.Lock()
		a.prune(a.refreshs)
		a.refreshs[rt] = &devGrant{clientID: c.ID, resource: g.resource, scopes: g.scopes}
		a.mu.Unlock()
		body["refresh_token"] = rt
	}
	writeJSON(w, http.StatusOK, body)
}

// pkceMatches checks an RFC 7636 S256 code_verifier against the challenge.
func pkceMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}
