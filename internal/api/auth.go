package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// PEPAuth configures how the callers of /v1/... (the enforcement points:
// MCP servers and gateways) authenticate. With no API key and MTLS false
// the API is open to whoever reaches the listener (loopback default).
type PEPAuth struct {
	// APIKeys are accepted as "Authorization: Bearer <key>" or
	// "X-PDP-API-Key: <key>". Several keys may carry the same name (rotation).
	APIKeys []APIKey
	// MTLS accepts a client certificate that the TLS listener verified
	// against its client CAs (r.TLS.VerifiedChains).
	MTLS bool
	// AllowedSubjects limits accepted client certificates to these subject
	// common names or DNS SANs; empty: any certificate the listener verified.
	AllowedSubjects []string
}

// Enabled reports whether callers must authenticate.
func (a PEPAuth) Enabled() bool { return len(a.APIKeys) > 0 || a.MTLS }

// APIKey is one accepted key, known only by its SHA-256.
type APIKey struct {
	// Name identifies the PEP (audit events, rate limits).
	Name   string
	SHA256 [sha256.Size]byte
}

// ParseAPIKey builds an APIKey from the hex SHA-256 kept in the config.
func ParseAPIKey(name, hexSum string) (APIKey, error) {
	if name == "" {
		return APIKey{}, errors.New("api key: empty name")
	}
	b, err := hex.DecodeString(hexSum)
	if err != nil || len(b) != sha256.Size {
		return APIKey{}, fmt.Errorf("api key %q: sha256 must be 64 hex digits", name)
	}
	k := APIKey{Name: name}
	copy(k.SHA256[:], b)
	return k, nil
}

// HashAPIKey returns the hex SHA-256 of a key, as kept in the config.
func HashAPIKey(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

// APIKeyHeader is the dedicated header for an API key.
const APIKeyHeader = "X-PDP-API-Key"

// maxAPIKeyBytes bounds a presented key; longer ones are refused unhashed.
const maxAPIKeyBytes = 512

// pepKey is where the guard leaves the authenticated PEP name on the echo
// context for the handler.
const pepKey = "mcp-pdp.pep"

// Reasons an authentication fails (label values of pdp_pep_auth_failures_total).
const (
	authMissing        = "missing_credentials"
	authMalformed      = "malformed_credentials"
	authInvalidKey     = "invalid_api_key"
	authCertNotAllowed = "certificate_not_allowed"
)

// authenticator checks PEP credentials. Immutable after construction.
type authenticator struct {
	keys     []APIKey
	mtls     bool
	allowed  []string
	failures *prometheus.CounterVec
	log      *slog.Logger
	lastLog  atomic.Int64 // unix nanos of the last failure logged
	dropped  atomic.Int64 // failures not logged since
	required bool
}

func newAuthenticator(a PEPAuth, reg prometheus.Registerer, log *slog.Logger) *authenticator {
	au := &authenticator{
		keys:     append([]APIKey(nil), a.APIKeys...),
		mtls:     a.MTLS,
		allowed:  append([]string(nil), a.AllowedSubjects...),
		log:      log,
		required: a.Enabled(),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pdp_pep_auth_failures_total",
			Help: "Calls to /v1/... refused because the caller (PEP) did not authenticate, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{authMissing, authMalformed, authInvalidKey, authCertNotAllowed} {
		au.failures.WithLabelValues(r) // export zeros
	}
	reg.MustRegister(au.failures)
	return au
}

// authenticate returns the PEP name, or the reason the caller is refused.
// A client certificate verified by the listener wins over an API key; a
// verified certificate whose subject is not allowed is refused outright.
func (a *authenticator) authenticate(r *http.Request) (pep, reason string) {
	if !a.required {
		return "", ""
	}
	if a.mtls && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		if name, ok := certIdentity(r.TLS.VerifiedChains[0][0], a.allowed); ok {
			return name, ""
		}
		return "", authCertNotAllowed
	}
	if len(a.keys) == 0 {
		return "", authMissing
	}
	key, reason := presentedKey(r.Header)
	if reason != "" {
		return "", reason
	}
	sum := sha256.Sum256([]byte(key))
	// Compare with every key, without an early exit, so that the time
	// taken does not tell which key (if any) matched.
	found := -1
	for i := range a.keys {
		if subtle.ConstantTimeCompare(sum[:], a.keys[i].SHA256[:]) == 1 && found < 0 {
			found = i
		}
	}
	if found < 0 {
		return "", authInvalidKey
	}
	return a.keys[found].Name, ""
}

// presentedKey reads the API key from X-PDP-API-Key, else from
// "Authorization: Bearer". Repeated or malformed headers are refused.
func presentedKey(h http.Header) (string, string) {
	if v := h.Values(APIKeyHeader); len(v) > 0 {
		if len(v) > 1 {
			return "", authMalformed
		}
		return checkKey(strings.TrimSpace(v[0]))
	}
	v := h.Values("Authorization")
	if len(v) == 0 {
		return "", authMissing
	}
	if len(v) > 1 {
		return "", authMalformed
	}
	scheme, rest, ok := strings.Cut(strings.TrimSpace(v[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", authMalformed
	}
	return checkKey(strings.TrimSpace(rest))
}

func checkKey(k string) (string, string) {
	if k == "" || len(k) > maxAPIKeyBytes {
		return "", authMalformed
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] >= 0x7f {
			return "", authMalformed
		}
	}
	return k, ""
}

// certIdentity names the PEP of a verified client certificate: the allowed
// subject it matches (common name exactly, DNS SAN case-insensitively), or,
// when any verified certificate is allowed, its common name, else its first
// DNS SAN, else its whole subject.
func certIdentity(c *x509.Certificate, allowed []string) (string, bool) {
	if len(allowed) == 0 {
		switch {
		case c.Subject.CommonName != "":
			return c.Subject.CommonName, true
		case len(c.DNSNames) > 0:
			return c.DNSNames[0], true
		default:
			return c.Subject.String(), true
		}
	}
	for _, a := range allowed {
		if a == "" {
			continue
		}
		if c.Subject.CommonName == a {
			return a, true
		}
		for _, d := range c.DNSNames {
			if strings.EqualFold(d, a) {
				return a, true
			}
		}
	}
	return "", false
}

// refuse counts and (sampled, at most once a second) logs a failure and
// returns the 401 answer.
func (a *authenticator) refuse(r *http.Request, reason string) error {
	a.failures.WithLabelValues(reason).Inc()
	now := time.Now().UnixNano()
	last := a.lastLog.Load()
	if now-last >= int64(time.Second) && a.lastLog.CompareAndSwap(last, now) {
		a.log.Warn("PEP authentication failed", "reason", reason, "remote", r.RemoteAddr, "path", r.URL.Path,
			"suppressed", a.dropped.Swap(0))
	} else {
		a.dropped.Add(1)
	}
	desc := "authenticate with an API key (Authorization: Bearer <key> or " + APIKeyHeader + ") or a client certificate"
	switch reason {
	case authInvalidKey:
		desc = "the API key is not valid"
	case authMalformed:
		desc = "the credentials are malformed: send one API key as Authorization: Bearer <key> or " + APIKeyHeader + ": <key>"
	case authCertNotAllowed:
		desc = "the client certificate's subject is not allowed"
	}
	return apiError(http.StatusUnauthorized, "unauthorized", desc)
}

// isAPIPath reports whether a request path belongs to the authenticated
// API (/v1/... and the AuthZEN /access/...). It errs on the side of
// "yes": any spelling that could route there (escaped, unclean, other
// case) is treated as the API.
func isAPIPath(r *http.Request) bool {
	if r.URL.RawPath == "" && r.URL.Path == "/v1/decide" {
		return true // the common case, without cleaning
	}
	for _, p := range [...]string{r.URL.Path, r.URL.RawPath} {
		if p == "" {
			continue
		}
		p = strings.ToLower(path.Clean("/" + p))
		if p == "/v1" || strings.HasPrefix(p, "/v1/") || strings.HasPrefix(p, "/v1%") {
			return true
		}
		// The AuthZEN evaluation endpoints (/access/v1/...).
		if p == "/access" || strings.HasPrefix(p, "/access/") || strings.HasPrefix(p, "/access%") {
			return true
		}
	}
	return false
}

// guard is the pre-routing middleware of /v1/...: authenticate the PEP,
// apply its rate limit, then the global concurrency limit. Other paths
// (metadata, health, metrics) pass untouched.
func (s *Server) guard(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		if !isAPIPath(r) {
			return next(c)
		}
		pep, reason := s.auth.authenticate(r)
		if reason != "" {
			if len(s.auth.keys) > 0 {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="mcp-pdp"`)
			}
			return s.auth.refuse(r, reason)
		}
		c.Set(pepKey, pep)
		if err := s.limits.rate(c, pep); err != nil {
			return err
		}
		if err := s.limits.acquire(c); err != nil {
			return err
		}
		defer s.limits.release()
		return next(c)
	}
}

// authenticatedPEP returns the PEP name the guard found. ok is false when
// authentication is required and the guard did not run (fail closed).
func (s *Server) authenticatedPEP(c *echo.Context) (string, bool) {
	pep, ran := c.Get(pepKey).(string)
	if s.auth.required && !ran {
		return "", false
	}
	return pep, true
}
