package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/config"
)

const minimal = `
resources:
  - uri: https://mcp.example.com/mcp
    issuer: https://auth.example.com
`

// TestDefaults: Parse applies the defaults that span packages; every other
// key is left zero for the package that uses it (those defaults are pinned
// against docs/configuration.md by internal/server's TestDocumentedDefaults).
func TestDefaults(t *testing.T) {
	c, err := config.Parse(strings.NewReader(minimal))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Resources[0]
	if c.Listen != "127.0.0.1:8181" || c.DataDir != config.DefaultDataDir || c.Instance == "" || c.Audit.NATS.URL != "embedded" || !c.Audit.IsEnabled() {
		t.Fatalf("defaults: %+v", c)
	}
	if len(r.Audiences) != 1 || r.Audiences[0] != r.URI {
		t.Fatalf("resource defaults: %+v", r)
	}
	if r.Key != "mcp_example_com_mcp" || r.AuthorizationServers[0] != "https://auth.example.com" {
		t.Fatalf("key=%q as=%v", r.Key, r.AuthorizationServers)
	}
	// Package defaults stay zero here.
	if c.Limits.MaxBodyBytes != 0 || c.Audit.Mode != "" || r.ChallengeScopes != "" || r.ClockSkew != 0 || c.Runtime.GCPercent != 0 || c.JWKS.RefreshInterval != 0 {
		t.Fatalf("package defaults were filled in: %+v", c)
	}
	if c.Runtime.MemoryLimit != "" {
		t.Fatalf("runtime defaults: %+v", c.Runtime)
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // -1: invalid
	}{
		{"1073741824", 1 << 30},
		{"0", 0},
		{"512B", 512},
		{"64KiB", 64 << 10},
		{"512MiB", 512 << 20},
		{"2GiB", 2 << 30},
		{"1TiB", 1 << 40},
		{"", -1},
		{"MiB", -1},
		{"1GB", -1},
		{"1 GiB", -1},
		{"1.5GiB", -1},
		{"+1MiB", -1},
		{"-1", -1},
		{"9223372036854775807KiB", -1},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := config.ParseByteSize(tc.in)
			if tc.want < 0 {
				if err == nil {
					t.Fatalf("ParseByteSize(%q) = %d, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestErrorsNameKeyAndFix(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown key", "lisen: x\n" + minimal, `line 1: lisen: not a known key; did you mean "listen"?`},
		{"unknown nested key", minimal + "    sidecar: {url: http://x}\n", "line 5: resources[0].sidecar: not a known key here; known keys: algorithms,"},
		{"upstream without gateway", minimal + "    upstream: {url: \"http://127.0.0.1:3000/mcp\"}\n", "gateway.listen: required"},
		{"upstream url and command", minimal + "    upstream: {url: \"http://a/mcp\", command: [x]}\n" + "gateway: {listen: \"127.0.0.1:1\"}\n", "resources[0].upstream: give url or command, not both"},
		{"upstream neither", minimal + "    upstream: {forward_token: true}\n" + "gateway: {listen: \"127.0.0.1:1\"}\n", "resources[0].upstream: give url"},
		{"upstream bad url", minimal + "    upstream: {url: \"ftp://a\"}\n" + "gateway: {listen: \"127.0.0.1:1\"}\n", "resources[0].upstream.url"},
		{"upstream negative limit", minimal + "    upstream: {url: \"http://a/mcp\", max_concurrent: -1}\n" + "gateway: {listen: \"127.0.0.1:1\"}\n", "resources[0].upstream.max_concurrent: must not be negative"},
		{"process limits on a url", minimal + "    upstream: {url: \"http://a/mcp\", max_processes: 3}\n" + "gateway: {listen: \"127.0.0.1:1\"}\n", "apply to a command only"},
		{"stream timeout on a command", minimal + "    upstream: {command: [go], idle_stream_timeout: 1s}\n" + "gateway: {listen: \"127.0.0.1:1\"}\n", "apply to a url only"},
		{"not an origin", minimal + "    upstream: {url: \"http://a/mcp\"}\n" + "gateway: {listen: \"127.0.0.1:1\", allowed_origins: [\"https://app.example.com/path\"]}\n", "gateway.allowed_origins: \"https://app.example.com/path\" is not an origin"},
		{"gateway on the API address", minimal + "    upstream: {url: \"http://a/mcp\"}\n" + "listen: 127.0.0.1:9\ngateway: {listen: \"127.0.0.1:9\"}\n", "give the gateway its own"},
		{"gateway without upstream", minimal + "gateway: {listen: \"127.0.0.1:1\"}\n", "no resource names an upstream"},
		{"wrong type", minimal + "limits:\n  max_body_bytes: lots\n", "line 6: limits.max_body_bytes: want a whole number, not the string `lots`"},
		{"mapping for a list", "resources: {uri: x}\n", "line 1: resources: want a list"},
		{"key twice", minimal + "log:\n  level: info\n  level: warn\n", "line 7: log.level: given twice"},
		{"not yaml", "listen: [\n", "not YAML"},
		{"stream name", minimal + "audit:\n  stream: a.b\n", `audit.stream: "a.b" is not a valid stream name`},
		{"subject prefix", minimal + "audit:\n  subject_prefix: a.*\n", "audit.subject_prefix"},
		{"duplicate window", minimal + "audit:\n  max_age: 1m\n  duplicate_window: 5m\n", "audit.duplicate_window: 5m0s is longer than audit.max_age"},
		{"queue size", minimal + "audit:\n  queue_size: -1\n", "audit.queue_size: must not be negative"},
		{"checkpoint every", minimal + "audit:\n  checkpoint: {every: -5}\n", "audit.checkpoint.every: -5 is not valid"},
		{"checkpoint interval", minimal + "audit:\n  checkpoint: {interval: -1s}\n", "audit.checkpoint.interval: must not be negative"},
		{"manage stream", minimal + "audit:\n  manage_stream: maybe\n", "audit.manage_stream"},
		{"store retention", minimal + "audit:\n  store: {retention: -1d}\n", "audit.store.retention"},
		{"store retention unit", minimal + "audit:\n  store: {retention: 3w}\n", `"3w" is not a duration`},
		{"store db", minimal + "audit:\n  store: {db: \"mysql://h/db\"}\n", "audit.store.db"},
		{"revocation bucket", minimal + "revocation:\n  bucket: a.b\n", "revocation.bucket"},
		{"revocation without audit", minimal + "audit: {enabled: false}\nrevocation: {enabled: true}\n", "revocation.enabled"},
		{"jwks query", "resources:\n  - uri: https://a/mcp\n    issuer: https://a\n    jwks_uri: https://a/jwks?x=1\n", "resources[0].jwks_uri"},
		{"empty audience", minimal + "    audiences: [\"\"]\n", "resources[0].audiences[0]: empty"},
		{"uri scheme", "resources:\n  - uri: ftp://a/mcp\n    issuer: https://a\n", "not an http or https URI"},
		{"bundle alg", minimal + "policy:\n  path: p\n  verification:\n    key_file: k\n    algorithm: XX1\n", "policy.verification.algorithm"},
		{"headers without url", minimal + "policy:\n  path: dir\n  headers: {X-Key: a}\n", "policy.headers: applies to a bundle URL only"},
		{"two authorizations", minimal + "policy:\n  path: https://b/x.tar.gz\n  bearer_token_file: t\n  headers: {Authorization: a}\n", "keep one"},
		{"negative timeout", minimal + "limits:\n  read_timeout: -1s\n", "limits.read_timeout: must not be negative"},
		{"bad duration", minimal + "limits:\n  decision_timeout: fast\n", `"fast" is not a duration`},
		{"no resources", "listen: 127.0.0.1:1\n", "resources: at least one resource is required"},
		{"relative uri", "resources:\n  - uri: /mcp\n    issuer: https://a\n", "resources[0].uri"},
		{"fragment", "resources:\n  - uri: https://a/mcp#x\n    issuer: https://a\n", "must not have a fragment"},
		{"no issuer", "resources:\n  - uri: https://a/mcp\n", "resources[0].issuer: required"},
		{"hs256", minimal + "    algorithms: [HS256]\n", `"HS256" is not allowed`},
		{"strategy", minimal + "    challenge_scopes: all\n", "resources[0].challenge_scopes"},
		{"counter fallback", minimal + "    on_counter_unavailable: maybe\n", "resources[0].on_counter_unavailable"},
		{"duplicate", minimal + "  - uri: https://mcp.example.com/mcp\n    issuer: https://a\n", "configured twice"},
		{"bad scope", minimal + "    scopes_supported: [\"a b\"]\n", "not a valid scope token"},
		{"audit mode", minimal + "audit:\n  mode: maybe\n", "audit.mode"},
		{"nats url", minimal + "audit:\n  nats:\n    url: http://x\n", "audit.nats.url"},
		{"replicas", minimal + "audit:\n  replicas: 9\n", "audit.replicas"},
		{"api key hash", minimal + "auth:\n  api_keys:\n    - name: a\n      sha256: abc\n", "auth.api_keys[0].sha256"},
		{"mtls without tls", minimal + "auth:\n  mtls:\n    client_ca: ca.pem\n", "auth.mtls.client_ca"},
		{"public url relative", "public_url: pdp.example.com\n" + minimal, `public_url: "pdp.example.com" is not an absolute http or https URL`},
		{"public url query", "public_url: https://pdp.example.com?x=1\n" + minimal, "public_url: \"https://pdp.example.com?x=1\" must be a base URL"},
		{"public url slash", "public_url: https://pdp.example.com/\n" + minimal, `must not end in a slash (write "https://pdp.example.com")`},
		{"listen", "listen: nope\n" + minimal, "listen:"},
		{"log level", minimal + "log:\n  level: loud\n", "log.level"},
		{"gc percent", minimal + "runtime:\n  gc_percent: -5\n", "runtime.gc_percent: -5 is out of range"},
		{"gc off without limit", minimal + "runtime:\n  gc_percent: -1\n", "set runtime.memory_limit"},
		{"memory limit unit", minimal + "runtime:\n  memory_limit: 1GB\n", "runtime.memory_limit: \"1GB\" is not a byte count"},
		{"memory limit sign", minimal + "runtime:\n  memory_limit: -1MiB\n", "runtime.memory_limit"},
		{"introspection without endpoint", minimal + "    introspection: {client_id: pdp, client_secret_file: s}\n", "resources[0].introspection.endpoint: required"},
		{"introspection endpoint and discover", minimal + "    introspection: {endpoint: \"https://a/i\", discover: true, client_id: pdp, client_secret_file: s}\n", "resources[0].introspection.discover: give endpoint or discover"},
		{"introspection without client", minimal + "    introspection: {discover: true, client_secret_file: s}\n", "resources[0].introspection.client_id: required"},
		{"introspection without secret", minimal + "    introspection: {discover: true, client_id: pdp}\n", "resources[0].introspection.client_secret_file: required for client_secret_basic"},
		{"introspection without key", minimal + "    introspection: {discover: true, client_id: pdp, auth_method: private_key_jwt}\n", "resources[0].introspection.private_key_file: required"},
		{"introspection method", minimal + "    introspection: {discover: true, client_id: pdp, auth_method: tls_client_auth}\n", "resources[0].introspection.auth_method"},
		{"introspection max_ttl", minimal + "    introspection: {discover: true, client_id: pdp, client_secret_file: s, max_ttl: 2h}\n", "resources[0].introspection.max_ttl: 2h0m0s is out of range"},
		{"dpop mode", minimal + "    dpop: sometimes\n", `resources[0].dpop: "sometimes" is not one of: off, allowed, required`},
		{"dpop alg", minimal + "    dpop_algorithms: [HS256]\n", `resources[0].dpop_algorithms: "HS256" is not allowed`},
		{"dpop window", minimal + "    dpop_window: 2h\n", "resources[0].dpop_window: 2h0m0s is out of range"},
		{"dpop off with settings", minimal + "    dpop: off\n    dpop_nonce: true\n", "resources[0].dpop: off, but"},
		{"introspection unknown key", minimal + "    introspection: {discover: true, client_id: pdp, client_secret_file: s, secret: x}\n", "resources[0].introspection.secret: not a known key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	_, err := config.Parse(strings.NewReader("resources:\n  - uri: x\nlog:\n  level: loud\n"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"resources[0].uri", "resources[0].issuer", "log.level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error misses %q:\n%v", want, err)
		}
	}
}

// TestLoadReportsEveryProblemWithFileAndLine: decode problems (unknown keys,
// wrong types) and validation problems of one file come in one run, each as
// file:line: key: message.
func TestLoadReportsEveryProblemWithFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pdp.yaml")
	yaml := `listen: localhost
resources:
  - uri: https://mcp.example.com/mcp
    isuer: https://auth.example.com
    sidecar:
      url: http://127.0.0.1:3000/mcp
limits:
  max_body_bytes: many
log:
  level: loud
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		path + ": 6 problems:",
		path + `:1: listen: "localhost" is not host:port`,
		path + `:4: resources[0].isuer: not a known key; did you mean "issuer"?`,
		path + ":5: resources[0].sidecar: not a known key here",
		path + ":8: limits.max_body_bytes: want a whole number, not the string `many`",
		path + `:10: log.level: "loud" is not one of: debug, info, warn, error`,
		path + ":3: resources[0].issuer: required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error misses %q:\n%v", want, err)
		}
	}
	ps := config.ProblemsOf(err)
	if len(ps) != 6 {
		t.Fatalf("problems = %d, want 6: %v", len(ps), ps)
	}
	if !strings.Contains(err.Error(), "config "+path) {
		t.Errorf("error does not name the file: %v", err)
	}
}

// TestOverride: flags change a loaded configuration through one function,
// followed by one validation that reports the changed key.
func TestOverride(t *testing.T) {
	c, err := config.Parse(strings.NewReader(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Override(func(c *config.Config) { c.Listen = "127.0.0.1:9" }); err != nil || c.Listen != "127.0.0.1:9" {
		t.Fatalf("override: %v %q", err, c.Listen)
	}
	err = c.Override(func(c *config.Config) { c.Listen = "nope" })
	if err == nil || !strings.Contains(err.Error(), "listen:") {
		t.Fatalf("bad override accepted: %v", err)
	}
	d := config.Default()
	err = d.Override(func(c *config.Config) {
		c.Resources = []config.Resource{{URI: "https://a.example/mcp", Issuer: "https://a.example"}}
	})
	if err != nil || d.Resources[0].Key != "a_example_mcp" {
		t.Fatalf("default + resource: %v %+v", err, d.Resources)
	}
}

func TestResourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"https://mcp.example.com/mcp":  "mcp_example_com_mcp",
		"http://127.0.0.1:8181/mcp":    "127_0_0_1_8181_mcp",
		"https://a.example/":           "a_example",
		"https://a.example/x.y/*>/z w": "a_example_x_y____z_w",
	} {
		if got := config.ResourceKey(in); got != want {
			t.Errorf("ResourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90d", 90 * 24 * time.Hour, true},
		{"0d", 0, true},
		{"1h30m", 90 * time.Minute, true},
		{"d", 0, false},
		{"-3d", 0, false},
		{"1.5d", 0, false},
		{"99999999d", 0, false},
	}
	for _, c := range cases {
		got, err := config.ParseDuration(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}
