package policysource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"

	"github.com/mcp-pdp/pdp/internal/decision"
)

// BuildOptions describe a bundle to build (`pdp bundle build`).
type BuildOptions struct {
	// Paths are policy directories (bundle roots) or files; *_test.rego files
	// are left out.
	Paths []string
	// Revision is written to the manifest; empty keeps the revision of a
	// .manifest in the sources, if any.
	Revision string
	// SigningKey is a PEM private key file (RS*, PS*, ES*) or an HMAC secret
	// file (HS*); empty builds an unsigned bundle.
	SigningKey string
	// SigningAlg defaults to RS256.
	SigningAlg string
	// KeyID is written to the signature (default "default").
	KeyID string
	// Scope is written to the signature; verifiers configured with a scope
	// accept only signatures with the same scope.
	Scope string
	// ClaimsFile holds extra JSON claims for the signature (as `opa build
	// --claims-file`); it may not be combined with Scope.
	ClaimsFile string
}

// Built is the result of Build.
type Built struct {
	// Archive is the bundle (.tar.gz).
	Archive []byte
	Bundle  *bundle.Bundle
	// Revision the PDP will report for it.
	Revision string
	// Warnings are data problems that do not refuse the bundle.
	Warnings []decision.Problem
}

// Build compiles the sources with OPA's compiler into an OPA bundle,
// optionally signed (OPA bundle signing: .signatures.json), and checks that
// the PDP would serve it: it defines data.mcp.authz.decision and its data is
// a valid catalog. Nothing is written when it would not be served.
func Build(ctx context.Context, o BuildOptions) (*Built, error) {
	if len(o.Paths) == 0 {
		return nil, errors.New("bundle build: no source paths")
	}
	var out bytes.Buffer
	c := compile.New().
		WithRegoVersion(ast.RegoV1).
		WithPaths(o.Paths...).
		WithAsBundle(true).
		WithFilter(skipTests).
		WithOutput(&out)
	if o.Revision != "" {
		c = c.WithRevision(o.Revision)
	}
	if o.SigningKey != "" {
		if o.Scope != "" && o.ClaimsFile != "" {
			return nil, errors.New("bundle build: give the scope in the claims file, not both --scope and --claims-file")
		}
		claims := o.ClaimsFile
		if o.Scope != "" {
			f, err := scopeClaims(o.Scope)
			if err != nil {
				return nil, err
			}
			defer os.Remove(f)
			claims = f
		}
		keyID := o.KeyID
		if keyID == "" {
			keyID = DefaultKeyID
		}
		if _, err := os.Stat(o.SigningKey); err != nil {
			return nil, fmt.Errorf("bundle build: signing key: %w", err)
		}
		c = c.WithBundleSigningConfig(bundle.NewSigningConfig(o.SigningKey, o.SigningAlg, claims)).
			WithBundleVerificationKeyID(keyID)
	} else if o.Scope != "" || o.ClaimsFile != "" || o.KeyID != "" {
		return nil, errors.New("bundle build: --scope, --claims-file and --key-id need --signing-key")
	}
	if err := c.Build(ctx); err != nil {
		return nil, fmt.Errorf("bundle build: %w", explainBuild(err))
	}
	b := c.Bundle()
	var locate func() *decision.DataLocations
	if len(o.Paths) == 1 {
		locate = func() *decision.DataLocations {
			l, _ := decision.LocateSource(decision.Source{Path: o.Paths[0]})
			return l
		}
	}
	p, err := decision.Prepare(ctx, b, strings.Join(o.Paths, ","), decision.Options{CacheSize: -1, Locate: locate})
	if err != nil {
		return nil, fmt.Errorf("bundle build: %w", err)
	}
	return &Built{Archive: out.Bytes(), Bundle: b, Revision: p.Revision(), Warnings: p.Warnings()}, nil
}

// Verify reads a bundle (file or directory) and checks its signature with
// vc, as the PDP does before serving it.
func Verify(path string, vc *bundle.VerificationConfig) (*bundle.Bundle, error) {
	b, err := decision.ReadBundle(decision.Source{Path: path, Verification: vc})
	if err != nil {
		return nil, explainDownload(err)
	}
	return b, nil
}

func skipTests(_ string, info fs.FileInfo, _ int) bool {
	return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
}

func scopeClaims(scope string) (string, error) {
	f, err := os.CreateTemp("", "pdp-claims-*.json")
	if err != nil {
		return "", fmt.Errorf("bundle build: %w", err)
	}
	defer f.Close()
	if err := json.NewEncoder(f).Encode(map[string]string{"scope": scope}); err != nil {
		return "", fmt.Errorf("bundle build: %w", err)
	}
	return f.Name(), nil
}

// explainBuild turns compiler errors into the PDP's problem list (file:line
// and a hint).
func explainBuild(err error) error {
	var ae ast.Errors
	if errors.As(err, &ae) {
		return decision.NewPolicyError("sources", "compile", err)
	}
	return err
}

// WriteFileAtomic writes data to path through a temporary file and a
// rename, so that a watcher never sees half a bundle.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
