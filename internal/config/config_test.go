package config_test

import (
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

func TestDefaults(t *testing.T) {
	c, err := config.Parse(strings.NewReader(minimal))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Resources[0]
	if c.Listen != "127.0.0.1:8181" || c.Limits.MaxBodyBytes != 1<<20 || c.Audit.Mode != "async" || c.Audit.NATS.URL != "embedded" || !c.Audit.IsEnabled() {
		t.Fatalf("defaults: %+v", c)
	}
	if len(r.Audiences) != 1 || r.Audiences[0] != r.URI || r.ChallengeScopes != "operation" || r.ClockSkew.D() != 30*time.Second {
		t.Fatalf("resource defaults: %+v", r)
	}
	if r.Key != "mcp_example_com_mcp" || r.AuthorizationServers[0] != "https://auth.example.com" {
		t.Fatalf("key=%q as=%v", r.Key, r.AuthorizationServers)
	}
	if c.Runtime.GCPercent != config.DefaultGCPercent || c.Runtime.MemoryLimit != "" {
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
		{"unknown key", "lisen: x\n" + minimal, "field lisen is not a known key"},
		{"bad duration", minimal + "limits:\n  decision_timeout: fast\n", `"fast" is not a duration`},
		{"no resources", "listen: 127.0.0.1:1\n", "resources: at least one resource is required"},
		{"relative uri", "resources:\n  - uri: /mcp\n    issuer: https://a\n", "resources[0].uri"},
		{"fragment", "resources:\n  - uri: https://a/mcp#x\n    issuer: https://a\n", "must not have a fragment"},
		{"no issuer", "resources:\n  - uri: https://a/mcp\n", "resources[0].issuer: required"},
		{"hs256", minimal + "    algorithms: [HS256]\n", `"HS256" is not allowed`},
		{"strategy", minimal + "    challenge_scopes: all\n", "resources[0].challenge_scopes"},
		{"duplicate", minimal + "  - uri: https://mcp.example.com/mcp\n    issuer: https://a\n", "configured twice"},
		{"bad scope", minimal + "    scopes_supported: [\"a b\"]\n", "not a valid scope token"},
		{"audit mode", minimal + "audit:\n  mode: maybe\n", "audit.mode"},
		{"nats url", minimal + "audit:\n  nats:\n    url: http://x\n", "audit.nats.url"},
		{"replicas", minimal + "audit:\n  replicas: 9\n", "audit.replicas"},
		{"api key hash", minimal + "auth:\n  api_keys:\n    - name: a\n      sha256: abc\n", "auth.api_keys[0].sha256"},
		{"mtls without tls", minimal + "auth:\n  mtls:\n    client_ca: ca.pem\n", "auth.mtls.client_ca"},
		{"listen", "listen: nope\n" + minimal, "listen:"},
		{"log level", minimal + "log:\n  level: loud\n", "log.level"},
		{"gc percent", minimal + "runtime:\n  gc_percent: -5\n", "runtime.gc_percent: -5 is out of range"},
		{"gc off without limit", minimal + "runtime:\n  gc_percent: -1\n", "set runtime.memory_limit"},
		{"memory limit unit", minimal + "runtime:\n  memory_limit: 1GB\n", "runtime.memory_limit: \"1GB\" is not a byte count"},
		{"memory limit sign", minimal + "runtime:\n  memory_limit: -1MiB\n", "runtime.memory_limit"},
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
