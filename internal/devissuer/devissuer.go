package devissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// DefaultAlg is the signing algorithm used when New is given "".
const DefaultAlg = "ES256"

// DefaultTTL is the lifetime of minted tokens when MintOptions.TTL is 0.
const DefaultTTL = time.Hour

// JWKSPath is where Handler serves the JWKS, relative to the issuer URL.
const JWKSPath = "/jwks.json"

// Issuer is a development token issuer. It is immutable after New/Load and
// safe for concurrent use.
type Issuer struct {
	url    string
	alg    string
	kid    string
	priv   crypto.Signer
	signer jws.Signer2
	jwks   []byte
	keyJWK []byte // private JWK (for Save)
	// asDefaults are the AuthServer options of WithAuthServerDefaults.
	asDefaults *AuthServerOptions
}

// Algorithms lists the algorithms New accepts.
func Algorithms() []string {
	return []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
}

// New creates an issuer with a fresh key for alg ("" = ES256). issuerURL is
// the exact `iss` of minted tokens; it must be an http(s) URL without query
// or fragment.
func New(issuerURL, alg string) (*Issuer, error) {
	if alg == "" {
		alg = DefaultAlg
	}
	priv, err := generate(alg)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	return build(issuerURL, alg, priv, "")
}

func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "EdDSA":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("unsupported algorithm %q (supported: %s)", alg, strings.Join(Algorithms(), " "))
}

func checkKey(alg string, priv crypto.Signer) error {
	ok := false
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		ok = alg == "ES256" && k.Curve == elliptic.P256() || alg == "ES384" && k.Curve == elliptic.P384() || alg == "ES512" && k.Curve == elliptic.P521()
	case *rsa.PrivateKey:
		ok = strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case ed25519.PrivateKey:
		ok = alg == "EdDSA"
	}
	if !ok {
		return fmt.Errorf("key %T cannot sign %s", priv, alg)
	}
	return nil
}

func build(issuerURL, alg string, priv crypto.Signer, kid string) (*Issuer, error) {
	if err := checkIssuerURL(issuerURL); err != nil {
		return nil, fmt.Errorf("devissuer: issuer URL %q: %w", issuerURL, err)
	}
	if err := checkKey(alg, priv); err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("devissuer: importing public key: %w", err)
	}
	if kid == "" {
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("devissuer: thumbprint: %w", err)
		}
		kid = base64.RawURLEncoding.EncodeToString(tp)
	}
	sa, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		return nil, fmt.Errorf("devissuer: unknown algorithm %q", alg)
	}
	if err := annotate(pub, kid, sa); err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("devissuer: encoding JWKS: %w", err)
	}
	privJWK, err := jwk.Import(priv)
	if err != nil {
		return nil, fmt.Errorf("devissuer: importing private key: %w", err)
	}
	if err := annotate(privJWK, kid, sa); err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	keyJSON, err := json.Marshal(privJWK)
	if err != nil {
		return nil, fmt.Errorf("devissuer: encoding private key: %w", err)
	}
	signer, err := jws.SignerFor(sa)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	return &Issuer{url: issuerURL, alg: alg, kid: kid, priv: priv, signer: signer, jwks: jwks, keyJWK: keyJSON}, nil
}

// annotate sets kid, alg and use=sig on a JWK.
func annotate(k jwk.Key, kid string, alg jwa.SignatureAlgorithm) error {
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		return err
	}
	if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
		return err
	}
	return k.Set(jwk.KeyUsageKey, "sig")
}

func checkIssuerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http or https URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.Contains(s, "#") {
		return errors.New("must not have a query or fragment")
	}
	return nil
}

// IssuerURL returns the `iss` of minted tokens.
func (i *Issuer) IssuerURL() string { return i.url }

// Alg returns the signing algorithm.
func (i *Issuer) Alg() string { return i.alg }

// KeyID returns the kid of the signing key (its RFC 7638 thumbprint unless
// loaded from a file that says otherwise).
func (i *Issuer) KeyID() string { return i.kid }

// PublicKey returns the public signing key (*ecdsa.PublicKey,
// *rsa.PublicKey or ed25519.PublicKey).
func (i *Issuer) PublicKey() crypto.PublicKey { return i.priv.Public() }

// JWKS returns the public JWKS document (a fresh copy).
func (i *Issuer) JWKS() []byte { return append([]byte(nil), i.jwks...) }

// JWKSURI returns the URL at which Handler serves the JWKS.
func (i *Issuer) JWKSURI() string { return strings.TrimSuffix(i.url, "/") + JWKSPath }

// Metadata returns the authorization server metadata document (RFC 8414,
// also valid as a minimal OpenID Connect discovery document).
func (i *Issuer) Metadata() []byte {
	doc := map[string]any{
		"issuer":                                i.url,
		"jwks_uri":                              i.JWKSURI(),
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{i.alg},
		"token_endpoint_auth_signing_alg_values_supported": []string{i.alg},
	}
	b, _ := json.Marshal(doc) // cannot fail: strings only
	return b
}

// Handler serves, relative to the host root of the issuer URL:
//   - GET {issuer}/jwks.json: the JWKS;
//   - GET /.well-known/oauth-authorization-server{issuer path} (RFC 8414);
//   - GET /.well-known/openid-configuration{issuer path} and
//     {issuer}/.well-known/openid-configuration (OpenID Connect Discovery).
//
// Anything else is 404. Mount it at the root of the server whose address is
// the issuer URL.
func (i *Issuer) Handler() http.Handler {
	u, _ := url.Parse(i.url) // validated in build
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	meta := i.Metadata()
	routes := map[string][]byte{
		path + JWKSPath: i.jwks,
		"/.well-known/oauth-authorization-server" + path: meta,
		"/.well-known/openid-configuration" + path:       meta,
		path + "/.well-known/openid-configuration":       meta,
	}
	ctypes := map[string]string{path + JWKSPath: "application/jwk-set+json"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := routes[r.URL.EscapedPath()]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		ct := ctypes[r.URL.EscapedPath()]
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write(body)
	})
}

// Actor is one link of an RFC 8693 `act` chain.
type Actor struct {
	Subject  string
	ClientID string
}

// MintOptions describe a token. Zero values are omitted or defaulted.
type MintOptions struct {
	Subject  string   // `sub`
	ClientID string   // `client_id`
	Audience []string // `aud`: one value is written as a string, several as an array
	Scopes   []string // `scope`, space-delimited
	// TTL sets exp = IssuedAt + TTL; 0 = DefaultTTL. A negative TTL mints
	// an already expired token (for tests).
	TTL       time.Duration
	IssuedAt  time.Time // `iat`; zero = now
	NotBefore time.Time // `nbf`; zero = omitted
	Act       []Actor   // `act` chain, outermost (current actor) first
	// Kid overrides the header kid (e.g. to test unknown or reused kids).
	Kid string
	// Extra claims, applied last: they override the standard ones; a nil
	// value removes the claim (e.g. Extra{"exp": nil} mints a token
	// without exp).
	Extra map[string]any
	// Header entries, applied last to the protected header (nil removes);
	// "alg" cannot be changed.
	Header map[string]any
}

// Mint signs a new access token (JWT, typ "at+jwt", with a random jti).
func (i *Issuer) Mint(o MintOptions) (string, error) {
	iat := o.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("devissuer: jti: %w", err)
	}
	c := map[string]any{
		"iss": i.url,
		"iat": iat.Unix(),
		"exp": iat.Add(ttl).Unix(),
		"jti": hex.EncodeToString(jti[:]),
	}
	if o.Subject != "" {
		c["sub"] = o.Subject
	}
	if o.ClientID != "" {
		c["client_id"] = o.ClientID
	}
	switch len(o.Audience) {
	case 0:
	case 1:
		c["aud"] = o.Audience[0]
	default:
		c["aud"] = o.Audience
	}
	if len(o.Scopes) > 0 {
		c["scope"] = strings.Join(o.Scopes, " ")
	}
	if !o.NotBefore.IsZero() {
		c["nbf"] = o.NotBefore.Unix()
	}
	if len(o.Act) > 0 {
		var act map[string]any
		for j := len(o.Act) - 1; j >= 0; j-- {
			a := map[string]any{}
			if o.Act[j].Subject != "" {
				a["sub"] = o.Act[j].Subject
			}
			if o.Act[j].ClientID != "" {
				a["client_id"] = o.Act[j].ClientID
			}
			if act != nil {
				a["act"] = act
			}
			act = a
		}
		c["act"] = act
	}
	for k, v := range o.Extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("devissuer: encoding claims: %w", err)
	}
	hdr := map[string]any{"typ": "at+jwt"}
	if o.Kid != "" {
		hdr["kid"] = o.Kid
	}
	for k, v := range o.Header {
		hdr[k] = v
	}
	return i.SignJSON(hdr, payload)
}

// SignJSON signs an arbitrary payload as a compact JWS with the issuer key.
// header is merged over {"alg": <issuer alg>, "kid": <issuer kid>}; a nil
// value removes an entry; "alg" is always the issuer's. Tests use it to
// build well-signed but hostile tokens.
func (i *Issuer) SignJSON(header map[string]any, payload []byte) (string, error) {
	h := map[string]any{"kid": i.kid}
	for k, v := range header {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	h["alg"] = i.alg
	hb, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("devissuer: encoding header: %w", err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hb) + "." + enc.EncodeToString(payload)
	sig, err := i.signer.Sign(i.priv, []byte(input))
	if err != nil {
		return "", fmt.Errorf("devissuer: signing: %w", err)
	}
	return input + "." + enc.EncodeToString(sig), nil
}

// fileFormat is the on-disk form written by Save.
type fileFormat struct {
	Issuer string          `json:"issuer"`
	Alg    string          `json:"alg"`
	Key    json.RawMessage `json:"key"` // private JWK
}

// Save writes the issuer URL and the private key (as a JWK) to path with
// mode 0600, atomically (temp file + rename), so that `pdp token` can mint
// from another process while the dev server runs.
func (i *Issuer) Save(path string) error {
	b, err := json.MarshalIndent(fileFormat{Issuer: i.url, Alg: i.alg, Key: i.keyJWK}, "", "  ")
	if err != nil {
		return fmt.Errorf("devissuer: encoding %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".devissuer-*.json")
	if err != nil {
		return fmt.Errorf("devissuer: saving %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("devissuer: saving %s: %w", path, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("devissuer: saving %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("devissuer: saving %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("devissuer: saving %s: %w", path, err)
	}
	return nil
}

// Load reads a file written by Save.
func Load(path string) (*Issuer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	var ff fileFormat
	if err := json.Unmarshal(b, &ff); err != nil {
		return nil, fmt.Errorf("devissuer: %s: invalid JSON: %w", path, err)
	}
	if ff.Issuer == "" || len(ff.Key) == 0 {
		return nil, fmt.Errorf("devissuer: %s: missing issuer or key", path)
	}
	key, err := jwk.ParseKey(ff.Key)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %s: key: %w", path, err)
	}
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		return nil, fmt.Errorf("devissuer: %s: key: %w", path, err)
	}
	priv, ok := raw.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("devissuer: %s: key is not a private signing key (%T)", path, raw)
	}
	alg := ff.Alg
	if alg == "" {
		if a, ok := key.Algorithm(); ok {
			alg = a.String()
		}
	}
	kid, _ := key.KeyID()
	iss, err := build(ff.Issuer, alg, priv, kid)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return iss, nil
}

// JWKSOf merges the public keys of several issuers into one JWKS document
// (e.g. to serve a rotation: old and new key side by side).
func JWKSOf(issuers ...*Issuer) ([]byte, error) {
	keys := make([]json.RawMessage, 0, len(issuers))
	for _, i := range issuers {
		var doc struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(i.jwks, &doc); err != nil {
			return nil, fmt.Errorf("devissuer: %w", err)
		}
		keys = append(keys, doc.Keys...)
	}
	return json.Marshal(map[string]any{"keys": keys})
}
