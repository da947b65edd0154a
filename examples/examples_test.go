// Package examples_test runs every example as its user would: built (or
// run by its interpreter) as its own process, in front of a real dev PDP,
// and driven by the go-sdk client with its own OAuth handler, which lists
// the tools, calls the public one anonymously, and steps up for the
// protected one.
package examples_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/oauthtest"
	"github.com/mcp-pdp/pdp/internal/testkit/servertest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs argv (with the PDP's URL and the address appended as the
// example's flags) and waits for its "serving" line.
func start(t *testing.T, argv []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "serving ") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("%v exited before serving", argv)
		}
	case <-time.After(testkit.WaitTimeout):
		t.Fatalf("%v did not start", argv)
	}
}

func TestExamples(t *testing.T) {
	bin := t.TempDir()
	for _, ex := range []struct {
		name string
		argv func(pdp, addr string) []string
	}{
		{"go-sdk", func(pdp, addr string) []string {
			return []string{filepath.Join(bin, "go-sdk"), "-pdp", pdp, "-listen", addr}
		}},
		{"mcp-go", func(pdp, addr string) []string {
			return []string{filepath.Join(bin, "mcp-go"), "-pdp", pdp, "-listen", addr}
		}},
		{"python", func(pdp, addr string) []string {
			return []string{"python3", "python/pep.py", "--pdp", pdp, "--listen", addr}
		}},
	} {
		t.Run(ex.name, func(t *testing.T) {
			switch ex.name {
			case "python":
				if _, err := exec.LookPath("python3"); err != nil {
					t.Fatal("python3 is needed for the Python example (.ci/run installs it)")
				}
			default:
				if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, ex.name), "./"+ex.name).CombinedOutput(); err != nil {
					t.Fatalf("go build ./%s: %v\n%s", ex.name, err, out)
				}
			}
			addr := freeAddr(t)
			resource := "http://" + addr + "/mcp"
			pdp := servertest.Dev(t, servertest.Options{Resources: []string{resource}})
			start(t, ex.argv(pdp.URL, addr))
			use(t, resource)
		})
	}
}

// use is the user's client: list, a public call, a step-up for the
// protected tool, which then sees the user.
func use(t *testing.T, resource string) {
	b := &oauthtest.Browser{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "example-user", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: resource, OAuthHandler: b.Handler(t), DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	list, err := cs.ListTools(ctx, nil)
	if err != nil || len(list.Tools) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "lookup_product", Arguments: map[string]any{}}); err != nil || res.IsError || b.Asked() != nil {
		t.Fatalf("anonymous lookup_product: %+v %v (authorizations %v)", res, err, b.Asked())
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "generate_qr_url", Arguments: map[string]any{"text": "hi"}})
	if err != nil || res.IsError {
		t.Fatalf("generate_qr_url after the step-up: %+v %v", res, err)
	}
	if text := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(text, "alice") || len(b.Asked()) != 1 || b.Asked()[0] != "qr:generate" {
		t.Fatalf("generate_qr_url: %q (authorizations %v): want it run for alice after one authorization for qr:generate", text, b.Asked())
	}
}
