package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/mcp-pdp/pdp/internal/catalog"
)

// parseFlags parses args into fs with the habits of OPA's and NATS's
// commands: flags may follow positional arguments (`pdp test policies
// -v`; after "--" everything is positional), -h and --help print the
// command's usage on stdout and end it with status 0, and an unknown or
// malformed flag is said on stderr with the closest flag defined and the
// way to list them, status 2. ok is false when the command must end now,
// with code.
//
// Every fs.Usage writes to fs.Output(), which parseFlags points at stdout
// for help.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (pos []string, code int, ok bool) {
	usage := fs.Usage
	fs.SetOutput(io.Discard) // flag's own messages: parseFlags says them
	fs.Usage = func() {}
	defer func() { fs.Usage = usage }()
	for {
		if err := fs.Parse(args); err != nil {
			code := flagError(fs, err, usage, stdout, stderr)
			fs.SetOutput(stderr)
			return nil, code, false
		}
		rest := fs.Args()
		// fs.Parse stops at the first positional argument, or after "--"
		// (which it drops): tell the two apart by what preceded rest.
		consumed := args[:len(args)-len(rest)]
		if len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			fs.SetOutput(stderr)
			return append(pos, rest...), 0, true
		}
		if len(rest) == 0 {
			fs.SetOutput(stderr)
			return pos, 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagError reports a parse error of fs (or prints its usage for -h) and
// returns the exit status.
func flagError(fs *flag.FlagSet, err error, usage func(), stdout, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		if usage != nil {
			usage()
		} else {
			fs.PrintDefaults()
		}
		return 0
	}
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), flagHint(fs, err))
	fmt.Fprintf(stderr, "Run '%s -h' for its flags.\n", fs.Name())
	return 2
}

// flagHint is err with the defined flag closest to an unknown one.
func flagHint(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, "flag provided but not defined: -")
	if !ok {
		return msg
	}
	name = strings.TrimLeft(name, "-")
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	best := ""
	if len(name) >= 3 { // a letter or two: anything is near
		best = catalog.Nearest(name, names, 2)
	}
	for _, n := range names { // or one it begins
		if best == "" && len(name) >= 2 && strings.HasPrefix(n, name) {
			best = n
		}
	}
	out := "unknown flag " + dashed(name)
	if best != "" {
		out += fmt.Sprintf(" (did you mean %s?)", dashed(best))
	}
	if len(names) > 0 {
		for i, n := range names {
			names[i] = dashed(n)
		}
		out += "; its flags are " + strings.Join(names, ", ")
	}
	return out
}

// dashed is a flag's name as its usage writes it: -v, --strict.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}
