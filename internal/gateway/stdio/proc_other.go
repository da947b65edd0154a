//go:build !unix

package stdio

import (
	"os/exec"
	"syscall"
)

// supported reports whether stdio upstreams can run on this system: they
// need Unix process groups, so that stopping a child stops what it started.
const supported = false

func setProcessGroup(*exec.Cmd) {}

func signalGroup(int, syscall.Signal) error { return nil }
