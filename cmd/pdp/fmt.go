package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/format"
)

// runFmt formats Rego files as `opa fmt` does (OPA's own formatter, Rego
// v1), without building OPA's command-line tool.
func runFmt(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp fmt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: pdp fmt [--list] [--write] [--fail] [paths...]\n\nFormats Rego files with OPA's formatter (as `opa fmt`). Without --list or --write it\nprints the formatted source. Paths are files or directories (default: policies test/policies).")
		fs.PrintDefaults()
	}
	list := fs.Bool("list", false, "list the files whose formatting differs")
	write := fs.Bool("write", false, "rewrite the files whose formatting differs")
	fail := fs.Bool("fail", false, "exit with status 1 when a file's formatting differs")
	paths, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(paths) == 0 {
		if paths = defaultPolicyPaths(true); len(paths) == 0 {
			fmt.Fprintf(stderr, "pdp fmt: no %s or %s directory here: give the files or directories to format\n", defaultPolicyDir, defaultTestDir)
			return 2
		}
	}
	files, err := regoFiles(paths)
	if err != nil {
		fmt.Fprintln(stderr, "pdp fmt:", err)
		return 1
	}
	code = 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(stderr, "pdp fmt:", err)
			return 1
		}
		out, err := format.SourceWithOpts(f, src, format.Opts{})
		if err != nil {
			fmt.Fprintf(stderr, "pdp fmt: %s: %v\n", f, err)
			code = 1
			continue
		}
		same := bytes.Equal(src, out)
		switch {
		case *list:
			if !same {
				fmt.Fprintln(stdout, f)
			}
		case *write:
			if !same {
				if err := os.WriteFile(f, out, 0o644); err != nil {
					fmt.Fprintln(stderr, "pdp fmt:", err)
					return 1
				}
			}
		default:
			_, _ = stdout.Write(out)
		}
		if !same && *fail {
			code = 1
		}
	}
	return code
}

// regoFiles are the .rego files of paths (files, or directories walked).
func regoFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(path, ".rego") {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}
