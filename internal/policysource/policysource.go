// Package policysource delivers policy bundles from where they live: a
// directory, a bundle file, an http(s) bundle server, or the policy embedded
// in the binary. It reads the first bundle on demand (Fetch) and then watches
// for new ones (Run): files are polled for content changes, bundle URLs are
// polled with ETag/If-None-Match and exponential backoff after failures.
// Signatures are verified when a verification config is given; a bundle that
// cannot be read or verified is reported as an error and never delivered.
//
// The bundle format, downloads and signatures are OPA's own code (v1/bundle,
// v1/download, v1/plugins/rest); compiling and activating a delivered bundle
// is the caller's job (cmd/pdp swaps it into the decision engine).
package policysource

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/mcp-pdp/pdp/internal/decision"
)

// Kind is what a source is.
type Kind string

const (
	KindEmbedded  Kind = "embedded"
	KindDirectory Kind = "directory"
	KindFile      Kind = "file"
	KindURL       Kind = "url"
)

// Defaults for Options.
const (
	DefaultMinRetry     = time.Second
	DefaultMaxRetry     = 5 * time.Minute
	DefaultFetchTimeout = 60 * time.Second
	DefaultMaxFileBytes = 64 << 20
)

// Options say where the policy is and how to watch it.
type Options struct {
	// Path is a directory, a bundle file (.tar.gz) or an http(s) bundle URL.
	// With FS it is a directory inside FS ("" = the root).
	Path string
	FS   fs.FS
	// Verification, when set, refuses bundles without a valid signature
	// (.signatures.json, OPA bundle signing).
	Verification *bundle.VerificationConfig
	// Interval between polls in Run; <= 0 disables watching.
	Interval time.Duration
	// MinRetry and MaxRetry bound the exponential backoff after a failed
	// download (defaults 1s and 5m).
	MinRetry, MaxRetry time.Duration
	// FetchTimeout bounds one download (default 60s).
	FetchTimeout time.Duration
	// CACertFile is a PEM file of CAs trusted for an https bundle server
	// (default: the system roots).
	CACertFile string
	// Headers are sent with every bundle request (e.g. Authorization).
	Headers map[string]string
	// MaxFileBytes bounds each file of a downloaded bundle (default 64 MiB).
	MaxFileBytes int64
	Logger       *slog.Logger
}

// Update is a new bundle.
type Update struct {
	Bundle *bundle.Bundle
	// Source names where it came from (a URL without credentials or query).
	Source string
	// ETag of a downloaded bundle.
	ETag string
	// Hash identifies the content and the manifest revision.
	Hash string
	// Locate indexes the bundle's data files for error messages; may be nil.
	Locate func() *decision.DataLocations
}

// Watcher reads and watches one policy source. Fetch and Run must not be
// called concurrently.
type Watcher struct {
	o      Options
	kind   Kind
	name   string
	log    *slog.Logger
	dl     *download.Downloader
	dlCfg  func() *download.Downloader // builds a fresh downloader
	result *dlResult                   // where dl's callback puts its update
	seen   string                      // fingerprint of the files last read
	last   string                      // content hash of the bundle last delivered
	failed int                         // consecutive failed downloads
}

// dlResult receives the update of one downloader's callback. Each
// downloader has its own, so that a download abandoned at a timeout (OPA's
// Trigger returns while its goroutine finishes) can never be taken for the
// result of a later one.
type dlResult struct {
	mu  sync.Mutex
	got *download.Update
}

func (r *dlResult) set(u *download.Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = u
}

func (r *dlResult) take() *download.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.got
	r.got = nil
	return u
}

// New checks o and returns a Watcher. It does no I/O for URLs.
func New(o Options) (*Watcher, error) {
	w := &Watcher{o: o, log: o.Logger}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.o.MinRetry <= 0 {
		w.o.MinRetry = DefaultMinRetry
	}
	if w.o.MaxRetry <= 0 {
		w.o.MaxRetry = DefaultMaxRetry
	}
	if w.o.MaxRetry < w.o.MinRetry {
		w.o.MaxRetry = w.o.MinRetry
	}
	if w.o.FetchTimeout <= 0 {
		w.o.FetchTimeout = DefaultFetchTimeout
	}
	if w.o.MaxFileBytes <= 0 {
		w.o.MaxFileBytes = DefaultMaxFileBytes
	}
	switch {
	case o.FS != nil:
		w.kind, w.name = KindEmbedded, "embedded:"+o.Path
	case strings.HasPrefix(o.Path, "http://") || strings.HasPrefix(o.Path, "https://"):
		w.kind = KindURL
		if err := w.newDownloader(); err != nil {
			return nil, err
		}
	case o.Path == "":
		return nil, errors.New("policy source: no path")
	default:
		fi, err := os.Stat(o.Path)
		if err != nil {
			return nil, fmt.Errorf("policy source %s: %w", o.Path, err)
		}
		w.kind, w.name = KindFile, o.Path
		if fi.IsDir() {
			w.kind = KindDirectory
		}
	}
	return w, nil
}

// Kind tells what the source is.
func (w *Watcher) Kind() Kind { return w.kind }

// String names the source (URLs without credentials or query).
func (w *Watcher) String() string { return w.name }

func (w *Watcher) newDownloader() error {
	u, err := url.Parse(w.o.Path)
	if err != nil || u.Host == "" {
		return fmt.Errorf("policy source %q is not a valid URL", w.o.Path)
	}
	w.name = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	base := (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
	path := strings.TrimPrefix(u.EscapedPath(), "/")
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	cfg := map[string]any{"name": "policy", "url": base}
	if len(w.o.Headers) > 0 {
		cfg["headers"] = w.o.Headers
	}
	if w.o.CACertFile != "" {
		cfg["tls"] = map[string]any{"ca_cert": w.o.CACertFile}
	}
	if u.User != nil {
		return fmt.Errorf("policy source %s: put credentials in a header, not in the URL", w.name)
	}
	raw, _ := json.Marshal(cfg)
	client, err := rest.New(raw, nil, rest.Logger(&opaLogger{log: w.log.With("component", "bundle-download")}))
	if err != nil {
		return fmt.Errorf("policy source %s: %w", w.name, err)
	}
	trigger := plugins.TriggerManual
	dc := download.Config{Trigger: &trigger}
	if err := dc.ValidateAndInjectDefaults(); err != nil {
		return fmt.Errorf("policy source %s: %w", w.name, err)
	}
	w.dlCfg = func() *download.Downloader {
		res := &dlResult{}
		w.result = res
		return download.New(dc, client, path).
			WithBundleVerificationConfig(w.o.Verification).
			WithSizeLimitBytes(w.o.MaxFileBytes).
			WithBundlePersistence(true). // keeps the raw archive, for file:line in data errors
			WithBundleParserOpts(ast.ParserOptions{RegoVersion: ast.RegoV1}).
			WithCallback(func(_ context.Context, u download.Update) error {
				res.set(&u)
				return nil
			})
	}
	w.dl = w.dlCfg()
	return nil
}

// Fetch reads the policy now, whatever was read before: the start-up load.
func (w *Watcher) Fetch(ctx context.Context) (*Update, error) {
	var (
		u   *Update
		err error
	)
	if w.kind == KindURL {
		u, err = w.download(ctx)
		if err == nil && u == nil {
			err = fmt.Errorf("fetch policy bundle %s: the server sent no bundle", w.name)
		}
	} else {
		if w.kind != KindEmbedded {
			w.seen, _ = w.fingerprint()
		}
		u, err = w.read()
	}
	if err != nil {
		return nil, err
	}
	w.last = u.Hash
	return u, nil
}

// Run watches the source until ctx is done, calling fn with every new
// bundle (content that differs from the last one delivered) and every
// failure to read, download or verify one. fn runs on Run's goroutine; a
// slow fn delays the next poll. Run returns at once for embedded sources and
// when Interval <= 0.
func (w *Watcher) Run(ctx context.Context, fn func(context.Context, *Update, error)) {
	if w.kind == KindEmbedded || w.o.Interval <= 0 {
		return
	}
	for {
		t := time.NewTimer(w.nextDelay())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		u, err := w.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			fn(ctx, nil, err)
		case u != nil:
			w.last = u.Hash
			fn(ctx, u, nil)
		}
	}
}

// nextDelay is the poll interval (±10%), or after failed downloads an
// exponential backoff from MinRetry up to MaxRetry (OPA's backoff, ±20%).
func (w *Watcher) nextDelay() time.Duration {
	if w.failed > 0 {
		return min(util.DefaultBackoff(float64(w.o.MinRetry), float64(w.o.MaxRetry), w.failed), w.o.MaxRetry)
	}
	return jitter(w.o.Interval)
}

// poll returns a new bundle, nil when nothing changed, or an error.
func (w *Watcher) poll(ctx context.Context) (*Update, error) {
	if w.kind == KindURL {
		u, err := w.download(ctx)
		if err != nil || u == nil || u.Hash == w.last {
			return nil, err
		}
		return u, nil
	}
	fp, err := w.fingerprint()
	if err != nil {
		if fp == w.seen {
			return nil, nil // the same failure was reported already
		}
		w.seen = fp
		return nil, fmt.Errorf("read policy %s: %w", w.name, err)
	}
	if fp == w.seen {
		return nil, nil
	}
	w.seen = fp
	u, err := w.read()
	if err != nil || u.Hash == w.last {
		return nil, err // unchanged content (e.g. only a test file changed)
	}
	return u, nil
}

// download triggers one download. It returns nil, nil when the server says
// the bundle is unchanged (304 Not Modified).
func (w *Watcher) download(ctx context.Context) (*Update, error) {
	ctx, cancel := context.WithTimeout(ctx, w.o.FetchTimeout)
	defer cancel()
	err := w.dl.Trigger(ctx)
	got := w.result.take()
	if ctx.Err() != nil {
		// Trigger gave up waiting; its download may still finish. Abandon
		// that downloader (and its ETag) for a fresh one.
		w.dl, got = w.dlCfg(), nil
		if err == nil {
			err = ctx.Err()
		}
	}
	if err == nil && got != nil && got.Error != nil {
		err = got.Error
	}
	if err != nil {
		w.failed++
		return nil, fmt.Errorf("fetch policy bundle %s: %w", w.name, explainDownload(err))
	}
	w.failed = 0
	if got == nil || got.Bundle == nil {
		return nil, nil
	}
	u := &Update{Bundle: got.Bundle, Source: w.name, ETag: got.ETag, Hash: bundleHash(got.Bundle)}
	if got.Raw != nil {
		raw, _ := io.ReadAll(got.Raw)
		u.Locate = func() *decision.DataLocations {
			l, _ := decision.LocateTarball(bytes.NewReader(raw))
			return l
		}
	}
	return u, nil
}

// explainDownload adds what a bare OPA download or bundle error leaves unsaid.
func explainDownload(err error) error {
	var he download.HTTPError
	if errors.As(err, &he) {
		return fmt.Errorf("HTTP %d: %w", he.StatusCode, err)
	}
	msg := err.Error()
	for _, c := range []struct{ contains, why string }{
		{"missing .signatures.json", "unsigned bundle refused (policy.verification requires a signature)"},
		{"failed to verify JWT signature", "bundle signature does not verify with the configured key"},
		{"digest mismatch", "a file was changed after the bundle was signed"},
		{"not included in bundle signature", "a file was added after the bundle was signed"},
		{"scope mismatch", "the signature's scope is not policy.verification.scope"},
		{"verification key not provided", "the bundle is signed but no verification key is configured"},
		{"verification key", "the signature names a key that is not configured"},
		{"gzip: invalid header", "the response is not a bundle (.tar.gz)"},
		{"unexpected EOF", "the bundle archive is truncated or not a .tar.gz"},
	} {
		if strings.Contains(msg, c.contains) {
			return fmt.Errorf("%s: %w", c.why, err)
		}
	}
	return err
}

func (w *Watcher) read() (*Update, error) {
	src := decision.Source{Path: w.o.Path, FS: w.o.FS, Verification: w.o.Verification}
	b, err := decision.ReadBundle(src)
	if err != nil {
		return nil, explainDownload(err)
	}
	return &Update{
		Bundle: b, Source: w.name, Hash: bundleHash(b),
		Locate: func() *decision.DataLocations {
			l, _ := decision.LocateSource(src)
			return l
		},
	}, nil
}

// fingerprint hashes the names and contents of the source's files. It is
// computed on every poll: policy trees are small, and content (unlike
// modification times) never misses a change.
func (w *Watcher) fingerprint() (string, error) {
	h := sha256.New()
	if w.kind == KindFile {
		f, err := os.Open(w.o.Path)
		if err != nil {
			return "error:" + err.Error(), err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return "error:" + err.Error(), err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	var files []string
	err := filepath.WalkDir(w.o.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if fi, serr := os.Stat(p); serr == nil && fi.Mode().IsRegular() {
				files = append(files, p)
			}
			return nil
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "error:" + err.Error(), err
	}
	sort.Strings(files)
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while walking; the next poll sees the new state
			}
			return "error:" + err.Error(), err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// bundleHash identifies a bundle for change detection: its content, and its
// revision (a rebuild of the same content under a new revision is new).
func bundleHash(b *bundle.Bundle) string {
	return decision.ContentHash(b) + " " + b.Manifest.Revision
}

// jitter spreads polls of a fleet: d ± 10%.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}
