package natsembed

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogQuietAtInfo: at the info level the embedded server's start and
// shutdown say nothing (its banner and notices are debug lines); at debug
// they are there, with the server's name and no component of their own
// (the caller's logger names it, once).
func TestLogQuietAtInfo(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level})).With("component", "nats")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := Start(ctx, Options{StoreDir: filepath.Join(t.TempDir(), "js"), Port: RandomPort, Logger: log})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		s.Shutdown()
		out := buf.String()
		if level == slog.LevelInfo {
			if out != "" {
				t.Fatalf("at info the embedded server logged:\n%s", out)
			}
			continue
		}
		if !strings.Contains(out, "Server is ready") || !strings.Contains(out, "server=mcp-pdp-embedded") {
			t.Fatalf("at debug the notices are missing:\n%s", out)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if n := strings.Count(line, "component="); n != 1 {
				t.Fatalf("%d component keys in %q", n, line)
			}
		}
	}
}
