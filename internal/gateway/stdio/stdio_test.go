//go:build unix

package stdio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// fake is the test child (testdata/fakeserver), built once by TestMain.
var fake string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stdio-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fake = filepath.Join(dir, "fakeserver")
	build := exec.Command("go", "build", "-o", fake, "./testdata/fakeserver")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the test server:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// wait bounds every wait of these tests: generous, never a timing assertion.
const wait = testkit.WaitTimeout

// testPool is a pool running the fake server in a mode, with its log.
type testPool struct {
	*stdio.Pool
	log *testkit.SyncBuffer
	mu  sync.Mutex
	got []string // what OnMessage received, in order
}

// messages returns a copy of what OnMessage received so far.
func (tp *testPool) messages() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Clone(tp.got)
}

// newPool starts a pool of the fake server in mode (with its arguments),
// closed when the test ends. o's Command, Logger and OnMessage are set here
// unless given.
func newPool(t *testing.T, o stdio.Options, mode ...string) *testPool {
	t.Helper()
	tp := &testPool{log: &testkit.SyncBuffer{}}
	o.Command = append([]string{fake}, mode...)
	o.Logger = slog.New(slog.NewJSONHandler(tp.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.OnMessage == nil {
		o.OnMessage = func(_ *stdio.Session, msg []byte) {
			tp.mu.Lock()
			tp.got = append(tp.got, string(msg))
			tp.mu.Unlock()
		}
	}
	p, err := stdio.NewPool(o)
	if err != nil {
		t.Fatal(err)
	}
	tp.Pool = p
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n := p.Processes(); n != 0 {
			t.Errorf("after Close, %d processes", n)
		}
	})
	return tp
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	return ctx
}

func session(t *testing.T, p *testPool, key string) *stdio.Session {
	t.Helper()
	s, err := p.Session(ctxT(t), key)
	if err != nil {
		t.Fatalf("Session(%q): %v", key, err)
	}
	return s
}

// call makes a JSON-RPC request of method with params and returns the
// result member of the answer.
func call(t *testing.T, s *stdio.Session, id, method string, params any) json.RawMessage {
	t.Helper()
	resp, err := s.Call(ctxT(t), request(id, method, params))
	if err != nil {
		t.Fatalf("Call %s: %v", method, err)
	}
	var r struct {
		ID     json.RawMessage `json:"id"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatalf("Call %s: answer %s: %v", method, resp, err)
	}
	return r.Result
}

func request(id, method string, params any) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "method": method, "params": params})
	return b
}

func TestNewPoolErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    stdio.Options
		want string
	}{
		{"no command", stdio.Options{}, "upstream.command"},
		{"not found", stdio.Options{Command: []string{"no-such-command-mcp-pdp"}}, "upstream.command"},
		{"not found relative to dir", stdio.Options{Command: []string{"./fakeserver"}, Dir: t.TempDir()}, "upstream.command"},
		{"bad env", stdio.Options{Command: []string{fake}, Env: []string{"NOEQUALS"}}, "upstream.env[0]"},
		{"empty env key", stdio.Options{Command: []string{fake}, Env: []string{"A=1", "=x"}}, "upstream.env[1]"},
		{"dir missing", stdio.Options{Command: []string{fake}, Dir: filepath.Join(t.TempDir(), "nope")}, "upstream.dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := stdio.NewPool(tc.o)
			if err == nil {
				p.Close(t.Context())
				t.Fatal("NewPool succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
		})
	}
	// A path relative to Dir is found there.
	p, err := stdio.NewPool(stdio.Options{Command: []string{"./" + filepath.Base(fake)}, Dir: filepath.Dir(fake)})
	if err != nil {
		t.Fatalf("relative to Dir: %v", err)
	}
	p.Close(t.Context())
}

// poolTransport is an mcp.Transport over a Session of the pool: what the
// go-sdk client writes goes through Call or Send, what the child writes
// comes back through Call's answers and OnMessage.
type poolTransport struct {
	s  *stdio.Session
	in chan []byte
}

func (t *poolTransport) Connect(context.Context) (mcp.Connection, error) {
	ctx, cancel := context.WithCancel(context.Background())
	return &poolConn{t: t, ctx: ctx, cancel: cancel}, nil
}

type poolConn struct {
	t      *poolTransport
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func (c *poolConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	select {
	case b := <-c.t.in:
		return jsonrpc.DecodeMessage(b)
	case <-c.ctx.Done():
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *poolConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	b, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return err
	}
	if req, ok := msg.(*jsonrpc.Request); ok && req.IsCall() {
		c.wg.Go(func() {
			resp, err := c.t.s.Call(c.ctx, b)
			if err != nil {
				return // the client's own context reports it
			}
			select {
			case c.t.in <- resp:
			case <-c.ctx.Done():
			}
		})
		return nil
	}
	return c.t.s.Send(ctx, b)
}

func (c *poolConn) Close() error {
	c.once.Do(func() {
		c.cancel()
		c.wg.Wait()
	})
	return nil
}

func (c *poolConn) SessionID() string { return "" }

// TestGoSDKRoundTrip: the go-sdk client, through Call and Send of a
// Session, against a go-sdk stdio server: initialize, tools/list,
// tools/call.
func TestGoSDKRoundTrip(t *testing.T) {
	in := make(chan []byte, 16)
	done := make(chan struct{})
	defer close(done)
	p := newPool(t, stdio.Options{OnMessage: func(_ *stdio.Session, msg []byte) {
		select {
		case in <- msg:
		case <-done:
		}
	}}, "sdk")
	ctx := ctxT(t)
	s := session(t, p, "session-1")
	client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v1"}, nil)
	cs, err := client.Connect(ctx, &poolTransport{s: s, in: in}, nil)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	defer cs.Close()
	if got := cs.InitializeResult().ServerInfo.Name; got != "fakeserver" {
		t.Errorf("server name %q", got)
	}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"echo", "sum", "whoami"}) {
		t.Errorf("tools %v", names)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "sum", Arguments: map[string]any{"a": 2, "b": 3}})
	if err != nil {
		t.Fatalf("tools/call: %v", err)
	}
	if len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != "5" {
		t.Errorf("sum answered %+v", res.Content)
	}
	// The pool's own Call, with a string id, on the same child.
	raw := call(t, s, `"x-1"`, "tools/call", map[string]any{"name": "echo", "arguments": map[string]any{"text": "hi"}})
	if !strings.Contains(string(raw), `"hi"`) {
		t.Errorf("echo answered %s", raw)
	}
}

// TestCallIDs: the caller's id comes back as it was written, whatever its
// type, and concurrent Calls with the same id do not collide.
func TestCallIDs(t *testing.T) {
	p := newPool(t, stdio.Options{}, "lines")
	s := session(t, p, "k")
	for _, id := range []string{`1`, `"1"`, `"a\"b"`, `1.5`, `-7`, `12345678901234567890`, `"\u00e9"`, `0`} {
		t.Run(id, func(t *testing.T) {
			resp, err := s.Call(ctxT(t), request(id, "echo", map[string]string{"id": id}))
			if err != nil {
				t.Fatal(err)
			}
			var r struct{ ID json.RawMessage }
			json.Unmarshal(resp, &r)
			var want bytes.Buffer
			json.Compact(&want, []byte(id))
			if string(r.ID) != want.String() {
				t.Errorf("id %s came back as %s (%s)", id, r.ID, resp)
			}
		})
	}
	t.Run("concurrent same id", func(t *testing.T) {
		const n = 32
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				resp, err := s.Call(ctxT(t), request(`"same"`, "echo", map[string]int{"i": i}))
				if err != nil {
					errs <- err
					return
				}
				if want := fmt.Sprintf(`"params":{"i":%d}`, i); !strings.Contains(string(resp), want) || !strings.HasPrefix(string(resp), `{"id":"same"`) {
					errs <- fmt.Errorf("call %d got %s", i, resp)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("spaced answer with a float id", func(t *testing.T) {
		if got := call(t, s, `41`, "spaced", nil); string(got) != `{"ok":true}` {
			t.Errorf("spaced answered %s", got)
		}
	})
	t.Run("pretty-printed request", func(t *testing.T) {
		resp, err := s.Call(ctxT(t), []byte("{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 3,\n  \"method\": \"echo\"\n}\n"))
		if err != nil || !strings.Contains(string(resp), `"id":3`) {
			t.Errorf("answer %s, %v", resp, err)
		}
	})
}

func TestInvalidMessages(t *testing.T) {
	p := newPool(t, stdio.Options{}, "lines")
	s := session(t, p, "k")
	for _, tc := range []struct {
		name string
		send bool
		msg  string
	}{
		{"call: not JSON", false, `{"id":1,`},
		{"call: two values", false, `{"id":1,"method":"a"} {}`},
		{"call: a notification", false, `{"jsonrpc":"2.0","method":"a"}`},
		{"call: a batch", false, `[{"jsonrpc":"2.0","id":1,"method":"a"}]`},
		{"call: null id", false, `{"jsonrpc":"2.0","id":null,"method":"a"}`},
		{"call: object id", false, `{"jsonrpc":"2.0","id":{},"method":"a"}`},
		{"call: id twice", false, `{"jsonrpc":"2.0","id":1,"method":"a","id":2}`},
		{"call: escaped id twice", false, `{"jsonrpc":"2.0","id":1,"method":"a","\u0069d":2}`},
		{"call: method not a string", false, `{"jsonrpc":"2.0","id":1,"method":5}`},
		{"send: a request", true, `{"jsonrpc":"2.0","id":1,"method":"a"}`},
		{"send: a string", true, `"hello"`},
		{"send: no method, no result", true, `{"jsonrpc":"2.0","id":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.send {
				err = s.Send(ctxT(t), []byte(tc.msg))
			} else {
				_, err = s.Call(ctxT(t), []byte(tc.msg))
			}
			if !errors.Is(err, stdio.ErrInvalidMessage) {
				t.Errorf("got %v, want ErrInvalidMessage", err)
			}
		})
	}
	// The session still works, and a pretty-printed notification is sent
	// as one line.
	if err := s.Send(ctxT(t), []byte("{\n\"jsonrpc\": \"2.0\",\n\"method\": \"notifications/initialized\"\n}")); err != nil {
		t.Fatal(err)
	}
	call(t, s, "1", "echo", nil)
}

// TestServerMessagesWhileWaiting: what the child writes before its answer
// reaches OnMessage first, in order, as it was written.
func TestServerMessagesWhileWaiting(t *testing.T) {
	p := newPool(t, stdio.Options{}, "lines")
	s := session(t, p, "k")
	if got := call(t, s, "1", "notify", nil); string(got) != `"after notifications"` {
		t.Fatalf("answer %s", got)
	}
	want := []string{
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`,
		`{"jsonrpc":"2.0","id":"srv-1","method":"roots/list"}`,
		`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`,
	}
	if got := p.messages(); !slices.Equal(got, want) {
		t.Errorf("OnMessage got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The client's answer to the server's request goes through Send.
	if err := s.Send(ctxT(t), []byte(`{"jsonrpc":"2.0","id":"srv-1","result":{"roots":[]}}`)); err != nil {
		t.Fatal(err)
	}
	call(t, s, "2", "echo", nil)
}

// TestGarbageLines: lines that are not JSON-RPC are logged and skipped.
func TestGarbageLines(t *testing.T) {
	p := newPool(t, stdio.Options{}, "lines")
	s := session(t, p, "secret-session-key")
	if got := call(t, s, "1", "garbage", nil); string(got) != `"after garbage"` {
		t.Fatalf("answer %s", got)
	}
	call(t, s, "2", "echo", nil)
	log := p.log.String()
	for _, want := range []string{"Server listening on stdio", "{not json", "neither a request"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "secret-session-key") {
		t.Errorf("the key is in the log:\n%s", log)
	}
	if len(p.messages()) != 0 {
		t.Errorf("garbage reached OnMessage: %v", p.messages())
	}
}

// TestLongLines: a line over MaxLineBytes fails the session (never an
// unbounded buffer); lines up to it, in several read chunks, pass.
func TestLongLines(t *testing.T) {
	const limit = 200 << 10
	p := newPool(t, stdio.Options{MaxLineBytes: limit, RestartBackoff: time.Millisecond}, "lines")
	s := session(t, p, "k")
	if got := call(t, s, "1", "long", map[string]int{"bytes": limit - 100}); string(got) != `"after long"` {
		t.Fatalf("answer %s", got)
	}
	if msgs := p.messages(); len(msgs) != 1 || len(msgs[0]) < limit-100 {
		t.Fatalf("the long message did not reach OnMessage whole")
	}
	_, err := s.Call(ctxT(t), request("2", "long", map[string]int{"bytes": limit + 1}))
	if !errors.Is(err, stdio.ErrLineTooLong) || !errors.Is(err, stdio.ErrExited) {
		t.Fatalf("got %v, want ErrLineTooLong and ErrExited", err)
	}
	<-s.Done()
	if !errors.Is(s.Err(), stdio.ErrLineTooLong) {
		t.Errorf("Err() = %v", s.Err())
	}
	// The next Session of the key is a new child.
	s2 := session(t, p, "k")
	if s2 == s {
		t.Fatal("the same session after it failed")
	}
	call(t, s2, "3", "echo", nil)
}

// TestCrashFailsCallsInFlight: a child that exits fails every Call in
// flight with its exit status; the next Session starts a new child.
func TestCrashFailsCallsInFlight(t *testing.T) {
	p := newPool(t, stdio.Options{RestartBackoff: time.Millisecond}, "lines")
	s := session(t, p, "k")
	const hanging = 4
	var wg sync.WaitGroup
	errs := make(chan error, hanging+1)
	for i := range hanging {
		wg.Go(func() {
			_, err := s.Call(ctxT(t), request(fmt.Sprint(i), "hang", nil))
			errs <- err
		})
	}
	wg.Go(func() {
		_, err := s.Call(ctxT(t), request(`"boom"`, "crash", nil))
		errs <- err
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, stdio.ErrExited) || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("got %v, want ErrExited with exit status 3", err)
		}
	}
	if !strings.Contains(p.log.String(), "crashing") {
		t.Errorf("stderr not logged:\n%s", p.log)
	}
	s2 := session(t, p, "k")
	if s2 == s {
		t.Fatal("the same session after a crash")
	}
	call(t, s2, "1", "echo", nil)
}

// TestExitAtOnce: a child that exits at once fails its Call, and the
// restart waits for the backoff: a caller whose deadline comes first is
// told at once.
func TestExitAtOnce(t *testing.T) {
	p := newPool(t, stdio.Options{RestartBackoff: time.Hour}, "exit", "7")
	s := session(t, p, "k")
	_, err := s.Call(ctxT(t), request("1", "echo", nil))
	if !errors.Is(err, stdio.ErrExited) {
		t.Fatalf("got %v, want ErrExited", err)
	}
	<-s.Done()
	if !strings.Contains(s.Err().Error(), "exit status 7") {
		t.Errorf("Err() = %v, want the exit status", s.Err())
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if _, err := p.Session(ctx, "k"); !errors.Is(err, stdio.ErrRestartBackoff) {
		t.Errorf("Session during the backoff: %v, want ErrRestartBackoff", err)
	}
	if _, err := p.Session(ctx, "other"); !errors.Is(err, stdio.ErrRestartBackoff) {
		t.Errorf("the backoff is the pool's: %v", err)
	}
}

// TestExitAtOnceRepeatedly: with the default backoff, a child that keeps
// exiting at once gives each caller an error, and nothing spins or hangs.
func TestExitAtOnceRepeatedly(t *testing.T) {
	p := newPool(t, stdio.Options{}, "exit", "1")
	var last *stdio.Session
	for range 3 {
		s := session(t, p, "k")
		if s == last {
			t.Fatal("a dead session returned")
		}
		if _, err := s.Call(ctxT(t), request("1", "echo", nil)); !errors.Is(err, stdio.ErrExited) {
			t.Fatalf("got %v", err)
		}
		<-s.Done()
		last = s
	}
}

// TestCallContext: a Call whose context ends returns its error, and the
// child is told with notifications/cancelled carrying the id it knows; a
// notifications/cancelled from the client is translated likewise.
func TestCallContext(t *testing.T) {
	p := newPool(t, stdio.Options{}, "lines")
	s := session(t, p, "k")
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Call(ctx, request(`"mine"`, "hang", nil))
		errc <- err
	}()
	// The client cancels its request by its own id; the child hears of
	// the id it got (a number), not "mine".
	testkit.WaitFor(t, "the cancellation to reach the child", func() bool {
		if err := s.Send(ctxT(t), []byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"mine"}}`)); err != nil {
			t.Fatal(err)
		}
		for _, m := range p.messages() {
			if strings.Contains(m, "test/saw_cancel") && !strings.Contains(m, `"mine"`) {
				return true
			}
		}
		return false
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	// The pool's own notifications/cancelled, with its reason.
	testkit.WaitFor(t, "the pool's cancellation", func() bool {
		for _, m := range p.messages() {
			if strings.Contains(m, "test/saw_cancel") && strings.Contains(m, "context canceled") {
				return true
			}
		}
		return false
	})
	call(t, s, "1", "echo", nil)
}

func TestMaxProcesses(t *testing.T) {
	p := newPool(t, stdio.Options{MaxProcesses: 2}, "lines")
	a := session(t, p, "a")
	session(t, p, "b")
	if _, err := p.Session(ctxT(t), "c"); !errors.Is(err, stdio.ErrTooManyProcesses) {
		t.Fatalf("third child: %v, want ErrTooManyProcesses", err)
	}
	if again := session(t, p, "a"); again != a {
		t.Error("a known key started a new child")
	}
	a.Close()
	if !errors.Is(a.Err(), stdio.ErrClosed) {
		t.Errorf("after Close, Err() = %v", a.Err())
	}
	if _, err := a.Call(ctxT(t), request("1", "echo", nil)); !errors.Is(err, stdio.ErrClosed) {
		t.Errorf("Call after Close: %v", err)
	}
	c := session(t, p, "c")
	call(t, c, "1", "echo", nil)
}

func TestSameKeyConcurrently(t *testing.T) {
	p := newPool(t, stdio.Options{}, "lines")
	const n = 16
	got := make([]*stdio.Session, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := p.Session(ctxT(t), "k")
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		})
	}
	wg.Wait()
	for _, s := range got {
		if s != got[0] {
			t.Fatal("one key, several children")
		}
	}
	if n := p.Processes(); n != 1 {
		t.Errorf("%d processes", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	p := newPool(t, stdio.Options{IdleTimeout: 50 * time.Millisecond}, "lines")
	s := session(t, p, "k")
	call(t, s, "1", "echo", nil)
	select {
	case <-s.Done():
	case <-time.After(wait):
		t.Fatal("the idle child was not stopped")
	}
	if !errors.Is(s.Err(), stdio.ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", s.Err())
	}
	testkit.WaitFor(t, "no process", func() bool { return p.Processes() == 0 })
	s2 := session(t, p, "k")
	if s2 == s {
		t.Fatal("the stopped session returned")
	}
	call(t, s2, "1", "echo", nil)
}

// gone reports whether pid no longer runs (a zombie counts as gone: the
// reaper of orphans may be slow or absent in a container).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...; comm may hold spaces, the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// TestCloseKillsGrandchild: closing a session kills the child's process
// group, so a process it started (holding its stdout) dies too.
func TestCloseKillsGrandchild(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close func(t *testing.T, p *testPool, s *stdio.Session)
	}{
		{"session", func(_ *testing.T, _ *testPool, s *stdio.Session) { s.Close() }},
		{"pool", func(t *testing.T, p *testPool, _ *stdio.Session) { p.Close(ctxT(t)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, stdio.Options{StopGrace: 100 * time.Millisecond}, "lines")
			s := session(t, p, "k")
			var pid int
			if err := json.Unmarshal(call(t, s, "1", "grandchild", nil), &pid); err != nil || pid <= 0 {
				t.Fatalf("grandchild pid: %v", err)
			}
			if gone(pid) {
				t.Fatal("the grandchild is not running")
			}
			tc.close(t, p, s)
			<-s.Done()
			testkit.WaitFor(t, "the grandchild to die", func() bool { return gone(pid) })
			if !gone(s.PID()) {
				t.Error("the child still runs")
			}
		})
	}
}

// TestStubbornChild: a child that ignores the end of stdin and SIGTERM is
// killed; calls in flight fail with ErrClosed.
func TestStubbornChild(t *testing.T) {
	p := newPool(t, stdio.Options{StopGrace: 50 * time.Millisecond}, "stubborn")
	s := session(t, p, "k")
	call(t, s, "1", "echo", nil)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Call(ctxT(t), request("2", "hang", nil))
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, stdio.ErrClosed) {
		t.Errorf("Call in flight: %v, want ErrClosed", err)
	}
	if !gone(s.PID()) {
		t.Error("the stubborn child still runs")
	}
	if _, err := p.Session(ctx, "k"); !errors.Is(err, stdio.ErrClosed) {
		t.Errorf("Session after Close: %v", err)
	}
}

// TestStderrRateLimit: stderr lines beyond the rate are counted, not
// logged; every line is either logged or counted.
func TestStderrRateLimit(t *testing.T) {
	p := newPool(t, stdio.Options{StderrLinesPerSecond: 5}, "lines")
	s := session(t, p, "k")
	const lines = 300
	call(t, s, "1", "stderr", map[string]int{"lines": lines})
	s.Close()
	logged, counted := 0, 0
	for l := range strings.SplitSeq(strings.TrimSpace(p.log.String()), "\n") {
		var rec struct {
			Msg   string
			Line  string
			Lines int
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		switch {
		case rec.Msg == "stdio upstream stderr" && strings.HasPrefix(rec.Line, "log line "):
			logged++
		case strings.Contains(rec.Msg, "stderr lines not logged"):
			counted += rec.Lines
		}
	}
	if logged+counted != lines || logged >= lines {
		t.Errorf("%d lines logged and %d counted, want %d in all, most of them counted", logged, counted, lines)
	}
}

func TestEnvironmentAndDir(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		inherit []string
		env     []string
		want    []string
	}{
		{
			name:    "minimal inherited, extra appended",
			inherit: []string{"PATH=/usr/bin:/bin", "HOME=/home/gw", "LANG=C.UTF-8", "SECRET_TOKEN=x", "PDP_KEY=y"},
			env:     []string{"FOO=bar", "HOME=/home/tool"},
			want:    []string{"FOO=bar", "HOME=/home/tool", "LANG=C.UTF-8", "PATH=/usr/bin:/bin"},
		},
		{name: "nothing to inherit", inherit: []string{"SECRET_TOKEN=x"}, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, stdio.Options{Inherit: tc.inherit, Env: tc.env, Dir: dir}, "lines")
			s := session(t, p, "k")
			var got struct {
				Env []string
				Dir string
			}
			if err := json.Unmarshal(call(t, s, "1", "env", nil), &got); err != nil {
				t.Fatal(err)
			}
			slices.Sort(got.Env)
			if !slices.Equal(got.Env, tc.want) {
				t.Errorf("env %v, want %v", got.Env, tc.want)
			}
			wantDir, _ := filepath.EvalSymlinks(dir)
			if gotDir, _ := filepath.EvalSymlinks(got.Dir); gotDir != wantDir {
				t.Errorf("dir %s, want %s", got.Dir, dir)
			}
		})
	}
}

// TestChildClosesStdout: a child that closes its stdout but keeps running
// can answer nothing more; it is stopped and its Calls fail.
func TestChildClosesStdout(t *testing.T) {
	p := newPool(t, stdio.Options{StopGrace: 50 * time.Millisecond}, "lines")
	s := session(t, p, "k")
	_, err := s.Call(ctxT(t), request("1", "closeout", nil))
	if !errors.Is(err, stdio.ErrExited) || !strings.Contains(err.Error(), "closed its stdout") {
		t.Fatalf("got %v, want ErrExited saying it closed its stdout", err)
	}
}

// TestEscapedGrandchild: a grandchild that left the process group (setsid)
// and holds the child's stdout does not keep the session from ending.
func TestEscapedGrandchild(t *testing.T) {
	p := newPool(t, stdio.Options{StopGrace: 50 * time.Millisecond}, "lines")
	s := session(t, p, "k")
	var pid int
	if err := json.Unmarshal(call(t, s, "1", "escape", nil), &pid); err != nil || pid <= 0 {
		t.Fatalf("grandchild pid: %v", err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if _, err := s.Call(ctxT(t), request("2", "crash", nil)); !errors.Is(err, stdio.ErrExited) {
		t.Fatalf("got %v, want ErrExited", err)
	}
	<-s.Done()
	if gone(pid) {
		t.Error("the escaped grandchild died: the test proves nothing")
	}
}
