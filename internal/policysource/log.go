package policysource

import (
	"fmt"
	"log/slog"

	"github.com/open-policy-agent/opa/v1/logging"
)

// opaLogger sends the OPA downloader's own messages to slog at debug level:
// failures reach the caller as errors and are logged there, once.
type opaLogger struct {
	log *slog.Logger
}

func (l *opaLogger) Debug(f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l *opaLogger) Info(f string, a ...any)  { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l *opaLogger) Warn(f string, a ...any)  { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l *opaLogger) Error(f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...)) }

func (l *opaLogger) WithFields(fields map[string]any) logging.Logger {
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		if k == "headers" {
			continue // may hold credentials
		}
		args = append(args, k, v)
	}
	return &opaLogger{log: l.log.With(args...)}
}

// GetLevel is Info so that the downloader never dumps response bodies.
func (l *opaLogger) GetLevel() logging.Level { return logging.Info }
func (l *opaLogger) SetLevel(logging.Level)  {}
