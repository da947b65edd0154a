package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/natsembed"
)

const auditVerifyUsage = `Usage:
  pdp audit verify [--public-key FILE]... [--allow-expired] [--json] [NATS flags]

Reads every event and checkpoint of the audit stream and checks each PDP
instance's chain: no event removed (gap), altered (modified), moved
(reorder) or claimed twice (duplicate), and every checkpoint signed by a
trusted key. Prints per chain the events checked and every finding; exits 1
when there is any finding, 2 on a usage error, 3 when the audit cannot be read.

--public-key names a trusted checkpoint key (PEM; repeatable, one per PDP
key). Default: <data-dir>/audit-signing.pub of a dev server, when present.
`

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// runAuditVerify implements `pdp audit verify`.
func runAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditVerifyUsage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		nf                   natsFlags
		keys                 stringList
		allowExpired, asJSON bool
		storeDB              string
	)
	nf.register(fs, "pdp audit verify")
	fs.StringVar(&storeDB, "store", "", "verify the SQL audit store instead of the stream: a file, sqlite:PATH or postgres://... (\"default\": <data-dir>/audit.db)")
	fs.Var(&keys, "public-key", "trusted checkpoint public key file (repeatable)")
	fs.BoolVar(&allowExpired, "allow-expired", false, "accept chains whose first events expired from the stream (audit.max_age)")
	fs.BoolVar(&asJSON, "json", false, "the report as JSON")
	if code, ok := parseFlagsOnly(fs, args, stdout, stderr); !ok {
		return code
	}
	if len(keys) == 0 {
		if def := auditsink.PublicKeyPath(filepath.Join(nf.dataDir, "audit-signing.key")); fileExists(def) {
			keys = append(keys, def)
		}
	}
	opts := auditsink.VerifyOptions{AllowExpired: allowExpired}
	for _, k := range keys {
		pub, err := auditsink.LoadPublicKey(k)
		if err != nil {
			fmt.Fprintf(stderr, "pdp audit verify: --public-key: %v\n", err)
			return 2
		}
		opts.Keys = append(opts.Keys, pub)
	}
	var rep *auditsink.Report
	var err error
	if storeDB != "" {
		rep, err = verifyStore(ctx, storeDB, nf.dataDir, opts)
	} else {
		rep, err = verifyStream(ctx, &nf, opts)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pdp audit verify: %v\n", err)
		return 3
	}
	return printVerifyReport(rep, asJSON, stdout, stderr)
}

// verifyStream reads the stream into a Verifier.
func verifyStream(ctx context.Context, nf *natsFlags, opts auditsink.VerifyOptions) (*auditsink.Report, error) {
	nc, js, err := nf.connect(ctx, natsembed.RoleReader)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	v := auditsink.NewVerifier(opts)
	err = auditsink.ReadRaw(ctx, js, nf.stream, func(_ string, seq uint64, data []byte) error {
		v.Add(data, "stream sequence "+strconv.FormatUint(seq, 10))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return v.Report(), nil
}

// printVerifyReport prints rep and returns the exit code: 1 on findings.
func printVerifyReport(rep *auditsink.Report, asJSON bool, stdout, stderr io.Writer) int {
	if asJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "pdp audit verify: %v\n", err)
			return 3
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprint(stdout, auditsink.FormatReport(rep))
	}
	if !rep.OK() {
		return 1
	}
	return 0
}
