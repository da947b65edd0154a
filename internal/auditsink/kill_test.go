package auditsink

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// The child side of TestProcessKilledAfterAnswering: record events with
// NATS down, say so, and wait to be killed.
func TestHelperRecordThenWait(t *testing.T) {
	spoolDir, url := os.Getenv("AUDITSINK_CHILD_SPOOL"), os.Getenv("AUDITSINK_CHILD_NATS")
	if spoolDir == "" {
		t.Skip("helper process for TestProcessKilledAfterAnswering")
	}
	total, _ := strconv.Atoi(os.Getenv("AUDITSINK_CHILD_EVENTS"))
	nc := connect(t, url)
	s, err := New(context.Background(), baseConfig(t, spoolDir), nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range total {
		if err := s.Record(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("ANSWERED %d\n", total)
	time.Sleep(time.Hour) // killed here, without Close
}

// A real process records events while NATS is down and is killed with
// SIGKILL right after answering: the next start replays every event once.
func TestProcessKilledAfterAnswering(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	n := natstest.Start(t)
	n.Stop()
	spoolDir := t.TempDir()
	const total = 500
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperRecordThenWait$", "-test.v")
	cmd.Env = append(os.Environ(), "AUDITSINK_CHILD_SPOOL="+spoolDir, "AUDITSINK_CHILD_NATS="+n.URL(),
		"AUDITSINK_CHILD_EVENTS="+strconv.Itoa(total))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	answered := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "ANSWERED ") {
			answered = true
			break
		}
	}
	if !answered {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("child did not answer")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	n.Restart()
	nc := connect(t, n.URL())
	s := newSink(t, baseConfig(t, spoolDir), nc)
	waitDrained(t, s)
	_, counts := streamEvents(t, nc, DefaultStream)
	assertExactlyOnce(t, counts, ids(0, total))
}
