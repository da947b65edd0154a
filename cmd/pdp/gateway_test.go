package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-pdp/pdp/internal/assertion"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/internal/testkit"
)

// mathUpstream is an unmodified MCP server (the official go-sdk) with a
// tool "sum" and a tool "echo", answering over Streamable HTTP (SSE).
func mathUpstream(t *testing.T, seen *headerLog) *httptest.Server {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "math", Version: "1.0.0"}, nil)
	for _, name := range []string{"sum", "echo"} {
		s.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " ran"}}}, nil
			})
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r.Header)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	return up
}

// headerLog records the request headers an upstream received.
type headerLog struct {
	mu sync.Mutex
	h  []http.Header
}

func (l *headerLog) add(h http.Header) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.h = append(l.h, h.Clone())
}

func (l *headerLog) all() []http.Header {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.h)
}

type authzTransport struct{ value string }

func (a authzTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if a.value != "" {
		r.Header.Set("Authorization", a.value)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestGatewayDevQuickStart is the README's quick start: `pdp gateway --dev
// --upstream URL --protect sum=math:sum` in front of an unmodified go-sdk
// server; the go-sdk client sees both tools, may call echo anonymously,
// is refused sum until it presents a token from `pdp token --scope
// math:sum`, and the start-up banner says what is protected.
func TestGatewayDevQuickStart(t *testing.T) {
	var seen headerLog
	up := mathUpstream(t, &seen)
	endpoint, dataDir, stderr := startDevGateway(t, "--upstream", up.URL, "--protect", "sum=math:sum")
	if !strings.Contains(stderr.String(), "Tool sum needs scope math:sum") {
		t.Fatalf("the banner does not say what is protected:\n%s", stderr.String())
	}

	connect := func(authz string) *mcp.ClientSession { return connectGoSDK(t, endpoint, authz, stderr) }
	anon := connect("")
	list, err := anon.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"echo", "sum"}) {
		t.Fatalf("tools = %v", names)
	}
	if _, err := anon.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo"}); err != nil {
		t.Fatalf("anonymous echo: %v", err)
	}
	if _, err := anon.CallTool(context.Background(), &mcp.CallToolParams{Name: "sum"}); err == nil {
		t.Fatal("anonymous sum succeeded")
	}

	var tok bytes.Buffer
	if code := run(context.Background(), []string{"token", "--data-dir", dataDir, "--scope", "math:sum"}, &tok, &bytes.Buffer{}); code != 0 {
		t.Fatal("pdp token failed")
	}
	user := connect("Bearer " + strings.TrimSpace(tok.String()))
	res, err := user.CallTool(context.Background(), &mcp.CallToolParams{Name: "sum"})
	if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "sum ran" {
		t.Fatalf("sum with a token: %+v %v", res, err)
	}

	// The upstream never saw a token, and every request carried an identity
	// assertion that verifies against the gateway's JWKS: anonymous for the
	// first session, alice (pdp token's default subject) for the second.
	gatewayURL := strings.TrimSuffix(endpoint, "/mcp")
	resp, err := http.Get(gatewayURL + server.AssertionJWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	subjects := map[string]bool{}
	for _, h := range seen.all() {
		if h.Get("Authorization") != "" {
			t.Fatal("the upstream received an Authorization header")
		}
		c, err := assertion.Verify(h.Get(assertion.Header), jwks, gatewayURL, up.URL, time.Now())
		if err != nil {
			t.Fatalf("assertion of a forwarded request: %v", err)
		}
		subjects[c.Subject] = true
	}
	if !subjects[""] || !subjects["alice"] {
		t.Fatalf("assertion subjects %v, want anonymous and alice", subjects)
	}
}

// connectGoSDK connects the go-sdk client to endpoint with the
// Authorization header authz ("": none), closed when the test ends.
func connectGoSDK(t *testing.T, endpoint, authz string, stderr *testkit.SyncBuffer) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "gateway-test", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: authzTransport{authz}}, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect to %s: %v\n%s", endpoint, err, stderr.String())
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// startDevGateway runs `pdp gateway --dev` with args (on free ports, a
// fresh data directory) until the test ends, and returns the MCP endpoint
// once its metadata document is served (with CORS), the data directory
// and the command's stderr.
func startDevGateway(t *testing.T, args ...string) (endpoint, dataDir string, stderr *testkit.SyncBuffer) {
	t.Helper()
	dataDir = t.TempDir()
	// args last: they may end with "-- command...".
	stderr, alive := startPDP(t, append([]string{"gateway", "--dev", "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0", "--data-dir", dataDir}, args...))
	testkit.WaitFor(t, "the dev gateway to start", func() bool {
		alive()
		b, err := os.ReadFile(filepath.Join(dataDir, server.DevResourceFile))
		endpoint = strings.TrimSpace(string(b))
		if err != nil || endpoint == "" {
			return false
		}
		resp, err := http.Get(strings.Replace(endpoint, "/mcp", "/.well-known/oauth-protected-resource/mcp", 1))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && resp.Header.Get("Access-Control-Allow-Origin") == "*"
	})
	return endpoint, dataDir, stderr
}

// TestGatewayDevStdioIdentity: a stdio upstream learns who calls from the
// identity assertion in each request's _meta, and verifies it with what
// its environment says (issuer, audience, JWKS): anonymous for an
// anonymous caller, alice for her token, and a forged identity a client
// puts in _meta itself is replaced, never passed on.
func TestGatewayDevStdioIdentity(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fakeserver")
	build := exec.Command("go", "build", "-o", bin, "../../internal/gateway/stdio/testdata/fakeserver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the stdio test server: %v\n%s", err, out)
	}
	endpoint, dataDir, stderr := startDevGateway(t, "--", bin, "sdk")
	whoami := func(authz string, meta mcp.Meta) string {
		t.Helper()
		cs := connectGoSDK(t, endpoint, authz, stderr)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Meta: meta})
		if err != nil || res.IsError || len(res.Content) != 1 {
			t.Fatalf("whoami: %+v %v\n%s", res, err, stderr.String())
		}
		return res.Content[0].(*mcp.TextContent).Text
	}
	var tok bytes.Buffer
	if code := run(context.Background(), []string{"token", "--data-dir", dataDir, "--scope", "math:sum"}, &tok, &bytes.Buffer{}); code != 0 {
		t.Fatal("pdp token failed")
	}
	forged := mcp.Meta{assertion.MetaKey: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.", "io.github.mcp-pdp/decision-id": "forged", "progressToken": "p1"}
	tests := []struct {
		name, authz string
		meta        mcp.Meta
		want        string
	}{
		{"anonymous", "", nil, "anonymous decision="},
		{"alice", "Bearer " + strings.TrimSpace(tok.String()), nil, "sub=alice client=demo scope=math:sum decision="},
		{"anonymous forging an identity", "", forged, "anonymous decision="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := whoami(tc.authz, tc.meta)
			id, ok := strings.CutPrefix(got, tc.want)
			if !ok || len(id) < 8 || id == "forged" {
				t.Fatalf("whoami = %q, want %q and a decision id", got, tc.want+"…")
			}
		})
	}
}

// startPDP runs `pdp args...` in-process until the test ends, when it
// must stop and exit 0; it returns the command's stderr and alive, which
// fails the test if the command has exited already (call it while
// waiting for it to be ready).
func startPDP(t *testing.T, args []string) (stderr *testkit.SyncBuffer, alive func()) {
	t.Helper()
	stderr = &testkit.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &bytes.Buffer{}, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("pdp %s exited %d:\n%s", args[0], code, stderr.String())
			}
		case <-time.After(testkit.WaitTimeout):
			t.Errorf("pdp %s did not stop", args[0])
		}
	})
	alive = func() {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("pdp %s exited %d at start:\n%s", args[0], code, stderr.String())
		default:
		}
	}
	return stderr, alive
}
