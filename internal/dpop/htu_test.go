package dpop

import "testing"

func TestNormalizeHTU(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" = refused
	}{
		{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp"},
		{"HTTPS://MCP.EXAMPLE.COM/mcp", "https://mcp.example.com/mcp"},
		{"https://mcp.example.com/MCP", "https://mcp.example.com/MCP"}, // the path keeps its case
		{"https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"},
		{"https://mcp.example.com:0443/mcp", "https://mcp.example.com/mcp"},
		{"https://mcp.example.com:/mcp", "https://mcp.example.com/mcp"},
		{"http://mcp.example.com:80/mcp", "http://mcp.example.com/mcp"},
		{"http://mcp.example.com:443/mcp", "http://mcp.example.com:443/mcp"},
		{"https://mcp.example.com:8443/mcp", "https://mcp.example.com:8443/mcp"},
		{"https://mcp.example.com", "https://mcp.example.com/"},
		{"https://mcp.example.com?x", "https://mcp.example.com/"},
		{"https://mcp.example.com/mcp?a=b#c", "https://mcp.example.com/mcp"},
		{"https://mcp.example.com/mcp#c?d", "https://mcp.example.com/mcp"},
		{"https://mcp.example.com/%7euser/%6D%63%70", "https://mcp.example.com/~user/mcp"},
		{"https://mcp.example.com/a%2fb", "https://mcp.example.com/a%2Fb"}, // an encoded "/" stays encoded
		{"https://mcp.example.com/a%2Fb", "https://mcp.example.com/a%2Fb"},
		{"https://m%43p.example.com/", "https://mcp.example.com/"},
		{"https://mcp.example.com/a/./b/../c", "https://mcp.example.com/a/c"},
		{"https://mcp.example.com/../../mcp", "https://mcp.example.com/mcp"},
		{"https://mcp.example.com/mcp/.", "https://mcp.example.com/mcp/"},
		{"https://mcp.example.com/mcp/..", "https://mcp.example.com/"},
		{"https://mcp.example.com/mcp/", "https://mcp.example.com/mcp/"}, // a trailing slash is another resource
		{"https://[2001:DB8::1]:443/mcp", "https://[2001:db8::1]/mcp"},
		{"https://[2001:db8::1]:8443/mcp", "https://[2001:db8::1]:8443/mcp"},
		{"https://127.0.0.1:9000/mcp", "https://127.0.0.1:9000/mcp"},
		{"https://mcp.example.com/a:b@c;d=e", "https://mcp.example.com/a:b@c;d=e"},

		{"", ""},
		{"/mcp", ""},
		{"mcp.example.com/mcp", ""},
		{"ftp://mcp.example.com/mcp", ""},
		{"https:///mcp", ""},
		{"https://:443/mcp", ""},
		{"https://user@mcp.example.com/mcp", ""},
		{"https://mcp.example.com:65536/mcp", ""},
		{"https://mcp.example.com:123456/mcp", ""},
		{"https://mcp.example.com:x/mcp", ""},
		{"https://mcp.example.com:1:2/mcp", ""},
		{"https://[2001:db8::1/mcp", ""},
		{"https://[2001:db8::1]x/mcp", ""},
		{"https://[]/mcp", ""},
		{"https://mcp.example.com/a b", ""},
		{"https://mcp.example.com/%zz", ""},
		{"https://mcp.example.com/%4", ""},
		{"https://mcp.example.com/é", ""},
		{"https://mcp.example.com/a[b]", ""},
		{"https://mcp.exa mple.com/", ""},
	} {
		got, ok := normalizeHTU(tc.in)
		if tc.want == "" {
			if ok {
				t.Errorf("normalizeHTU(%q) = %q; want refused", tc.in, got)
			}
			continue
		}
		if !ok || got != tc.want {
			t.Errorf("normalizeHTU(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}

// RFC 3986 §5.4 examples of dot-segment removal (the merged paths).
func TestRemoveDotSegments(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b/c/./../../g":   "/a/g",
		"mid/content=5/../6": "mid/6",
		"/b/c/.":             "/b/c/",
		"/b/c/./":            "/b/c/",
		"/b/c/..":            "/b/",
		"/b/c/../g":          "/b/g",
		"/b/c/../..":         "/",
		"/b/c/../../../g":    "/g",
		"/b/c/g.":            "/b/c/g.",
		"/b/c/.g":            "/b/c/.g",
		"/b/c/g..":           "/b/c/g..",
		"/b/c/..g":           "/b/c/..g",
		"/b/c/./../g":        "/b/g",
		"/b/c/./g/.":         "/b/c/g/",
		"/b/c/g/./h":         "/b/c/g/h",
		"/b/c/g/../h":        "/b/c/h",
		"":                   "",
		".":                  "",
		"..":                 "",
	} {
		if got := removeDotSegments(in); got != want {
			t.Errorf("removeDotSegments(%q) = %q; want %q", in, got, want)
		}
	}
}

func FuzzNormalizeHTU(f *testing.F) {
	for _, s := range []string{"https://mcp.example.com/mcp", "HTTP://[::1]:80/a/../b?c#d", "https://h/%41%2f/./..", "https://h:0/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := normalizeHTU(s)
		if !ok {
			return
		}
		// Normalization is idempotent.
		if n2, ok := normalizeHTU(n); !ok || n2 != n {
			t.Fatalf("normalizeHTU(%q) = %q, then %q, %v", s, n, n2, ok)
		}
	})
}
