// Package config loads and validates the mcp-pdp YAML configuration. It
// applies defaults and reports every problem with the key that holds it and
// the fix. It imports nothing else of mcp-pdp; cmd/pdp maps it onto the
// options of the other packages.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as "30s", "5m", "1h30m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"30s\" or \"5m\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. \"30s\", \"5m\", \"1h\")", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the whole configuration file.
type Config struct {
	// Listen is the HTTP listen address (default 127.0.0.1:8181).
	Listen string `yaml:"listen"`
	// DataDir holds the embedded NATS store, the audit spool and dev keys (default .pdp-data).
	DataDir string `yaml:"data_dir"`
	// Instance names this PDP in audit events (default: host name).
	Instance string `yaml:"instance"`
	// Insecure allows a non-loopback listener without PEP authentication.
	Insecure  bool       `yaml:"insecure"`
	Resources []Resource `yaml:"resources"`
	Policy    Policy     `yaml:"policy"`
	Limits    Limits     `yaml:"limits"`
	Audit     Audit      `yaml:"audit"`
	JWKS      JWKS       `yaml:"jwks"`
	Log       Log        `yaml:"log"`
	// Auth is how enforcement points (PEPs) authenticate to the PDP API.
	Auth Auth `yaml:"auth"`
	// TLS for the listener.
	TLS TLS `yaml:"tls"`
	// Runtime tunes the Go runtime (garbage collector).
	Runtime Runtime `yaml:"runtime"`
}

// Runtime tunes the Go garbage collector. The environment variables GOGC
// and GOMEMLIMIT, when set, win over these keys.
type Runtime struct {
	// GCPercent is the collector's target heap growth in percent, as GOGC:
	// 0 = default (DefaultGCPercent), -1 = off (only with MemoryLimit).
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimit is a soft limit of the Go heap, in GOMEMLIMIT syntax
	// ("512MiB", "2GiB", plain bytes); empty: none.
	MemoryLimit string `yaml:"memory_limit"`
}

// MemoryLimitBytes returns MemoryLimit in bytes; ok is false when none is set.
func (r Runtime) MemoryLimitBytes() (n int64, ok bool, err error) {
	if r.MemoryLimit == "" {
		return 0, false, nil
	}
	n, err = ParseByteSize(r.MemoryLimit)
	if err != nil {
		return 0, false, err
	}
	return n, true, nil
}

// ParseByteSize parses a byte count as GOMEMLIMIT does: an integer with an
// optional unit B, KiB, MiB, GiB or TiB ("512MiB", "1073741824").
func ParseByteSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || num == "" || num[0] == '+' {
		return 0, fmt.Errorf("%q is not a byte count such as 512MiB, 2GiB or 1073741824", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// Auth configures who may query /v1/... (the metadata endpoints stay public).
type Auth struct {
	// APIKeys are accepted as "Authorization: Bearer <key>" or "X-PDP-API-Key: <key>".
	APIKeys []APIKey `yaml:"api_keys"`
	// MTLS accepts clients presenting a certificate from ClientCA (requires tls).
	MTLS MTLS `yaml:"mtls"`
}

// Enabled reports whether any PEP authentication is configured.
func (a Auth) Enabled() bool { return len(a.APIKeys) > 0 || a.MTLS.ClientCA != "" }

// APIKey is one accepted key, stored as the hex SHA-256 of the key.
type APIKey struct {
	// Name identifies the PEP in audit events and metrics.
	Name string `yaml:"name"`
	// SHA256 is hex(sha256(key)); create with `pdp apikey`.
	SHA256 string `yaml:"sha256"`
}

// MTLS configures client certificate authentication.
type MTLS struct {
	// ClientCA is a PEM file of CAs that sign PEP client certificates.
	ClientCA string `yaml:"client_ca"`
	// AllowedSubjects, when set, limits accepted certificates to these
	// subject common names (or DNS SANs).
	AllowedSubjects []string `yaml:"allowed_subjects"`
}

// TLS configures HTTPS for the listener; files are reloaded when they change.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether the listener serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Resource is one protected MCP server.
type Resource struct {
	// URI is the canonical resource URI (RFC 8707), e.g. https://mcp.example.com/mcp.
	URI string `yaml:"uri"`
	// Key names the resource in audit subjects (default: derived from the URI).
	Key string `yaml:"key"`
	// Issuer is the exact `iss` of accepted tokens.
	Issuer string `yaml:"issuer"`
	// JWKSURI is optional; discovered from the issuer's metadata when empty.
	JWKSURI string `yaml:"jwks_uri"`
	// Audiences accepted in `aud` (default: [URI]).
	Audiences []string `yaml:"audiences"`
	// AuthorizationServers listed in the protected resource metadata (default: [Issuer]).
	AuthorizationServers []string `yaml:"authorization_servers"`
	// ScopesSupported listed in the protected resource metadata.
	ScopesSupported []string `yaml:"scopes_supported"`
	// ChallengeScopes: "operation" (default) or "accumulate".
	ChallengeScopes string `yaml:"challenge_scopes"`
	// ResourceMetadataURL overrides the RFC 9728 metadata URL sent in challenges.
	ResourceMetadataURL string `yaml:"resource_metadata_url"`
	// Algorithms allowed for token signatures (default: RS*, PS*, ES*, EdDSA).
	Algorithms []string `yaml:"algorithms"`
	// ClockSkew tolerated on exp/nbf/iat (default 30s).
	ClockSkew Duration `yaml:"clock_skew"`
	// AuditArguments records tool arguments in audit events, with fields redacted.
	AuditArguments AuditArguments `yaml:"audit_arguments"`
}

// AuditArguments controls recording of call arguments.
type AuditArguments struct {
	Enabled bool     `yaml:"enabled"`
	Redact  []string `yaml:"redact"`
}

// Policy says where the Rego policy comes from.
type Policy struct {
	// Path is a directory, a bundle file (.tar.gz) or an http(s) bundle URL.
	// Empty: the policy embedded in the binary.
	Path string `yaml:"path"`
	// PollInterval between checks for a new policy (file changes, or the
	// bundle URL with ETag); default 10s for files, 30s for URLs; "0s" disables reloading.
	PollInterval *Duration `yaml:"poll_interval"`
	// Verification requires bundles signed with this key (OPA bundle signing).
	Verification Verification `yaml:"verification"`
	// DecisionCacheSize bounds the decision cache in weight units, one per
	// decision, one per list item, eight per token (0 = default 16384, -1 = off).
	DecisionCacheSize int `yaml:"decision_cache_size"`
}

// Verification of signed bundles.
type Verification struct {
	// KeyFile is a PEM public key (RS*/PS*/ES*) or an HMAC secret file.
	KeyFile string `yaml:"key_file"`
	// KeyID names the key in .signatures.json (default "default").
	KeyID string `yaml:"key_id"`
	// Algorithm of the key (default RS256).
	Algorithm string `yaml:"algorithm"`
	// Scope the signature must carry (optional).
	Scope string `yaml:"scope"`
}

// Enabled reports whether bundles must be signed.
func (v Verification) Enabled() bool { return v.KeyFile != "" }

// Limits bound the work one request may cause.
type Limits struct {
	// MaxBodyBytes of a /v1/decide request (default 1 MiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// DecisionTimeout is the budget of one decision including policy evaluation (default 250ms).
	DecisionTimeout Duration `yaml:"decision_timeout"`
	// ReadTimeout / WriteTimeout / IdleTimeout of the HTTP server.
	ReadTimeout  Duration `yaml:"read_timeout"`
	WriteTimeout Duration `yaml:"write_timeout"`
	IdleTimeout  Duration `yaml:"idle_timeout"`
	// TokenCacheSize bounds the verified-token cache (default 10000).
	TokenCacheSize int `yaml:"token_cache_size"`
	// MaxConcurrent bounds /v1/decide requests in progress; more get 503 (default 1024).
	MaxConcurrent int `yaml:"max_concurrent"`
	// RatePerPEP is the sustained requests/second allowed per authenticated
	// PEP (0 = unlimited); RateBurst the burst (default = RatePerPEP + 1). Over it: 429.
	RatePerPEP float64 `yaml:"rate_per_pep"`
	RateBurst  int     `yaml:"rate_burst"`
}

// JWKS tunes signing key fetching.
type JWKS struct {
	RefreshInterval    Duration `yaml:"refresh_interval"`
	MinRefetchInterval Duration `yaml:"min_refetch_interval"`
	FetchTimeout       Duration `yaml:"fetch_timeout"`
	MaxBodyBytes       int64    `yaml:"max_body_bytes"`
}

// Audit configures decision audit events.
type Audit struct {
	Enabled *bool `yaml:"enabled"`
	// Mode: "async" (default) or "sync".
	Mode string `yaml:"mode"`
	// OnFailure: "open" (default: answer, report loudly) or "deny".
	OnFailure       string   `yaml:"on_failure"`
	Stream          string   `yaml:"stream"`
	SubjectPrefix   string   `yaml:"subject_prefix"`
	Replicas        int      `yaml:"replicas"`
	MaxAge          Duration `yaml:"max_age"`
	DuplicateWindow Duration `yaml:"duplicate_window"`
	QueueSize       int      `yaml:"queue_size"`
	SpoolDir        string   `yaml:"spool_dir"`
	NATS            NATS     `yaml:"nats"`
}

// IsEnabled reports whether audit is on (the default).
func (a Audit) IsEnabled() bool { return a.Enabled == nil || *a.Enabled }

// NATS says where audit events go.
type NATS struct {
	// URL is "embedded" (default) or a comma-separated list of nats:// URLs.
	URL         string `yaml:"url"`
	Credentials string `yaml:"credentials"`
	NKeySeed    string `yaml:"nkey_seed"`
	TLSCA       string `yaml:"tls_ca"`
	TLSCert     string `yaml:"tls_cert"`
	TLSKey      string `yaml:"tls_key"`
}

// Log configures logging.
type Log struct {
	// Level: debug, info (default), warn, error.
	Level string `yaml:"level"`
	// Format: text (default) or json.
	Format string `yaml:"format"`
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	c, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML, rejecting unknown keys, then applies defaults and validates.
func Parse(r io.Reader) (*Config, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, explainYAML(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func explainYAML(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "not found in type") {
		// yaml.v3: "line 3: field lisen not found in type config.Config"
		msg = strings.Replace(msg, "not found in type", "is not a known key in", 1)
		return fmt.Errorf("%s (check the spelling against docs/configuration.md)", msg)
	}
	return err
}

// Default values.
const (
	DefaultListen          = "127.0.0.1:8181"
	DefaultDataDir         = ".pdp-data"
	DefaultMaxBodyBytes    = 1 << 20
	DefaultDecisionTimeout = 250 * time.Millisecond
	DefaultTokenCacheSize  = 10000
	// DefaultGCPercent trades memory for CPU: measured, GOGC=400 saved ~20%
	// of CPU per decision for ~35% more RSS; 200 takes part of that gain
	// without letting a large heap (a big token cache) grow fourfold.
	DefaultGCPercent = 200
)

// ApplyDefaults fills unset fields.
func (c *Config) ApplyDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Instance == "" {
		if h, err := os.Hostname(); err == nil {
			c.Instance = h
		} else {
			c.Instance = "pdp"
		}
	}
	for i := range c.Resources {
		r := &c.Resources[i]
		if len(r.Audiences) == 0 && r.URI != "" {
			r.Audiences = []string{r.URI}
		}
		if len(r.AuthorizationServers) == 0 && r.Issuer != "" {
			r.AuthorizationServers = []string{r.Issuer}
		}
		if r.ChallengeScopes == "" {
			r.ChallengeScopes = "operation"
		}
		if r.ClockSkew == 0 {
			r.ClockSkew = Duration(30 * time.Second)
		}
		if r.Key == "" && r.URI != "" {
			r.Key = ResourceKey(r.URI)
		}
	}
	l := &c.Limits
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.DecisionTimeout == 0 {
		l.DecisionTimeout = Duration(DefaultDecisionTimeout)
	}
	if l.ReadTimeout == 0 {
		l.ReadTimeout = Duration(10 * time.Second)
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = Duration(10 * time.Second)
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = Duration(120 * time.Second)
	}
	if l.TokenCacheSize == 0 {
		l.TokenCacheSize = DefaultTokenCacheSize
	}
	if l.MaxConcurrent == 0 {
		l.MaxConcurrent = 1024
	}
	if l.RateBurst == 0 && l.RatePerPEP > 0 {
		l.RateBurst = int(l.RatePerPEP) + 1
	}
	if c.Policy.Verification.Enabled() {
		if c.Policy.Verification.KeyID == "" {
			c.Policy.Verification.KeyID = "default"
		}
		if c.Policy.Verification.Algorithm == "" {
			c.Policy.Verification.Algorithm = "RS256"
		}
	}
	j := &c.JWKS
	if j.RefreshInterval == 0 {
		j.RefreshInterval = Duration(5 * time.Minute)
	}
	if j.MinRefetchInterval == 0 {
		j.MinRefetchInterval = Duration(10 * time.Second)
	}
	if j.FetchTimeout == 0 {
		j.FetchTimeout = Duration(5 * time.Second)
	}
	if j.MaxBodyBytes == 0 {
		j.MaxBodyBytes = 1 << 20
	}
	a := &c.Audit
	if a.Mode == "" {
		a.Mode = "async"
	}
	if a.OnFailure == "" {
		a.OnFailure = "open"
	}
	if a.Stream == "" {
		a.Stream = "MCP_AUDIT"
	}
	if a.SubjectPrefix == "" {
		a.SubjectPrefix = "mcp.audit"
	}
	if a.Replicas == 0 {
		a.Replicas = 1
	}
	if a.DuplicateWindow == 0 {
		a.DuplicateWindow = Duration(2 * time.Minute)
	}
	if a.QueueSize == 0 {
		a.QueueSize = 8192
	}
	if a.NATS.URL == "" {
		a.NATS.URL = "embedded"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Runtime.GCPercent == 0 {
		c.Runtime.GCPercent = DefaultGCPercent
	}
}

// ResourceKey derives a NATS-subject-safe key from a resource URI:
// host and path with every character outside [A-Za-z0-9_-] turned into '_'.
func ResourceKey(uri string) string {
	u, err := url.Parse(uri)
	s := uri
	if err == nil && u.Host != "" {
		s = u.Host + u.Path
	}
	s = strings.TrimSuffix(s, "/")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "default"
	}
	return b.String()
}

var allowedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true, "PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true, "EdDSA": true,
}

// Validate reports every invalid value at once, each naming its key and the fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port (e.g. 127.0.0.1:8181)", c.Listen)
	}
	if len(c.Resources) == 0 {
		bad("resources", "at least one resource is required (or run `pdp serve --dev`)")
	}
	seen := map[string]bool{}
	keys := map[string]bool{}
	for i, r := range c.Resources {
		k := fmt.Sprintf("resources[%d]", i)
		u, err := url.Parse(r.URI)
		switch {
		case r.URI == "":
			bad(k+".uri", "required: the canonical URI of the MCP server, e.g. https://mcp.example.com/mcp")
		case err != nil || u.Scheme == "" || u.Host == "":
			bad(k+".uri", "%q is not an absolute URI with scheme and host", r.URI)
		case u.Fragment != "":
			bad(k+".uri", "%q must not have a fragment (RFC 8707 §2)", r.URI)
		}
		if seen[r.URI] {
			bad(k+".uri", "%q is configured twice", r.URI)
		}
		seen[r.URI] = true
		if keys[r.Key] {
			bad(k+".key", "%q is used by another resource; set a distinct key", r.Key)
		}
		keys[r.Key] = true
		if r.Issuer == "" {
			bad(k+".issuer", "required: the exact `iss` of the authorization server's tokens")
		} else if iu, err := url.Parse(r.Issuer); err != nil || iu.Scheme == "" || iu.Host == "" {
			bad(k+".issuer", "%q is not an absolute URL", r.Issuer)
		}
		if r.JWKSURI != "" {
			if ju, err := url.Parse(r.JWKSURI); err != nil || (ju.Scheme != "https" && ju.Scheme != "http") {
				bad(k+".jwks_uri", "%q is not an http(s) URL", r.JWKSURI)
			}
		}
		if r.ChallengeScopes != "operation" && r.ChallengeScopes != "accumulate" {
			bad(k+".challenge_scopes", "%q is not one of: operation, accumulate", r.ChallengeScopes)
		}
		for _, a := range r.Algorithms {
			if !allowedAlgs[a] {
				bad(k+".algorithms", "%q is not allowed; use asymmetric algorithms only (RS256..RS512, PS256..PS512, ES256..ES512, EdDSA)", a)
			}
		}
		if r.ClockSkew < 0 || r.ClockSkew.D() > 5*time.Minute {
			bad(k+".clock_skew", "%s is out of range; use 0s to 5m", r.ClockSkew.D())
		}
		for _, s := range r.ScopesSupported {
			if !validScope(s) {
				bad(k+".scopes_supported", "%q is not a valid scope token (RFC 6749 §3.3)", s)
			}
		}
	}
	if c.Limits.MaxBodyBytes < 1024 {
		bad("limits.max_body_bytes", "%d is too small; use at least 1024", c.Limits.MaxBodyBytes)
	}
	if c.Limits.DecisionTimeout <= 0 {
		bad("limits.decision_timeout", "must be positive")
	}
	if c.Limits.TokenCacheSize < 0 {
		bad("limits.token_cache_size", "must not be negative (0 = default)")
	}
	if c.Limits.MaxConcurrent < 0 {
		bad("limits.max_concurrent", "must not be negative")
	}
	if c.Limits.RatePerPEP < 0 {
		bad("limits.rate_per_pep", "must not be negative (0 = unlimited)")
	}
	if c.Limits.RateBurst < 0 {
		bad("limits.rate_burst", "must not be negative")
	}
	if c.Policy.PollInterval != nil && *c.Policy.PollInterval < 0 {
		bad("policy.poll_interval", "must not be negative (0s disables reloading)")
	}
	if c.Policy.DecisionCacheSize < -1 {
		bad("policy.decision_cache_size", "use -1 (off), 0 (default) or a positive size")
	}
	if strings.HasPrefix(c.Policy.Path, "http://") || strings.HasPrefix(c.Policy.Path, "https://") {
		if _, err := url.Parse(c.Policy.Path); err != nil {
			bad("policy.path", "%q is not a valid URL", c.Policy.Path)
		}
	}
	// Two keys may share a name: that is how a PEP's key is rotated.
	hashes := map[string]bool{}
	for i, k := range c.Auth.APIKeys {
		key := fmt.Sprintf("auth.api_keys[%d]", i)
		if k.Name == "" {
			bad(key+".name", "required: the PEP's name, used in audit events")
		}
		if hashes[strings.ToLower(k.SHA256)] {
			bad(key+".sha256", "the same key is listed twice")
		}
		hashes[strings.ToLower(k.SHA256)] = true
		if len(k.SHA256) != 64 || strings.Trim(strings.ToLower(k.SHA256), "0123456789abcdef") != "" {
			bad(key+".sha256", "must be the 64 hex digits of sha256(key); create one with `pdp apikey --name %s`", k.Name)
		}
	}
	if c.Auth.MTLS.ClientCA != "" && !c.TLS.Enabled() {
		bad("auth.mtls.client_ca", "mutual TLS needs tls.cert_file and tls.key_file")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "set both cert_file and key_file")
	}
	if c.Audit.Mode != "async" && c.Audit.Mode != "sync" {
		bad("audit.mode", "%q is not one of: async, sync", c.Audit.Mode)
	}
	if c.Audit.OnFailure != "open" && c.Audit.OnFailure != "deny" {
		bad("audit.on_failure", "%q is not one of: open, deny", c.Audit.OnFailure)
	}
	if c.Audit.Replicas < 1 || c.Audit.Replicas > 5 {
		bad("audit.replicas", "%d is out of range; use 1 to 5 (3 recommended for a cluster)", c.Audit.Replicas)
	}
	if c.Audit.NATS.URL != "embedded" {
		for _, s := range strings.Split(c.Audit.NATS.URL, ",") {
			u, err := url.Parse(strings.TrimSpace(s))
			if err != nil || (u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
				bad("audit.nats.url", "%q is not \"embedded\" or a nats://host:port URL list", c.Audit.NATS.URL)
				break
			}
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of: debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is not one of: text, json", c.Log.Format)
	}
	_, hasLimit, err := c.Runtime.MemoryLimitBytes()
	if err != nil {
		bad("runtime.memory_limit", "%v", err)
	}
	switch {
	case c.Runtime.GCPercent < -1:
		bad("runtime.gc_percent", "%d is out of range; use a positive percentage (default %d), or -1 (off) together with runtime.memory_limit", c.Runtime.GCPercent, DefaultGCPercent)
	case c.Runtime.GCPercent == -1 && !hasLimit && err == nil:
		bad("runtime.gc_percent", "-1 (off) without runtime.memory_limit lets the heap grow without bound; set runtime.memory_limit (e.g. 1GiB) or use a percentage")
	}
	return errors.Join(errs...)
}

// validScope checks RFC 6749 scope-token characters.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch != 0x21 && (ch < 0x23 || ch > 0x5B) && (ch < 0x5D || ch > 0x7E) {
			return false
		}
	}
	return true
}
