// Command fakeserver is the child process of the stdio package's tests: a
// real go-sdk MCP server over stdio, and hand-written servers that misbehave
// on purpose. The first argument picks the mode:
//
//	sdk       a go-sdk server (tools "echo", "sum" and "whoami") on mcp.StdioTransport
//	lines     a line server: answers each request by method (see answer)
//	exit N    exits at once with status N
//	stubborn  a line server that ignores the end of stdin and SIGTERM
//	sleep     sleeps until killed (a grandchild)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-pdp/pdp/internal/assertion"
	"github.com/mcp-pdp/pdp/internal/gateway"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fakeserver sdk|lines|exit N|stubborn|sleep")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "sdk":
		sdkServer()
	case "lines":
		lineServer(false)
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		lineServer(true)
	case "exit":
		code, _ := strconv.Atoi(os.Args[2])
		fmt.Fprintln(os.Stderr, "exiting at once")
		os.Exit(code)
	case "sleep":
		time.Sleep(time.Hour)
	default:
		os.Exit(2)
	}
}

type sumArgs struct {
	A int `json:"a"`
	B int `json:"b"`
}

type echoArgs struct {
	Text string `json:"text"`
}

func sdkServer() {
	s := mcp.NewServer(&mcp.Implementation{Name: "fakeserver", Version: "v1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "sum", Description: "adds two numbers"},
		func(ctx context.Context, req *mcp.CallToolRequest, a sumArgs) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strconv.Itoa(a.A + a.B)}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "says it again"},
		func(ctx context.Context, req *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text}}}, nil, nil
		})
	// whoami verifies the gateway's identity assertion in the request's
	// _meta as a tool would (the keys from the environment) and says whom
	// it names.
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "says who calls"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: whoami(req.Params.Meta)}}}, nil, nil
		})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// whoami reads the identity assertion of a request's _meta: "sub=… client=…
// scope=… decision=…", "anonymous decision=…", or "unverified: why".
func whoami(meta mcp.Meta) string {
	tok, _ := meta[assertion.MetaKey].(string)
	c, err := assertion.Verify(tok, []byte(os.Getenv(assertion.EnvJWKS)), os.Getenv(assertion.EnvIssuer), os.Getenv(assertion.EnvAudience), time.Now())
	if err != nil {
		return "unverified: " + err.Error()
	}
	id, _ := meta[gateway.DecisionMetaKey].(string)
	if c.Anonymous() {
		return "anonymous decision=" + id
	}
	return fmt.Sprintf("sub=%s client=%s scope=%s decision=%s", c.Subject, c.ClientID, strings.Join(c.Scopes, " "), id)
}

type request struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// lineServer answers requests, one a line, until stdin ends (or, stubborn,
// forever).
func lineServer(stubborn bool) {
	out := bufio.NewWriter(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 64<<20)
	for in.Scan() {
		var r request
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			fmt.Fprintln(os.Stderr, "bad line:", err)
			continue
		}
		answer(out, r)
		out.Flush()
	}
	if stubborn {
		time.Sleep(time.Hour)
	}
}

func reply(out *bufio.Writer, id json.RawMessage, result any) {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
	out.Write(b)
	out.WriteByte('\n')
}

// answer handles one request of the line server, by method:
//
//	echo         result {method, params}
//	spaced       the result written with spaces, Python style
//	notify       two notifications and a server request first, then the result
//	garbage      lines that are not JSON-RPC first, then the result
//	long         a line of params.bytes bytes first, then the result
//	stderr       params.lines lines on stderr, then the result
//	env          result {env, dir}
//	grandchild   starts "sleep" (sharing stdout) and answers its pid
//	escape       like grandchild, but the grandchild leaves the group (setsid)
//	closeout     closes stdout and goes on running
//	hang         never answers
//	crash        exits with status 3 without answering
//	notifications (no id) are read and ignored; a notifications/cancelled
//	is answered by a notification that tells its requestId
func answer(out *bufio.Writer, r request) {
	var p struct {
		Bytes int `json:"bytes"`
		Lines int `json:"lines"`
	}
	json.Unmarshal(r.Params, &p)
	switch r.Method {
	case "notifications/cancelled":
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "test/saw_cancel", "params": r.Params})
		out.Write(append(b, '\n'))
	case "echo":
		reply(out, r.ID, map[string]any{"method": r.Method, "params": r.Params})
	case "spaced":
		fmt.Fprintf(out, "{\"jsonrpc\": \"2.0\", \"id\": %s.0, \"result\": {\"ok\": true}}\r\n", r.ID)
	case "notify":
		fmt.Fprintf(out, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`+"\n")
		fmt.Fprintf(out, `{"jsonrpc":"2.0","id":"srv-1","method":"roots/list"}`+"\n")
		fmt.Fprintf(out, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`+"\n")
		reply(out, r.ID, "after notifications")
	case "garbage":
		out.WriteString("Server listening on stdio\n")
		out.WriteString("{not json\n")
		out.WriteString("[1,2\n")
		out.WriteString("\n")
		out.WriteString(`{"jsonrpc":"2.0"}` + "\n")
		out.WriteString(`{"id":99,"result":"nobody asked"}` + "\n")
		reply(out, r.ID, "after garbage")
	case "long":
		out.WriteString(`{"jsonrpc":"2.0","method":"x","params":"` + strings.Repeat("a", p.Bytes) + "\"}\n")
		reply(out, r.ID, "after long")
	case "stderr":
		for i := range p.Lines {
			fmt.Fprintf(os.Stderr, "log line %d\n", i)
		}
		reply(out, r.ID, "after stderr")
	case "env":
		dir, _ := os.Getwd()
		reply(out, r.ID, map[string]any{"env": os.Environ(), "dir": dir})
	case "grandchild":
		cmd := exec.Command(os.Args[0], "sleep")
		cmd.Stdout = os.Stdout // holds the pipe open
		if err := cmd.Start(); err != nil {
			reply(out, r.ID, err.Error())
			return
		}
		reply(out, r.ID, cmd.Process.Pid)
	case "escape":
		cmd := exec.Command(os.Args[0], "sleep")
		cmd.Stdout = os.Stdout
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			reply(out, r.ID, err.Error())
			return
		}
		reply(out, r.ID, cmd.Process.Pid)
	case "closeout":
		out.Flush()
		os.Stdout.Close()
		fmt.Fprintln(os.Stderr, "stdout closed")
	case "hang":
	case "crash":
		out.Flush()
		fmt.Fprintln(os.Stderr, "crashing")
		os.Exit(3)
	default:
		if len(r.ID) > 0 {
			b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": r.ID,
				"error": map[string]any{"code": -32601, "message": "unknown method " + r.Method}})
			out.Write(append(b, '\n'))
		}
	}
}
