package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/natsembed"
)

const auditUsage = `Usage:
  pdp audit tail   [--follow] [filters] [--json]     recent events (last hour unless --since), then follow
  pdp audit export --since 24h [--until T] [filters]  events as JSON lines, e.g. > events.jsonl
  pdp audit verify [--public-key F]... [--store DB] prove no event was removed, altered or reordered
  pdp audit store  [--db DB] [--retention 400d]     write every event into an SQL table (SQLite, PostgreSQL)
  pdp audit query  [filters] [--by COLS]            ask the SQL store: --tool T --since 90d, --by client,outcome
  pdp audit sql    'SELECT ...'                     one read-only SQL statement over the store

Filters: --resource R (resource key or URI), --tool T, --outcome O[,O...],
         --subject S (the user, "sub"), --client C (client_id), --method M
Times:   --since/--until take a duration before now (24h, 90m, 7d), an RFC 3339
         time (2025-06-01T10:00:00Z) or a date (2025-06-01).
NATS:    --nats URL[,URL...] (default: the embedded server of a running dev
         server, found in <data-dir>/nats.url), --creds, --nkey, --tls-ca,
         --tls-cert, --tls-key, --stream, --prefix.
`

// runAudit implements `pdp audit tail|export`: it parses the arguments,
// then reads the stream and prints the matching events.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "verify":
			return runAuditVerify(ctx, args[1:], stdout, stderr)
		case "store":
			return runAuditStore(ctx, args[1:], stdout, stderr)
		case "query":
			return runAuditQuery(ctx, args[1:], stdout, stderr)
		case "sql":
			return runAuditSQL(ctx, args[1:], stdout, stderr)
		}
	}
	c, code := parseAuditArgs(args, stdout, stderr)
	if c == nil {
		return code
	}
	return c.run(ctx, stdout, stderr)
}

// auditCommand is one `pdp audit tail|export`, its flags parsed.
type auditCommand struct {
	sub    string // "tail" or "export"
	nats   natsFlags
	filter auditsink.Filter
	asJSON bool
	follow bool
}

// parseAuditArgs parses the arguments of `pdp audit`. A nil command means
// there is nothing to run: exit with the code (usage printed, or an error
// reported on stderr).
func parseAuditArgs(args []string, stdout, stderr io.Writer) (*auditCommand, int) {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return nil, 2
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "tail", "export":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, auditUsage)
		return nil, 0
	default:
		fmt.Fprintf(stderr, "pdp audit: unknown command %q\n\n%s", sub, auditUsage)
		return nil, 2
	}
	export := sub == "export"
	c := &auditCommand{sub: sub}

	fs := flag.NewFlagSet("pdp audit "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditUsage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	c.nats.register(fs, "pdp audit "+sub)
	f := &c.filter
	fs.StringVar(&f.Resource, "resource", "", "resource key or resource URI")
	fs.StringVar(&f.Tool, "tool", "", "target: tool or prompt name, or resource URI")
	fs.StringVar(&f.Outcome, "outcome", "", "allow, deny, challenge, filtered or limited (comma-separated for several)")
	fs.StringVar(&f.Subject, "subject", "", "token subject (sub): the user")
	fs.StringVar(&f.ClientID, "client", "", "client_id: the agent or app")
	fs.StringVar(&f.Method, "method", "", "MCP method, e.g. tools/call")
	defSince := "1h"
	if export {
		defSince = "24h"
	}
	since := fs.String("since", defSince, "start: duration ago, RFC 3339 time or date")
	until := fs.String("until", "", "end: duration ago, RFC 3339 time or date (default: now)")
	fs.BoolVar(&c.asJSON, "json", export, "JSON lines instead of a table")
	if !export {
		fs.BoolVar(&c.follow, "follow", false, "keep printing new events until interrupted")
		fs.BoolVar(&c.follow, "f", false, "short for --follow")
	}
	pos, code, ok := parseFlags(fs, rest, stdout, stderr)
	if !ok {
		return nil, code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "pdp audit %s: unexpected arguments %q\n", sub, pos)
		return nil, 2
	}
	now := time.Now()
	var err error
	if f.Since, err = parseTimeArg(*since, now); err != nil {
		fmt.Fprintf(stderr, "pdp audit %s: --since: %v\n", sub, err)
		return nil, 2
	}
	if f.Until, err = parseTimeArg(*until, now); err != nil {
		fmt.Fprintf(stderr, "pdp audit %s: --until: %v\n", sub, err)
		return nil, 2
	}
	if !f.Until.IsZero() && f.Until.Before(f.Since) {
		fmt.Fprintf(stderr, "pdp audit %s: --until is before --since\n", sub)
		return nil, 2
	}
	return c, 0
}

// run connects to NATS, reads the matching events and prints them; it
// returns the exit code.
func (c *auditCommand) run(ctx context.Context, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "pdp audit %s: %v\n", c.sub, err)
		return 1
	}
	nc, js, err := c.nats.connect(ctx, natsembed.RoleReader)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()

	w := bufio.NewWriterSize(stdout, 64<<10)
	if !c.asJSON {
		if err := writeAuditHeader(w); err != nil {
			return fail(err)
		}
	}
	n := 0
	err = auditsink.Read(ctx, js, c.nats.stream, c.nats.prefix, c.filter, c.follow, func(ev *auditsink.Event) error {
		n++
		var werr error
		if c.asJSON {
			werr = writeAuditJSON(w, ev)
		} else {
			werr = writeAuditRow(w, ev)
		}
		if werr == nil && c.follow {
			werr = w.Flush()
		}
		return werr
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fail(err)
	}
	if c.sub == "export" {
		fmt.Fprintf(stderr, "pdp audit export: %d events\n", n)
	}
	return 0
}

// parseTimeArg parses a --since/--until value: a duration before now
// ("24h", "90m", "7d"), an RFC 3339 time, or a date (2006-01-02, UTC). ""
// is the zero time (open).
func parseTimeArg(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("time %q: a duration means 'that long ago' and must not be negative", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: use a duration like 24h, 30m or 7d, an RFC 3339 time like 2025-01-02T15:04:05Z, or a date like 2025-01-02", s)
}

// auditTableFormat: time, outcome, http_status, method, target, subject,
// client_id, reason (truncated). Fixed widths, so rows line up when they
// are printed one by one (tail --follow).
const auditTableFormat = "%-24s %-9s %4s %-16s %-28s %-20s %-20s %s\n"

// writeAuditHeader writes the header line of the human table.
func writeAuditHeader(w io.Writer) error {
	_, err := fmt.Fprintf(w, auditTableFormat, "TIME", "OUTCOME", "HTTP", "METHOD", "TARGET", "SUBJECT", "CLIENT_ID", "REASON")
	return err
}

// writeAuditRow writes one event as a line of the human table.
func writeAuditRow(w io.Writer, ev *auditsink.Event) error {
	status := ""
	if ev.HTTPStatus != 0 {
		status = strconv.Itoa(ev.HTTPStatus)
	}
	target := ev.Target
	if ev.Outcome == auditsink.OutcomeFiltered && target == "" {
		target = fmt.Sprintf("(%d shown, %d hidden)", len(ev.Visible), len(ev.Hidden))
	}
	_, err := fmt.Fprintf(w, auditTableFormat,
		ev.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
		truncRunes(ev.Outcome, 9), status, truncRunes(ev.Method, 16), truncRunes(target, 28),
		truncRunes(ev.Subject, 20), truncRunes(ev.ClientID, 20), truncRunes(oneLine(ev.Reason), 60))
	return err
}

// writeAuditJSON writes ev as one line of JSON.
func writeAuditJSON(w io.Writer, ev *auditsink.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// oneLine replaces line breaks and tabs with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}

// truncRunes shortens s to n runes, marking the cut with "…".
func truncRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
