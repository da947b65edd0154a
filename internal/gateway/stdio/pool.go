// Package stdio runs stdio MCP servers as child processes of the gateway
// and speaks newline-delimited JSON-RPC with them (the MCP stdio
// transport): one message per line on the child's stdin and stdout, UTF-8,
// no newline inside a message; what the child writes on stderr is logged.
//
// A [Pool] holds the children of one upstream command, one per key (an MCP
// session id, or a caller's identity for sessionless clients). It starts a
// child on first use, bounds their number, stops idle ones, restarts a
// crashed one with backoff, and stops every child's whole process group on
// Close. A [Session] is one child: [Session.Call] sends a request and
// returns its response, [Session.Send] sends a notification or a response,
// and every other message the child writes (its requests and
// notifications) goes to [Options.OnMessage].
//
// The package knows nothing of HTTP; the gateway maps its errors
// ([ErrTooManyProcesses], [ErrExited], …) to JSON-RPC errors.
package stdio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of the zero Options.
const (
	// DefaultMaxProcesses bounds the children of one pool.
	DefaultMaxProcesses = 64
	// DefaultIdleTimeout is how long a child may go without a Call or a
	// Send before it is stopped.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultMaxLineBytes bounds one line (one message) from a child.
	DefaultMaxLineBytes = 4 << 20
	// DefaultStopGrace is each of the two waits of a stop: after closing
	// stdin before SIGTERM, and after SIGTERM before SIGKILL.
	DefaultStopGrace = 2 * time.Second
	// DefaultStderrLinesPerSecond bounds the stderr lines logged per child
	// and second.
	DefaultStderrLinesPerSecond = 20
	// DefaultRestartBackoff is the wait before restarting after a child
	// exited on its own; it doubles with each further such exit.
	DefaultRestartBackoff = 100 * time.Millisecond
	// DefaultMaxRestartBackoff caps the restart backoff.
	DefaultMaxRestartBackoff = 10 * time.Second
)

// Errors of the pool and its sessions; test them with errors.Is.
var (
	// ErrTooManyProcesses: starting a child would exceed MaxProcesses.
	ErrTooManyProcesses = errors.New("stdio upstream: too many processes")
	// ErrRestartBackoff: children exited on their own recently, and the
	// caller's context ends before the next one may start.
	ErrRestartBackoff = errors.New("stdio upstream: restarting after a crash")
	// ErrExited: the child exited (on its own, or stopped by the pool after
	// a protocol failure). The error text holds its exit status.
	ErrExited = errors.New("stdio upstream exited")
	// ErrClosed: the session or the pool was closed, or the child was
	// stopped as idle.
	ErrClosed = errors.New("stdio upstream: closed")
	// ErrLineTooLong: the child wrote a line longer than MaxLineBytes; the
	// session is stopped (the error wraps ErrExited too).
	ErrLineTooLong = errors.New("stdio upstream: line too long")
	// ErrInvalidMessage: the message given to Call or Send is not one
	// JSON-RPC message of the kind the method takes.
	ErrInvalidMessage = errors.New("stdio upstream: invalid message")
)

// Options configure a Pool. The zero value of each field but Command is
// its default.
type Options struct {
	// Command is the argv of the child, run without a shell. Command[0]
	// is looked up in the gateway's PATH (or, holding a slash, relative to
	// Dir) by NewPool. Required.
	Command []string
	// Env holds extra KEY=VALUE entries for the child, appended to the
	// inherited PATH, HOME and LANG (a key given here wins).
	Env []string
	// Inherit is the environment PATH, HOME and LANG are taken from; nil
	// means the gateway's own (os.Environ). Nothing else is inherited.
	Inherit []string
	// Dir is the child's working directory; empty means the gateway's.
	Dir string
	// MaxProcesses bounds the children running at once, counting those
	// being stopped; 0 means DefaultMaxProcesses.
	MaxProcesses int
	// IdleTimeout stops a child that had no Call or Send in flight and
	// none begun for this long; 0 means DefaultIdleTimeout, negative
	// never stops an idle child.
	IdleTimeout time.Duration
	// MaxLineBytes bounds one line (one message) from the child; a longer
	// line stops the child and fails its session with ErrLineTooLong. 0
	// means DefaultMaxLineBytes.
	MaxLineBytes int
	// StopGrace is each wait of a stop (after closing stdin, then after
	// SIGTERM) before the next step; 0 means DefaultStopGrace.
	StopGrace time.Duration
	// StderrLinesPerSecond bounds the stderr lines logged per child and
	// second; the rest are counted and the count logged. 0 means
	// DefaultStderrLinesPerSecond.
	StderrLinesPerSecond int
	// RestartBackoff is the first wait before a start after a child
	// exited on its own within MaxRestartBackoff of its start; it doubles
	// with each such exit in a row, up to MaxRestartBackoff. 0 means
	// DefaultRestartBackoff.
	RestartBackoff time.Duration
	// MaxRestartBackoff caps RestartBackoff; 0 means
	// DefaultMaxRestartBackoff.
	MaxRestartBackoff time.Duration
	// OnMessage receives every message a child writes that is not the
	// response to a Call: the child's requests (sampling, elicitation,
	// roots) and notifications (progress, logging, list_changed), compacted,
	// in the order the child wrote them. It is called on the session's
	// reader goroutine, so while it runs the child's stdout is not read: it
	// must hand the message off and return, without waiting on a Call,
	// Send or Close of the same session. nil drops these messages.
	OnMessage func(s *Session, msg []byte)
	// Logger receives the children's stderr and the pool's warnings; nil
	// discards them. Keys (session ids, identities) are never logged.
	Logger *slog.Logger
}

// Pool runs the children of one upstream command, one per key. Its methods
// are safe for concurrent use.
type Pool struct {
	o    Options
	path string   // Command[0], resolved
	env  []string // the child's environment
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[string]*Session   // the child of each key, starting or running
	live     map[*Session]struct{} // every child not yet fully stopped
	closed   bool
	failures int       // exits on their own in a row, each soon after its start
	notUntil time.Time // no start before this (restart backoff)

	wg   sync.WaitGroup // every goroutine of the pool and its sessions
	stop chan struct{}  // closed by Close: ends the idle sweeper
}

// NewPool checks o and returns a pool that has started nothing yet. An
// error names the configuration key at fault (upstream.command,
// upstream.env, upstream.dir).
func NewPool(o Options) (*Pool, error) {
	if !supported {
		return nil, errors.New("upstream.command: stdio upstreams need a Unix system")
	}
	if len(o.Command) == 0 || o.Command[0] == "" {
		return nil, errors.New("upstream.command: empty")
	}
	if o.Dir != "" {
		if fi, err := os.Stat(o.Dir); err != nil {
			return nil, fmt.Errorf("upstream.dir: %w", err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("upstream.dir: %s is not a directory", o.Dir)
		}
	}
	name := o.Command[0]
	if strings.Contains(name, "/") && !filepath.IsAbs(name) && o.Dir != "" {
		name = filepath.Join(o.Dir, name)
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("upstream.command: %q: %w", o.Command[0], err)
	}
	if !filepath.IsAbs(path) {
		if path, err = filepath.Abs(path); err != nil {
			return nil, fmt.Errorf("upstream.command: %q: %w", o.Command[0], err)
		}
	}
	for i, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("upstream.env[%d]: %q is not KEY=VALUE", i, kv)
		}
	}
	if o.MaxProcesses <= 0 {
		o.MaxProcesses = DefaultMaxProcesses
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.StopGrace <= 0 {
		o.StopGrace = DefaultStopGrace
	}
	if o.StderrLinesPerSecond <= 0 {
		o.StderrLinesPerSecond = DefaultStderrLinesPerSecond
	}
	if o.RestartBackoff <= 0 {
		o.RestartBackoff = DefaultRestartBackoff
	}
	if o.MaxRestartBackoff <= 0 {
		o.MaxRestartBackoff = DefaultMaxRestartBackoff
	}
	o.MaxRestartBackoff = max(o.MaxRestartBackoff, o.RestartBackoff)
	o.Command = slices.Clone(o.Command)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pool{
		o:        o,
		path:     path,
		env:      childEnv(o.Inherit, o.Env),
		log:      log,
		sessions: map[string]*Session{},
		live:     map[*Session]struct{}{},
		stop:     make(chan struct{}),
	}
	if o.IdleTimeout > 0 {
		p.wg.Go(p.sweepIdle)
	}
	return p, nil
}

// childEnv is PATH, HOME and LANG of inherit (os.Environ when nil), then
// extra.
func childEnv(inherit, extra []string) []string {
	if inherit == nil {
		inherit = os.Environ()
	}
	env := []string{} // not nil: a nil Env would inherit everything
	for _, kv := range inherit {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "PATH", "HOME", "LANG":
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Session returns the child for key, starting it if there is none (or if
// the last one exited). It fails with ErrTooManyProcesses when starting
// would exceed MaxProcesses, with ErrClosed after Close, and, after
// children exited on their own in a row, waits for the restart backoff
// within ctx or fails at once with ErrRestartBackoff if ctx's deadline
// comes first. A new child (after an exit) is a new *Session, so that a
// caller can tell that the server's session state is gone.
func (p *Pool) Session(ctx context.Context, key string) (*Session, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if s, ok := p.sessions[key]; ok {
			p.mu.Unlock()
			select {
			case <-s.ready:
			default:
				select {
				case <-s.ready:
				case <-ctx.Done():
					return nil, fmt.Errorf("stdio upstream: waiting for the child to start: %w", ctx.Err())
				}
			}
			if s.startErr != nil {
				return nil, s.startErr
			}
			s.touch()
			return s, nil
		}
		if until := p.notUntil; time.Now().Before(until) {
			p.mu.Unlock()
			wait := time.Until(until)
			if d, ok := ctx.Deadline(); ok && d.Before(until) {
				return nil, fmt.Errorf("%w: next start in %v", ErrRestartBackoff, wait.Round(time.Millisecond))
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%w: %w", ErrRestartBackoff, ctx.Err())
			}
		}
		if len(p.live) >= p.o.MaxProcesses {
			p.mu.Unlock()
			return nil, fmt.Errorf("%w (%d)", ErrTooManyProcesses, p.o.MaxProcesses)
		}
		s := newSession(p, key)
		p.sessions[key] = s
		p.live[s] = struct{}{}
		p.mu.Unlock()

		err := s.start()
		if err != nil {
			p.mu.Lock()
			delete(p.sessions, key)
			delete(p.live, s)
			p.failedLocked(0)
			p.mu.Unlock()
			s.startErr = fmt.Errorf("stdio upstream: starting %s: %w", p.o.Command[0], err)
			close(s.ready)
			return nil, s.startErr
		}
		close(s.ready)
		return s, nil
	}
}

// failedLocked records an exit on its own (or a failed start) of a child
// that ran for lived, and sets the restart backoff. p.mu is held.
func (p *Pool) failedLocked(lived time.Duration) {
	if lived >= p.o.MaxRestartBackoff {
		p.failures = 0
	}
	p.failures++
	wait := p.o.RestartBackoff
	for i := 1; i < p.failures && wait < p.o.MaxRestartBackoff; i++ {
		wait *= 2
	}
	p.notUntil = time.Now().Add(min(wait, p.o.MaxRestartBackoff))
}

// Processes returns the number of children running, counting those being
// stopped.
func (p *Pool) Processes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.live)
}

// detach removes s from the key table, if it is still the child for its
// key, and reports whether it was.
func (p *Pool) detach(s *Session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions[s.key] == s {
		delete(p.sessions, s.key)
		return true
	}
	return false
}

// exited records that s's process is gone and its goroutines are ending.
func (p *Pool) exited(s *Session, onItsOwn bool, lived time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions[s.key] == s {
		delete(p.sessions, s.key)
	}
	delete(p.live, s)
	if onItsOwn {
		p.failedLocked(lived)
	}
}

// sweepIdle stops the children idle for IdleTimeout, until Close.
func (p *Pool) sweepIdle() {
	t := time.NewTicker(max(p.o.IdleTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			var idle []*Session
			for key, s := range p.sessions {
				if s.idleSince(now) >= p.o.IdleTimeout {
					delete(p.sessions, key)
					idle = append(idle, s)
				}
			}
			p.mu.Unlock()
			for _, s := range idle {
				p.wg.Go(func() { s.shutdown(context.Background(), errIdle) })
			}
		}
	}
}

var errIdle = fmt.Errorf("%w: stopped after the idle timeout", ErrClosed)

// Close stops every child (closing its stdin, then after StopGrace
// SIGTERM, then SIGKILL to its process group; at once SIGKILL when ctx
// ends) and waits for every goroutine of the pool. Calls in flight fail
// with ErrClosed; Session fails with ErrClosed afterwards. It returns
// ctx.Err() if ctx ended before the children stopped on their own.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	all := make([]*Session, 0, len(p.live))
	for s := range p.live {
		all = append(all, s)
	}
	clear(p.sessions)
	p.mu.Unlock()
	close(p.stop)
	for _, s := range all {
		p.wg.Go(func() {
			<-s.ready
			if s.startErr == nil {
				s.shutdown(ctx, fmt.Errorf("%w: the pool is closing", ErrClosed))
			}
		})
	}
	p.wg.Wait()
	return ctx.Err()
}
