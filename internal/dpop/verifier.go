package dpop

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultWindow is the accepted distance between a proof's iat and now,
// both ways, when Options.Window is zero: the ±5 minutes the MCP DPoP
// profile (SEP-1932) sets for servers that keep no state.
const DefaultWindow = 5 * time.Minute

// MaxProofBytes is the largest DPoP header value accepted. A proof with a
// P-256 key is about 600 bytes, one with an RSA 4096 key about 1.5 KiB.
const MaxProofBytes = 8 << 10

// Options configure a [Verifier].
type Options struct {
	// Algorithms is the allow-list; empty = DefaultAlgorithms(). "none"
	// and HS* are refused by New. "Ed25519" (RFC 9864) may be added.
	Algorithms []string
	// Window is the accepted |now - iat|; 0 = DefaultWindow. Negative is
	// an error.
	Window time.Duration
	// Replay remembers accepted proofs (required): a [MemoryReplay] for
	// one replica, a [KVReplay] or a [LayeredReplay] across replicas.
	Replay ReplayCache
	// Nonces, when set, makes every proof carry a nonce it issued (RFC 9449
	// §9); nil: no server nonces.
	Nonces *Nonces
	// Now is the clock; nil = time.Now.
	Now func() time.Time
}

// Verifier checks DPoP proofs (RFC 9449 §4.3) presented to one or more
// protected resources. It is immutable and safe for concurrent use.
type Verifier struct {
	// keys caches the checked public keys of proofs by their jwk header
	// member's bytes and alg: a client signs every proof with one key, so
	// after its first proof only the signature is checked. Bounded by
	// maxCachedKeys (then keys are checked every time).
	keys     sync.Map // string(jwk bytes) + "\x00" + alg -> *proofKey
	keyCount atomic.Int64
	algs     map[string]*algInfo
	names    []string
	window   time.Duration
	replay   ReplayCache
	nonces   *Nonces
	now      func() time.Time
}

// New validates o and returns a verifier.
func New(o Options) (*Verifier, error) {
	if o.Replay == nil {
		return nil, errors.New("dpop: a replay cache is required (NewMemoryReplay for one replica, NewKVReplay across replicas)")
	}
	if o.Window < 0 {
		return nil, fmt.Errorf("dpop: window %s is negative; use 0 for the default (%s)", o.Window, DefaultWindow)
	}
	v := &Verifier{window: o.Window, replay: o.Replay, nonces: o.Nonces, now: o.Now}
	if v.window == 0 {
		v.window = DefaultWindow
	}
	if h, ok := o.Replay.(holdLimiter); ok {
		if hold := h.maxHold(); hold > 0 && hold < 2*v.window {
			return nil, fmt.Errorf("dpop: the replay cache keeps proofs %s, less than the %s a proof stays acceptable (2 × window)", hold, 2*v.window)
		}
	}
	if v.now == nil {
		v.now = time.Now
	}
	names := o.Algorithms
	if len(names) == 0 {
		names = DefaultAlgorithms()
	}
	algs, err := buildAlgs(names)
	if err != nil {
		return nil, fmt.Errorf("dpop: %w", err)
	}
	v.algs = algs
	for _, n := range names {
		if !slices.Contains(v.names, n) {
			v.names = append(v.names, n)
		}
	}
	return v, nil
}

// Algorithms returns the allowed proof algorithms, for the algs parameter
// of the WWW-Authenticate DPoP challenge (RFC 9449 §7.1).
func (v *Verifier) Algorithms() []string { return slices.Clone(v.names) }

// Window returns the accepted |now - iat|.
func (v *Verifier) Window() time.Duration { return v.window }

// Nonce returns the current server nonce to send in a DPoP-Nonce header
// (RFC 9449 §8.2: with any answer, so that a client renews it before it
// expires), or "" when the verifier takes no nonces.
func (v *Verifier) Nonce() string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.Current()
}

// Check is what the PDP knows of one request.
type Check struct {
	// Proof is the DPoP header value as received (exactly one header; the
	// caller refuses several).
	Proof string
	// Method is the HTTP method of the request, e.g. "POST".
	Method string
	// URL is the request's absolute URL as the client addressed it; its
	// query and fragment are ignored.
	URL string
	// AccessToken is the access token the proof must be bound to (ath); ""
	// when none.
	AccessToken string
	// JKT is the token's cnf.jkt (base64url SHA-256 JWK thumbprint); "" for
	// an unbound token: the proof key is then only reported.
	JKT string
	// Request, when set, identifies the HTTP request at the enforcement
	// point: its several decisions (a batch's messages, a list's request
	// and its answer) may present its one proof; another request may not.
	// Empty: the proof is accepted once.
	Request string
}

// Proof is a verified proof.
type Proof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof key, base64url.
	JKT string
	// JTI is the proof's jti.
	JTI string
	// IssuedAt is the proof's iat.
	IssuedAt time.Time
	// Alg is the proof's signature algorithm.
	Alg string
}

// Verify checks c.Proof for the request c describes, in the order of RFC
// 9449 §4.3: one compact JWS; its header (typ dpop+jwt, an allowed alg, no
// crit, a public jwk fitting alg); its signature with that key over the
// bytes received; then its claims (jti, htm, htu, iat within the window,
// ath, the key's thumbprint against c.JKT, the server nonce), and last its
// jti, claimed in the replay cache until iat + window, so that a proof
// refused for any other reason is not remembered.
//
// A rejection is an [*Error] (401 with WWW-Authenticate: DPoP); any other
// error means the replay cache could not answer, and the request must be
// refused as unavailable (503).
func (v *Verifier) Verify(ctx context.Context, c Check) (*Proof, error) {
	p, key, err := v.verify(c)
	if err != nil {
		return nil, err
	}
	until := p.IssuedAt.Add(v.window)
	fresh, rerr := v.replay.Claim(ctx, key, c.Request, until)
	if rerr != nil {
		return nil, fmt.Errorf("dpop: replay cache: %w", rerr)
	}
	if !fresh {
		return nil, invalid(descReplayed)
	}
	return p, nil
}

// maxCachedKeys bounds Verifier.keys.
const maxCachedKeys = 10_000

// proofKey is parseProofKey, cached: the same jwk bytes for the same
// algorithm give the same key (the key is public; the cache holds only
// keys that passed every check).
func (v *Verifier) proofKey(raw []byte, ai *algInfo) (*proofKey, *Error) {
	ck := string(raw) + "\x00" + ai.name
	if pk, ok := v.keys.Load(ck); ok {
		return pk.(*proofKey), nil
	}
	pk, err := parseProofKey(raw, ai)
	if err != nil {
		return nil, err
	}
	if v.keyCount.Load() < maxCachedKeys {
		if _, loaded := v.keys.LoadOrStore(ck, pk); !loaded {
			v.keyCount.Add(1)
		}
	}
	return pk, nil
}

// verify is everything but the replay claim; it returns the replay key.
func (v *Verifier) verify(c Check) (*Proof, [32]byte, *Error) {
	var key [32]byte
	raw := c.Proof
	if raw == "" {
		return nil, key, invalid(descMissing)
	}
	if len(raw) > MaxProofBytes {
		return nil, key, invalid(descTooLarge)
	}

	// Compact JWS: exactly three base64url segments.
	dot1, dot2 := -1, -1
	for i := 0; i < len(raw); i++ {
		switch ch := raw[i]; {
		case ch == '.':
			switch {
			case dot1 < 0:
				dot1 = i
			case dot2 < 0:
				dot2 = i
			default:
				return nil, key, invalidCause(descNotJWS, errors.New("more than three segments"))
			}
		case ch == ',':
			return nil, key, invalid(descSeveral)
		case !isB64URLChar(ch):
			return nil, key, invalidCause(descNotJWS, errors.New("invalid character"))
		}
	}
	if dot2 < 0 || dot1 == 0 || dot2 == dot1+1 {
		return nil, key, invalidCause(descNotJWS, errors.New("not three segments (the header and the payload non-empty)"))
	}
	hSeg, pSeg, sSeg := raw[:dot1], raw[dot1+1:dot2], raw[dot2+1:]

	// Header.
	hb, err := b64.DecodeString(hSeg)
	if err != nil {
		return nil, key, invalidCause(descHeader, err)
	}
	hdr, err := parseObject(hb)
	if err != nil {
		return nil, key, invalidCause(descHeader, err)
	}
	if typ, _, ok := memberString(hdr, "typ"); !ok || typ != "dpop+jwt" {
		return nil, key, invalid(descTyp)
	}
	alg, present, ok := memberString(hdr, "alg")
	switch {
	case !present:
		return nil, key, invalid(descNoAlg)
	case !ok:
		return nil, key, invalidCause(descHeader, errors.New(`"alg" is not a string`))
	}
	ai := v.algs[alg]
	if ai == nil {
		return nil, key, algNotAllowed(alg)
	}
	if _, ok := hdr["crit"]; ok {
		return nil, key, invalid(descCrit)
	}
	jwkRaw, ok := hdr["jwk"]
	if !ok {
		return nil, key, invalid(descNoJWK)
	}
	pk, perr := v.proofKey(jwkRaw, ai)
	if perr != nil {
		return nil, key, perr
	}

	// Signature over the ASCII "header.payload" exactly as received.
	if sSeg == "" {
		return nil, key, invalid(descSignature)
	}
	sig, err := b64.DecodeString(sSeg)
	if err != nil {
		return nil, key, invalidCause(descNotJWS, fmt.Errorf("signature: %w", err))
	}
	if err := ai.verifier.Verify(pk.key, []byte(raw[:dot2]), sig); err != nil {
		return nil, key, invalidCause(descSignature, err)
	}

	// Claims, read only now that the key holder signed them.
	pb, err := b64.DecodeString(pSeg)
	if err != nil {
		return nil, key, invalidCause(descPayload, err)
	}
	m, err := parseObject(pb)
	if err != nil {
		return nil, key, invalidCause(descPayload, err)
	}
	jti, e := requiredString(m, "jti")
	if e != nil {
		return nil, key, e
	}
	if len(jti) > maxJTIBytes {
		return nil, key, invalid(descJTITooLong)
	}
	htm, e := requiredString(m, "htm")
	if e != nil {
		return nil, key, e
	}
	if htm != c.Method {
		return nil, key, invalid(descHTM)
	}
	htu, e := requiredString(m, "htu")
	if e != nil {
		return nil, key, e
	}
	want, ok := normalizeHTU(c.URL)
	if !ok {
		return nil, key, invalid(descRequestURL)
	}
	got, ok := normalizeHTU(htu)
	if !ok {
		return nil, key, malformedClaim("htu")
	}
	if got != want {
		return nil, key, invalid(descHTU)
	}
	iatRaw, ok := m["iat"]
	if !ok {
		return nil, key, missingClaim("iat")
	}
	iatF, ok := numericDate(iatRaw)
	if !ok {
		return nil, key, malformedClaim("iat")
	}
	sec, frac := math.Modf(iatF)
	iat := time.Unix(int64(sec), int64(frac*1e9))
	switch age := v.now().Sub(iat); {
	case age > v.window:
		return nil, key, invalid(descStale)
	case age < -v.window:
		return nil, key, invalid(descFuture)
	}
	if c.AccessToken != "" {
		ath, e := requiredString(m, "ath")
		if e != nil {
			return nil, key, e
		}
		if subtle.ConstantTimeCompare([]byte(ath), []byte(AccessTokenHash(c.AccessToken))) != 1 {
			return nil, key, invalid(descATH)
		}
	}
	if c.JKT != "" && subtle.ConstantTimeCompare([]byte(pk.jkt), []byte(c.JKT)) != 1 {
		return nil, key, invalid(descJKT)
	}
	if v.nonces != nil {
		nonce, present, ok := memberString(m, "nonce")
		switch {
		case !present:
			return nil, key, useNonce(descNonceMissing, v.nonces.Current())
		case !ok:
			return nil, key, malformedClaim("nonce")
		}
		switch v.nonces.check(nonce) {
		case nonceExpired:
			return nil, key, useNonce(descNonceExpired, v.nonces.Current())
		case nonceInvalid:
			return nil, key, useNonce(descNonceInvalid, v.nonces.Current())
		}
	}
	return &Proof{JKT: pk.jkt, JTI: jti, IssuedAt: iat, Alg: alg}, replayKey(pk.jkt, jti), nil
}

// replayKey is the replay cache key of a proof: its key's thumbprint and
// its jti, so that two clients choosing the same jti do not collide.
func replayKey(jkt, jti string) [32]byte {
	h := sha256.New()
	h.Write([]byte("mcp-pdp dpop jti\x00"))
	h.Write([]byte(jkt)) // fixed length: 43 characters
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// requiredString reads a claim that must be a non-empty string.
func requiredString(m map[string][]byte, name string) (string, *Error) {
	s, present, ok := memberString(m, name)
	switch {
	case !present:
		return "", missingClaim(name)
	case !ok:
		return "", malformedClaim(name)
	case s == "":
		return "", missingClaim(name)
	}
	return s, nil
}

// String describes the verifier for logs.
func (v *Verifier) String() string {
	return fmt.Sprintf("dpop.Verifier{algs: %s, window: %s, nonces: %t}", strings.Join(v.names, " "), v.window, v.nonces != nil)
}
