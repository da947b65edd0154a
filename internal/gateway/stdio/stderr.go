package stdio

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"
)

// maxLogLineBytes bounds one logged line of a child's stderr (or one
// quoted line of its stdout that is not JSON-RPC); the rest is cut.
const maxLogLineBytes = 4 << 10

// lineLimiter lets at most perSecond lines through in each second and
// counts the others, so that a child writing without pause cannot flood
// the log. It is used by one goroutine.
type lineLimiter struct {
	perSecond  int
	window     time.Time
	passed     int
	suppressed int
}

// allow reports whether a line seen at now may be logged. When a new
// second begins it also returns how many lines the last one suppressed.
func (l *lineLimiter) allow(now time.Time) (ok bool, suppressed int) {
	if now.Sub(l.window) >= time.Second {
		suppressed, l.suppressed = l.suppressed, 0
		l.window, l.passed = now, 0
	}
	if l.passed < l.perSecond {
		l.passed++
		return true, suppressed
	}
	l.suppressed++
	return false, suppressed
}

// flush returns the lines suppressed and not yet reported.
func (l *lineLimiter) flush() int {
	n := l.suppressed
	l.suppressed = 0
	return n
}

// logStderr logs each line of r (a child's stderr) at Info, rate limited,
// until r ends. Lines longer than maxLogLineBytes are cut.
func logStderr(r io.Reader, log *slog.Logger, perSecond int) {
	lim := lineLimiter{perSecond: perSecond}
	br := bufio.NewReaderSize(r, maxLogLineBytes)
	report := func(n int) {
		if n > 0 {
			log.LogAttrs(context.Background(), slog.LevelWarn, "stdio upstream: stderr lines not logged (rate limit)",
				slog.Int("lines", n))
		}
	}
	for {
		line, err := br.ReadSlice('\n')
		cut := errors.Is(err, bufio.ErrBufferFull)
		if len(line) > 0 {
			if ok, n := lim.allow(time.Now()); ok || n > 0 {
				report(n)
				if ok {
					log.LogAttrs(context.Background(), slog.LevelInfo, "stdio upstream stderr",
						slog.String("line", printable(line, maxLogLineBytes)), slog.Bool("cut", cut))
				}
			}
		}
		for cut { // drop the rest of a long line
			_, err = br.ReadSlice('\n')
			cut = errors.Is(err, bufio.ErrBufferFull)
		}
		if err != nil {
			report(lim.flush())
			return
		}
	}
}

// printable returns at most limit bytes of line as a string without its
// line ending, with invalid UTF-8 replaced.
func printable(line []byte, limit int) string {
	if len(line) > limit {
		line = line[:limit]
	}
	for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
		line = line[:len(line)-1]
	}
	return strings.ToValidUTF8(string(line), "\uFFFD")
}
