package pgtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func supported() error { return nil }

// setProcAttr runs cmd as a (when not nil), in a process group of its own
// (so that a terminal's signals do not reach it), and asks the kernel to
// end it (SIGQUIT: PostgreSQL's immediate shutdown) should the test binary
// die without its cleanups (a panic, a timeout).
func setProcAttr(cmd *exec.Cmd, a *account) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if a != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: a.uid, Gid: a.gid}
	}
}

// killServer SIGKILLs the postmaster and its children. The postmaster is
// stopped first, so that it forks no new backend; its children are found
// in /proc by their parent pid (each is a process group of its own, so the
// postmaster's group does not hold them).
func killServer(p *os.Process) {
	_ = p.Signal(syscall.SIGSTOP)
	kids := children(p.Pid)
	for _, c := range kids {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	_ = p.Kill()
	// A SIGKILLed backend holds the shared memory until it has exited: a
	// restart before that finds "pre-existing shared memory block is
	// still in use" (seen on a loaded machine). Wait for each to be gone
	// or a zombie, at most a few seconds.
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range kids {
		for alive(c) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// children returns the pids whose parent is pid.
func children(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := bytes.Fields(b[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(string(fields[1])); err == nil && ppid == pid {
			if c, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
