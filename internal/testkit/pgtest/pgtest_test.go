package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHighestVersion(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"none", nil, ""},
		{"one", []string{"/usr/lib/postgresql/15/bin/initdb"}, "/usr/lib/postgresql/15/bin"},
		{"numeric, not lexical", []string{"/usr/lib/postgresql/9.6/bin/initdb", "/usr/lib/postgresql/16/bin/initdb", "/usr/lib/postgresql/15/bin/initdb"}, "/usr/lib/postgresql/16/bin"},
		{"minor versions", []string{"/usr/lib/postgresql/9.6/bin/initdb", "/usr/lib/postgresql/9.10/bin/initdb"}, "/usr/lib/postgresql/9.10/bin"},
		{"not a version", []string{"/usr/lib/postgresql/dev/bin/initdb"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := highestVersion(tc.in); got != tc.want {
				t.Fatalf("highestVersion(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// recorder is a testing.TB that records how the test would have ended.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	ended  string // "skip" or "fatal"
	reason string
}

func (r *recorder) Helper() {}

func (r *recorder) end(how, msg string) {
	r.mu.Lock()
	r.ended, r.reason = how, msg
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any)  { r.end("skip", fmt.Sprintf(format, args...)) }
func (r *recorder) Fatalf(format string, args ...any) { r.end("fatal", fmt.Sprintf(format, args...)) }

func TestUnavailableSkipsUnlessRequired(t *testing.T) {
	tests := []struct {
		env, want string
	}{
		{"", "skip"},
		{"0", "skip"},
		{"1", "fatal"},
	}
	for _, tc := range tests {
		t.Run("env="+tc.env, func(t *testing.T) {
			t.Setenv(RequireEnv, tc.env)
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				unavailable(r, errors.New("no initdb here"))
			}()
			<-done
			if r.ended != tc.want || !strings.Contains(r.reason, "no initdb here") || !strings.Contains(r.reason, RequireEnv) {
				t.Fatalf("ended %q (%q), want %q naming the cause and %s", r.ended, r.reason, tc.want, RequireEnv)
			}
		})
	}
}

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func rows(t *testing.T, dsn string) []string {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.QueryContext(context.Background(), "SELECT v FROM t ORDER BY v")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var v string
		if err := rs.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A server: isolated databases, a clean stop and restart keep the data, a
// kill keeps what was committed and loses what was not, and a restart
// right after a kill works (no backend survived it).
func TestServerStopRestartKill(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	dsn := s.DSN()
	if want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port()); dsn != want {
		t.Fatalf("DSN = %q, want %q", dsn, want)
	}
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase twice: %q both times", a)
	}
	for _, d := range []string{a, b} {
		if _, err := open(t, d).ExecContext(ctx, "CREATE TABLE t (v TEXT)"); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	if _, err := open(t, a).ExecContext(ctx, "INSERT INTO t VALUES ('committed')"); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, b); len(got) != 0 {
		t.Fatalf("database b sees %q of database a", got)
	}

	s.Stop()
	if err := open(t, a).PingContext(ctx); err == nil {
		t.Fatal("a stopped server answers")
	}
	s.Restart()
	if s.DSN() != dsn {
		t.Fatalf("DSN changed across a restart: %q, then %q", dsn, s.DSN())
	}
	if got := rows(t, a); len(got) != 1 || got[0] != "committed" {
		t.Fatalf("after stop and restart: %q", got)
	}

	// An open transaction, then a crash.
	db := open(t, a)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES ('uncommitted')"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES ('committed too')"); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	_ = tx.Rollback()
	start := time.Now()
	s.Restart()
	t.Logf("restart after kill (with recovery): %v", time.Since(start))
	if got := rows(t, a); len(got) != 2 || got[0] != "committed" || got[1] != "committed too" {
		t.Fatalf("after kill and restart: %q, want the two committed rows only", got)
	}
	s.Kill()
	s.Kill() // killing a killed server does nothing
	s.Restart()
	s.Stop()
	s.Stop() // stopping a stopped server does nothing
}
