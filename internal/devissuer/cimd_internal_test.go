package devissuer

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestCheckCIMDURL: the client identifier URL rules of the draft (§3), and
// the development exception (http on loopback hosts).
func TestCheckCIMDURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string // "" = accepted, else a part of the refusal
	}{
		{"https://app.example/client.json", ""},
		{"https://app.example:8443/oauth/client.json?v=1", ""},
		{"http://127.0.0.1:3000/client.json", ""},
		{"http://localhost/c", ""},
		{"http://[::1]:9/c", ""},
		{"http://app.example/client.json", "must be https"},
		{"ftp://app.example/client.json", "must be https"},
		{"https://app.example", "must have a path"},
		{"https://app.example/a/../client.json", ". or .."},
		{"https://app.example/./client.json", ". or .."},
		{"https://app.example/%2e%2e/client.json", ". or .."},
		{"https://app.example/client.json#x", "fragment"},
		{"https://app.example/client.json#", "fragment"},
		{"https://user:pw@app.example/client.json", "user or password"},
		{"https:///client.json", "no host"},
		{"https://app.example/" + strings.Repeat("a", maxCIMDURLLength), "longer"},
	} {
		_, err := checkCIMDURL(tc.url)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.url, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want a refusal saying %q", tc.url, err, tc.want)
		}
	}
}

// TestFetchableAddr: public unicast addresses are fetched; special-use
// ones never; loopback only when the server itself is on loopback.
func TestFetchableAddr(t *testing.T) {
	for _, tc := range []struct {
		ip             string
		loopback, want bool
	}{
		{"93.184.215.14", false, true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", false, true},
		{"127.0.0.1", false, false},
		{"127.0.0.1", true, true},
		{"::1", true, true},
		{"::ffff:127.0.0.1", true, true},
		{"10.1.2.3", true, false},
		{"172.16.0.1", true, false},
		{"192.168.1.1", true, false},
		{"169.254.169.254", true, false},
		{"::ffff:169.254.169.254", true, false},
		{"100.64.0.1", true, false},
		{"0.0.0.0", true, false},
		{"224.0.0.1", true, false},
		{"255.255.255.255", true, false},
		{"198.18.0.1", true, false},
		{"fc00::1", true, false},
		{"fe80::1", true, false},
		{"64:ff9b::a01:203", true, false},
		{"2002:a01:203::1", true, false},
		{"2001:db8::1", true, false},
	} {
		if got := fetchableAddr(netip.MustParseAddr(tc.ip), tc.loopback); got != tc.want {
			t.Errorf("%s (loopback allowed %v): %v, want %v", tc.ip, tc.loopback, got, tc.want)
		}
	}
}

// TestCIMDCacheTTL: Cache-Control decides how long a document is kept,
// within the server's bounds.
func TestCIMDCacheTTL(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"":                       DefaultCIMDCacheTTL,
		"public":                 DefaultCIMDCacheTTL,
		"max-age=60":             time.Minute,
		"public, max-age=999999": maxCIMDCacheTTL,
		"max-age=0":              0,
		"no-store":               0,
		"max-age=60, no-cache":   0,
		"max-age=x":              0,
	} {
		if got := cimdCacheTTL(cc); got != want {
			t.Errorf("Cache-Control %q: %v, want %v", cc, got, want)
		}
	}
}
