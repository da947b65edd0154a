// Package coretest builds the real decision core for tests: the default
// (or a given) policy, a real token verifier against a real development
// issuer served over HTTP, and core.New, wired as the server wires them.
// It is imported by tests only (external test packages: core_test,
// api_test, ...), never by the packages it imports.
package coretest

import (
	"context"
	"io/fs"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/policies"
)

const (
	// Resource is the URI of the one protected resource the core decides for.
	Resource = "https://mcp.example.com/mcp"
	// ResourceKey names Resource in audit subjects.
	ResourceKey = "mcp_example_com_mcp"
	// MetadataURL is Resource's protected resource metadata document, named
	// in its challenges.
	MetadataURL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
)

// Options say how a test's core differs from the default one: the default
// policy, no audit, the core's default decision timeout, a verifier that
// trusts the dev issuer and discovers its keys from its metadata.
type Options struct {
	// Policy is the policy the core decides with; nil is the default policy
	// (DefaultPolicy).
	Policy *decision.Policy
	// Auditor receives one event per decision; nil audits nothing.
	Auditor core.Auditor
	// AuditArguments and Redact are the resource's: record call arguments
	// in audit events, with these fields redacted.
	AuditArguments bool
	Redact         []string
	// DecisionTimeout bounds a decision (0 = core.DefaultDecisionTimeout).
	DecisionTimeout time.Duration
	// TokenCacheSize bounds the verified-token cache (0 =
	// token.DefaultCacheEntries; negative = no cache).
	TokenCacheSize int
	// KeySets configures the signing-key sets the verifier takes keys from.
	KeySets token.KeySetsConfig
	// RefreshKeys runs the key sets' background refresh (KeySets.Run), as
	// the server does, until the test ends.
	RefreshKeys bool
	// Issuer is the `iss` the verifier requires; "" is the dev issuer's
	// URL. With JWKSURI it points the verifier at another key server (one
	// that misbehaves, say).
	Issuer string
	// JWKSURI is where the verifier fetches keys; "" discovers it from the
	// issuer's metadata.
	JWKSURI string
	// Introspection, when set, introspects the tokens that are not JWTs of
	// the issuer.
	Introspection *token.IntrospectionConfig
	// Core, when set, edits the core's options last, e.g. to deny unaudited
	// decisions or to swap the engine.
	Core func(*core.Options)
}

// Env is a running decision core and what a test needs to talk to it.
type Env struct {
	// Service is the decision core.
	Service *core.Service
	// Issuer is the dev issuer whose tokens the verifier accepts (unless
	// Options.Issuer named another); it is closed when the test ends.
	Issuer *devissuertest.Server
	// Verifier is Resource's token verifier.
	Verifier *token.Verifier
	// Keys are the verifier's signing-key sets.
	Keys *token.KeySets
	// Cache is the verifier's verified-token cache, nil without one.
	Cache *token.Cache
}

// New builds the real decision core for Resource as o says, or fails the
// test. Whatever it starts stops when the test ends.
func New(tb testing.TB, o Options) *Env {
	tb.Helper()
	iss := devissuertest.New(tb, "ES256")
	pol := o.Policy
	if pol == nil {
		pol = DefaultPolicy(tb)
	}
	keys := token.NewKeySets(o.KeySets)
	if o.RefreshKeys {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); keys.Run(ctx) }()
		tb.Cleanup(func() { cancel(); <-done })
	}
	var cache *token.Cache
	if o.TokenCacheSize >= 0 {
		cache = token.NewCache(o.TokenCacheSize)
	}
	issuer := o.Issuer
	if issuer == "" {
		issuer = iss.URL
	}
	v, err := token.NewVerifier(token.Config{Resource: Resource, Issuer: issuer, JWKSURI: o.JWKSURI, Introspection: o.Introspection}, keys, cache, nil)
	if err != nil {
		tb.Fatalf("coretest: verifier: %v", err)
	}
	co := core.Options{
		Engine: decision.NewEngine(pol),
		Resources: []*core.Resource{{
			URI: Resource, Key: ResourceKey, Verifier: v,
			Challenge:      stepup.Resource{URI: Resource, MetadataURL: MetadataURL, Strategy: stepup.Operation},
			AuditArguments: o.AuditArguments, Redact: o.Redact,
		}},
		Auditor:         o.Auditor,
		DecisionTimeout: o.DecisionTimeout,
	}
	if o.Core != nil {
		o.Core(&co)
	}
	s, err := core.New(co)
	if err != nil {
		tb.Fatalf("coretest: core: %v", err)
	}
	return &Env{Service: s, Issuer: iss, Verifier: v, Keys: keys, Cache: cache}
}

// Bearer mints a token of the dev issuer as an Authorization value
// ("Bearer ..."); the audience defaults to Resource and the subject to
// "alice".
func (e *Env) Bearer(tb testing.TB, o devissuer.MintOptions) string {
	tb.Helper()
	if o.Audience == nil {
		o.Audience = []string{Resource}
	}
	if o.Subject == "" {
		o.Subject = "alice"
	}
	return "Bearer " + e.Issuer.Mint(tb, o)
}

// DefaultPolicy loads the project's default policy (package policies) with
// opts, or fails the test.
func DefaultPolicy(tb testing.TB, opts ...decision.Options) *decision.Policy {
	tb.Helper()
	p, err := decision.Load(context.Background(), decision.Source{FS: policies.FS}, opts...)
	if err != nil {
		tb.Fatalf("coretest: default policy: %v", err)
	}
	return p
}

// DefaultPolicyDir writes the default policy's Rego modules with data as
// its data.yaml to a temporary directory and returns it: the default
// policy over a test's catalog, as a policy.path.
func DefaultPolicyDir(tb testing.TB, data string) string {
	tb.Helper()
	dir := tb.TempDir()
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".rego" {
			return err
		}
		b, err := policies.FS.ReadFile(p)
		if err == nil {
			testkit.WriteFile(tb, filepath.Join(dir, filepath.FromSlash(p)), string(b))
		}
		return err
	})
	if err != nil {
		tb.Fatalf("coretest: default policy: %v", err)
	}
	testkit.WriteFile(tb, filepath.Join(dir, "data.yaml"), data)
	return dir
}

// PolicyFiles writes files (slash-separated name → content) to a
// temporary directory and loads it as a policy with opts, or fails the
// test.
func PolicyFiles(tb testing.TB, files map[string]string, opts ...decision.Options) *decision.Policy {
	tb.Helper()
	dir := tb.TempDir()
	for name, content := range files {
		testkit.WriteFile(tb, filepath.Join(dir, filepath.FromSlash(name)), content)
	}
	p, err := decision.Load(context.Background(), decision.Source{Path: dir}, opts...)
	if err != nil {
		tb.Fatalf("coretest: policy: %v", err)
	}
	return p
}
