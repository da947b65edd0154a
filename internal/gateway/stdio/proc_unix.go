//go:build unix

package stdio

import (
	"errors"
	"os/exec"
	"syscall"
)

// supported reports whether stdio upstreams can run on this system.
const supported = true

// setProcessGroup makes the child the leader of a new process group, so
// that signalling the group reaches the processes it starts (npx starts
// node, a shell script starts its commands).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends sig to every process of the group the child leads. A
// group that no longer exists is not an error.
func signalGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
