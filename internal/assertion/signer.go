package assertion

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// DefaultAlg is the signing algorithm when Options.Alg is "" and the key is
// new.
const DefaultAlg = "ES256"

// Algorithms lists the signing algorithms a Signer supports (and the only
// ones Verify accepts).
func Algorithms() []string { return []string{"ES256", "ES384", "ES512", "EdDSA"} }

// JWKSMaxAge is the Cache-Control max-age of the JWKS served by
// Signer.Handler.
const JWKSMaxAge = 5 * time.Minute

// Options configure a Signer.
type Options struct {
	// KeyFile is the PEM file of the signing key (PKCS#8 "PRIVATE KEY";
	// SEC 1 "EC PRIVATE KEY" is read too). A missing file is created with a
	// fresh key and mode 0600 (its directory with 0700), so that restarts
	// keep the key; an existing file is used as it is. "" = a fresh key in
	// memory only, which upstreams stop trusting at the next start (tests).
	KeyFile string
	// Issuer is the gateway's issuer URL, written as `iss`: an absolute
	// http(s) URL without query or fragment. Required.
	Issuer string
	// TTL is the lifetime of an assertion; 0 = DefaultTTL (60s). At most
	// MaxTTL.
	TTL time.Duration
	// Alg is one of Algorithms(). "" = the algorithm of the key in KeyFile
	// when it exists, else DefaultAlg (ES256). A key that cannot sign Alg is
	// an error naming the file.
	Alg string
}

// Signer signs identity assertions. It is immutable after NewSigner and
// safe for concurrent use.
type Signer struct {
	iss    string
	alg    string
	kid    string
	ttl    time.Duration
	priv   crypto.Signer
	size   int    // ECDSA: bytes of r and of s; EdDSA: 0
	sigLen int    // encoded length of a signature (fixed for EC and EdDSA)
	hdr    []byte // base64url(protected header) + "."
	prefix []byte // `{"iss":"…"`
	jwks   []byte
	etag   string
}

// NewSigner loads or creates the key and returns a Signer.
func NewSigner(o Options) (*Signer, error) {
	if err := checkIssuerURL(o.Issuer); err != nil {
		return nil, fmt.Errorf("assertion: issuer %q: %w", o.Issuer, err)
	}
	ttl := o.TTL
	switch {
	case ttl == 0:
		ttl = DefaultTTL
	case ttl < time.Second:
		return nil, fmt.Errorf("assertion: ttl %s is shorter than a second (the claims have second precision); use 0 for the default (%s)", ttl, DefaultTTL)
	case ttl > MaxTTL:
		return nil, fmt.Errorf("assertion: ttl %s is longer than %s: an assertion is short-lived", ttl, MaxTTL)
	}
	if o.Alg != "" && algInfoOf(o.Alg) == nil {
		return nil, fmt.Errorf("assertion: unsupported algorithm %q (supported: %s)", o.Alg, strings.Join(Algorithms(), " "))
	}
	priv, alg, err := loadOrCreateKey(o.KeyFile, o.Alg)
	if err != nil {
		return nil, err
	}
	return build(o.Issuer, alg, ttl, priv)
}

func build(iss, alg string, ttl time.Duration, priv crypto.Signer) (*Signer, error) {
	sa, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		return nil, fmt.Errorf("assertion: algorithm %s is not registered with jwx", alg)
	}
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("assertion: importing the public key: %w", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("assertion: key thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	for _, kv := range []struct {
		k string
		v any
	}{{jwk.KeyIDKey, kid}, {jwk.AlgorithmKey, sa}, {jwk.KeyUsageKey, "sig"}} {
		if err := pub.Set(kv.k, kv.v); err != nil {
			return nil, fmt.Errorf("assertion: JWK %s: %w", kv.k, err)
		}
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("assertion: JWKS: %w", err)
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("assertion: encoding the JWKS: %w", err)
	}
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{alg, kid, Typ})
	if err != nil {
		return nil, fmt.Errorf("assertion: encoding the header: %w", err)
	}
	s := &Signer{
		iss:  iss,
		alg:  alg,
		kid:  kid,
		ttl:  ttl,
		priv: priv,
		jwks: jwks,
		etag: strconv.Quote(kid),
	}
	s.hdr = append(base64.RawURLEncoding.AppendEncode(nil, hdr), '.')
	s.prefix = appendString([]byte(`{"iss":`), iss)
	if c := algInfoOf(alg).curve; c != nil {
		s.size = (c.Params().BitSize + 7) / 8
	}
	// Sign once: it checks that the key works and measures the signature.
	sig, err := rawSign(priv, s.size, []byte("probe"))
	if err != nil {
		return nil, fmt.Errorf("assertion: test signature with %s: %w", alg, err)
	}
	s.sigLen = base64.RawURLEncoding.EncodedLen(len(sig))
	return s, nil
}

// TTL returns the lifetime of the assertions it signs.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Alg returns the signing algorithm.
func (s *Signer) Alg() string { return s.alg }

// KeyID returns the kid of the signing key: its RFC 7638 SHA-256
// thumbprint, base64url.
func (s *Signer) KeyID() string { return s.kid }

// Issuer returns the `iss` of the assertions.
func (s *Signer) Issuer() string { return s.iss }

// JWKS returns the public JWKS document (a fresh copy): one key, with kid,
// alg and use "sig". It never contains the private key.
func (s *Signer) JWKS() []byte { return append([]byte(nil), s.jwks...) }

// Handler serves the JWKS on GET and HEAD at whatever path it is mounted,
// as application/jwk-set+json with Cache-Control max-age JWKSMaxAge, an
// ETag, and Access-Control-Allow-Origin "*" (the keys are public). Other
// methods get 405.
func (s *Signer) Handler() http.Handler {
	cacheControl := "public, max-age=" + strconv.Itoa(int(JWKSMaxAge/time.Second))
	length := strconv.Itoa(len(s.jwks))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", cacheControl)
		h.Set("ETag", s.etag)
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, s.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/jwk-set+json")
		h.Set("Content-Length", length)
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(s.jwks)
	})
}

// etagMatch implements the weak comparison of If-None-Match (RFC 9110
// §13.1.2) for one strong ETag.
func etagMatch(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// Sign returns the compact JWS of c, issued now for s's TTL. It fails when c
// is not representable: no Audience, a string that is not valid UTF-8, an
// empty scope or one with white space, an empty actor or an act chain longer
// than MaxActDepth, an anonymous caller (Subject "") with client, act,
// scopes or grant, or a result longer than MaxBytes.
func (s *Signer) Sign(c Claims) (string, error) {
	if err := check(&c); err != nil {
		return "", err
	}
	now := time.Now().Unix()
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("assertion: jti: %w", err)
	}

	// Payload JSON, on the stack when it fits.
	var scratch [1024]byte
	p := append(scratch[:0], s.prefix...)
	if c.Subject == "" {
		p = append(p, `,"anon":true`...)
	} else {
		p = appendField(p, "sub", c.Subject)
	}
	p = appendField(p, "aud", c.Audience)
	p = appendInt(p, "iat", now)
	p = appendInt(p, "exp", now+int64(s.ttl/time.Second))
	p = append(p, `,"jti":"`...)
	p = base64.RawURLEncoding.AppendEncode(p, jti[:])
	p = append(p, '"')
	if c.ClientID != "" {
		p = appendField(p, "client_id", c.ClientID)
	}
	if len(c.Act) > 0 {
		p = append(p, `,"act":`...)
		p = appendAct(p, c.Act)
	}
	if len(c.Scopes) > 0 {
		p = append(p, `,"scope":"`...)
		for i, sc := range c.Scopes {
			if i > 0 {
				p = append(p, ' ')
			}
			p = appendEscaped(p, sc)
		}
		p = append(p, '"')
	}
	if c.Grant != "" {
		p = appendField(p, "grant", c.Grant)
	}
	if c.DecisionID != "" {
		p = appendField(p, "decision_id", c.DecisionID)
	}
	p = append(p, '}')

	enc := base64.RawURLEncoding
	n := len(s.hdr) + enc.EncodedLen(len(p)) + 1 + s.sigLen
	if n > MaxBytes {
		return "", fmt.Errorf("assertion: would be %d bytes, more than %d (MaxBytes): too many scopes or actors, or too long strings", n, MaxBytes)
	}
	out := make([]byte, 0, n)
	out = append(out, s.hdr...)
	out = enc.AppendEncode(out, p)
	sig, err := rawSign(s.priv, s.size, out)
	if err != nil {
		return "", fmt.Errorf("assertion: signing: %w", err)
	}
	out = append(out, '.')
	out = enc.AppendEncode(out, sig)
	// out is not used after this: share its bytes with the string.
	return unsafe.String(unsafe.SliceData(out), len(out)), nil
}

// check validates c for Sign; see there.
func check(c *Claims) error {
	if c.Audience == "" {
		return errors.New("assertion: audience (the upstream) is required")
	}
	if c.Subject == "" && (c.ClientID != "" || len(c.Act) > 0 || len(c.Scopes) > 0 || c.Grant != "") {
		return errors.New("assertion: an anonymous caller (no subject) has no client_id, act, scopes or grant; set Subject (the client_id, for a token without sub)")
	}
	if len(c.Act) > MaxActDepth {
		return fmt.Errorf("assertion: act chain of %d actors is longer than %d (MaxActDepth)", len(c.Act), MaxActDepth)
	}
	for _, f := range [...]struct{ name, v string }{
		{"subject", c.Subject}, {"client_id", c.ClientID}, {"grant", c.Grant},
		{"decision_id", c.DecisionID}, {"audience", c.Audience},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("assertion: %s is not valid UTF-8", f.name)
		}
	}
	for i, a := range c.Act {
		if a.Subject == "" && a.ClientID == "" {
			return fmt.Errorf("assertion: act[%d] has neither subject nor client_id", i)
		}
		if !utf8.ValidString(a.Subject) || !utf8.ValidString(a.ClientID) {
			return fmt.Errorf("assertion: act[%d] is not valid UTF-8", i)
		}
	}
	for i, sc := range c.Scopes {
		if sc == "" || strings.IndexFunc(sc, unicode.IsSpace) >= 0 {
			return fmt.Errorf("assertion: scopes[%d] %q is empty or contains white space", i, clip(sc))
		}
		if !utf8.ValidString(sc) {
			return fmt.Errorf("assertion: scopes[%d] is not valid UTF-8", i)
		}
	}
	return nil
}

func checkIssuerURL(s string) error {
	if s == "" {
		return errors.New("is required (the gateway's issuer URL, written as iss)")
	}
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

// clip shortens s for an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
