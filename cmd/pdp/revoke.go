package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/revoke"
)

const revokeUsage = `Usage:
  pdp revoke client ID         [--for 24h] [--reason TEXT] [--by NAME]   every token of a client (client_id)
  pdp revoke subject SUB       [--for 24h] [--reason TEXT] [--by NAME]   every token of a subject (sub: the user)
  pdp revoke token FINGERPRINT [--for 24h] [--reason TEXT] [--by NAME]   one token (token_fingerprint of its audit events)
  pdp revoke list   [--json]                                           the revocations in the bucket
  pdp revoke remove client|subject|token ID                            lift a revocation

A revocation applies to the next decision of every PDP watching the bucket,
within milliseconds, until it is removed or its --for (24h, 90m, 7d) has
passed. Revoking again replaces the revocation (its reason, its expiry).
Ids are matched exactly; put "--" before an id that starts with "-".

NATS:    --nats URL[,URL...] (default: the embedded server of a running dev
         server, found in <data-dir>/nats.url; its admin user), --creds,
         --nkey, --tls-ca, --tls-cert, --tls-key. --bucket (default
         ` + revoke.DefaultBucket + `); the first revocation creates it, with --replicas
         (default 1; as the audit stream's).
`

// revokeCommand is one `pdp revoke ...`, its arguments parsed.
type revokeCommand struct {
	sub      string // client, subject, token, list or remove
	nats     natsFlags
	bucket   string
	replicas int
	asJSON   bool
	entry    *revoke.Entry    // client, subject, token
	kind     revoke.Kind      // remove
	id       string           // remove
	now      func() time.Time // the clock of Created, Expires and list's status
	stdout   io.Writer
	stderr   io.Writer
}

// runRevoke implements `pdp revoke`: it parses the arguments, connects to
// NATS as the admin and writes, lists or removes revocations. Exit codes:
// 0 done, 1 failed, 2 usage error.
func runRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, code := parseRevokeArgs(args, time.Now, stdout, stderr)
	if c == nil {
		return code
	}
	return c.run(ctx)
}

// parseRevokeArgs parses the arguments of `pdp revoke`. A nil command
// means there is nothing to run: exit with the code (usage printed, or an
// error reported on stderr).
func parseRevokeArgs(args []string, now func() time.Time, stdout, stderr io.Writer) (*revokeCommand, int) {
	if len(args) == 0 {
		fmt.Fprint(stderr, revokeUsage)
		return nil, 2
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "client", "subject", "token", "list", "remove":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, revokeUsage)
		return nil, 0
	default:
		fmt.Fprintf(stderr, "pdp revoke: unknown command %q\n\n%s", sub, revokeUsage)
		return nil, 2
	}
	c := &revokeCommand{sub: sub, now: now, stdout: stdout, stderr: stderr}
	usageErr := func(format string, a ...any) (*revokeCommand, int) {
		fmt.Fprintf(stderr, "pdp revoke %s: %s\n", sub, fmt.Sprintf(format, a...))
		return nil, 2
	}

	fs := flag.NewFlagSet("pdp revoke "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), revokeUsage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	c.nats.register(fs, "pdp revoke "+sub)
	fs.StringVar(&c.bucket, "bucket", revoke.DefaultBucket, "NATS key-value bucket of the revocations")
	var forArg, reason, by string
	switch sub {
	case "client", "subject", "token":
		fs.StringVar(&forArg, "for", "", "how long the revocation lasts: 24h, 90m, 7d (default: until removed)")
		fs.StringVar(&reason, "reason", "", "why: shown to the caller in the denial and audited")
		fs.StringVar(&by, "by", "", "who revokes (default: your login name)")
		fs.IntVar(&c.replicas, "replicas", 1, "replicas of the bucket when this creates it (1 to 5)")
	case "list":
		fs.BoolVar(&c.asJSON, "json", false, "JSON lines instead of a table")
	}
	pos, code, ok := parseFlags(fs, rest, stdout, stderr)
	if !ok {
		return nil, code
	}

	switch sub {
	case "list":
		if len(pos) > 0 {
			return usageErr("unexpected arguments %q", pos)
		}
		return c, 0
	case "remove":
		if len(pos) != 2 {
			return usageErr("want a kind (client, subject or token) and an id, got %d arguments", len(pos))
		}
		kind, err := revoke.ParseKind(pos[0])
		if err != nil {
			return usageErr("%v", err)
		}
		id, err := revoke.NormalizeID(kind, pos[1])
		if err != nil {
			return usageErr("%v", err)
		}
		c.kind, c.id = kind, id
		return c, 0
	}

	// client, subject, token
	if len(pos) != 1 {
		return usageErr("want one %s, got %d arguments", idName(revoke.Kind(sub)), len(pos))
	}
	if c.replicas < 1 || c.replicas > 5 {
		return usageErr("--replicas %d: use 1 to 5", c.replicas)
	}
	kind := revoke.Kind(sub)
	id, err := revoke.NormalizeID(kind, pos[0])
	if err != nil {
		return usageErr("%v", err)
	}
	created := now().UTC()
	e := &revoke.Entry{Kind: kind, ID: id, Reason: reason, By: by, Created: created}
	if e.By == "" {
		e.By = loginName()
	}
	if forArg != "" {
		d, err := parseForArg(forArg)
		if err != nil {
			return usageErr("--for: %v", err)
		}
		e.Expires = created.Add(d)
	}
	if err := e.Validate(); err != nil {
		return usageErr("%v", err)
	}
	c.entry = e
	return c, 0
}

// idName names what a kind's id is, for messages.
func idName(k revoke.Kind) string {
	switch k {
	case revoke.KindClient:
		return "client_id"
	case revoke.KindSubject:
		return "subject (sub)"
	}
	return "token fingerprint"
}

// parseForArg reads --for: a positive Go duration (90m, 24h) or a number
// of days (7d).
func parseForArg(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days > 100*365 {
			return 0, fmt.Errorf("%q: use a duration like 24h, 90m or 7d", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: use a duration like 24h, 90m or 7d", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: the duration must be positive", s)
	}
	return d, nil
}

// loginName is the operator's login, for --by's default ("" if unknown).
func loginName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// run connects to NATS as the admin and runs the command; it returns the
// exit code.
func (c *revokeCommand) run(ctx context.Context) int {
	fail := func(err error) int {
		fmt.Fprintf(c.stderr, "pdp revoke %s: %v\n", c.sub, err)
		return 1
	}
	nc, js, err := c.nats.connect(ctx, natsembed.RoleAdmin)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	switch c.sub {
	case "list":
		kv, err := revoke.OpenBucket(ctx, js, c.bucket, false, 0)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			if !c.asJSON {
				fmt.Fprintf(c.stdout, "no revocations (bucket %s does not exist yet)\n", c.bucket)
			}
			return 0
		}
		if err != nil {
			return fail(err)
		}
		entries, lerr := revoke.List(ctx, kv)
		if err := c.print(entries); err != nil {
			return fail(err)
		}
		if lerr != nil {
			return fail(fmt.Errorf("values that are not revocations (fix them or remove them by key): %w", lerr))
		}
		return 0
	case "remove":
		kv, err := revoke.OpenBucket(ctx, js, c.bucket, false, 0)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return fail(fmt.Errorf("%s %s is not revoked: bucket %s does not exist", c.kind, displayID(c.id), c.bucket))
		}
		if err != nil {
			return fail(err)
		}
		if err := revoke.Remove(ctx, kv, c.kind, c.id); err != nil {
			if errors.Is(err, revoke.ErrNotFound) {
				return fail(fmt.Errorf("%s %s is not revoked (pdp revoke list shows what is)", c.kind, displayID(c.id)))
			}
			return fail(err)
		}
		fmt.Fprintf(c.stdout, "removed the revocation of %s %s\n", c.kind, displayID(c.id))
		return 0
	}

	kv, err := revoke.OpenBucket(ctx, js, c.bucket, true, c.replicas)
	if err != nil {
		return fail(err)
	}
	e := c.entry
	if err := revoke.Put(ctx, kv, e); err != nil {
		return fail(err)
	}
	until := "until removed"
	if !e.Expires.IsZero() {
		until = "until " + e.Expires.Format(time.RFC3339)
	}
	fmt.Fprintf(c.stdout, "revoked %s %s %s", e.Kind, displayID(e.ID), until)
	if e.Reason != "" {
		fmt.Fprintf(c.stdout, ": %s", e.Reason)
	}
	fmt.Fprintln(c.stdout)
	return 0
}

// revokeTableFormat: kind, id, status, created, expires, by, reason.
const revokeTableFormat = "%-8s %-40s %-8s %-20s %-20s %-12s %s\n"

// listedEntry is one line of `pdp revoke list --json`.
type listedEntry struct {
	*revoke.Entry
	Active bool `json:"active"`
}

// print writes entries as a table or JSON lines.
func (c *revokeCommand) print(entries []*revoke.Entry) error {
	w := bufio.NewWriter(c.stdout)
	now := c.now()
	if c.asJSON {
		enc := json.NewEncoder(w)
		for _, e := range entries {
			if err := enc.Encode(listedEntry{Entry: e, Active: e.Active(now)}); err != nil {
				return err
			}
		}
		return w.Flush()
	}
	if len(entries) == 0 {
		fmt.Fprintln(w, "no revocations")
		return w.Flush()
	}
	fmt.Fprintf(w, revokeTableFormat, "KIND", "ID", "STATUS", "CREATED", "EXPIRES", "BY", "REASON")
	for _, e := range entries {
		status, expires := "active", "-"
		if !e.Active(now) {
			status = "expired"
		}
		if !e.Expires.IsZero() {
			expires = e.Expires.UTC().Format(time.RFC3339)
		}
		created := "-"
		if !e.Created.IsZero() {
			created = e.Created.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, revokeTableFormat, e.Kind, displayID(e.ID), status, created, expires, orDash(e.By), orDash(e.Reason))
	}
	return w.Flush()
}

// displayID is an id as a terminal may show it: as it is when it is
// printable without spaces, quoted (Go syntax) otherwise, so that a
// client_id chosen by an attacker cannot move the cursor or hide in the
// columns.
func displayID(id string) string {
	for _, r := range id {
		if !unicode.IsGraphic(r) || unicode.IsSpace(r) || r == '"' {
			return strconv.Quote(id)
		}
	}
	if id == "" {
		return `""`
	}
	return id
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
