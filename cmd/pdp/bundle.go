package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/policysource"
)

const bundleUsage = `Usage:
  pdp bundle build [paths...] -o bundles/mcp-pdp.tar.gz [--revision R] [--signing-key key.pem ...]
  pdp bundle verify bundles/mcp-pdp.tar.gz (--verification-key pub.pem [...] | --config pdp.yaml)

build   compiles policy directories into an OPA bundle (*_test.rego left out),
        optionally signed (OPA bundle signing, .signatures.json), after
        checking that the PDP would serve it. Paths default to: policies
verify  checks a bundle's signature, compiles it and validates its data,
        exactly as the PDP does before serving it.
`

func runBundle(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, bundleUsage)
		return 2
	}
	switch args[0] {
	case "build":
		return runBundleBuild(ctx, args[1:], stdout, stderr)
	case "verify":
		return runBundleVerify(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, bundleUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "pdp bundle: unknown command %q\n\n%s", args[0], bundleUsage)
		return 2
	}
}

func runBundleBuild(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp bundle build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: pdp bundle build [paths...] -o bundles/mcp-pdp.tar.gz [flags]")
		fs.PrintDefaults()
	}
	out := fs.String("o", "", "output bundle file (.tar.gz); required")
	revision := fs.String("revision", "", "revision written to the manifest (e.g. the git commit); default: the source .manifest's, else the PDP uses a content hash")
	key := fs.String("signing-key", "", "sign with this PEM private key (RS*, PS*, ES*) or HMAC secret file (HS*)")
	alg := fs.String("signing-alg", "RS256", "signature algorithm")
	keyID := fs.String("key-id", "", "key id written to the signature (default \"default\")")
	scope := fs.String("scope", "", "scope written to the signature (verifiers may require it)")
	claims := fs.String("claims-file", "", "extra JSON claims for the signature (as opa build --claims-file)")
	paths, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if *out == "" {
		fmt.Fprintln(stderr, "pdp bundle build: -o is required")
		return 2
	}
	if len(paths) == 0 {
		paths = []string{"policies"}
	}
	built, err := policysource.Build(ctx, policysource.BuildOptions{
		Paths: paths, Revision: *revision, SigningKey: *key, SigningAlg: *alg, KeyID: *keyID, Scope: *scope, ClaimsFile: *claims,
	})
	if err != nil {
		fmt.Fprintln(stderr, "pdp", err)
		return 1
	}
	for _, w := range built.Warnings {
		fmt.Fprintln(stderr, w)
	}
	if err := policysource.WriteFileAtomic(*out, built.Archive); err != nil {
		fmt.Fprintln(stderr, "pdp bundle build:", err)
		return 1
	}
	signed := "unsigned"
	if *key != "" {
		id := *keyID
		if id == "" {
			id = policysource.DefaultKeyID
		}
		signed = fmt.Sprintf("signed (%s, key id %q)", *alg, id)
	}
	fmt.Fprintf(stdout, "wrote %s: revision %s, %d modules, %s, %d bytes\n", *out, built.Revision, len(built.Bundle.Modules), signed, len(built.Archive))
	return 0
}

func runBundleVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp bundle verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: pdp bundle verify <bundle.tar.gz | dir> (--verification-key pub.pem | --config pdp.yaml) [flags]")
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "take the key from policy.verification of this configuration")
	key := fs.String("verification-key", "", "PEM public key (or HMAC secret file) to verify with")
	alg := fs.String("alg", "RS256", "signature algorithm of the key")
	keyID := fs.String("key-id", "", "key id (default \"default\")")
	scope := fs.String("scope", "", "required signature scope")
	paths, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(paths) != 1 {
		fmt.Fprintln(stderr, "pdp bundle verify: give one bundle file or directory")
		return 2
	}
	var (
		vc  *bundle.VerificationConfig
		err error
	)
	switch {
	case *key != "" && *cfgPath != "":
		fmt.Fprintln(stderr, "pdp bundle verify: give --verification-key or --config, not both")
		return 2
	case *key != "":
		vc, err = policysource.Verification(*key, *keyID, *alg, *scope)
	case *cfgPath != "":
		var cfg *config.Config
		if cfg, err = config.Load(*cfgPath); err == nil {
			v := cfg.Policy.Verification
			if !v.Enabled() {
				err = fmt.Errorf("%s: policy.verification.key_file is not set", *cfgPath)
			} else {
				vc, err = policysource.Verification(v.KeyFile, v.KeyID, v.Algorithm, v.Scope)
			}
		}
	default:
		fmt.Fprintln(stderr, "pdp bundle verify: give --verification-key or --config")
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "pdp bundle verify:", err)
		return 1
	}
	b, err := policysource.Verify(paths[0], vc)
	if err != nil {
		fmt.Fprintln(stderr, "pdp bundle verify:", err)
		return 1
	}
	p, err := decision.Prepare(ctx, b, paths[0], decision.Options{CacheSize: -1})
	if err != nil {
		fmt.Fprintln(stderr, "pdp bundle verify: signature ok, but", err)
		return 1
	}
	for _, w := range p.Warnings() {
		fmt.Fprintln(stderr, w)
	}
	files := make([]string, 0, len(b.Modules))
	for _, m := range b.Modules {
		files = append(files, m.Path)
	}
	sort.Strings(files)
	fmt.Fprintf(stdout, "%s: signature ok, compiles, data valid; revision %s; modules: %s\n", paths[0], p.Revision(), strings.Join(files, " "))
	return 0
}
