package server

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/mcp-pdp/pdp/internal/config"
)

// NewLogger is the logger that the log section asks for, writing to w:
// text (the default) or JSON lines, at log.level (default info).
func NewLogger(c config.Log, w io.Writer) (*slog.Logger, error) {
	level := slog.LevelInfo
	if c.Level != "" {
		if err := level.UnmarshalText([]byte(c.Level)); err != nil {
			return nil, fmt.Errorf("log.level: %w", err)
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
