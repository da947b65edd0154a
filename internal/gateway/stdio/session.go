package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// readChunk is the stdout read buffer of a child; longer lines grow a
// separate buffer up to MaxLineBytes, dropped after the line.
const readChunk = 64 << 10

// cancelWriteTimeout bounds the write of the cancellation a Call sends
// when its context ends: a child that does not read its stdin does not
// hold the caller.
const cancelWriteTimeout = 100 * time.Millisecond

// aLongTimeAgo is a write deadline in the past: it interrupts a write.
var aLongTimeAgo = time.Unix(1, 0)

// Session is one child process of a Pool, speaking JSON-RPC on its stdin
// and stdout. Its methods are safe for concurrent use.
//
// Request ids: Call gives each request, on its way to the child, an id of
// its own (a number unique in the session) and puts the caller's id back,
// byte for byte as the caller wrote it (compacted), into the response. So
// concurrent Calls never collide, whatever ids the callers chose (two
// sessionless clients of one identity may both use id 1), and ids may be
// strings or numbers. A response is matched by the number the child echoes
// (7, 7.0 and 7e0 all match 7). A notifications/cancelled that Send
// passes whose requestId equals (as compacted JSON) the id of exactly one
// Call in flight is rewritten to that Call's own id.
type Session struct {
	p        *Pool
	key      string
	ready    chan struct{} // closed when start returned
	startErr error         // set before ready is closed

	cmd     *exec.Cmd
	pid     int
	started time.Time
	stdin   *os.File
	stdout  *os.File
	stderr  *os.File

	wsem       chan struct{} // one writer at a time on stdin
	exitedc    chan struct{} // closed when the process was reaped
	readerDone chan struct{} // closed when the stdout reader returned
	stderrDone chan struct{} // closed when the stderr logger returned
	done       chan struct{} // closed when the session is over and err is set

	mu        sync.Mutex
	nextID    uint64
	pending   map[uint64]*call // Calls waiting for their response; nil when over
	busy      int              // Calls and Sends in flight
	lastUsed  time.Time
	cause     error // why the pool stops the child (first reason wins)
	requested bool  // the stop was asked for (Close, idle), not a failure
	err       error // the session's end; set before done is closed
}

// call is a Call waiting for its response.
type call struct {
	orig []byte // the caller's id, compacted
	ch   chan result
}

type result struct {
	msg []byte
	err error
}

func newSession(p *Pool, key string) *Session {
	return &Session{
		p:          p,
		key:        key,
		ready:      make(chan struct{}),
		wsem:       make(chan struct{}, 1),
		exitedc:    make(chan struct{}),
		readerDone: make(chan struct{}),
		stderrDone: make(chan struct{}),
		done:       make(chan struct{}),
		pending:    map[uint64]*call{},
		lastUsed:   time.Now(),
	}
}

// Key returns the key the session was started for.
func (s *Session) Key() string { return s.key }

// PID returns the process id of the child, which is also the id of its
// process group.
func (s *Session) PID() int { return s.pid }

// Done returns a channel closed when the child has exited and the session
// is over; Err then tells why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended (wrapping ErrExited or ErrClosed), or
// nil while it runs.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// start runs the child with its three pipes and the goroutines that own
// them.
func (s *Session) start() error {
	p := s.p
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return err
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return err
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return err
	}
	cmd := &exec.Cmd{
		Path:   p.path,
		Args:   p.o.Command,
		Env:    p.env,
		Dir:    p.o.Dir,
		Stdin:  inR,
		Stdout: outW,
		Stderr: errW,
	}
	setProcessGroup(cmd)
	err = cmd.Start()
	// The child holds its own ends now (or never will).
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return err
	}
	s.cmd, s.pid, s.started = cmd, cmd.Process.Pid, time.Now()
	s.stdin, s.stdout, s.stderr = inW, outR, errR
	log := p.log.With(slog.Int("pid", s.pid))
	log.Info("stdio upstream started", slog.String("command", p.o.Command[0]))
	p.wg.Go(s.readStdout)
	p.wg.Go(func() {
		defer close(s.stderrDone)
		logStderr(errR, log, p.o.StderrLinesPerSecond)
	})
	p.wg.Go(s.wait)
	return nil
}

// touch marks the session as used now.
func (s *Session) touch() {
	s.mu.Lock()
	s.lastUsed = time.Now()
	s.mu.Unlock()
}

// idleSince returns how long the session has been idle at now: zero while
// it starts, stops, or has a Call or Send in flight.
func (s *Session) idleSince(now time.Time) time.Duration {
	select {
	case <-s.ready:
	default:
		return 0
	}
	if s.startErr != nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy > 0 || s.cause != nil {
		return 0
	}
	return now.Sub(s.lastUsed)
}

// begin counts a Call or Send in flight.
func (s *Session) begin() {
	s.mu.Lock()
	s.busy++
	s.lastUsed = time.Now()
	s.mu.Unlock()
}

func (s *Session) end() {
	s.mu.Lock()
	s.busy--
	s.lastUsed = time.Now()
	s.mu.Unlock()
}

// Call sends msg, a JSON-RPC request (a method and an id, a string or a
// number), and returns the child's response to it, with the caller's id.
// Messages the child writes meanwhile go to Options.OnMessage. Call fails
// with ErrInvalidMessage for anything but one request, with an error
// wrapping ErrExited (and holding the exit status) when the child exits
// first, with ErrClosed when the session is closed, and with ctx's error
// when ctx ends first; it then tells the child (notifications/cancelled,
// best effort).
func (s *Session) Call(ctx context.Context, msg []byte) ([]byte, error) {
	m, err := compact(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	}
	env, err := parseEnvelope(m)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	case !env.isRequest():
		return nil, fmt.Errorf("%w: Call takes a request (a method and an id)", ErrInvalidMessage)
	case !validID(m[env.id.start:env.id.end]):
		return nil, fmt.Errorf("%w: a request id is a string or a number", ErrInvalidMessage)
	}
	s.begin()
	defer s.end()
	c := &call{orig: m[env.id.start:env.id.end], ch: make(chan result, 1)}
	s.mu.Lock()
	if s.pending == nil || s.cause != nil {
		s.mu.Unlock()
		return nil, s.awaitEnd(ctx)
	}
	s.nextID++
	n := s.nextID
	s.pending[n] = c
	s.mu.Unlock()
	defer s.forget(n)

	if err := s.write(ctx, splice(m, env.id, strconv.AppendUint(nil, n, 10))); err != nil {
		return nil, err
	}
	select {
	case r := <-c.ch:
		return r.msg, r.err
	case <-ctx.Done():
		select {
		case r := <-c.ch: // the answer came as ctx ended
			return r.msg, r.err
		default:
		}
		s.cancelRequest(n, context.Cause(ctx))
		return nil, fmt.Errorf("stdio upstream: waiting for the response: %w", ctx.Err())
	}
}

// forget removes the Call with wire id n, if it is still waiting.
func (s *Session) forget(n uint64) {
	s.mu.Lock()
	if s.pending != nil {
		delete(s.pending, n)
	}
	s.mu.Unlock()
}

// cancelRequest tells the child that the caller of request n went away.
func (s *Session) cancelRequest(n uint64, why error) {
	reason, _ := json.Marshal(why.Error())
	msg := fmt.Appendf(nil, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":%d,"reason":%s}}`+"\n", n, reason)
	ctx, cancel := context.WithTimeout(context.Background(), cancelWriteTimeout)
	defer cancel()
	_ = s.write(ctx, msg) // best effort; a failure of the child shows elsewhere
}

// Send writes msg, one JSON-RPC message that expects no answer: a
// notification, or a response to a request of the child. It fails with
// ErrInvalidMessage for a request (use Call), a batch, or anything that is
// not a JSON-RPC message, and like Call when the child is gone or ctx ends
// before the message is written.
func (s *Session) Send(ctx context.Context, msg []byte) error {
	m, err := compact(msg)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	}
	env, err := parseEnvelope(m)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	case env.isRequest():
		return fmt.Errorf("%w: Send takes a notification or a response; a request goes through Call", ErrInvalidMessage)
	case !env.method.ok() && !env.isResponse():
		return fmt.Errorf("%w: neither a notification nor a response", ErrInvalidMessage)
	}
	s.begin()
	defer s.end()
	line := s.translateCancel(m, env)
	if line == nil {
		line = append(m, '\n')
	}
	return s.write(ctx, line)
}

// translateCancel rewrites the requestId of a notifications/cancelled to
// the wire id of the one Call in flight with that id, and returns the new
// line; nil leaves m as it is.
func (s *Session) translateCancel(m []byte, env envelope) []byte {
	if string(m[env.method.start:env.method.end]) != `"notifications/cancelled"` || !env.params.ok() {
		return nil
	}
	params := m[env.params.start:env.params.end]
	rid := memberSpan(params, "requestId")
	if !rid.ok() {
		return nil
	}
	want := params[rid.start:rid.end]
	var wire uint64
	found := 0
	s.mu.Lock()
	for n, c := range s.pending {
		if bytes.Equal(c.orig, want) {
			wire, found = n, found+1
		}
	}
	s.mu.Unlock()
	if found != 1 {
		return nil
	}
	newParams := splice(params, rid, strconv.AppendUint(nil, wire, 10))
	return append(splice(m, env.params, newParams[:len(newParams)-1]), '\n')
}

// write writes one line to the child's stdin, one writer at a time. When
// ctx ends during the write it is interrupted; a line cut in the middle
// leaves the stream broken, so the child is then stopped.
func (s *Session) write(ctx context.Context, line []byte) error {
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("stdio upstream: waiting to write: %w", ctx.Err())
	case <-s.done:
		return s.err
	}
	defer func() { <-s.wsem }()
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		s.stdin.SetWriteDeadline(aLongTimeAgo)
		close(fired)
	})
	n, err := s.stdin.Write(line)
	if !stop() {
		<-fired
		s.stdin.SetWriteDeadline(time.Time{})
	}
	if err == nil {
		return nil
	}
	if n > 0 {
		s.fail(fmt.Errorf("writing to its stdin was interrupted after %d of %d bytes: %w", n, len(line), err))
		return s.awaitEnd(ctx)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("stdio upstream: writing: %w", ctx.Err())
	}
	s.fail(fmt.Errorf("writing to its stdin: %w", err))
	return s.awaitEnd(ctx)
}

// awaitEnd waits, within ctx, for the session to end and returns why.
func (s *Session) awaitEnd(ctx context.Context) error {
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return fmt.Errorf("stdio upstream: stopping: %w", ctx.Err())
	}
}

// fail stops the child at once (SIGKILL to its process group) because it
// broke the protocol; cause ends up in the session's error. A child
// already being stopped or gone is left to that.
func (s *Session) fail(cause error) {
	select {
	case <-s.exitedc:
		return // gone already; its exit status tells why
	default:
	}
	s.mu.Lock()
	if s.cause != nil {
		s.mu.Unlock()
		return // being stopped already
	}
	s.cause = cause
	s.mu.Unlock()
	s.p.detach(s)
	s.p.log.Warn("stdio upstream: stopping the child", slog.Int("pid", s.pid), slog.Any("reason", cause))
	_ = signalGroup(s.pid, syscall.SIGKILL)
}

// Close stops the child: it closes its stdin, and after StopGrace sends
// SIGTERM, and after StopGrace again SIGKILL, to its whole process group.
// It returns when the child and the session's goroutines are gone. Calls
// in flight fail with ErrClosed; the next Pool.Session for the key starts
// a new child. Close must not be called from Options.OnMessage.
func (s *Session) Close() error {
	s.shutdown(context.Background(), fmt.Errorf("%w: session closed", ErrClosed))
	return nil
}

// shutdown stops the child in steps: stdin closed; after StopGrace (or at
// once when ctx ends) SIGTERM; then SIGKILL. It waits for the session to
// end.
func (s *Session) shutdown(ctx context.Context, cause error) {
	s.mu.Lock()
	if s.cause == nil {
		s.cause, s.requested = cause, true
	}
	s.mu.Unlock()
	s.p.detach(s)
	s.stdin.Close()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t := time.NewTimer(s.p.o.StopGrace)
		select {
		case <-s.exitedc:
			t.Stop()
			<-s.done
			return
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			sig = syscall.SIGKILL
		}
		if err := signalGroup(s.pid, sig); err != nil {
			s.p.log.Warn("stdio upstream: signalling the process group", slog.Int("pid", s.pid), slog.Any("error", err))
		}
		if sig == syscall.SIGKILL {
			break
		}
	}
	<-s.done
}

// wait reaps the child, kills what it left in its process group, lets the
// readers take the last lines, then ends the session.
func (s *Session) wait() {
	waitErr := s.cmd.Wait()
	close(s.exitedc)
	s.p.detach(s) // the next Session of the key starts a new child
	// Kill what the child left in its group. The group outlives its reaped
	// leader while it has members, so its id is not reused meanwhile; only
	// an empty group's id could be, in the instant since Wait returned.
	_ = signalGroup(s.pid, syscall.SIGKILL)
	// A grandchild that left the group may still hold the pipes open: the
	// readers get StopGrace to reach the end, then their pipes are closed.
	t := time.NewTimer(s.p.o.StopGrace)
	for _, d := range []chan struct{}{s.readerDone, s.stderrDone} {
		select {
		case <-d:
		case <-t.C:
			s.stdout.Close()
			s.stderr.Close()
			<-d
		}
	}
	t.Stop()
	s.stdin.Close()
	s.stdout.Close()
	s.stderr.Close()
	s.finish(waitErr)
}

// finish sets the session's error, fails the Calls still waiting, and
// tells the pool.
func (s *Session) finish(waitErr error) {
	status := "exit status 0"
	if waitErr != nil {
		status = waitErr.Error()
	}
	s.mu.Lock()
	requested := s.requested
	switch {
	case requested:
		s.err = s.cause
	case s.cause != nil:
		s.err = fmt.Errorf("%w (pid %d, %s): %w", ErrExited, s.pid, status, s.cause)
	default:
		s.err = fmt.Errorf("%w (pid %d, %s)", ErrExited, s.pid, status)
	}
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, c := range pending {
		c.ch <- result{err: s.err}
	}
	if !requested {
		s.p.log.Warn("stdio upstream exited", slog.Int("pid", s.pid), slog.String("status", status), slog.Any("error", s.err))
	}
	s.p.exited(s, !requested, time.Since(s.started))
	close(s.done)
}

// readStdout reads the child's messages, one a line, until its stdout
// ends. A line longer than MaxLineBytes stops the child.
func (s *Session) readStdout() {
	defer close(s.readerDone)
	limit := s.p.o.MaxLineBytes
	br := bufio.NewReaderSize(s.stdout, readChunk)
	lim := lineLimiter{perSecond: s.p.o.StderrLinesPerSecond}
	var long []byte
	for {
		frag, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(long)+len(frag) > limit+2 { // room for "\r\n"
				s.fail(fmt.Errorf("%w: a line from the child is longer than %d bytes", ErrLineTooLong, limit))
				return
			}
			long = append(long, frag...)
			continue
		}
		line := frag
		if long != nil {
			line = append(long, frag...)
			long = nil
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > limit {
			s.fail(fmt.Errorf("%w: a line from the child is longer than %d bytes", ErrLineTooLong, limit))
			return
		}
		if len(bytes.TrimSpace(line)) > 0 {
			s.handleLine(line, &lim)
		}
		if err != nil {
			select {
			case <-s.exitedc:
			case <-time.After(s.p.o.StopGrace):
				s.fail(errors.New("the child closed its stdout"))
			}
			return
		}
	}
}

// handleLine takes one line of the child's stdout: a message, or a batch
// of them (2025-03-26). Anything else is logged (rate limited) and skipped.
func (s *Session) handleLine(line []byte, lim *lineLimiter) {
	m, err := compact(line)
	if err == nil && m[0] == '[' {
		var batch []json.RawMessage
		if err = json.Unmarshal(m, &batch); err == nil {
			for _, e := range batch {
				s.handleMessage(e, lim)
			}
			return
		}
	}
	if err != nil {
		s.skip(line, err, lim)
		return
	}
	s.handleMessage(m, lim)
}

// handleMessage routes one compacted message: a response to its Call,
// anything else with a method to OnMessage.
func (s *Session) handleMessage(m []byte, lim *lineLimiter) {
	env, err := parseEnvelope(m)
	switch {
	case err != nil:
		s.skip(m, err, lim)
	case env.isResponse():
		n, ok := wireID(m[env.id.start:env.id.end])
		var c *call
		s.mu.Lock()
		if ok && s.pending != nil {
			if c = s.pending[n]; c != nil {
				delete(s.pending, n)
			}
		}
		s.mu.Unlock()
		if c == nil { // a Call that gave up, or an id the pool never sent
			s.p.log.Debug("stdio upstream: a response to no call in flight", slog.Int("pid", s.pid))
			return
		}
		out := splice(m, env.id, c.orig)
		c.ch <- result{msg: out[:len(out)-1]}
	case env.method.ok():
		if h := s.p.o.OnMessage; h != nil {
			h(s, m)
		}
	default:
		s.skip(m, errors.New("neither a request, a notification nor a response"), lim)
	}
}

// skip logs (rate limited) a line of stdout that is not a JSON-RPC message.
func (s *Session) skip(line []byte, why error, lim *lineLimiter) {
	ok, n := lim.allow(time.Now())
	if n > 0 {
		s.p.log.Warn("stdio upstream: stdout lines not logged (rate limit)", slog.Int("pid", s.pid), slog.Int("lines", n))
	}
	if ok {
		s.p.log.Warn("stdio upstream: skipping a line of stdout that is not JSON-RPC", slog.Int("pid", s.pid),
			slog.Any("error", why), slog.String("line", printable(line, 200)))
	}
}
