// Package pgtest runs a real PostgreSQL server for tests: the binaries of
// the machine's PostgreSQL installation (Debian's /usr/lib/postgresql/<ver>/bin,
// else initdb on PATH), a fresh cluster in a temporary directory, listening
// on 127.0.0.1 on a free port with trust authentication. A test can stop,
// restart and kill it as an operator (or a crash) would.
//
// When PostgreSQL is not installed or cannot start, Start skips the test
// with a message naming what is missing; with PDP_REQUIRE_POSTGRES=1 in
// the environment (CI) it fails the test instead, so that PostgreSQL tests
// never pass silently by not running.
//
// initdb and postgres refuse to run as root: when the test runs as root,
// the server runs as the "postgres" user.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// RequireEnv is the environment variable that turns a missing or broken
// PostgreSQL from a skipped test into a failed one, when set to "1".
const RequireEnv = "PDP_REQUIRE_POSTGRES"

// StartTimeout bounds how long Start and Restart wait for the server to
// accept connections.
const StartTimeout = 60 * time.Second

// Server is a PostgreSQL server of one test. Its methods are meant to be
// called from the test's goroutine (DSN and NewDatabase from any).
type Server struct {
	tb    testing.TB
	bin   string // the directory of initdb, postgres, pg_ctl
	dir   string // the temporary directory: data, sockets, log
	data  string
	log   string
	port  int
	runAs *account      // the postgres user when we are root, else nil
	dbs   atomic.Uint64 // databases created by NewDatabase

	mu   sync.Mutex
	proc *process // the running postmaster, nil while stopped
}

// process is a started postmaster and the goroutine waiting for it.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait returned
	err  error         // cmd.Wait's result, set before done is closed
}

// Start initializes a new cluster and starts a server on a free port of
// 127.0.0.1, or skips the test (see the package documentation). The server
// is killed and its directory removed when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if err := supported(); err != nil {
		unavailable(tb, err)
	}
	bin, err := findBin()
	if err != nil {
		unavailable(tb, err)
	}
	s := &Server{tb: tb, bin: bin}
	if os.Geteuid() == 0 {
		if s.runAs, err = lookupAccount("postgres"); err != nil {
			unavailable(tb, fmt.Errorf("running as root, which PostgreSQL refuses, and no user to run it as: %w", err))
		}
	}
	err = s.initDir()
	if s.dir != "" {
		tb.Cleanup(s.cleanup)
	}
	if err != nil {
		unavailable(tb, err)
	}
	if err := s.initdb(); err != nil {
		unavailable(tb, err)
	}
	// A free port may be taken between our probe and the server's bind:
	// try a few.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			unavailable(tb, err)
		}
		if err = s.start(); err == nil {
			return s
		}
		if attempt == 2 {
			unavailable(tb, err)
		}
	}
}

// account is a user to run the server as.
type account struct{ uid, gid uint32 }

func lookupAccount(name string) (*account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	return &account{uid: uint32(uid), gid: uint32(gid)}, nil
}

// unavailable skips the test, or fails it under PDP_REQUIRE_POSTGRES=1.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("pgtest: PostgreSQL is required (%s=1) but unavailable: %v", RequireEnv, err)
	}
	tb.Skipf("pgtest: PostgreSQL unavailable, test skipped (set %s=1 to fail instead): %v", RequireEnv, err)
}

// findBin returns the bin directory of the highest PostgreSQL version
// under /usr/lib/postgresql, else the directory of initdb on PATH.
func findBin() (string, error) {
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if dir := highestVersion(initdbs); dir != "" {
		return dir, nil
	}
	p, err := exec.LookPath("initdb")
	if err != nil {
		return "", errors.New("no initdb under /usr/lib/postgresql/*/bin nor on PATH (install the postgresql package)")
	}
	return filepath.Dir(p), nil
}

// highestVersion returns the bin directory of the path in
// /usr/lib/postgresql/<ver>/bin/initdb form with the highest <ver>
// (compared numerically, so that 15 beats 9.6), or "" for none.
func highestVersion(initdbs []string) string {
	type cand struct {
		dir string
		ver []int
	}
	var cs []cand
	for _, p := range initdbs {
		dir := filepath.Dir(p)
		var ver []int
		for _, f := range strings.Split(filepath.Base(filepath.Dir(dir)), ".") {
			n, err := strconv.Atoi(f)
			if err != nil {
				ver = nil
				break
			}
			ver = append(ver, n)
		}
		if ver != nil {
			cs = append(cs, cand{dir, ver})
		}
	}
	if len(cs) == 0 {
		return ""
	}
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i].ver, cs[j].ver
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] > b[k]
			}
		}
		return len(a) > len(b)
	})
	return cs[0].dir
}

// initDir creates the temporary directory, traversable by the postgres
// user when running as root (a t.TempDir may sit under a 0700 parent).
func (s *Server) initDir() error {
	dir, err := os.MkdirTemp(os.TempDir(), "pgtest-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	s.dir, s.data, s.log = dir, filepath.Join(dir, "data"), filepath.Join(dir, "postgres.log")
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	if s.runAs != nil {
		if err := os.Chown(dir, int(s.runAs.uid), int(s.runAs.gid)); err != nil {
			return fmt.Errorf("temporary directory: chown to postgres: %w", err)
		}
	}
	return nil
}

// command returns a command of the PostgreSQL bin directory, run as the
// postgres user when we are root, in the temporary directory.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	setProcAttr(cmd, s.runAs)
	return cmd
}

func (s *Server) initdb() error {
	cmd := s.command("initdb", "-D", s.data, "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", s.data, err, out)
	}
	return nil
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs the postmaster on s.port and waits until it accepts
// connections.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("postgres log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := s.command("postgres", "-D", s.data, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+s.dir,
		"-c", "fsync=on", "-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	if err := s.waitReady(p); err != nil {
		s.Kill()
		return err
	}
	return nil
}

// waitReady polls the server until it answers a query, it exits, or
// StartTimeout passes.
func (s *Server) waitReady(p *process) error {
	db, err := sql.Open("pgx", s.DSN())
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer db.Close()
	deadline := time.Now().Add(StartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited (%v) before accepting connections on port %d:\n%s", p.err, s.port, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections on port %d within %v (%v):\n%s", s.port, StartTimeout, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logTail is the end of the server's log, for error messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// DSN is the URL of the server's "postgres" database, as the superuser
// postgres: postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
// It stays the same across Stop, Kill and Restart.
func (s *Server) DSN() string { return s.dsn("postgres") }

func (s *Server) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// NewDatabase creates a database of its own for the caller (a unique
// name) and returns its DSN, so that tests sharing a server do not see
// each other's tables. It fails tb on error.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), s.dbs.Add(1))
	db, err := sql.Open("pgx", s.DSN())
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return s.dsn(name)
}

// Stop shuts the server down cleanly (pg_ctl stop -m fast: sessions are
// ended, committed data is on disk) and waits until it has exited.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.tb.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return
	}
	out, err := s.command("pg_ctl", "stop", "-D", s.data, "-m", "fast", "-w", "-t", "60").CombinedOutput()
	if err != nil {
		s.Kill()
		s.tb.Fatalf("pgtest: pg_ctl stop: %v\n%s", err, out)
	}
	<-p.done
	s.mu.Lock()
	s.proc = nil
	s.mu.Unlock()
}

// Kill ends the server at once, as a crash would: SIGKILL to the
// postmaster and to its backends (on Linux; elsewhere to the postmaster
// only), so that a Restart finds no survivor holding the shared memory.
// Committed transactions
// survive it (they were fsynced), the rest is rolled back by the
// recovery of the next start. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	killServer(p.cmd.Process)
	<-p.done
}

// Restart starts a stopped (or killed) server again on the same port and
// data directory, or fails the test.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		s.tb.Fatal("pgtest: Restart of a running server")
	}
	if err := s.start(); err != nil {
		s.tb.Fatalf("pgtest: restart: %v", err)
	}
}

// cleanup kills the server (its data is thrown away) and removes its
// directory.
func (s *Server) cleanup() {
	s.Kill()
	if err := os.RemoveAll(s.dir); err != nil {
		s.tb.Errorf("pgtest: remove %s: %v", s.dir, err)
	}
}
