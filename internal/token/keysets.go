package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Defaults for KeySetsConfig.
const (
	DefaultRefreshInterval    = 5 * time.Minute
	DefaultMinRefetchInterval = 10 * time.Second
	DefaultFetchTimeout       = 5 * time.Second
	DefaultMaxBodyBytes       = 1 << 20
	DefaultMaxStaleness       = 24 * time.Hour
	minRSABits                = 2048
)

// KeySetsConfig configures the shared JWKS cache. Zero values mean defaults.
type KeySetsConfig struct {
	// HTTPClient used for JWKS and metadata fetches; nil = a client with no
	// overall timeout (FetchTimeout bounds every request).
	HTTPClient *http.Client
	// RefreshInterval between background refreshes of a key set (default 5m).
	// A Cache-Control max-age on the response shortens it (down to
	// MinRefetchInterval), never lengthens it.
	RefreshInterval time.Duration
	// MinRefetchInterval: an unknown kid triggers at most one refetch per URI
	// per interval, and a failing endpoint is retried at most once per
	// interval (default 10s).
	MinRefetchInterval time.Duration
	// FetchTimeout bounds one fetch, body included (default 5s).
	FetchTimeout time.Duration
	// MaxBodyBytes caps a JWKS or metadata response (default 1 MiB).
	MaxBodyBytes int64
	// MaxStaleness: keys keep verifying while their endpoint fails, until
	// this long after the last successful fetch (default 24h).
	MaxStaleness time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// KeySets is the JWKS cache shared by all verifiers. It is safe for
// concurrent use.
//
// Key sets (and discovered metadata) are fetched on first use (or by
// Verifier.Warm), refreshed in the background when due, refetched when a
// token names an unknown kid (at most once per MinRefetchInterval per URI;
// concurrent callers share the in-flight fetch), and kept usable while the
// endpoint fails, up to MaxStaleness.
//
// Lifecycle: NewKeySets starts no goroutine. Fetches run in short-lived
// goroutines bounded by FetchTimeout, started on demand by lookups; a due
// refresh is started by the next lookup that notices it. Close cancels the
// fetches under way and waits for them. Run additionally refreshes idle key
// sets on schedule; it is optional but recommended for long-running servers
// so that the first request after a quiet period does not see stale keys.
type KeySets struct {
	cfg    KeySetsConfig
	log    *slog.Logger
	client *http.Client
	now    func() time.Time

	mu   sync.RWMutex
	jwks map[string]*cell[*keySet]
	meta map[string]*cell[*issuerMeta]

	fetches     atomic.Uint64
	fetchErrors atomic.Uint64
	// Introspection requests of the verifiers sharing these key sets.
	introspections, introspectionFailures atomic.Uint64

	base    context.Context // of every fetch; canceled by Close
	cancel  context.CancelFunc
	spawnMu sync.Mutex // orders flights.Go against Close's Wait
	closed  bool
	flights sync.WaitGroup
}

// KeySetsStats are counters for metrics.
type KeySetsStats struct {
	Fetches     uint64 // HTTP fetches attempted (JWKS and metadata)
	FetchErrors uint64 // fetches that failed
	KeySets     int    // JWKS URIs known
	// Introspections counts RFC 7662 requests made (cache misses);
	// IntrospectionFailures those that got no usable answer (the
	// endpoint unreachable, slow, refusing the PDP's credentials, or
	// answering something else): their tokens were refused as unavailable.
	Introspections, IntrospectionFailures uint64
}

// NewKeySets returns an empty cache. See KeySets for the lifecycle.
func NewKeySets(cfg KeySetsConfig) *KeySets {
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.MinRefetchInterval <= 0 {
		cfg.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if cfg.MinRefetchInterval > cfg.RefreshInterval {
		cfg.MinRefetchInterval = cfg.RefreshInterval
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxStaleness <= 0 {
		cfg.MaxStaleness = DefaultMaxStaleness
	}
	if cfg.MaxStaleness < cfg.RefreshInterval {
		cfg.MaxStaleness = cfg.RefreshInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := cfg.HTTPClient
	if client == nil {
		// No redirects: a JWKS or metadata URL answers itself. A redirect
		// is a failed fetch, so an endpoint cannot send the PDP elsewhere.
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	base, cancel := context.WithCancel(context.Background())
	return &KeySets{
		cfg:    cfg,
		log:    log,
		client: client,
		now:    time.Now,
		jwks:   make(map[string]*cell[*keySet]),
		meta:   make(map[string]*cell[*issuerMeta]),
		base:   base,
		cancel: cancel,
	}
}

// Close cancels the fetches under way and waits for them to end. A lookup
// after Close fails as the keys cannot be fetched (keys already cached
// still verify). Safe to call more than once.
func (k *KeySets) Close() {
	k.spawnMu.Lock()
	k.closed = true
	k.spawnMu.Unlock()
	k.cancel()
	k.flights.Wait()
}

// spawn runs fn as a fetch owned by k: Close waits for it. After Close, fn
// still runs (so that its waiters are answered) but finds the context
// canceled and ends at once.
func (k *KeySets) spawn(fn func()) {
	k.spawnMu.Lock()
	defer k.spawnMu.Unlock()
	if k.closed {
		go fn()
		return
	}
	k.flights.Go(fn)
}

// Stats returns fetch counters.
func (k *KeySets) Stats() KeySetsStats {
	k.mu.RLock()
	n := len(k.jwks)
	k.mu.RUnlock()
	return KeySetsStats{Fetches: k.fetches.Load(), FetchErrors: k.fetchErrors.Load(), KeySets: n,
		Introspections: k.introspections.Load(), IntrospectionFailures: k.introspectionFailures.Load()}
}

// Run refreshes due key sets and metadata in the background until ctx is
// done. It is optional; see KeySets.
func (k *KeySets) Run(ctx context.Context) {
	tick := k.cfg.MinRefetchInterval / 2
	tick = max(tick, 10*time.Millisecond)
	tick = min(tick, 30*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.refreshDue()
		}
	}
}

func (k *KeySets) refreshDue() {
	now := k.now()
	k.mu.RLock()
	jw := make([]*cell[*keySet], 0, len(k.jwks))
	for _, c := range k.jwks {
		jw = append(jw, c)
	}
	md := make([]*cell[*issuerMeta], 0, len(k.meta))
	for _, c := range k.meta {
		md = append(md, c)
	}
	k.mu.RUnlock()
	for _, c := range jw {
		if c.due(now) {
			c.start(now, false)
		}
	}
	for _, c := range md {
		if c.due(now) {
			c.start(now, false)
		}
	}
}

func (k *KeySets) jwksCell(uri string) *cell[*keySet] {
	k.mu.RLock()
	c := k.jwks[uri]
	k.mu.RUnlock()
	if c != nil {
		return c
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if c = k.jwks[uri]; c == nil {
		c = &cell[*keySet]{k: k, kind: "jwks", target: uri, fetch: func(ctx context.Context) (*keySet, time.Duration, error) {
			return k.fetchJWKS(ctx, uri)
		}}
		k.jwks[uri] = c
	}
	return c
}

func (k *KeySets) metaCell(issuer string) *cell[*issuerMeta] {
	k.mu.RLock()
	c := k.meta[issuer]
	k.mu.RUnlock()
	if c != nil {
		return c
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if c = k.meta[issuer]; c == nil {
		c = &cell[*issuerMeta]{k: k, kind: "metadata", target: issuer, fetch: func(ctx context.Context) (*issuerMeta, time.Duration, error) {
			return k.discover(ctx, issuer)
		}}
		k.meta[issuer] = c
	}
	return c
}

// keyStatus is the outcome of looking a key up in a key set.
type keyStatus uint8

const (
	keyFound        keyStatus = iota
	keyUnknownKid             // no key with this kid
	keyIncompatible           // kid known, but no key of that kid fits the algorithm
	keyAmbiguous              // no kid in the token, several keys fit
	keyNoneForAlg             // no kid in the token, no key fits
)

// lookup returns the candidate keys for (kid, alg) from the key set at uri,
// fetching or refetching it as needed. At most maxCandidates keys are
// returned (duplicate kids).
func (k *KeySets) lookup(ctx context.Context, uri, kid string, ai *algInfo) ([]*pubKey, *Error) {
	c := k.jwksCell(uri)
	s, err := c.get(ctx)
	if err != nil {
		return nil, keysUnavailable(err)
	}
	keys, st := s.val.find(kid, ai)
	if st == keyFound {
		return keys, nil
	}
	if st == keyUnknownKid || st == keyNoneForAlg {
		// Maybe the issuer rotated keys: refetch, at most once per
		// MinRefetchInterval, sharing a fetch already in flight.
		if f := c.start(k.now(), true); f != nil {
			if err := f.wait(ctx); err != nil {
				return nil, keysUnavailable(err)
			}
			if s2 := c.usable(k.now()); s2 != nil && s2 != s {
				if keys, st = s2.val.find(kid, ai); st == keyFound {
					return keys, nil
				}
			}
		}
	}
	switch st {
	case keyUnknownKid:
		return nil, invalidToken(fmt.Sprintf("unknown signing key (kid %q)", clip(kid)))
	case keyIncompatible:
		return nil, invalidToken(fmt.Sprintf("signing key (kid %q) cannot verify %s", clip(kid), ai.name))
	case keyAmbiguous:
		return nil, invalidToken(descAmbiguousKey)
	default:
		return nil, invalidToken("no signing key for algorithm " + ai.name)
	}
}

// jwksURIFor returns the issuer's discovered jwks_uri.
func (k *KeySets) jwksURIFor(ctx context.Context, issuer string) (string, *Error) {
	s, err := k.metaCell(issuer).get(ctx)
	if err != nil {
		return "", keysUnavailable(fmt.Errorf("metadata discovery for %s: %w", issuer, err))
	}
	if s.val.JWKSURI == "" {
		return "", keysUnavailable(fmt.Errorf("the metadata of %s has no jwks_uri", issuer))
	}
	return s.val.JWKSURI, nil
}

// metadataFor returns the issuer's discovered metadata.
func (k *KeySets) metadataFor(ctx context.Context, issuer string) (*issuerMeta, error) {
	s, err := k.metaCell(issuer).get(ctx)
	if err != nil {
		return nil, fmt.Errorf("metadata discovery for %s: %w", issuer, err)
	}
	return s.val, nil
}

// ---- cell: one cached remote document with single-flight refresh ----

type snapshot[T any] struct {
	val       T
	fetchedAt time.Time
	refreshAt time.Time
}

type flight struct{ done chan struct{} }

func (f *flight) wait(ctx context.Context) error {
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type cell[T any] struct {
	k      *KeySets
	kind   string // "jwks" or "metadata", for logs
	target string // URI or issuer, for logs
	fetch  func(ctx context.Context) (T, time.Duration, error)

	snap atomic.Pointer[snapshot[T]]

	mu          sync.Mutex
	inflight    *flight
	lastAttempt time.Time // start of the last fetch, any reason
	lastForced  time.Time // start of the last unknown-kid refetch
	lastErr     error     // error of the last fetch; nil after a success
	failures    int       // failed fetches in a row
}

// firstRetry is the gap after the first failed fetch of a document that
// was never fetched; it doubles with each failure up to
// MinRefetchInterval, so a PDP started a moment before its authorization
// server does not refuse tokens for the whole interval.
const firstRetry = 250 * time.Millisecond

// retryGap is how long after a failed attempt the next may start: the
// backoff from firstRetry while the document was never fetched, else
// MinRefetchInterval (a stale copy still serves).
func (c *cell[T]) retryGap() time.Duration {
	minGap := c.k.cfg.MinRefetchInterval
	if c.snap.Load() != nil || c.failures == 0 {
		return minGap
	}
	gap := firstRetry
	for i := 1; i < c.failures && gap < minGap; i++ {
		gap *= 2
	}
	return min(gap, minGap)
}

// usable returns the current snapshot unless there is none or it is older
// than MaxStaleness.
func (c *cell[T]) usable(now time.Time) *snapshot[T] {
	s := c.snap.Load()
	if s == nil || now.Sub(s.fetchedAt) > c.k.cfg.MaxStaleness {
		return nil
	}
	return s
}

// due reports whether a scheduled refresh (or a retry) should start.
func (c *cell[T]) due(now time.Time) bool {
	if s := c.snap.Load(); s != nil {
		return !now.Before(s.refreshAt)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr != nil // never succeeded: keep retrying (rate-limited by start)
}

// get returns a usable snapshot, fetching synchronously if there is none and
// starting a background refresh if one is due.
func (c *cell[T]) get(ctx context.Context) (*snapshot[T], error) {
	now := c.k.now()
	if s := c.usable(now); s != nil {
		if !now.Before(s.refreshAt) {
			c.start(now, false)
		}
		return s, nil
	}
	if f := c.start(now, false); f != nil {
		if err := f.wait(ctx); err != nil {
			return nil, err
		}
	}
	if s := c.usable(c.k.now()); s != nil {
		return s, nil
	}
	c.mu.Lock()
	err := c.lastErr
	c.mu.Unlock()
	if err == nil {
		err = errors.New("no keys fetched yet")
	}
	return nil, err
}

// start begins a fetch and returns it, or returns the fetch already in
// flight, or nil if rate-limited:
//   - forced (unknown kid): at most one per MinRefetchInterval;
//   - otherwise: not while the snapshot is fresh, and not sooner than
//     MinRefetchInterval after a failed attempt.
func (c *cell[T]) start(now time.Time, forced bool) *flight {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight != nil {
		return c.inflight
	}
	minGap := c.k.cfg.MinRefetchInterval
	if forced {
		if !c.lastForced.IsZero() && now.Sub(c.lastForced) < minGap {
			return nil
		}
		c.lastForced = now
	} else {
		if s := c.snap.Load(); s != nil && now.Before(s.refreshAt) && now.Sub(s.fetchedAt) <= c.k.cfg.MaxStaleness {
			return nil
		}
		if c.lastErr != nil && now.Sub(c.lastAttempt) < c.retryGap() {
			return nil
		}
	}
	f := &flight{done: make(chan struct{})}
	c.inflight = f
	c.lastAttempt = now
	c.k.spawn(func() { c.run(f) })
	return f
}

func (c *cell[T]) run(f *flight) {
	ctx, cancel := context.WithTimeout(c.k.base, c.k.cfg.FetchTimeout)
	defer cancel()
	c.k.fetches.Add(1)
	val, maxAge, err := c.safeFetch(ctx)
	now := c.k.now()
	c.mu.Lock()
	if err != nil {
		c.lastErr = err
		c.failures++
	} else {
		c.lastErr, c.failures = nil, 0
		c.snap.Store(&snapshot[T]{val: val, fetchedAt: now, refreshAt: now.Add(c.k.refreshAfter(maxAge))})
	}
	c.inflight = nil
	c.mu.Unlock()
	close(f.done)

	if err != nil {
		c.k.fetchErrors.Add(1)
		attrs := []any{"kind", c.kind, "target", c.target, "err", err}
		if s := c.snap.Load(); s != nil {
			attrs = append(attrs, "serving_stale_from", s.fetchedAt, "stale_for", now.Sub(s.fetchedAt).Round(time.Second))
		}
		c.k.log.Warn("token: fetch failed", attrs...)
		return
	}
	c.k.log.Debug("token: fetched", "kind", c.kind, "target", c.target)
}

// safeFetch turns a panic in a parser into an error: a bad document must
// never take the process down.
func (c *cell[T]) safeFetch(ctx context.Context) (val T, maxAge time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic while fetching %s: %v", c.target, r)
		}
	}()
	return c.fetch(ctx)
}

// refreshAfter applies Cache-Control max-age within [MinRefetchInterval,
// RefreshInterval].
func (k *KeySets) refreshAfter(maxAge time.Duration) time.Duration {
	d := k.cfg.RefreshInterval
	if maxAge > 0 && maxAge < d {
		d = max(maxAge, k.cfg.MinRefetchInterval)
	}
	return d
}

// ---- HTTP ----

// get fetches uri and returns the body (at most MaxBodyBytes) and the
// Cache-Control max-age (0 if none).
func (k *KeySets) httpGet(ctx context.Context, uri, accept string) ([]byte, time.Duration, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("GET %s: %w", uri, err)
	}
	req.Header.Set("Accept", accept)
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("GET %s: %w", uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, 0, resp.StatusCode, fmt.Errorf("GET %s: unexpected status %s", uri, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, k.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, 0, resp.StatusCode, fmt.Errorf("GET %s: reading body: %w", uri, err)
	}
	if int64(len(body)) > k.cfg.MaxBodyBytes {
		return nil, 0, resp.StatusCode, fmt.Errorf("GET %s: response larger than %d bytes", uri, k.cfg.MaxBodyBytes)
	}
	return body, maxAgeOf(resp.Header.Get("Cache-Control")), resp.StatusCode, nil
}

func maxAgeOf(cc string) time.Duration {
	for part := range strings.SplitSeq(cc, ",") {
		part = strings.TrimSpace(part)
		name, val, ok := strings.Cut(part, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "max-age") {
			continue
		}
		n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
		if err != nil || n <= 0 || n > int64(365*24*time.Hour/time.Second) {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	return 0
}

// ---- JWKS ----

// pubKey is a verification key taken from a JWKS.
type pubKey struct {
	kid   string
	alg   string // the JWK's "alg", "" if absent
	fam   keyFamily
	curve elliptic.Curve
	key   any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

func (p *pubKey) fits(ai *algInfo) bool {
	if p.fam != ai.fam {
		return false
	}
	if p.fam == famEC && p.curve != ai.curve {
		return false
	}
	if p.alg != "" && p.alg != ai.name {
		// "EdDSA" and "Ed25519" name the same key for Ed25519 keys.
		if !(p.fam == famOKP && (p.alg == "EdDSA" || p.alg == "Ed25519")) {
			return false
		}
	}
	return true
}

// keySet is an immutable parsed JWKS.
type keySet struct {
	byKid map[string][]*pubKey
	all   []*pubKey
}

const maxCandidates = 4

func (s *keySet) find(kid string, ai *algInfo) ([]*pubKey, keyStatus) {
	if kid != "" {
		ks, ok := s.byKid[kid]
		if !ok {
			return nil, keyUnknownKid
		}
		var out []*pubKey
		for _, p := range ks {
			if p.fits(ai) {
				out = append(out, p)
				if len(out) == maxCandidates {
					break
				}
			}
		}
		if len(out) == 0 {
			return nil, keyIncompatible
		}
		return out, keyFound
	}
	var only *pubKey
	for _, p := range s.all {
		if p.fits(ai) {
			if only != nil {
				return nil, keyAmbiguous
			}
			only = p
		}
	}
	if only == nil {
		return nil, keyNoneForAlg
	}
	return []*pubKey{only}, keyFound
}

func (k *KeySets) fetchJWKS(ctx context.Context, uri string) (*keySet, time.Duration, error) {
	body, maxAge, _, err := k.httpGet(ctx, uri, "application/jwk-set+json, application/json")
	if err != nil {
		return nil, 0, err
	}
	ks, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, 0, fmt.Errorf("JWKS %s: %w", uri, err)
	}
	if len(skipped) > 0 {
		k.log.Debug("token: skipped JWKS entries", "uri", uri, "skipped", skipped)
	}
	k.log.Debug("token: JWKS loaded", "uri", uri, "keys", len(ks.all))
	return ks, maxAge, nil
}

// parseJWKS keeps the keys usable for signature verification: RSA >= 2048
// bits, EC P-256/384/521, Ed25519; "use" absent or "sig"; "key_ops" absent
// or containing "verify". Symmetric keys are always dropped. Private parts,
// if a (misconfigured) JWKS publishes them, are discarded.
func parseJWKS(body []byte) (*keySet, []string, error) {
	set, err := jwk.Parse(body, jwk.WithStrictKeySetParsing(false))
	if err != nil {
		return nil, nil, fmt.Errorf("parsing: %w", err)
	}
	ks := &keySet{byKid: make(map[string][]*pubKey, set.Len())}
	var skipped []string
	for i := range set.Len() {
		key, _ := set.Key(i)
		kid, _ := key.KeyID()
		p, why := toPubKey(key)
		if p == nil {
			skipped = append(skipped, fmt.Sprintf("#%d kid=%q: %s", i, clip(kid), why))
			continue
		}
		p.kid = kid
		ks.all = append(ks.all, p)
		ks.byKid[kid] = append(ks.byKid[kid], p)
	}
	if len(ks.all) == 0 {
		return nil, skipped, fmt.Errorf("no usable signature verification keys (%d entries skipped)", len(skipped))
	}
	return ks, skipped, nil
}

func toPubKey(key jwk.Key) (*pubKey, string) {
	if jwk.IsUnsupportedKey(key) {
		return nil, "unsupported key"
	}
	if use, ok := key.KeyUsage(); ok && use != "" && use != "sig" {
		return nil, "use is " + use
	}
	if ops, ok := key.KeyOps(); ok && len(ops) > 0 {
		verify := false
		for _, op := range ops {
			if op == jwk.KeyOpVerify {
				verify = true
			}
		}
		if !verify {
			return nil, "key_ops without verify"
		}
	}
	p := &pubKey{}
	if a, ok := key.Algorithm(); ok {
		p.alg = a.String()
		if _, ok := lookupAlg(p.alg); !ok {
			return nil, "alg " + p.alg + " is not an accepted signature algorithm"
		}
	}
	pk, err := key.PublicKey()
	if err != nil {
		return nil, "no public key: " + err.Error()
	}
	var raw any
	if err := jwk.Export(pk, &raw); err != nil {
		return nil, "export: " + err.Error()
	}
	switch r := raw.(type) {
	case *rsa.PublicKey:
		if r.N == nil || r.N.BitLen() < minRSABits {
			return nil, "RSA key shorter than 2048 bits"
		}
		p.fam, p.key = famRSA, r
	case *ecdsa.PublicKey:
		switch r.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, "unsupported curve"
		}
		p.fam, p.curve, p.key = famEC, r.Curve, r
	case ed25519.PublicKey:
		if len(r) != ed25519.PublicKeySize {
			return nil, "bad Ed25519 key"
		}
		p.fam, p.key = famOKP, r
	default:
		return nil, fmt.Sprintf("key type %T cannot verify signatures", raw)
	}
	return p, ""
}
