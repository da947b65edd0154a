// Package config loads and validates the mcp-pdp YAML configuration. It
// reports every problem of a file at once, each with its YAML path, line
// and fix. It applies only the defaults that span packages; every other
// zero value means the default of the package that uses it (documented on
// each field). It imports nothing else of mcp-pdp; internal/server maps it
// onto the options of the other packages.
package config

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as "30s", "5m", "1h30m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string, or a number of days ("90d").
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"30s\" or \"5m\"", n.Line)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. \"30s\", \"5m\", \"1h\", \"90d\")", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses a Go duration ("1h30m") or a whole number of days
// ("90d", 24 h each).
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" {
		n, err := strconv.ParseUint(days, 10, 32)
		if err == nil && n <= 100*366 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	return time.ParseDuration(s)
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
	// PublicURL is the PDP's base URL as its clients reach it (e.g.
	// https://pdp.example.com behind a proxy): the identifier in its
	// AuthZEN metadata. Empty: the scheme and host of each request.
	PublicURL string `yaml:"public_url"`
	// Insecure allows a non-loopback listener without PEP authentication.
	Insecure  bool       `yaml:"insecure"`
	Resources []Resource `yaml:"resources"`
	Policy    Policy     `yaml:"policy"`
	Limits    Limits     `yaml:"limits"`
	Audit     Audit      `yaml:"audit"`
	// Revocation configures the revocations every PDP watches (pdp revoke).
	Revocation Revocation `yaml:"revocation"`
	JWKS       JWKS       `yaml:"jwks"`
	Log        Log        `yaml:"log"`
	// Tracing exports OpenTelemetry spans of the decisions over OTLP/HTTP.
	Tracing Tracing `yaml:"tracing"`
	// Auth is how enforcement points (PEPs) authenticate to the PDP API.
	Auth Auth `yaml:"auth"`
	// TLS for the listener.
	TLS TLS `yaml:"tls"`
	// Runtime tunes the Go runtime (garbage collector).
	Runtime Runtime `yaml:"runtime"`
	// Gateway serves the resources that name an upstream to MCP clients.
	Gateway Gateway `yaml:"gateway"`

	// lines maps YAML paths to the lines they were read from, for problems.
	lines map[string]int
}

// Runtime tunes the Go garbage collector. The environment variables GOGC
// and GOMEMLIMIT, when set, win over these keys.
type Runtime struct {
	// GCPercent is the collector's target heap growth in percent, as GOGC:
	// 0 = default (server.DefaultGCPercent), -1 = off (only with MemoryLimit).
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
	// ChallengeScopes: "operation" or "accumulate" ("" = stepup's default,
	// operation).
	ChallengeScopes string `yaml:"challenge_scopes"`
	// StructuredDenials adds the SEP-2643 (draft) structured denial
	// envelope to the in-band forms of authorization refusals.
	StructuredDenials bool `yaml:"structured_denials"`
	// OnCounterUnavailable is what a call with a quota gets when the quota
	// counters cannot be reached: "deny" ("" = deny) or "allow" (allowed
	// uncounted, said in its audit event).
	OnCounterUnavailable string `yaml:"on_counter_unavailable"`
	// ResourceMetadataURL overrides the RFC 9728 metadata URL sent in challenges.
	ResourceMetadataURL string `yaml:"resource_metadata_url"`
	// Algorithms allowed for token signatures (empty = token.DefaultAlgorithms:
	// RS*, PS*, ES*, EdDSA).
	Algorithms []string `yaml:"algorithms"`
	// ClockSkew tolerated on exp/nbf/iat (0 = token.DefaultClockSkew, 30s).
	ClockSkew Duration `yaml:"clock_skew"`
	// AuditArguments records tool arguments in audit events, with fields redacted.
	AuditArguments AuditArguments `yaml:"audit_arguments"`
	// Upstream, when set, puts the resource behind the gateway.
	Upstream *Upstream `yaml:"upstream"`
	// Introspection, when set, validates the tokens that are not JWTs of
	// the issuer (opaque tokens) by RFC 7662 introspection.
	Introspection *Introspection `yaml:"introspection"`
	// DPoP is how the resource takes sender-constrained tokens (RFC 9449):
	// "off", "allowed" ("" = allowed: a token bound to a key needs a
	// proof, other tokens work as bearer tokens) or "required".
	DPoP string `yaml:"dpop"`
	// DPoPAlgorithms are the proof algorithms accepted (empty = the dpop
	// package's default).
	DPoPAlgorithms []string `yaml:"dpop_algorithms"`
	// DPoPWindow is the accepted distance of a proof's iat from now
	// (0 = the dpop package's default, 5m).
	DPoPWindow Duration `yaml:"dpop_window"`
	// DPoPNonce makes proofs carry a nonce the PDP issued (RFC 9449 §8).
	DPoPNonce bool `yaml:"dpop_nonce"`
}

// Introspection is a resource's RFC 7662 token introspection: its
// endpoint, and how the PDP authenticates to it.
type Introspection struct {
	// Endpoint is the introspection endpoint URL (or Discover).
	Endpoint string `yaml:"endpoint"`
	// Discover takes introspection_endpoint from the issuer's RFC 8414
	// metadata.
	Discover bool `yaml:"discover"`
	// ClientID is the PDP's client at the authorization server.
	ClientID string `yaml:"client_id"`
	// AuthMethod: client_secret_basic (default), client_secret_post or
	// private_key_jwt.
	AuthMethod string `yaml:"auth_method"`
	// ClientSecretFile holds the client secret (client_secret_*).
	ClientSecretFile string `yaml:"client_secret_file"`
	// PrivateKeyFile is a PEM private key (private_key_jwt); KeyID its kid.
	PrivateKeyFile string `yaml:"private_key_file"`
	KeyID          string `yaml:"key_id"`
	// JWTResponse asks for, and requires, RFC 9701 signed responses.
	JWTResponse bool `yaml:"jwt_response"`
	// RequireAudience rejects responses without aud.
	RequireAudience bool `yaml:"require_audience"`
	// Timeout bounds one introspection (0 = token's default, 3s).
	Timeout Duration `yaml:"timeout"`
	// MaxTTL bounds how long an active result is reused (0 = 1m).
	MaxTTL Duration `yaml:"max_ttl"`
	// NegativeTTL is how long a rejected token is remembered (0 = 5s).
	NegativeTTL Duration `yaml:"negative_ttl"`
}

// Gateway is the MCP gateway's listener: every resource with an upstream is
// served there at its URI's path, with its RFC 9728 metadata document.
type Gateway struct {
	// Listen is the gateway's address, host:port (required when a resource
	// names an upstream; not the PDP API's listen address, so that the API
	// can stay on loopback while the gateway faces clients).
	Listen string `yaml:"listen"`
	// TLS for the gateway listener; files are reloaded when they change.
	TLS TLS `yaml:"tls"`
	// AssertionKeyFile holds the key that signs identity assertions for
	// upstreams ("" = <data_dir>/gateway/assertion-key.pem, created when
	// missing).
	AssertionKeyFile string `yaml:"assertion_key_file"`
	// AllowedOrigins are the browser origins ("https://app.example.com", or
	// "*" for any) that may call the gateway's MCP endpoints; a request
	// from another origin is refused (MCP: servers validate Origin against
	// DNS rebinding). The resource's own origin is always allowed; requests
	// without an Origin header (non-browser clients) are not affected.
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// Upstream is the unmodified MCP server a resource protects through the
// gateway: a Streamable HTTP endpoint (URL) or a stdio server the gateway
// starts (Command).
type Upstream struct {
	// URL is the upstream's Streamable HTTP endpoint (http or https).
	URL string `yaml:"url"`
	// Command is the argv of a stdio MCP server (no shell).
	Command []string `yaml:"command"`
	// Env are extra environment variables of Command.
	Env map[string]string `yaml:"env"`
	// Dir is Command's working directory ("" = the PDP's).
	Dir string `yaml:"dir"`
	// ForwardToken sends the client's token upstream (off: MCP forbids
	// token passthrough; the upstream gets an identity assertion instead).
	ForwardToken bool `yaml:"forward_token"`
	// ResponseTimeout bounds the wait for the upstream's answer headers
	// (0 = gateway.DefaultResponseTimeout).
	ResponseTimeout Duration `yaml:"response_timeout"`
	// MaxResponseBytes bounds an answer the gateway reads whole, such as a
	// list it filters (0 = gateway.DefaultMaxResponseBytes).
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	// ConnectTimeout bounds connecting to URL (0 = gateway.DefaultConnectTimeout).
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// IdleStreamTimeout ends an SSE stream from URL that sent nothing for
	// this long (0 = gateway.DefaultIdleStreamTimeout).
	IdleStreamTimeout Duration `yaml:"idle_stream_timeout"`
	// MaxRequestBytes bounds a client's request body (0 =
	// gateway.DefaultMaxBodyBytes).
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxConcurrent bounds the POSTs in progress (0 =
	// gateway.DefaultMaxConcurrent).
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxProcesses bounds Command's processes at once (0 =
	// stdio.DefaultMaxProcesses).
	MaxProcesses int `yaml:"max_processes"`
	// IdleTimeout stops a Command process idle for this long (0 =
	// stdio.DefaultIdleTimeout).
	IdleTimeout Duration `yaml:"idle_timeout"`
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
	// Headers are sent with every request for a bundle URL (e.g. an API key
	// header of the bundle server). Prefer BearerTokenFile for secrets.
	Headers map[string]string `yaml:"headers"`
	// BearerTokenFile holds a token sent as "Authorization: Bearer <token>"
	// with every request for a bundle URL; read at start-up.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// CAFile is a PEM file of the CAs trusted for an https bundle server
	// (default: the system roots).
	CAFile string `yaml:"ca_file"`
	// DecisionCacheSize bounds the decision cache in weight units, one per
	// decision, one per list item, eight per token (0 = decision.DefaultCacheSize,
	// -1 = off).
	DecisionCacheSize int `yaml:"decision_cache_size"`
}

// Verification of signed bundles.
type Verification struct {
	// KeyFile is a PEM public key (RS*/PS*/ES*) or an HMAC secret file.
	KeyFile string `yaml:"key_file"`
	// KeyID names the key in .signatures.json ("" = policysource.DefaultKeyID).
	KeyID string `yaml:"key_id"`
	// Algorithm of the key ("" = RS256, policysource's default).
	Algorithm string `yaml:"algorithm"`
	// Scope the signature must carry (optional).
	Scope string `yaml:"scope"`
}

// Enabled reports whether bundles must be signed.
func (v Verification) Enabled() bool { return v.KeyFile != "" }

// Limits bound the work one request may cause.
type Limits struct {
	// MaxBodyBytes of a /v1/decide request (0 = api.DefaultMaxBodyBytes, 1 MiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// DecisionTimeout is the budget of one decision including policy
	// evaluation (0 = core.DefaultDecisionTimeout, 250ms).
	DecisionTimeout Duration `yaml:"decision_timeout"`
	// ReadTimeout / WriteTimeout / IdleTimeout of the HTTP server (0 =
	// server.DefaultReadTimeout, DefaultWriteTimeout, DefaultIdleTimeout).
	ReadTimeout  Duration `yaml:"read_timeout"`
	WriteTimeout Duration `yaml:"write_timeout"`
	IdleTimeout  Duration `yaml:"idle_timeout"`
	// TokenCacheSize bounds the verified-token cache (0 = token.DefaultCacheEntries).
	TokenCacheSize int `yaml:"token_cache_size"`
	// MaxConcurrent bounds /v1/decide requests in progress; more get 503
	// (0 = api.DefaultMaxConcurrent).
	MaxConcurrent int `yaml:"max_concurrent"`
	// RatePerPEP is the sustained requests/second allowed per authenticated
	// PEP (0 = unlimited); RateBurst the burst (0 = RatePerPEP rounded down
	// plus 1, api's default). Over it: 429.
	RatePerPEP float64 `yaml:"rate_per_pep"`
	RateBurst  int     `yaml:"rate_burst"`
}

// JWKS tunes signing key fetching; zero values are token.KeySetsConfig's
// defaults (token.DefaultRefreshInterval, DefaultMinRefetchInterval,
// DefaultFetchTimeout, DefaultMaxBodyBytes).
type JWKS struct {
	RefreshInterval    Duration `yaml:"refresh_interval"`
	MinRefetchInterval Duration `yaml:"min_refetch_interval"`
	FetchTimeout       Duration `yaml:"fetch_timeout"`
	MaxBodyBytes       int64    `yaml:"max_body_bytes"`
}

// Audit configures decision audit events. Zero values are the audit sink's
// defaults (auditsink.Default*).
type Audit struct {
	// Enabled turns audit off when false (default on).
	Enabled *bool `yaml:"enabled"`
	// Mode: "async" (the default) or "sync".
	Mode string `yaml:"mode"`
	// OnFailure: "open" (the default: answer, report loudly) or "deny".
	OnFailure       string   `yaml:"on_failure"`
	Stream          string   `yaml:"stream"`
	SubjectPrefix   string   `yaml:"subject_prefix"`
	Replicas        int      `yaml:"replicas"`
	MaxAge          Duration `yaml:"max_age"`
	DuplicateWindow Duration `yaml:"duplicate_window"`
	QueueSize       int      `yaml:"queue_size"`
	SpoolDir        string   `yaml:"spool_dir"`
	NATS            NATS     `yaml:"nats"`
	// ManageStream: the PDP creates and updates the stream (the default);
	// false leaves an operator-managed stream alone (it must exist).
	ManageStream *bool           `yaml:"manage_stream"`
	Checkpoint   AuditCheckpoint `yaml:"checkpoint"`
	Store        AuditStore      `yaml:"store"`
}

// AuditStore runs the SQL audit store (what `pdp audit store` runs as its
// own process) inside the PDP: a durable consumer of the audit stream
// writing every event into audit_events.
type AuditStore struct {
	// Enabled: on by default in dev mode (pdp serve --dev), off otherwise.
	Enabled *bool `yaml:"enabled"`
	// DB: a file, sqlite:PATH, or a postgres:// URL. Empty:
	// <data_dir>/audit.db.
	DB string `yaml:"db"`
	// Retention deletes rows older than it; 0 keeps every row.
	Retention Duration `yaml:"retention"`
}

// Runs reports whether the store runs in the PDP: Enabled, or in dev mode
// when it is not set.
func (a AuditStore) Runs(dev bool) bool {
	if a.Enabled != nil {
		return *a.Enabled
	}
	return dev
}

// Revocation configures the revocation bucket: a NATS key-value bucket on
// the audit's NATS that `pdp revoke` writes and every PDP watches.
type Revocation struct {
	// Enabled: on by default whenever audit is on (it needs the audit's
	// NATS connection).
	Enabled *bool `yaml:"enabled"`
	// Bucket is the key-value bucket (default pdp_revocations).
	Bucket string `yaml:"bucket"`
	// SnapshotFile keeps the last revocations seen, so that a restart
	// while NATS is unreachable forgets none (default
	// <data_dir>/revocations.json).
	SnapshotFile string `yaml:"snapshot_file"`
}

// IsEnabled reports whether revocations are watched: Enabled, or on when
// it is not set.
func (r Revocation) IsEnabled() bool { return r.Enabled == nil || *r.Enabled }

// AuditCheckpoint configures the signed checkpoints of the audit chain.
// Zero values are the audit sink's defaults.
type AuditCheckpoint struct {
	// Every: a checkpoint after this many events (0 = default; -1: only
	// by interval and at shutdown).
	Every int `yaml:"every"`
	// Interval: at most this long between an event and a checkpoint
	// covering it.
	Interval Duration `yaml:"interval"`
	// SigningKey: path of the Ed25519 private key (PEM, PKCS #8). Empty:
	// <data_dir>/audit-signing.key, generated when missing.
	SigningKey string `yaml:"signing_key"`
}

// IsEnabled reports whether audit is on (the default).
func (a Audit) IsEnabled() bool { return a.Enabled == nil || *a.Enabled }

// ManagesStream reports whether the PDP manages the stream (the default).
func (a Audit) ManagesStream() bool { return a.ManageStream == nil || *a.ManageStream }

// NATS says where audit events go.
type NATS struct {
	// URL is NATSEmbedded (the default) or a comma-separated list of nats:// URLs.
	URL         string `yaml:"url"`
	Credentials string `yaml:"credentials"`
	NKeySeed    string `yaml:"nkey_seed"`
	TLSCA       string `yaml:"tls_ca"`
	TLSCert     string `yaml:"tls_cert"`
	TLSKey      string `yaml:"tls_key"`
}

// Tracing configures OpenTelemetry tracing (internal/tracing); off
// without an endpoint.
type Tracing struct {
	// Endpoint is the collector's OTLP/HTTP URL (http://host:4318, or a
	// URL ending in /v1/traces); empty: no tracing.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio of the traces that start at the PDP, 0 to 1 (default
	// tracing.DefaultSampleRatio); a caller's traceparent decides for its
	// trace.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// Headers are sent with every export (e.g. an API key).
	Headers map[string]string `yaml:"headers"`
	// ServiceName is the spans' service.name (default
	// tracing.DefaultServiceName).
	ServiceName string `yaml:"service_name"`
}

// Log configures logging.
type Log struct {
	// Level: debug, info (the default), warn, error.
	Level string `yaml:"level"`
	// Format: text (the default) or json.
	Format string `yaml:"format"`
}

// Load reads the file at path and returns it decoded, with the defaults
// that span packages applied (see ApplyDefaults) and validated. A value
// left out (or zero) means the default of the package that uses it, as
// documented on each field and in docs/configuration.md. The error lists
// every problem of the file at once, each with its YAML path and line
// (ProblemsOf returns them).
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := parse(b)
	if err != nil {
		return nil, &FileError{File: path, Problems: ProblemsOf(err)}
	}
	return c, nil
}

// Parse is Load for YAML read from r.
func Parse(r io.Reader) (*Config, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(b)
}

func parse(b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, Problems{{Key: "(file)", Message: "not YAML: " + cleanYAMLError(err)}}
	}
	var c Config
	d := &decoder{lines: map[string]int{}}
	d.decode(&root, reflect.ValueOf(&c).Elem(), "")
	c.lines = d.lines
	c.ApplyDefaults()
	problems := d.problems
	if err := c.Validate(); err != nil {
		for _, p := range ProblemsOf(err) {
			// A key whose value did not decode has one problem already.
			if !slices.ContainsFunc(problems, func(q Problem) bool { return q.Key == p.Key }) {
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return &c, nil
}

// FileError is every problem of one configuration file.
type FileError struct {
	File     string
	Problems Problems
}

func (e *FileError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		at := e.File
		if p.Line > 0 {
			at += ":" + strconv.Itoa(p.Line)
		}
		lines[i] = at + ": " + p.Key + ": " + p.Message
	}
	if len(lines) == 1 {
		return "config " + lines[0]
	}
	return fmt.Sprintf("config %s: %d problems:\n%s", e.File, len(lines), strings.Join(lines, "\n"))
}

// Unwrap returns the problems.
func (e *FileError) Unwrap() error { return e.Problems }

// Default is the configuration of an empty file: cross-package defaults
// applied, not validated (it has no resources; `pdp serve --dev` and
// `pdp eval` add theirs with Override).
func Default() *Config {
	c := &Config{}
	c.ApplyDefaults()
	return c
}

// Override changes a loaded configuration (command-line flags, dev mode's
// resource, pdp eval's settings): it applies change, then the defaults that
// span packages, then validates the result once.
func (c *Config) Override(change func(*Config)) error {
	change(c)
	c.ApplyDefaults()
	return c.Validate()
}

// Values that more than one package uses. A default used by one package
// lives in that package, documented on the field here.
const (
	DefaultListen  = "127.0.0.1:8181"
	DefaultDataDir = ".pdp-data"
	// NATSEmbedded, as audit.nats.url, runs NATS inside the PDP.
	NATSEmbedded = "embedded"
)

// ApplyDefaults fills the unset fields whose defaults span packages: the
// listen address, the data directory, the instance name, the audit NATS URL
// and, per resource, the values derived from its URI and issuer (key,
// audiences, authorization servers). Load, Parse and Override apply it;
// call it on a configuration built in code. Every other zero value is left
// for the package that uses it to default.
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
		if r.Key == "" && r.URI != "" {
			r.Key = ResourceKey(r.URI)
		}
	}
	if c.Audit.NATS.URL == "" {
		c.Audit.NATS.URL = NATSEmbedded
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

// bundleAlgs are the algorithms of signed policy bundles (OPA bundle signing).
var bundleAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true, "PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true, "HS256": true, "HS384": true, "HS512": true,
}

// problems collects validation problems with the lines of their keys.
type problems struct {
	lines map[string]int
	list  Problems
}

func (ps *problems) bad(key, format string, args ...any) {
	ps.list = append(ps.list, Problem{Key: key, Line: lineOf(ps.lines, key), Message: fmt.Sprintf(format, args...)})
}

// oneOf reports value unless it is empty (the default) or one of allowed.
func (ps *problems) oneOf(key, value string, allowed ...string) {
	if value != "" && !slices.Contains(allowed, value) {
		ps.bad(key, "%q is not one of: %s", value, strings.Join(allowed, ", "))
	}
}

// Validate reports every invalid value at once (as Problems), each naming
// its YAML key and the fix. It checks the schema of every key; a package
// checks again only invariants that it alone knows (such as its own default
// against another key's value).
func (c *Config) Validate() error {
	ps := &problems{lines: c.lines}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		ps.bad("listen", "%q is not host:port (e.g. 127.0.0.1:8181)", c.Listen)
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			ps.bad("public_url", "%q is not an absolute http or https URL (e.g. https://pdp.example.com)", c.PublicURL)
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			ps.bad("public_url", "%q must be a base URL: no query, fragment or user", c.PublicURL)
		case strings.HasSuffix(u.Path, "/"):
			ps.bad("public_url", "%q must not end in a slash (write %q)", c.PublicURL, strings.TrimRight(c.PublicURL, "/"))
		}
	}
	c.validateResources(ps)
	c.validatePolicy(ps)
	c.validateLimits(ps)
	c.validateJWKS(ps)
	c.validateAuth(ps)
	c.validateAudit(ps)
	if b := c.Revocation.Bucket; b != "" && !validBucketName(b) {
		ps.bad("revocation.bucket", "%q is not a valid key-value bucket name (letters, digits, - and _)", b)
	}
	if e := c.Revocation.Enabled; e != nil && *e && !c.Audit.IsEnabled() {
		ps.bad("revocation.enabled", "revocations need the audit's NATS: turn audit on, or set revocation.enabled: false")
	}
	c.validateTracing(ps)
	ps.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ps.oneOf("log.format", c.Log.Format, "text", "json")
	c.validateRuntime(ps)
	c.validateGateway(ps)
	if len(ps.list) == 0 {
		return nil
	}
	return ps.list
}

func (c *Config) validateTracing(ps *problems) {
	t := c.Tracing
	if t.Endpoint == "" {
		if t.SampleRatio != nil || len(t.Headers) > 0 || t.ServiceName != "" {
			ps.bad("tracing.endpoint", "required with the other tracing keys: the collector's OTLP/HTTP URL, e.g. http://127.0.0.1:4318")
		}
		return
	}
	if u, err := url.Parse(t.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		ps.bad("tracing.endpoint", "%q is not an http(s) URL such as http://127.0.0.1:4318 (no query or fragment)", t.Endpoint)
	}
	if r := t.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		ps.bad("tracing.sample_ratio", "%v is not between 0 and 1", *r)
	}
	for k, v := range t.Headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") || strings.ContainsAny(v, "\r\n") {
			ps.bad("tracing.headers", "header %q: a header name without spaces or ':', a value on one line", k)
		}
	}
}

func (c *Config) validateResources(ps *problems) {
	if len(c.Resources) == 0 {
		ps.bad("resources", "at least one resource is required (or run `pdp serve --dev`)")
	}
	seen := map[string]bool{}
	keys := map[string]bool{}
	for i, r := range c.Resources {
		k := fmt.Sprintf("resources[%d]", i)
		u, err := url.Parse(r.URI)
		switch {
		case r.URI == "":
			ps.bad(k+".uri", "required: the canonical URI of the MCP server, e.g. https://mcp.example.com/mcp")
		case err != nil || u.Scheme == "" || u.Host == "":
			ps.bad(k+".uri", "%q is not an absolute URI with scheme and host", r.URI)
		case u.Fragment != "":
			ps.bad(k+".uri", "%q must not have a fragment (RFC 8707 §2)", r.URI)
		case u.Scheme != "https" && u.Scheme != "http":
			ps.bad(k+".uri", "%q is not an http or https URI", r.URI)
		}
		if seen[r.URI] {
			ps.bad(k+".uri", "%q is configured twice", r.URI)
		}
		seen[r.URI] = true
		if keys[r.Key] {
			ps.bad(k+".key", "%q is used by another resource; set a distinct key", r.Key)
		}
		keys[r.Key] = true
		if r.Issuer == "" {
			ps.bad(k+".issuer", "required: the exact `iss` of the authorization server's tokens")
		} else if iu, err := url.Parse(r.Issuer); err != nil || iu.Scheme == "" || iu.Host == "" {
			ps.bad(k+".issuer", "%q is not an absolute URL", r.Issuer)
		}
		if r.JWKSURI != "" {
			ju, err := url.Parse(r.JWKSURI)
			switch {
			case err != nil || (ju.Scheme != "https" && ju.Scheme != "http") || ju.Host == "":
				ps.bad(k+".jwks_uri", "%q is not an http(s) URL", r.JWKSURI)
			case ju.Fragment != "" || ju.RawQuery != "":
				ps.bad(k+".jwks_uri", "%q must have no query and no fragment", r.JWKSURI)
			}
		}
		for j, a := range r.Audiences {
			if a == "" {
				ps.bad(fmt.Sprintf("%s.audiences[%d]", k, j), "empty; give the accepted `aud` value or leave audiences out (default: the uri)")
			}
		}
		ps.oneOf(k+".challenge_scopes", r.ChallengeScopes, "operation", "accumulate")
		ps.oneOf(k+".on_counter_unavailable", r.OnCounterUnavailable, "deny", "allow")
		for _, a := range r.Algorithms {
			if !allowedAlgs[a] {
				ps.bad(k+".algorithms", "%q is not allowed; use asymmetric algorithms only (RS256..RS512, PS256..PS512, ES256..ES512, EdDSA)", a)
			}
		}
		if r.ClockSkew < 0 || r.ClockSkew.D() > 5*time.Minute {
			ps.bad(k+".clock_skew", "%s is out of range; use 0s to 5m", r.ClockSkew.D())
		}
		for _, s := range r.ScopesSupported {
			if !validScope(s) {
				ps.bad(k+".scopes_supported", "%q is not a valid scope token (RFC 6749 §3.3)", s)
			}
		}
		if r.Introspection != nil {
			validateIntrospection(ps, k+".introspection", r.Introspection)
		}
		ps.oneOf(k+".dpop", r.DPoP, "off", "allowed", "required")
		for _, a := range r.DPoPAlgorithms {
			if !allowedAlgs[a] && a != "Ed25519" {
				ps.bad(k+".dpop_algorithms", "%q is not allowed; use asymmetric algorithms only (RS256..RS512, PS256..PS512, ES256..ES512, EdDSA, Ed25519)", a)
			}
		}
		if r.DPoPWindow < 0 || r.DPoPWindow.D() > time.Hour {
			ps.bad(k+".dpop_window", "%s is out of range; use 0s to 1h (0 = the default)", r.DPoPWindow.D())
		}
		if r.DPoP == "off" && (len(r.DPoPAlgorithms) > 0 || r.DPoPWindow != 0 || r.DPoPNonce) {
			ps.bad(k+".dpop", "off, but dpop_algorithms, dpop_window or dpop_nonce is set")
		}
	}
}

func validateIntrospection(ps *problems, k string, in *Introspection) {
	switch {
	case in.Endpoint == "" && !in.Discover:
		ps.bad(k+".endpoint", "required: the authorization server's introspection endpoint (or discover: true)")
	case in.Endpoint != "" && in.Discover:
		ps.bad(k+".discover", "give endpoint or discover: true, not both")
	case in.Endpoint != "":
		if u, err := url.Parse(in.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
			ps.bad(k+".endpoint", "%q is not an http(s) URL without fragment", in.Endpoint)
		}
	}
	if in.ClientID == "" {
		ps.bad(k+".client_id", "required: the PDP's client at the authorization server")
	}
	ps.oneOf(k+".auth_method", in.AuthMethod, "client_secret_basic", "client_secret_post", "private_key_jwt")
	switch in.AuthMethod {
	case "", "client_secret_basic", "client_secret_post":
		if in.ClientSecretFile == "" {
			ps.bad(k+".client_secret_file", "required for %s: the file holding the client secret", cmp.Or(in.AuthMethod, "client_secret_basic"))
		}
		if in.PrivateKeyFile != "" {
			ps.bad(k+".private_key_file", "only for auth_method: private_key_jwt")
		}
	case "private_key_jwt":
		if in.PrivateKeyFile == "" {
			ps.bad(k+".private_key_file", "required for private_key_jwt: a PEM private key")
		}
		if in.ClientSecretFile != "" {
			ps.bad(k+".client_secret_file", "not used by private_key_jwt")
		}
	}
	for _, d := range []struct {
		key      string
		v        Duration
		min, max time.Duration
	}{{"timeout", in.Timeout, 0, 30 * time.Second}, {"max_ttl", in.MaxTTL, 0, time.Hour}, {"negative_ttl", in.NegativeTTL, 0, 5 * time.Minute}} {
		if d.v.D() < d.min || d.v.D() > d.max {
			ps.bad(k+"."+d.key, "%s is out of range; use %s to %s (0 = the default)", d.v.D(), d.min, d.max)
		}
	}
}

func (c *Config) validatePolicy(ps *problems) {
	p := c.Policy
	if p.PollInterval != nil && *p.PollInterval < 0 {
		ps.bad("policy.poll_interval", "must not be negative (0s disables reloading)")
	}
	if p.DecisionCacheSize < -1 {
		ps.bad("policy.decision_cache_size", "use -1 (off), 0 (default) or a positive size")
	}
	isURL := strings.HasPrefix(p.Path, "http://") || strings.HasPrefix(p.Path, "https://")
	if isURL {
		if _, err := url.Parse(p.Path); err != nil {
			ps.bad("policy.path", "%q is not a valid URL", p.Path)
		}
	}
	if !isURL {
		for _, k := range []struct {
			key string
			set bool
		}{{"policy.headers", len(p.Headers) > 0}, {"policy.bearer_token_file", p.BearerTokenFile != ""}, {"policy.ca_file", p.CAFile != ""}} {
			if k.set {
				ps.bad(k.key, "applies to a bundle URL only; policy.path is not an http(s) URL")
			}
		}
	}
	for name := range p.Headers {
		if name == "" || strings.ContainsAny(name, " \t\r\n:") {
			ps.bad("policy.headers", "%q is not an HTTP header name", name)
		}
		if strings.EqualFold(name, "Authorization") && p.BearerTokenFile != "" {
			ps.bad("policy.headers", "Authorization is also set by policy.bearer_token_file; keep one")
		}
	}
	if v := p.Verification; v.Enabled() {
		if v.Algorithm != "" && !bundleAlgs[v.Algorithm] {
			ps.bad("policy.verification.algorithm", "%q is not one of RS256..RS512, PS256..PS512, ES256..ES512, HS256..HS512", v.Algorithm)
		}
	} else if v.KeyID != "" || v.Algorithm != "" || v.Scope != "" {
		ps.bad("policy.verification.key_file", "required when policy.verification has other keys: the key that signs the bundles")
	}
}

func (c *Config) validateLimits(ps *problems) {
	l := c.Limits
	if l.MaxBodyBytes != 0 && l.MaxBodyBytes < 1024 {
		ps.bad("limits.max_body_bytes", "%d is too small; use at least 1024", l.MaxBodyBytes)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"limits.decision_timeout", l.DecisionTimeout}, {"limits.read_timeout", l.ReadTimeout}, {"limits.write_timeout", l.WriteTimeout}, {"limits.idle_timeout", l.IdleTimeout}} {
		if d.v < 0 {
			ps.bad(d.key, "must not be negative (0 = default)")
		}
	}
	if l.TokenCacheSize < 0 {
		ps.bad("limits.token_cache_size", "must not be negative (0 = default)")
	}
	if l.MaxConcurrent < 0 {
		ps.bad("limits.max_concurrent", "must not be negative")
	}
	if l.RatePerPEP < 0 {
		ps.bad("limits.rate_per_pep", "must not be negative (0 = unlimited)")
	}
	if l.RateBurst < 0 {
		ps.bad("limits.rate_burst", "must not be negative")
	}
}

func (c *Config) validateJWKS(ps *problems) {
	j := c.JWKS
	for _, d := range []struct {
		key string
		v   Duration
	}{{"jwks.refresh_interval", j.RefreshInterval}, {"jwks.min_refetch_interval", j.MinRefetchInterval}, {"jwks.fetch_timeout", j.FetchTimeout}} {
		if d.v < 0 {
			ps.bad(d.key, "must not be negative (0 = default)")
		}
	}
	if j.MaxBodyBytes < 0 {
		ps.bad("jwks.max_body_bytes", "must not be negative (0 = default)")
	}
}

func (c *Config) validateAuth(ps *problems) {
	// Two keys may share a name: that is how a PEP's key is rotated.
	hashes := map[string]bool{}
	for i, k := range c.Auth.APIKeys {
		key := fmt.Sprintf("auth.api_keys[%d]", i)
		if k.Name == "" {
			ps.bad(key+".name", "required: the PEP's name, used in audit events")
		}
		if hashes[strings.ToLower(k.SHA256)] {
			ps.bad(key+".sha256", "the same key is listed twice")
		}
		hashes[strings.ToLower(k.SHA256)] = true
		if len(k.SHA256) != 64 || strings.Trim(strings.ToLower(k.SHA256), "0123456789abcdef") != "" {
			ps.bad(key+".sha256", "must be the 64 hex digits of sha256(key); create one with `pdp apikey --name %s`", k.Name)
		}
	}
	if c.Auth.MTLS.ClientCA != "" && !c.TLS.Enabled() {
		ps.bad("auth.mtls.client_ca", "mutual TLS needs tls.cert_file and tls.key_file")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		ps.bad("tls", "set both cert_file and key_file")
	}
}

func (c *Config) validateAudit(ps *problems) {
	a := c.Audit
	ps.oneOf("audit.mode", a.Mode, "async", "sync")
	ps.oneOf("audit.on_failure", a.OnFailure, "open", "deny")
	if a.Stream != "" && strings.ContainsAny(a.Stream, ".*> \t\r\n/\\") {
		ps.bad("audit.stream", `%q is not a valid stream name (no '.', '*', '>', '/', '\' or whitespace)`, a.Stream)
	}
	if a.SubjectPrefix != "" {
		for _, tok := range strings.Split(a.SubjectPrefix, ".") {
			if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
				ps.bad("audit.subject_prefix", "%q is not a valid subject prefix (dot-separated tokens without '*', '>' or whitespace)", a.SubjectPrefix)
				break
			}
		}
	}
	if a.Replicas < 0 || a.Replicas > 5 {
		ps.bad("audit.replicas", "%d is out of range; use 1 to 5 (3 recommended for a cluster)", a.Replicas)
	}
	if a.MaxAge < 0 {
		ps.bad("audit.max_age", "must not be negative (0 keeps events forever)")
	}
	switch {
	case a.DuplicateWindow < 0:
		ps.bad("audit.duplicate_window", "must not be negative (0 = default)")
	case a.MaxAge > 0 && a.DuplicateWindow > a.MaxAge:
		ps.bad("audit.duplicate_window", "%s is longer than audit.max_age (%s); shorten it", a.DuplicateWindow.D(), a.MaxAge.D())
	}
	if a.QueueSize < 0 {
		ps.bad("audit.queue_size", "must not be negative (0 = default)")
	}
	if a.Checkpoint.Every < -1 {
		ps.bad("audit.checkpoint.every", "%d is not valid: a number of events, 0 for the default or -1 for none between intervals", a.Checkpoint.Every)
	}
	if a.Checkpoint.Interval < 0 {
		ps.bad("audit.checkpoint.interval", "must not be negative (0 = default)")
	}
	if a.Store.Retention < 0 {
		ps.bad("audit.store.retention", "must not be negative (0 keeps every row)")
	}
	if db := a.Store.DB; db != "" && strings.Contains(db, "://") && !strings.HasPrefix(db, "postgres://") && !strings.HasPrefix(db, "postgresql://") {
		ps.bad("audit.store.db", "%q: a file, sqlite:PATH or a postgres:// URL", db)
	}
	if a.NATS.URL != NATSEmbedded {
		for _, s := range strings.Split(a.NATS.URL, ",") {
			u, err := url.Parse(strings.TrimSpace(s))
			if err != nil || (u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
				ps.bad("audit.nats.url", `%q is not "embedded" or a nats://host:port URL list`, a.NATS.URL)
				break
			}
		}
	}
}

func (c *Config) validateGateway(ps *problems) {
	paths := map[string]int{}
	upstreams := 0
	for i, r := range c.Resources {
		u := r.Upstream
		if u == nil {
			continue
		}
		upstreams++
		k := fmt.Sprintf("resources[%d].upstream", i)
		switch {
		case u.URL == "" && len(u.Command) == 0:
			ps.bad(k, "give url (a Streamable HTTP MCP endpoint) or command (a stdio MCP server)")
		case u.URL != "" && len(u.Command) > 0:
			ps.bad(k, "give url or command, not both")
		case u.URL != "":
			uu, err := url.Parse(u.URL)
			switch {
			case err != nil || (uu.Scheme != "http" && uu.Scheme != "https") || uu.Host == "":
				ps.bad(k+".url", "%q is not an http(s) URL", u.URL)
			case uu.User != nil:
				ps.bad(k+".url", "must not carry credentials")
			}
		case u.Command[0] == "":
			ps.bad(k+".command", "the first entry is the program to run; it is empty")
		}
		if u.URL != "" && (len(u.Env) > 0 || u.Dir != "") {
			ps.bad(k+".env", "env and dir apply to a command only")
		}
		for name := range u.Env {
			if name == "" || strings.ContainsAny(name, "=\x00") {
				ps.bad(k+".env", "%q is not an environment variable name", name)
			}
		}
		for _, n := range []struct {
			key string
			v   int64
		}{
			{"response_timeout", int64(u.ResponseTimeout)}, {"max_response_bytes", u.MaxResponseBytes},
			{"connect_timeout", int64(u.ConnectTimeout)}, {"idle_stream_timeout", int64(u.IdleStreamTimeout)},
			{"max_request_bytes", u.MaxRequestBytes}, {"max_concurrent", int64(u.MaxConcurrent)},
			{"max_processes", int64(u.MaxProcesses)}, {"idle_timeout", int64(u.IdleTimeout)},
		} {
			if n.v < 0 {
				ps.bad(k+"."+n.key, "must not be negative (0 = default)")
			}
		}
		if u.URL != "" && (u.MaxProcesses != 0 || u.IdleTimeout != 0) {
			ps.bad(k+".max_processes", "max_processes and idle_timeout apply to a command only")
		}
		if len(u.Command) > 0 && (u.ConnectTimeout != 0 || u.IdleStreamTimeout != 0 || u.ForwardToken) {
			ps.bad(k+".connect_timeout", "connect_timeout, idle_stream_timeout and forward_token apply to a url only")
		}
		if ru, err := url.Parse(r.URI); err == nil {
			p := cmp.Or(ru.Path, "/")
			if j, dup := paths[p]; dup {
				ps.bad(fmt.Sprintf("resources[%d].uri", i), "its path %q is served by the gateway for resources[%d] already; give each gateway resource its own path", p, j)
			}
			paths[p] = i
		}
	}
	g := c.Gateway
	if upstreams == 0 {
		if g.Listen != "" {
			ps.bad("gateway.listen", "no resource names an upstream; set resources[].upstream or remove gateway")
		}
		return
	}
	switch {
	case g.Listen == "":
		ps.bad("gateway.listen", "required: the address MCP clients reach the gateway on (e.g. 0.0.0.0:8443), since a resource names an upstream")
	case g.Listen == c.Listen && !strings.HasSuffix(g.Listen, ":0"):
		ps.bad("gateway.listen", "%q is the PDP API's listen address; give the gateway its own", g.Listen)
	default:
		if _, _, err := net.SplitHostPort(g.Listen); err != nil {
			ps.bad("gateway.listen", "%q is not host:port (e.g. 0.0.0.0:8443)", g.Listen)
		}
	}
	if (g.TLS.CertFile == "") != (g.TLS.KeyFile == "") {
		ps.bad("gateway.tls", "set both cert_file and key_file")
	}
	for _, o := range g.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			ps.bad("gateway.allowed_origins", "%q is not an origin: scheme://host[:port], nothing after it (or \"*\")", o)
		}
	}
}

func (c *Config) validateRuntime(ps *problems) {
	_, hasLimit, err := c.Runtime.MemoryLimitBytes()
	if err != nil {
		ps.bad("runtime.memory_limit", "%v", err)
	}
	switch {
	case c.Runtime.GCPercent < -1:
		ps.bad("runtime.gc_percent", "%d is out of range; use a positive percentage (0 = default), or -1 (off) together with runtime.memory_limit", c.Runtime.GCPercent)
	case c.Runtime.GCPercent == -1 && !hasLimit && err == nil:
		ps.bad("runtime.gc_percent", "-1 (off) without runtime.memory_limit lets the heap grow without bound; set runtime.memory_limit (e.g. 1GiB) or use a percentage")
	}
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

// validBucketName reports whether b is a JetStream key-value bucket name.
func validBucketName(b string) bool {
	if b == "" || len(b) > 200 {
		return false
	}
	for _, r := range b {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}
