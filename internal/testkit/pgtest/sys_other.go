//go:build !unix

package pgtest

import (
	"errors"
	"os"
	"os/exec"
)

func supported() error {
	return errors.New("pgtest runs PostgreSQL on unix systems only")
}

func setProcAttr(*exec.Cmd, *account) {}

func killServer(p *os.Process) { _ = p.Kill() }
