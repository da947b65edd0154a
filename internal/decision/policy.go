package decision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/mcp-pdp/pdp/internal/catalog"
)

// Query is the single entry point every policy must define.
const Query = "data.mcp.authz.decision"

// Source says where a policy comes from: a directory or bundle file on disk
// (Path), or a directory inside FS (the policy embedded in the binary).
type Source struct {
	Path string
	FS   fs.FS
	// Verification, when set, requires a valid bundle signature (.signatures.json).
	Verification *bundle.VerificationConfig
}

// String names the source in messages: its path, or "embedded" (with the
// directory inside FS) for a policy in an FS.
func (s Source) String() string {
	if s.FS != nil {
		if s.Path == "" || s.Path == "." {
			return "embedded"
		}
		return "embedded:" + s.Path
	}
	return s.Path
}

// Policy is a compiled, prepared policy. It is immutable and safe for
// concurrent use.
type Policy struct {
	query    rego.PreparedEvalQuery
	revision string
	source   string
	bundle   *bundle.Bundle
	// cache memoizes results by input; nil when disabled or when the
	// policy calls a non-deterministic built-in (named in nondeterministic).
	cache            *resultCache
	lists            *listMemo  // filtered lists, for the list filter (nil: no caches)
	calls            *callCache // in front of cache for single-target requests
	nondeterministic string
	// readsArgs is false when no rule can read call arguments.
	readsArgs bool
	// readsItems is false when no rule can read input.items (lists are
	// then given as input.names only).
	readsItems bool
	// readsBudget is false when no rule can read input.budget.
	readsBudget bool
	// subjects, when set, lets the cache key a token's subject on what the
	// policy's lookups of it in data find (subjectLookups).
	subjects *subjectKeying
	// claimKeys are the only token claims a rule can read; nil: any claim.
	claimKeys *claimKeys
	// warnings are data problems that did not refuse the policy.
	warnings []Problem
	// nameTerms are the catalog index's name terms by name (read-only):
	// listed names found here are given to the policy as these terms.
	nameTerms map[string]*ast.Term
	// record, when set (Recording), keeps every input evaluated.
	record *recorder
}

// ReadsBudget reports whether a rule of the policy can read input.budget
// (a conservative static check): only then does the PDP look up what is
// left of a call's quota and decide the call again with it.
func (p *Policy) ReadsBudget() bool { return p.readsBudget }

// Revision is the bundle manifest revision, or a content hash
// ("sha256:<12 hex>") for directories without one.
func (p *Policy) Revision() string { return p.revision }

// Source names where the policy was loaded from.
func (p *Policy) Source() string { return p.source }

// Bundle returns the loaded bundle (modules and data).
func (p *Policy) Bundle() *bundle.Bundle { return p.bundle }

// testFile reports Rego test files, which are never part of a served policy.
func testFile(abspath string, info fs.FileInfo, depth int) bool {
	return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
}

// ReadBundle loads src as an OPA bundle (directory tree or .tar.gz), without
// compiling it.
func ReadBundle(src Source) (*bundle.Bundle, error) {
	fl := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).WithFilter(testFile)
	if src.FS != nil {
		fl = fl.WithFS(src.FS)
	}
	if src.Verification != nil {
		fl = fl.WithBundleVerificationConfig(src.Verification)
	} else {
		fl = fl.WithSkipBundleVerification(true)
	}
	path := src.Path
	if path == "" {
		path = "."
	}
	b, err := fl.AsBundle(path)
	if err != nil {
		return nil, policyError(src.String(), "load", err)
	}
	return b, nil
}

// Options tune a prepared policy.
type Options struct {
	// CacheSize bounds the decision cache in weight units (one per decision,
	// one per list item, eight per token); 0 = DefaultCacheSize,
	// negative disables it. The cache is only used when the policy is
	// deterministic (no rule calls a non-deterministic built-in).
	CacheSize int
	// Strict compiles with OPA's strict mode: unused variables and imports
	// and deprecated built-ins are errors (pdp check --strict).
	Strict bool
	// Locate, when set, finds the data files and lines of data paths for
	// the messages of data problems; it is called only when there are
	// some. Load sets it from the Source.
	Locate func() *DataLocations
}

// DefaultCacheSize is the decision cache size when Options.CacheSize is 0,
// in weight units (one per decision, one per list item, eight per token).
const DefaultCacheSize = 16384

// Load reads, compiles and prepares the policy at src.
func Load(ctx context.Context, src Source, opts ...Options) (*Policy, error) {
	b, err := ReadBundle(src)
	if err != nil {
		return nil, err
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Locate == nil {
		o.Locate = func() *DataLocations {
			l, _ := LocateSource(src) // best effort: problems keep their data path
			return l
		}
	}
	return Prepare(ctx, b, src.String(), o)
}

// Prepare compiles a loaded bundle and prepares the decision query. The
// policy's data is checked against the catalog format (catalog.Validate):
// errors refuse the policy (a *PolicyError at stage "validate"), warnings
// are kept (Policy.Warnings). The catalog index (catalog.WithIndex) is
// added to the data the policy is evaluated with; b is not modified.
func Prepare(ctx context.Context, b *bundle.Bundle, source string, opts ...Options) (*Policy, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	return prepare(ctx, b, source, o, true)
}

// prepare is Prepare; without index, data.pdp.catalog_index is left out
// and the default policy decides list items one by one, as under pdp test
// (the tests compare the two).
func prepare(ctx context.Context, b *bundle.Bundle, source string, o Options, index bool) (*Policy, error) {
	if len(b.Modules) == 0 {
		return nil, fmt.Errorf("policy %s: no Rego modules found", source)
	}
	served := b
	var nameTerms map[string]*ast.Term
	if index {
		indexed := *b
		indexed.Data, nameTerms = catalog.WithIndex(b.Data)
		served = &indexed
	}
	r := rego.New(
		rego.Query(Query),
		rego.ParsedBundle("mcp", served),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StoreReadAST(true),
		rego.StrictBuiltinErrors(false),
		rego.Strict(o.Strict),
	)
	pq, err := r.PrepareForEval(ctx)
	if err != nil {
		return nil, policyError(source, "compile", err)
	}
	if !definesDecision(b) {
		return nil, fmt.Errorf("policy %s: no rule defines %s (package mcp.authz, rule decision)", source, Query)
	}
	problems := catalog.Validate(b.Data)
	if len(problems) > 0 && o.Locate != nil {
		o.Locate().LocateProblems(problems)
	}
	var warnings []Problem
	for _, pr := range problems {
		if !pr.Warning {
			return nil, &PolicyError{Source: source, Stage: "validate", Problems: problems}
		}
		warnings = append(warnings, pr)
	}
	rev := b.Manifest.Revision
	if rev == "" {
		rev = contentRevision(b)
	}
	p := &Policy{query: pq, revision: rev, source: source, bundle: b, warnings: warnings, nameTerms: nameTerms}
	mods := make([]*ast.Module, 0, len(b.Modules))
	for _, m := range b.Modules {
		mods = append(mods, m.Parsed)
	}
	p.nondeterministic = nondeterministicCall(mods)
	p.readsArgs = readsArguments(mods)
	p.claimKeys = claimsRead(mods)
	p.readsItems = readsItems(mods)
	p.readsBudget = readsBudget(mods)
	if paths, ok := subjectLookups(mods); ok {
		p.subjects = &subjectKeying{paths: paths, data: served.Data}
	}
	if o.CacheSize >= 0 && p.nondeterministic == "" {
		size := o.CacheSize
		if size == 0 {
			size = DefaultCacheSize
		}
		p.cache = newResultCache(size)
		p.calls = newCallCache()
		p.lists = &listMemo{m: map[ListMemoKey]map[string]any{}}
	}
	return p, nil
}

func definesDecision(b *bundle.Bundle) bool {
	want := ast.MustParseRef("data.mcp.authz")
	for _, m := range b.Modules {
		if m.Parsed == nil || !m.Parsed.Package.Path.Equal(want) {
			continue
		}
		for _, r := range m.Parsed.Rules {
			if r.Head.Ref().String() == "decision" {
				return true
			}
		}
	}
	return false
}

// ContentHash identifies the content (modules and data) of a bundle:
// "sha256:<12 hex>". Equal content has an equal hash.
func ContentHash(b *bundle.Bundle) string { return contentRevision(b) }

// contentRevision hashes module sources and data so that the same policy
// content always has the same revision, whatever the path it was loaded
// from (policies, ./policies, /abs/policies/, the embedded copy, a
// bundle): the modules are hashed by their source alone, in the order of
// their hashes, not by their file names.
func contentRevision(b *bundle.Bundle) string {
	sums := make([][sha256.Size]byte, len(b.Modules))
	for i, m := range b.Modules {
		sums[i] = sha256.Sum256(m.Raw)
	}
	sort.Slice(sums, func(i, j int) bool { return bytes.Compare(sums[i][:], sums[j][:]) < 0 })
	h := sha256.New()
	for _, s := range sums {
		h.Write(s[:])
	}
	data, _ := json.Marshal(b.Data) // maps marshal with sorted keys
	h.Write(data)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:12]
}

// ErrNoDecision is returned when the policy leaves the decision undefined.
var ErrNoDecision = errors.New("policy returned no decision (data.mcp.authz.decision is undefined)")
