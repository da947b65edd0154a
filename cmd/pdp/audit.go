package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/natsembed"
)

const auditUsage = `Usage:
  pdp audit tail   [--follow] [filters] [--json]     recent events (last hour unless --since), then follow
  pdp audit export --since 24h [--until T] [filters]  events as JSON lines, e.g. > events.jsonl

Filters: --resource R (resource key or URI), --tool T, --outcome O[,O...],
         --subject S (the user, "sub"), --client C (client_id), --method M
Times:   --since/--until take a duration before now (24h, 90m, 7d), an RFC 3339
         time (2025-06-01T10:00:00Z) or a date (2025-06-01).
NATS:    --nats URL[,URL...] (default: the embedded server of a running dev
         server, found in <data-dir>/nats.url), --creds, --nkey, --tls-ca,
         --tls-cert, --tls-key, --stream, --prefix.
`

// runAudit implements `pdp audit tail|export`.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "tail", "export":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, auditUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "pdp audit: unknown command %q\n\n%s", sub, auditUsage)
		return 2
	}
	export := sub == "export"

	fs := flag.NewFlagSet("pdp audit "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, auditUsage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	natsURL := fs.String("nats", "", "NATS URL(s), comma-separated (default: read <data-dir>/nats.url)")
	dataDir := fs.String("data-dir", config.DefaultDataDir, "data directory of a running dev server (to find its embedded NATS)")
	creds := fs.String("creds", "", "NATS credentials file")
	nkey := fs.String("nkey", "", "NATS NKey seed file")
	tlsCA := fs.String("tls-ca", "", "CA certificate file to verify the NATS servers")
	tlsCert := fs.String("tls-cert", "", "client certificate file")
	tlsKey := fs.String("tls-key", "", "client key file")
	stream := fs.String("stream", auditsink.DefaultStream, "JetStream stream")
	prefix := fs.String("prefix", auditsink.DefaultSubjectPrefix, "subject prefix")
	var f auditsink.Filter
	fs.StringVar(&f.Resource, "resource", "", "resource key or resource URI")
	fs.StringVar(&f.Tool, "tool", "", "target: tool or prompt name, or resource URI")
	fs.StringVar(&f.Outcome, "outcome", "", "allow, deny, challenge or filtered (comma-separated for several)")
	fs.StringVar(&f.Subject, "subject", "", "token subject (sub): the user")
	fs.StringVar(&f.ClientID, "client", "", "client_id: the agent or app")
	fs.StringVar(&f.Method, "method", "", "MCP method, e.g. tools/call")
	defSince := "1h"
	if export {
		defSince = "24h"
	}
	since := fs.String("since", defSince, "start: duration ago, RFC 3339 time or date")
	until := fs.String("until", "", "end: duration ago, RFC 3339 time or date (default: now)")
	asJSON := fs.Bool("json", export, "JSON lines instead of a table")
	var follow bool
	if !export {
		fs.BoolVar(&follow, "follow", false, "keep printing new events until interrupted")
		fs.BoolVar(&follow, "f", false, "short for --follow")
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pdp audit %s: unexpected arguments %q\n", sub, fs.Args())
		return 2
	}
	now := time.Now()
	var err error
	if f.Since, err = auditsink.ParseTimeArg(*since, now); err != nil {
		fmt.Fprintf(stderr, "pdp audit %s: --since: %v\n", sub, err)
		return 2
	}
	if f.Until, err = auditsink.ParseTimeArg(*until, now); err != nil {
		fmt.Fprintf(stderr, "pdp audit %s: --until: %v\n", sub, err)
		return 2
	}
	if !f.Until.IsZero() && f.Until.Before(f.Since) {
		fmt.Fprintf(stderr, "pdp audit %s: --until is before --since\n", sub)
		return 2
	}

	url := *natsURL
	if url == "" {
		if url, err = natsembed.ReadURLFile(*dataDir); err != nil {
			fmt.Fprintf(stderr, "pdp audit %s: %v\n(pass --nats nats://host:4222 for an external NATS)\n", sub, err)
			return 1
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nc, err := auditsink.Connect(cctx, url, auditsink.ConnectOptions{
		Name: "pdp audit " + sub, CredsFile: *creds, NKeySeedFile: *nkey,
		TLSCAFile: *tlsCA, TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey,
	})
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "pdp audit %s: %v\n", sub, err)
		return 1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintf(stderr, "pdp audit %s: %v\n", sub, err)
		return 1
	}

	w := bufio.NewWriterSize(stdout, 64<<10)
	if !*asJSON {
		if err := auditsink.WriteTableHeader(w); err != nil {
			fmt.Fprintf(stderr, "pdp audit %s: %v\n", sub, err)
			return 1
		}
	}
	n := 0
	err = auditsink.Read(ctx, js, *stream, *prefix, f, follow, func(ev *auditsink.Event) error {
		n++
		var werr error
		if *asJSON {
			werr = auditsink.WriteJSONLine(w, ev)
		} else {
			werr = auditsink.WriteTableRow(w, ev)
		}
		if werr == nil && follow {
			werr = w.Flush()
		}
		return werr
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "pdp audit %s: %v\n", sub, err)
		return 1
	}
	if export {
		fmt.Fprintf(stderr, "pdp audit export: %d events\n", n)
	}
	return 0
}
