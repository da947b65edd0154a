//go:build unix && !linux

package pgtest

import (
	"os"
	"os/exec"
	"syscall"
)

func supported() error { return nil }

// setProcAttr runs cmd as a (when not nil), in a process group of its own.
func setProcAttr(cmd *exec.Cmd, a *account) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if a != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: a.uid, Gid: a.gid}
	}
}

// killServer SIGKILLs the postmaster; its backends exit when they notice.
func killServer(p *os.Process) { _ = p.Kill() }
