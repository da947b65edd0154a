package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/assertion"
	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/quota"
	"github.com/mcp-pdp/pdp/internal/revoke"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/token"
)

// Exit statuses of pdp doctor.
const (
	doctorExitOK   = 0 // every check ok (info lines included)
	doctorExitFail = 1 // at least one FAIL
	doctorExitWarn = 3 // warnings, no FAIL
)

// doctorDefaultTimeout bounds each check of pdp doctor.
const doctorDefaultTimeout = 10 * time.Second

// certWarnBefore: a certificate expiring sooner than this is a warning.
const certWarnBefore = 30 * 24 * time.Hour

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: pdp doctor --config pdp.yaml [--timeout 10s] [--json]

Checks a deployment from the operator's seat and says in plain words what
is wrong and what to do: the configuration; per resource its signing keys
(JWKS) and introspection endpoint, the protected resource metadata URL
clients derive; each issuer's metadata; NATS, the audit and quota streams
and the revocation bucket; the policy, loaded as the server would; TLS
certificates and key files. Checks run at once, each bounded by --timeout.
Nothing is created or changed. Secrets are never printed.

Each line is ok, info, warn or FAIL, the subject, and what was found.
Exit status: 0 all ok (info included), 1 at least one FAIL, 3 warnings
only, 2 usage error.

`)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "the configuration file to check (required)")
	timeout := fs.Duration("timeout", doctorDefaultTimeout, "bound on each check")
	asJSON := fs.Bool("json", false, "print a machine-readable report")
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		fmt.Fprintf(stderr, "pdp doctor: unexpected argument %q; give the file as --config FILE\n", pos[0])
		return 2
	case *cfgPath == "":
		fmt.Fprintln(stderr, "pdp doctor: --config is required (the file pdp serve --config reads)")
		return 2
	case *timeout <= 0:
		fmt.Fprintln(stderr, "pdp doctor: --timeout must be positive")
		return 2
	}
	start := time.Now()
	findings := doctorRun(ctx, *cfgPath, *timeout)
	return writeDoctorReport(stdout, *cfgPath, findings, time.Since(start), *asJSON)
}

// ---- findings ----

type doctorLevel int

const (
	levelOK doctorLevel = iota
	levelInfo
	levelWarn
	levelFail
)

func (l doctorLevel) String() string {
	return [...]string{"ok", "info", "warn", "FAIL"}[l]
}

func (l doctorLevel) MarshalJSON() ([]byte, error) {
	return json.Marshal(strings.ToLower(l.String()))
}

// finding is one line of the report.
type finding struct {
	Level   doctorLevel `json:"level"`
	Check   string      `json:"check"`
	Subject string      `json:"subject"`
	Message string      `json:"message"`
	Fix     string      `json:"fix,omitempty"`
}

// report collects the findings of one check; with gives another subject
// to the findings that follow. A check writes to it from one goroutine
// only.
type report struct {
	check, subject string
	list           *[]finding
	from           int // worst looks at the findings from here on
}

func (r report) with(subject string) report {
	r.subject, r.from = subject, len(*r.list)
	return r
}

func (r report) add(l doctorLevel, msg, fix string) {
	*r.list = append(*r.list, finding{Level: l, Check: r.check, Subject: r.subject, Message: msg, Fix: fix})
}

func (r report) ok(msg string)          { r.add(levelOK, msg, "") }
func (r report) info(msg, fix string)   { r.add(levelInfo, msg, fix) }
func (r report) warn(msg, fix string)   { r.add(levelWarn, msg, fix) }
func (r report) fail(msg, fix string)   { r.add(levelFail, msg, fix) }
func (r report) worst() (l doctorLevel) { return worstLevel((*r.list)[r.from:]) }

func worstLevel(fs []finding) doctorLevel {
	l := levelOK
	for _, f := range fs {
		l = max(l, f.Level)
	}
	return l
}

func doctorExitCode(fs []finding) int {
	switch worstLevel(fs) {
	case levelFail:
		return doctorExitFail
	case levelWarn:
		return doctorExitWarn
	}
	return doctorExitOK
}

func writeDoctorReport(w io.Writer, cfgPath string, fs []finding, took time.Duration, asJSON bool) int {
	code := doctorExitCode(fs)
	counts := map[doctorLevel]int{}
	for _, f := range fs {
		counts[f.Level]++
	}
	if asJSON {
		out := struct {
			Config   string         `json:"config"`
			Status   string         `json:"status"`
			ExitCode int            `json:"exit_code"`
			Counts   map[string]int `json:"counts"`
			TookMS   int64          `json:"took_ms"`
			Findings []finding      `json:"findings"`
		}{
			Config: cfgPath, Status: strings.ToLower(worstLevel(fs).String()), ExitCode: code,
			Counts: map[string]int{"ok": counts[levelOK], "info": counts[levelInfo], "warn": counts[levelWarn], "fail": counts[levelFail]},
			TookMS: took.Milliseconds(), Findings: fs,
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return code
	}
	for _, f := range fs {
		line := fmt.Sprintf("%-4s  %s: %s", f.Level, f.Subject, f.Message)
		if f.Fix != "" {
			line += "; fix: " + f.Fix
		}
		fmt.Fprintln(w, oneLine(line))
	}
	fmt.Fprintf(w, "\n%s, %s, %s, %s in %s: exit %d\n", plural(counts[levelOK], "ok", "ok"), plural(counts[levelInfo], "info", "info"),
		plural(counts[levelWarn], "warning", "warnings"), plural(counts[levelFail], "failure", "failures"), took.Round(time.Millisecond), code)
	return code
}

// ---- running the checks ----

// doctor holds what the checks share.
type doctor struct {
	cfgPath string
	cfg     *config.Config
	timeout time.Duration
	now     time.Time
}

// doctorCheck is one check: run writes its findings to r.
type doctorCheck struct {
	name, subject string
	run           func(ctx context.Context, r report)
}

// doctorRun loads the configuration (a problem of it is a finding with
// its file:line, and the end of the checks) and runs every check at once.
func doctorRun(ctx context.Context, cfgPath string, timeout time.Duration) []finding {
	var head []finding
	rep := report{check: "config", subject: "config " + cfgPath, list: &head}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		var fe *config.FileError
		if !errors.As(err, &fe) {
			rep.fail(fmt.Sprintf("cannot read it: %v", errors.Unwrap(err)), "give the path of the file pdp serve --config reads")
			return head
		}
		for _, p := range fe.Problems {
			at := cfgPath
			if p.Line > 0 {
				at = fmt.Sprintf("%s:%d", cfgPath, p.Line)
			}
			rep.with("config "+at).fail(p.Key+": "+p.Message, "")
		}
		return head
	}
	d := &doctor{cfgPath: cfgPath, cfg: cfg, timeout: timeout, now: time.Now()}
	rep.ok(d.summary())
	d.checkExposure(rep)
	checks := d.checks()
	results := make([][]finding, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { results[i] = d.runCheck(ctx, c) })
	}
	wg.Wait()
	return slices.Concat(append([][]finding{head}, results...)...)
}

// runCheck runs c within the timeout. A check that does not return in
// time (one that ignores its context) is reported and left behind.
func (d *doctor) runCheck(ctx context.Context, c doctorCheck) []finding {
	cctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	done := make(chan []finding, 1)
	go func() {
		var list []finding
		r := report{check: c.name, subject: c.subject, list: &list}
		defer func() {
			if p := recover(); p != nil {
				r.fail(fmt.Sprintf("the check broke down: %v", p), "please report this as a bug of pdp doctor")
			}
			done <- list
		}()
		c.run(cctx, r)
	}()
	timeoutFinding := []finding{{Level: levelFail, Check: c.name, Subject: c.subject,
		Message: fmt.Sprintf("no result within %s", d.timeout), Fix: "something it waits for does not answer; try a longer --timeout to see what"}}
	select {
	case list := <-done:
		if len(list) == 0 {
			return []finding{{Level: levelFail, Check: c.name, Subject: c.subject, Message: "the check found nothing to say", Fix: "please report this as a bug of pdp doctor"}}
		}
		return list
	case <-time.After(d.timeout + time.Second):
		return timeoutFinding
	}
}

func (d *doctor) summary() string {
	c := d.cfg
	parts := []string{plural(len(c.Resources), "resource", "resources")}
	if c.Audit.IsEnabled() {
		parts = append(parts, "audit on (NATS "+auditsink.RedactURLs(c.Audit.NATS.URL)+")")
		if c.Revocation.IsEnabled() {
			parts = append(parts, "revocation on")
		}
	} else {
		parts = append(parts, "audit off")
	}
	parts = append(parts, "policy "+policyName(c.Policy))
	if c.TLS.Enabled() {
		parts = append(parts, "HTTPS on "+c.Listen)
	} else {
		parts = append(parts, "HTTP on "+c.Listen)
	}
	return "loaded: " + strings.Join(parts, ", ")
}

// checkExposure says what the PDP warns about at start: who can reach
// the API, keys in clear text, tokens passed upstream.
func (d *doctor) checkExposure(rep report) {
	c := d.cfg
	host, _, _ := net.SplitHostPort(c.Listen)
	ip := net.ParseIP(host)
	loopback := host == "localhost" || (ip != nil && ip.IsLoopback())
	switch {
	case !loopback && !c.Auth.Enabled() && c.Insecure:
		rep.warn(fmt.Sprintf("listen %s with insecure: true and no auth: anyone who reaches the port can ask for decisions", c.Listen),
			"authenticate the PEPs (auth.api_keys or auth.mtls), see docs/security.md")
	case !loopback && len(c.Auth.APIKeys) > 0 && !c.TLS.Enabled():
		rep.warn(fmt.Sprintf("listen %s without tls: the PEPs' API keys cross the network in clear text", c.Listen),
			"set tls.cert_file and tls.key_file (or terminate TLS next to the PDP)")
	}
	for i, r := range c.Resources {
		if r.Upstream != nil && r.Upstream.ForwardToken {
			rep.warn(fmt.Sprintf("resources[%d].upstream.forward_token is on: clients' tokens are passed to %s (MCP forbids token passthrough)", i, r.Upstream.URL),
				"turn it off: the upstream gets a signed identity assertion instead")
		}
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// checks lists the checks of the configuration, in report order.
func (d *doctor) checks() []doctorCheck {
	c := d.cfg
	var cs []doctorCheck
	for i, r := range c.Resources {
		subj := "resource " + r.URI
		cs = append(cs, doctorCheck{"jwks", subj + ": jwks", func(ctx context.Context, rep report) { d.checkJWKS(ctx, rep, i, r) }})
		if r.Introspection != nil {
			cs = append(cs, doctorCheck{"introspection", subj + ": introspection", func(ctx context.Context, rep report) { d.checkIntrospection(ctx, rep, i, r) }})
		}
		cs = append(cs, doctorCheck{"resource_metadata", subj + ": metadata", func(ctx context.Context, rep report) { d.checkResourceMetadata(ctx, rep, r) }})
	}
	for _, as := range d.authServers() {
		cs = append(cs, doctorCheck{"issuer", as.role + " " + as.url + ": metadata", func(ctx context.Context, rep report) { d.checkIssuer(ctx, rep, as) }})
	}
	if c.Audit.IsEnabled() {
		cs = append(cs, doctorCheck{"nats", "nats " + auditsink.RedactURLs(c.Audit.NATS.URL), d.checkNATS})
	} else {
		cs = append(cs, doctorCheck{"nats", "audit", func(_ context.Context, rep report) {
			rep.warn("off (audit.enabled: false): decisions are not recorded, revocations not watched, quotas not counted", "turn audit on for production")
		}})
	}
	cs = append(cs, doctorCheck{"policy", "policy " + policyName(c.Policy), d.checkPolicy})
	for _, tf := range d.tlsFiles() {
		cs = append(cs, doctorCheck{"tls", tf.subject(), func(_ context.Context, rep report) { d.checkTLSFile(rep, tf) }})
	}
	for _, kf := range d.keyFiles() {
		cs = append(cs, doctorCheck{"file", kf.key + " " + kf.path, func(_ context.Context, rep report) { d.checkKeyFile(rep, kf) }})
	}
	return cs
}

// ---- HTTP: what the token package fetched ----

// exchange is one HTTP request the token package made, with its answer.
type exchange struct {
	method, url, accept string
	status              int
	body                []byte
	err                 error
}

// recorder is the transport of the token package's clients: it keeps
// every exchange, so that the doctor can say what each endpoint answered
// while the PDP's own code fetched, discovered and parsed.
type recorder struct {
	maxBody int64
	mu      sync.Mutex
	list    []exchange
}

func newRecorder(maxBody int64) *recorder {
	if maxBody <= 0 {
		maxBody = token.DefaultMaxBodyBytes
	}
	return &recorder{maxBody: maxBody}
}

// client follows no redirects, as the token package's own clients.
func (rc *recorder) client() *http.Client {
	return &http.Client{Transport: rc, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (rc *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchange{method: req.Method, url: req.URL.String(), accept: req.Header.Get("Accept")}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		ex.err = err
		rc.keep(ex)
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, rc.maxBody+1))
	resp.Body.Close()
	ex.status, ex.body, ex.err = resp.StatusCode, body, err
	rc.keep(ex)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func (rc *recorder) keep(ex exchange) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.list = append(rc.list, ex)
}

// exchanges returns the exchanges that pick selects, in order.
func (rc *recorder) exchanges(pick func(exchange) bool) []exchange {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []exchange
	for _, ex := range rc.list {
		if pick(ex) {
			out = append(out, ex)
		}
	}
	return out
}

func isJWKSFetch(ex exchange) bool {
	return ex.method == http.MethodGet && strings.Contains(ex.accept, "jwk-set")
}

func isMetadataFetch(ex exchange) bool {
	return ex.method == http.MethodGet && !strings.Contains(ex.accept, "jwk-set")
}

// keySets is the PDP's key cache as the server configures it (jwks.*),
// over rc.
func (d *doctor) keySets(rc *recorder) *token.KeySets {
	ft := cmp.Or(d.cfg.JWKS.FetchTimeout.D(), token.DefaultFetchTimeout)
	return token.NewKeySets(token.KeySetsConfig{
		HTTPClient: rc.client(), FetchTimeout: min(ft, d.timeout), MaxBodyBytes: d.cfg.JWKS.MaxBodyBytes,
	})
}

// plainErr says a network error in plain words.
func (d *doctor) plainErr(err error) string {
	var dnsErr *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verr *tls.CertificateVerificationError
	switch {
	case isTimeout(err):
		return "no answer in time"
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("the host name %s does not resolve (%s)", dnsErr.Name, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: nothing listens at that address"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "the host cannot be reached from here (no route)"
	case errors.As(err, &unknownCA):
		return "its TLS certificate is signed by an authority this host does not trust"
	case errors.As(err, &hostErr):
		return "its TLS certificate is not for this host name: " + hostErr.Error()
	case errors.As(err, &invalid):
		return "its TLS certificate is not valid: " + invalid.Error()
	case errors.As(err, &verr):
		return "its TLS certificate does not verify: " + verr.Err.Error()
	}
	return err.Error()
}

// isTimeout: a deadline passed (the context's, a client's or a socket's).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || (errors.As(err, &ne) && ne.Timeout())
}

func describeExchange(d *doctor, ex exchange) string {
	switch {
	case ex.err != nil && ex.status == 0:
		return fmt.Sprintf("%s: %s", ex.url, d.plainErr(ex.err))
	case ex.err != nil:
		return fmt.Sprintf("%s: %s: %s", ex.url, http.StatusText(ex.status), d.plainErr(ex.err))
	case ex.status >= 300 && ex.status < 400:
		return fmt.Sprintf("%s: answers %d %s (a redirect, which the PDP does not follow)", ex.url, ex.status, http.StatusText(ex.status))
	default:
		return fmt.Sprintf("%s: answers %d %s", ex.url, ex.status, http.StatusText(ex.status))
	}
}

// tokenCause is the cause inside a token package error, for details.
func tokenCause(err error) string {
	var te *token.Error
	if errors.As(err, &te) && te.Unwrap() != nil {
		return te.Unwrap().Error()
	}
	return err.Error()
}

// ---- check 1: signing keys ----

func (d *doctor) checkJWKS(ctx context.Context, rep report, i int, r config.Resource) {
	rc := newRecorder(d.cfg.JWKS.MaxBodyBytes)
	keys := d.keySets(rc)
	defer keys.Close()
	v, err := token.NewVerifier(token.Config{
		Resource: r.URI, Issuer: r.Issuer, Audiences: r.Audiences, JWKSURI: r.JWKSURI,
		Algorithms: r.Algorithms, ClockSkew: r.ClockSkew.D(),
	}, keys, nil, nil)
	if err != nil {
		rep.fail(err.Error(), fmt.Sprintf("fix resources[%d] in %s", i, d.cfgPath))
		return
	}
	// Without keys an introspected resource still serves opaque tokens.
	bad := levelFail
	if r.Introspection != nil {
		bad = levelWarn
	}
	werr := v.Warm(ctx)
	fetches := rc.exchanges(isJWKSFetch)
	if werr != nil {
		d.explainKeys(rep, bad, i, r, werr, fetches)
		return
	}
	var jwksURL string
	var body []byte
	for _, ex := range fetches {
		if ex.err == nil && ex.status == http.StatusOK {
			jwksURL, body = ex.url, ex.body
			break
		}
	}
	where := jwksURL
	if r.JWKSURI == "" {
		where += " (the jwks_uri of the issuer's metadata)"
	}
	lint := lintJWKS(body)
	algs := r.Algorithms
	if len(algs) == 0 {
		algs = token.DefaultAlgorithms()
	}
	usable := probeKeys(ctx, v, r, lint, algs)
	for _, l := range lint.findings {
		rep.add(l.level, l.msg, l.fix)
	}
	if len(usable) == 0 {
		rep.add(bad, fmt.Sprintf("%s: none of its %s can verify the algorithms the PDP accepts (%s): every token would be refused",
			where, plural(lint.count, "key", "keys"), strings.Join(algs, " ")),
			fmt.Sprintf("set resources[%d].algorithms to what the issuer signs with, or have it publish a key for %s", i, strings.Join(algs, " ")))
		return
	}
	for _, k := range lint.keys {
		if _, ok := usable[k.kid]; !ok && k.kid != "" && !k.reported {
			rep.warn(fmt.Sprintf("key %s cannot verify any accepted algorithm (%s): the PDP skips it", k.name(), strings.Join(algs, " ")),
				"fine if the issuer does not sign with it; else check its kty, curve, size (RSA: 2048 bits or more) and alg")
		}
	}
	var parts []string
	for _, k := range lint.keys {
		if a, ok := usable[k.kid]; ok && !slices.Contains(parts, k.label()+": "+strings.Join(a, " ")) {
			parts = append(parts, k.label()+": "+strings.Join(a, " "))
		}
	}
	rep.ok(fmt.Sprintf("%s: %s; the PDP verifies %s", where, plural(lint.count, "key", "keys"), strings.Join(parts, "; ")))
}

// explainKeys says why the PDP cannot get keys.
func (d *doctor) explainKeys(rep report, level doctorLevel, i int, r config.Resource, werr error, fetches []exchange) {
	cause := tokenCause(werr)
	switch {
	case len(fetches) == 0 && errors.Is(werr, context.DeadlineExceeded):
		rep.add(level, fmt.Sprintf("no signing keys: the issuer %s (or its metadata) gave no answer in time", r.Issuer),
			"check that the PDP's host reaches it (jwks.fetch_timeout bounds each fetch)")
		return
	case len(fetches) == 0:
		// Discovery failed before any JWKS was asked for.
		rep.add(level, "no signing keys: the issuer's metadata does not lead to them (the issuer check says why)",
			fmt.Sprintf("fix the issuer's metadata or the configured issuer; or set resources[%d].jwks_uri", i))
		return
	}
	ex := fetches[len(fetches)-1]
	fix := fmt.Sprintf("check resources[%d].jwks_uri (or the issuer's jwks_uri) and that the PDP's host can reach it (DNS, firewall, proxy)", i)
	switch {
	case ex.err != nil || ex.status != http.StatusOK:
		rep.add(level, "cannot fetch the signing keys: "+describeExchange(d, ex), fix)
	default:
		lint := lintJWKS(ex.body)
		for _, l := range lint.findings {
			rep.add(l.level, l.msg, l.fix)
		}
		msg := fmt.Sprintf("%s holds no key the PDP can use (%s)", ex.url, cause)
		if lint.notJSON != "" {
			msg = fmt.Sprintf("%s is not a JWKS: %s", ex.url, lint.notJSON)
		}
		rep.add(level, msg, "publish the issuer's public signing keys there: RSA (2048 bits or more), EC P-256/384/521 or Ed25519, use sig")
	}
}

// jwksKey is what the doctor reads of one JWKS entry.
type jwksKey struct {
	index              int
	kid, kty, alg, use string
	reported           bool // a finding names it already
}

func (k jwksKey) name() string {
	if k.kid == "" {
		return fmt.Sprintf("#%d (no kid)", k.index+1)
	}
	return fmt.Sprintf("%q", k.kid)
}

func (k jwksKey) label() string {
	if k.kid == "" {
		return "tokens without kid"
	}
	return fmt.Sprintf("kid %q", k.kid)
}

type lintFinding struct {
	level    doctorLevel
	msg, fix string
}

type jwksLint struct {
	count    int
	keys     []jwksKey
	findings []lintFinding
	notJSON  string
}

// privateMembers of a JWK (RFC 7518 §6): present only in private keys.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "k"}

// lintJWKS reads a JWKS document for what an operator must know beyond
// what the PDP uses of it: private keys published, keys without kid,
// keys for encryption.
func lintJWKS(body []byte) jwksLint {
	var doc struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	var l jwksLint
	if err := json.Unmarshal(body, &doc); err != nil {
		l.notJSON = "not a JSON object with keys"
		return l
	}
	l.count = len(doc.Keys)
	kids := map[string]int{}
	for i, raw := range doc.Keys {
		str := func(name string) string {
			var s string
			_ = json.Unmarshal(raw[name], &s)
			return s
		}
		k := jwksKey{index: i, kid: str("kid"), kty: str("kty"), alg: str("alg"), use: str("use")}
		var private []string
		for _, m := range privateMembers {
			if _, ok := raw[m]; ok {
				private = append(private, m)
			}
		}
		switch {
		case k.kty == "oct":
			k.reported = true
			l.findings = append(l.findings, lintFinding{levelFail,
				fmt.Sprintf("key %s is a symmetric secret (kty oct), published for anyone to read: whoever has it can sign tokens for every party that trusts it", k.name()),
				"remove it from the JWKS and replace the secret at once: it is compromised"})
		case len(private) > 0:
			k.reported = true
			l.findings = append(l.findings, lintFinding{levelFail,
				fmt.Sprintf("key %s publishes its private part (%s): anyone can sign tokens the PDP accepts", k.name(), strings.Join(private, ", ")),
				"publish the public key only, and rotate this key now: it is compromised"})
		}
		if k.use != "" && k.use != "sig" {
			k.reported = true
			l.findings = append(l.findings, lintFinding{levelWarn,
				fmt.Sprintf("key %s has use=%s: it is not for signatures, the PDP ignores it", k.name(), k.use),
				"fine when the issuer publishes signing keys too (use sig)"})
		}
		if k.kid == "" {
			l.findings = append(l.findings, lintFinding{levelWarn,
				fmt.Sprintf("key #%d has no kid: tokens without a kid verify only while one key fits, and a token naming a kid cannot find it", i+1),
				"give every key a kid"})
		} else if j, dup := kids[k.kid]; dup {
			l.findings = append(l.findings, lintFinding{levelWarn,
				fmt.Sprintf("keys #%d and #%d share the kid %q", j+1, i+1, k.kid), "give every key a kid of its own"})
		} else {
			kids[k.kid] = i
		}
		l.keys = append(l.keys, k)
	}
	return l
}

// probeKeys asks the PDP's own verifier, for every kid of the set and
// every accepted algorithm, whether it has a key to check a token's
// signature with: a token with that header and a junk signature is
// refused as "signature verification failed" exactly when the verifier
// found a key that fits (the key lookup and the fit rules are the
// token package's, not repeated here). It returns the algorithms per kid
// ("" for a lone key without kid).
func probeKeys(ctx context.Context, v *token.Verifier, r config.Resource, lint jwksLint, algs []string) map[string][]string {
	b64 := base64.RawURLEncoding
	payload, _ := json.Marshal(map[string]any{"iss": r.Issuer, "aud": r.URI, "exp": time.Now().Add(time.Minute).Unix()})
	var kids []string
	for _, k := range lint.keys {
		if !slices.Contains(kids, k.kid) {
			kids = append(kids, k.kid)
		}
	}
	out := map[string][]string{}
	for _, kid := range kids {
		for _, alg := range algs {
			hdr := map[string]string{"alg": alg, "typ": "at+jwt"}
			if kid != "" {
				hdr["kid"] = kid
			}
			hb, _ := json.Marshal(hdr)
			tok := b64.EncodeToString(hb) + "." + b64.EncodeToString(payload) + "." + b64.EncodeToString([]byte("pdp doctor: not a signature"))
			_, err := v.Verify(ctx, tok)
			var te *token.Error
			if errors.As(err, &te) && te.Description == "signature verification failed" {
				out[kid] = append(out[kid], alg)
			}
		}
	}
	return out
}

// ---- check 1b: introspection ----

func (d *doctor) checkIntrospection(ctx context.Context, rep report, i int, r config.Resource) {
	in := r.Introspection
	k := fmt.Sprintf("resources[%d].introspection", i)
	ic, err := introspectionConfig(in)
	if err != nil {
		rep.fail(err.Error(), "make the file readable by the PDP's user, holding what "+k+" says")
		return
	}
	rc := newRecorder(max(cmp.Or(d.cfg.JWKS.MaxBodyBytes, token.DefaultMaxBodyBytes), token.MaxIntrospectionResponseBytes))
	ic.HTTPClient = rc.client()
	keys := d.keySets(rc)
	defer keys.Close()
	v, err := token.NewVerifier(token.Config{
		Resource: r.URI, Issuer: r.Issuer, Audiences: r.Audiences, JWKSURI: r.JWKSURI,
		Algorithms: r.Algorithms, ClockSkew: r.ClockSkew.D(), Introspection: ic,
	}, keys, nil, nil)
	if err != nil {
		rep.fail(err.Error(), "fix "+k)
		return
	}
	junk := make([]byte, 16)
	_, _ = rand.Read(junk)
	// Not a JWT of the issuer: the verifier introspects it.
	_, verr := v.Verify(ctx, "pdp-doctor-"+hex.EncodeToString(junk))
	posts := rc.exchanges(func(ex exchange) bool { return ex.method == http.MethodPost })
	endpoint := in.Endpoint
	if len(posts) > 0 {
		endpoint = posts[len(posts)-1].url
	}
	as := fmt.Sprintf("client %q, %s", in.ClientID, cmp.Or(in.AuthMethod, token.AuthClientSecretBasic))
	var te *token.Error
	errors.As(verr, &te)
	switch {
	case verr == nil:
		rep.fail(endpoint+" says a made-up token is active: it does not check tokens", "point "+k+".endpoint at the authorization server's real introspection endpoint")
	case te != nil && te.Description == "token is not active":
		rep.ok(fmt.Sprintf("%s answers {\"active\": false} for a made-up token, as %s: the PDP's credentials are accepted", endpoint, as))
	case len(posts) == 0 && isTimeout(verr):
		rep.fail("no answer in time from the issuer's metadata (discover: true)", "check that the PDP's host reaches the issuer")
	case len(posts) == 0:
		rep.fail("cannot find the endpoint: "+tokenCause(verr), "the issuer's metadata must name introspection_endpoint, or set "+k+".endpoint")
	case posts[len(posts)-1].status == http.StatusUnauthorized || posts[len(posts)-1].status == http.StatusForbidden:
		ex := posts[len(posts)-1]
		rep.fail(fmt.Sprintf("%s refused the PDP's own credentials (%d %s, as %s): every opaque token would be refused with 503",
			endpoint, ex.status, http.StatusText(ex.status), as),
			"check "+k+".client_id, the secret in client_secret_file (or private_key_file and key_id) and auth_method (some servers want client_secret_post)")
	case posts[len(posts)-1].status == 0 || posts[len(posts)-1].status != http.StatusOK:
		rep.fail("cannot introspect: "+describeExchange(d, posts[len(posts)-1]), "check "+k+".endpoint and that the PDP's host can reach it")
	case te != nil && te.Description == "malformed introspection response":
		rep.fail(fmt.Sprintf("%s does not answer as RFC 7662 says (%s)", endpoint, tokenCause(verr)),
			"check that "+k+".endpoint is the introspection endpoint (and jwt_response matches what it sends)")
	default:
		rep.fail(fmt.Sprintf("%s: %s", endpoint, tokenCause(verr)), "check "+k)
	}
}

// introspectionConfig is the token package's configuration of in, with
// its secret or key read from their files (as the server reads them).
func introspectionConfig(in *config.Introspection) (*token.IntrospectionConfig, error) {
	ic := &token.IntrospectionConfig{
		Endpoint: in.Endpoint, Discover: in.Discover, ClientID: in.ClientID, AuthMethod: in.AuthMethod,
		KeyID: in.KeyID, JWTResponse: in.JWTResponse, RequireAudience: in.RequireAudience,
		Timeout: in.Timeout.D(), MaxTTL: in.MaxTTL.D(), NegativeTTL: in.NegativeTTL.D(),
	}
	if in.ClientSecretFile != "" {
		b, err := os.ReadFile(in.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("client_secret_file: %w", err)
		}
		if ic.ClientSecret = strings.TrimSpace(string(b)); ic.ClientSecret == "" {
			return nil, fmt.Errorf("client_secret_file %s is empty", in.ClientSecretFile)
		}
	}
	if in.PrivateKeyFile != "" {
		b, err := os.ReadFile(in.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("private_key_file: %w", err)
		}
		if ic.PrivateKey, err = assertion.ParsePrivateKey(b); err != nil {
			return nil, fmt.Errorf("private_key_file %s: %w", in.PrivateKeyFile, err)
		}
	}
	return ic, nil
}

// ---- check 2: authorization server metadata ----

// authServer is an issuer or authorization server of the configuration.
type authServer struct {
	url  string
	role string // "issuer" or "authorization server"
	// keys: a resource discovers its signing keys from it; discover: its
	// introspection endpoint.
	keys, discover bool
	resources      []int // the resources naming it as issuer
}

func (d *doctor) authServers() []*authServer {
	var out []*authServer
	find := func(u string) *authServer {
		for _, a := range out {
			if a.url == u {
				return a
			}
		}
		a := &authServer{url: u, role: "authorization server"}
		out = append(out, a)
		return a
	}
	for i, r := range d.cfg.Resources {
		a := find(r.Issuer)
		a.role = "issuer"
		a.resources = append(a.resources, i)
		a.keys = a.keys || r.JWKSURI == ""
		a.discover = a.discover || (r.Introspection != nil && r.Introspection.Discover)
	}
	for _, r := range d.cfg.Resources {
		for _, s := range r.AuthorizationServers {
			find(s)
		}
	}
	return out
}

func (d *doctor) checkIssuer(ctx context.Context, rep report, as *authServer) {
	rc := newRecorder(d.cfg.JWKS.MaxBodyBytes)
	keys := d.keySets(rc)
	defer keys.Close()
	// The PDP's discovery, as for a resource whose keys it must find.
	v, err := token.NewVerifier(token.Config{Resource: d.cfg.Resources[0].URI, Issuer: as.url}, keys, nil, nil)
	if err != nil {
		rep.fail(err.Error(), "")
		return
	}
	werr := v.Warm(ctx)
	metas := rc.exchanges(isMetadataFetch)
	var doc map[string]any
	var docURL string
	for _, ex := range metas {
		var m map[string]any
		if ex.err == nil && ex.status == http.StatusOK && json.Unmarshal(ex.body, &m) == nil && m["issuer"] == as.url {
			doc, docURL = m, ex.url
			break
		}
	}
	if doc == nil || (werr != nil && strings.Contains(werr.Error(), "metadata discovery")) {
		d.explainMetadata(rep, as, metas, werr)
		return
	}
	kind := "RFC 8414"
	if strings.Contains(docURL, "openid-configuration") {
		kind = "OpenID"
	}
	rep.ok(fmt.Sprintf("%s metadata at %s: its issuer is exactly the configured one", kind, docURL))
	str := func(k string) string { s, _ := doc[k].(string); return s }
	for _, i := range as.resources {
		r := d.cfg.Resources[i]
		if r.JWKSURI != "" && str("jwks_uri") != "" && str("jwks_uri") != r.JWKSURI {
			rep.warn(fmt.Sprintf("resources[%d].jwks_uri %s is not the metadata's jwks_uri %s: the PDP uses the configured one", i, r.JWKSURI, str("jwks_uri")),
				fmt.Sprintf("make sure it holds the issuer's current keys, or remove resources[%d].jwks_uri to follow the metadata", i))
		}
		if r.Introspection != nil && r.Introspection.Discover && str("introspection_endpoint") == "" {
			rep.fail(fmt.Sprintf("resources[%d].introspection.discover is set, but the metadata names no introspection_endpoint", i),
				fmt.Sprintf("set resources[%d].introspection.endpoint", i))
		}
	}
	var methods []string
	if l, ok := doc["code_challenge_methods_supported"].([]any); ok {
		for _, m := range l {
			if s, ok := m.(string); ok {
				methods = append(methods, s)
			}
		}
	}
	if !slices.Contains(methods, "S256") {
		rep.warn("code_challenge_methods_supported does not list S256: MCP clients refuse an authorization server without PKCE S256 (MCP authorization)",
			"enable PKCE S256 at the authorization server so that its metadata lists it")
	}
	var missing []string
	for _, k := range []string{"authorization_endpoint", "token_endpoint"} {
		if str(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		rep.warn("the metadata has no "+strings.Join(missing, " and ")+": MCP clients cannot get tokens from it by the authorization code flow",
			"fine for machine clients that get tokens elsewhere; otherwise use the authorization server's real metadata")
	}
}

// explainMetadata says why no metadata document of as is usable.
func (d *doctor) explainMetadata(rep report, as *authServer, metas []exchange, werr error) {
	for _, ex := range metas {
		var m map[string]any
		if ex.err != nil || ex.status != http.StatusOK || json.Unmarshal(ex.body, &m) != nil {
			continue
		}
		got, _ := m["issuer"].(string)
		if got == as.url {
			continue
		}
		fix := "set the issuer (and authorization_servers) to the metadata's issuer exactly, the value tokens carry in iss"
		if len(as.resources) > 0 {
			fix = fmt.Sprintf("set resources[%d].issuer to %q exactly (the metadata's issuer, which tokens carry in iss)", as.resources[0], got)
		}
		switch {
		case got == "":
			rep.fail(fmt.Sprintf("the metadata at %s has no issuer", ex.url), "the authorization server's metadata must name its issuer (RFC 8414 §3.2)")
		case strings.TrimSuffix(got, "/") == strings.TrimSuffix(as.url, "/"):
			rep.fail(fmt.Sprintf("the metadata at %s says issuer %q, the configuration %q: they differ by a trailing slash, and issuers are compared exactly (tokens would be refused for issuer mismatch, MCP clients refuse the metadata)", ex.url, got, as.url), fix)
		default:
			rep.fail(fmt.Sprintf("the metadata at %s is for issuer %q, not %q", ex.url, got, as.url), fix)
		}
		return
	}
	var tried []string
	for _, ex := range metas {
		tried = append(tried, describeExchange(d, ex))
	}
	msg := "no usable authorization server metadata"
	if errors.Is(werr, context.DeadlineExceeded) && len(tried) == 0 {
		msg += ": no answer in time"
	} else if len(tried) > 0 {
		msg += ": " + strings.Join(tried, "; ")
	} else if werr != nil {
		msg += ": " + tokenCause(werr)
	}
	switch {
	case as.keys || as.discover:
		rep.fail(msg+"; the PDP finds its keys (or introspection endpoint) there", "check the issuer URL, or set jwks_uri (and introspection.endpoint)")
	default:
		rep.warn(msg+"; the PDP does not need it (jwks_uri is set), MCP clients do, to find the authorization and token endpoints",
			"publish RFC 8414 metadata at the issuer, or list an authorization server that has it in authorization_servers")
	}
}

// ---- check 3: protected resource metadata ----

func (d *doctor) checkResourceMetadata(ctx context.Context, rep report, r config.Resource) {
	derived, err := stepup.MetadataURL(r.URI)
	if err != nil {
		rep.fail(fmt.Sprintf("no metadata URL can be derived from %q: %v", r.URI, err), "fix the resource's uri")
		return
	}
	target := cmp.Or(r.ResourceMetadataURL, derived)
	what := "clients derive " + derived
	if r.ResourceMetadataURL != "" {
		what = "challenges point clients to " + target + " (resource_metadata_url; derived: " + derived + ")"
	}
	d.fetchResourceMetadata(ctx, rep, r, target, what, true)
	if pu := d.cfg.PublicURL; pu != "" {
		path, err := stepup.MetadataPath(r.URI)
		if err == nil {
			d.fetchResourceMetadata(ctx, rep, r, pu+path, "the PDP serves it at "+pu+path, false)
		}
	}
}

func (d *doctor) fetchResourceMetadata(ctx context.Context, rep report, r config.Resource, u, what string, clientView bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		rep.fail(fmt.Sprintf("%s: not a URL: %v", what, err), "fix resource_metadata_url")
		return
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rep.info(fmt.Sprintf("%s; not reachable from here (%s), so not checked", what, d.plainErr(err)), "")
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		rep.info(fmt.Sprintf("%s; reading it: %s", what, d.plainErr(err)), "")
		return
	}
	if resp.StatusCode != http.StatusOK {
		fix := "the MCP server must serve this path, or pass it to the PDP (which serves the document), or set resource_metadata_url"
		if !clientView {
			fix = "check public_url: the PDP serves the document of each resource at this path"
		}
		rep.warn(fmt.Sprintf("%s, which answers %s: MCP clients cannot find the authorization server", what, resp.Status), fix)
		return
	}
	var doc stepup.Metadata
	if err := json.Unmarshal(body, &doc); err != nil {
		rep.fail(fmt.Sprintf("%s, which is not a JSON metadata document", what), "serve the PDP's document there (RFC 9728)")
		return
	}
	if doc.Resource != r.URI {
		rep.fail(fmt.Sprintf("%s, whose resource is %q, not the configured %q: MCP clients refuse a mismatch (RFC 9728 §3.3)", what, doc.Resource, r.URI),
			"serve the PDP's document for this resource there (or fix the resource's uri)")
		return
	}
	if !sameSet(doc.AuthorizationServers, r.AuthorizationServers) {
		rep.warn(fmt.Sprintf("%s, which lists authorization_servers %v, the configuration %v: clients get their tokens where the document says", what, doc.AuthorizationServers, r.AuthorizationServers),
			"serve the PDP's current document there (a stale copy or another server's?)")
		return
	}
	rep.ok(fmt.Sprintf("%s: it names this resource and authorization_servers %v", what, doc.AuthorizationServers))
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// ---- check 4: NATS ----

func (d *doctor) checkNATS(ctx context.Context, rep report) {
	ac := d.cfg.Audit
	natsURL := ac.NATS.URL
	o := auditsink.ConnectOptions{
		Name: "mcp-pdp doctor", CredsFile: ac.NATS.Credentials, NKeySeedFile: ac.NATS.NKeySeed,
		TLSCAFile: ac.NATS.TLSCA, TLSCertFile: ac.NATS.TLSCert, TLSKeyFile: ac.NATS.TLSKey,
	}
	managed := ac.ManagesStream()
	if natsURL == config.NATSEmbedded {
		// A PDP running from this data directory says where its NATS is;
		// the doctor reads it as `pdp audit` does.
		u, err := natsembed.ReadURLFile(d.cfg.DataDir)
		if err != nil {
			rep.ok(fmt.Sprintf("embedded: the PDP runs NATS itself (store %s) and creates its streams; no PDP is running from here, nothing to reach",
				filepath.Join(d.cfg.DataDir, "nats")))
			return
		}
		natsURL = u
		o = auditsink.ConnectOptions{Name: "mcp-pdp doctor"}
		withEmbeddedUser(&o, d.cfg.DataDir, natsembed.RoleReader)
		rep = rep.with("nats embedded (" + u + ")")
	}
	nc, err := auditsink.Connect(ctx, natsURL, o)
	if err != nil && ac.NATS.URL == config.NATSEmbedded && (errors.Is(err, nats.ErrNoServers) || errors.Is(err, syscall.ECONNREFUSED)) {
		rep.ok(fmt.Sprintf("embedded: the PDP runs NATS itself (store %s) and creates its streams; the PDP that ran from here is gone (%s names a stopped server)",
			filepath.Join(d.cfg.DataDir, "nats"), filepath.Join(d.cfg.DataDir, natsembed.URLFileName)))
		return
	}
	if err != nil {
		msg, fix := d.plainNATSErr(err)
		rep.fail(msg, fix)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		rep.fail(fmt.Sprintf("connected, but JetStream: %v", err), "")
		return
	}
	ai, err := js.AccountInfo(ctx)
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		rep.fail(fmt.Sprintf("connected to %s, but JetStream is not enabled (%v): no audit event can be stored", nc.ConnectedUrlRedacted(), err),
			"enable JetStream on the servers (jetstream {} in the server configuration) and for the PDP's account")
		return
	case err != nil:
		rep.fail(fmt.Sprintf("connected to %s, but JetStream does not answer: %s", nc.ConnectedUrlRedacted(), d.plainErr(err)),
			"check that the PDP's user may use the JetStream API ($JS.API.>) in its account")
		return
	}
	secure := "without TLS"
	if _, err := nc.TLSConnectionState(); err == nil {
		secure = "over TLS"
	}
	rep.ok(fmt.Sprintf("connected to %s %s (nats-server %s), JetStream API level %d", nc.ConnectedUrlRedacted(), secure, nc.ConnectedServerVersion(), ai.API.Level))
	if secure != "over TLS" && !isLoopbackURL(nc.ConnectedUrl()) {
		rep.warn("the audit crosses the network in clear text", "use tls:// URLs with audit.nats.tls_ca")
	}
	d.checkAuditStream(ctx, rep.with(rep.subject+": stream "+cmp.Or(ac.Stream, auditsink.DefaultStream)), js, managed)
	d.checkQuotaStream(ctx, rep.with(rep.subject+": stream "+quota.DefaultStream), js, managed)
	if d.cfg.Revocation.IsEnabled() {
		bucket := cmp.Or(d.cfg.Revocation.Bucket, revoke.DefaultBucket)
		d.checkRevocationBucket(ctx, rep.with(rep.subject+": bucket "+bucket), js, bucket, managed)
	}
}

func isLoopbackURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

func (d *doctor) plainNATSErr(err error) (msg, fix string) {
	where := auditsink.RedactURLs(d.cfg.Audit.NATS.URL)
	s := err.Error()
	switch {
	case errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(s), "authorization violation") || strings.Contains(s, "authentication"):
		return "NATS refused the PDP's credentials: " + s, "check audit.nats.credentials (or nkey_seed) is the PDP's user of that account"
	case errors.Is(err, nats.ErrSecureConnRequired):
		return "the NATS server requires TLS", "use tls:// URLs and set audit.nats.tls_ca"
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission):
		return "cannot read a NATS credentials or TLS file: " + s, "check the files under audit.nats"
	case strings.Contains(s, "tls:") || strings.Contains(s, "x509:"):
		return "TLS to NATS fails: " + d.plainErr(err), "audit.nats.tls_ca must hold the CA that signed the servers' certificates, and the URL's host be one of their names"
	case errors.Is(err, nats.ErrNoServers) || errors.Is(err, syscall.ECONNREFUSED) || isTimeout(err):
		why := "nothing accepts connections there"
		if !errors.Is(err, nats.ErrNoServers) {
			why = d.plainErr(err)
		}
		return fmt.Sprintf("no NATS server answers at %s (%s): audit events would go to the spool, calls with a quota get on_counter_unavailable", where, why),
			"check that NATS runs and that this host reaches it (host, port, firewall)"
	}
	return "cannot connect to NATS: " + s, "check audit.nats"
}

// checkAuditStream compares the audit stream with what the sink asks for
// (auditsink.StreamConfig), by the rules the sink applies at start
// (auditsink's reconcileStream): the PDP fixes what it may, never weakens
// a stream, and only warns about one it does not manage.
func (d *doctor) checkAuditStream(ctx context.Context, rep report, js jetstream.JetStream, managed bool) {
	ac := d.cfg.Audit
	want := auditsink.StreamConfig(auditsink.Config{
		Stream: ac.Stream, SubjectPrefix: ac.SubjectPrefix, Replicas: ac.Replicas,
		MaxAge: ac.MaxAge.D(), DuplicateWindow: ac.DuplicateWindow.D(),
	})
	str, err := js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && managed:
		rep.ok(fmt.Sprintf("does not exist yet: the PDP creates it at start (file storage, %s, deny_delete, deny_purge)", plural(want.Replicas, "replica", "replicas")))
		return
	case errors.Is(err, jetstream.ErrStreamNotFound):
		rep.fail("does not exist, and audit.manage_stream is false: the PDP refuses to start", "create the stream as docs/audit.md shows, or set audit.manage_stream: true")
		return
	case err != nil:
		rep.fail("cannot look it up: "+d.plainErr(err), "the PDP's user needs $JS.API.STREAM.INFO."+want.Name)
		return
	}
	info := str.CachedInfo()
	have := info.Config
	// What the sink's reconcileStream counts as weakening: it then
	// leaves the stream entirely as it is.
	var weaker []string
	if want.MaxAge != have.MaxAge && want.MaxAge != 0 && (have.MaxAge == 0 || want.MaxAge < have.MaxAge) {
		weaker = append(weaker, fmt.Sprintf("max_age %s < %s", want.MaxAge, maxAgeText(have.MaxAge)))
	}
	if want.Replicas < have.Replicas {
		weaker = append(weaker, fmt.Sprintf("replicas %d < %d", want.Replicas, have.Replicas))
	}
	fixes := managed && len(weaker) == 0 // the PDP brings it to the configuration at start
	if len(weaker) > 0 && managed {
		rep.warn("the PDP leaves it as it is: the configuration would weaken it ("+strings.Join(weaker, ", ")+"), so it fixes nothing below either",
			"set audit.replicas and audit.max_age to the stream's values (or change the stream)")
	}
	if have.Sealed {
		rep.fail("it is sealed: it takes no events", "use another stream (audit.stream)")
	}
	if have.Retention != jetstream.LimitsPolicy {
		rep.warn(fmt.Sprintf("its retention is %s: events vanish once consumed instead of staying until max_age", have.Retention),
			"recreate it with limits retention (what the PDP creates)")
	}
	if have.Storage != jetstream.FileStorage {
		rep.warn("it is kept in memory: the audit is lost when NATS restarts", "recreate it with file storage (what the PDP creates)")
	}
	if have.MaxMsgs > 0 || have.MaxBytes > 0 || have.MaxMsgsPerSubject > 0 {
		what := "the oldest events are discarded before max_age"
		if have.Discard == jetstream.DiscardNew {
			what = "when full it refuses new events, which pile up in the PDPs' spools"
		}
		rep.warn(fmt.Sprintf("it has limits (max_msgs %d, max_bytes %d, max_msgs_per_subject %d): %s", have.MaxMsgs, have.MaxBytes, have.MaxMsgsPerSubject, what),
			"remove the limits; bound the audit by max_age")
	}
	if !have.DenyDelete || !have.DenyPurge {
		if fixes {
			rep.ok("allows deleting or purging events now; the PDP sets deny_delete and deny_purge at start")
		} else {
			rep.warn(fmt.Sprintf("it allows deleting or purging events (deny_delete %t, deny_purge %t): anyone with the rights can erase the audit", have.DenyDelete, have.DenyPurge),
				"set deny_delete and deny_purge on the stream")
		}
	}
	if subj := want.Subjects[0]; !slices.Contains(have.Subjects, subj) && !slices.Contains(have.Subjects, ">") {
		if fixes {
			rep.ok(fmt.Sprintf("does not take %s yet; the PDP adds it at start", subj))
		} else {
			rep.fail(fmt.Sprintf("its subjects %v do not take %s: events would stay on the PDPs' spools", have.Subjects, subj),
				fmt.Sprintf("add %s to the stream's subjects, or set audit.subject_prefix to what it takes", subj))
		}
	}
	if fixes && have.Replicas < want.Replicas {
		rep.ok(fmt.Sprintf("has %d replicas; the PDP raises them to %d at start", have.Replicas, want.Replicas))
	}
	if ci := info.Cluster; ci != nil {
		if ci.Leader == "" {
			rep.fail("it has no leader: it takes no events now", "check the NATS cluster (nats server report jetstream)")
		}
		for _, p := range ci.Replicas {
			if p.Offline || !p.Current {
				rep.warn(fmt.Sprintf("its replica on %s is offline or behind", p.Name), "check that NATS server")
			}
		}
	}
	if rep.worst() == levelOK {
		rep.ok(fmt.Sprintf("exists: %s, file storage, %s, max_age %s, deny_delete and deny_purge",
			plural(int(info.State.Msgs), "event", "events"), plural(have.Replicas, "replica", "replicas"), maxAgeText(have.MaxAge)))
	}
}

func maxAgeText(d time.Duration) string {
	switch {
	case d == 0:
		return "unlimited"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func (d *doctor) checkQuotaStream(ctx context.Context, rep report, js jetstream.JetStream, managed bool) {
	qc := quota.Config{Replicas: d.cfg.Audit.Replicas}
	want := quota.StreamConfig(qc)
	str, err := js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && managed:
		rep.ok(fmt.Sprintf("does not exist yet: the PDP creates it at start (a counter stream, %s)", plural(want.Replicas, "replica", "replicas")))
		return
	case errors.Is(err, jetstream.ErrStreamNotFound):
		rep.warn("does not exist, and audit.manage_stream is false: calls with a quota get on_counter_unavailable (deny by default)",
			"create the counter stream as docs/operations.md shows, if the policy has quotas or shared rates")
		return
	case err != nil:
		rep.fail("cannot look it up: "+d.plainErr(err), "the PDP's user needs $JS.API.STREAM.INFO."+want.Name)
		return
	}
	have := str.CachedInfo().Config
	changes, err := quota.CheckStream(have, qc, managed)
	var kept *quota.StreamKeptError
	switch {
	case errors.As(err, &kept):
		rep.warn(fmt.Sprintf("the PDP leaves it as it is: the configuration would weaken it (%s); it counts all the same", strings.Join(kept.Weaker, ", ")),
			"set audit.replicas to the stream's replicas")
	case err != nil:
		rep.fail(strings.TrimPrefix(err.Error(), "quota: ")+": calls with a quota get on_counter_unavailable",
			"fix or recreate the stream (docs/operations.md)")
	case len(changes) > 0:
		rep.ok("exists and counts; the PDP updates it at start: " + strings.Join(changes, ", "))
	default:
		rep.ok(fmt.Sprintf("exists and counts: %s, %s, max_age %s", plural(int(str.CachedInfo().State.NumSubjects), "counter", "counters"),
			plural(have.Replicas, "replica", "replicas"), maxAgeText(have.MaxAge)))
	}
}

func (d *doctor) checkRevocationBucket(ctx context.Context, rep report, js jetstream.JetStream, bucket string, managed bool) {
	kv, err := revoke.OpenBucket(ctx, js, bucket, false, d.cfg.Audit.Replicas)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound) && managed:
		rep.ok("does not exist yet: the PDP creates it at start")
		return
	case errors.Is(err, jetstream.ErrBucketNotFound):
		rep.warn("does not exist, and audit.manage_stream is false: the PDPs watch nothing until the first pdp revoke creates it", "run pdp revoke list to check, or create the bucket")
		return
	case err != nil:
		rep.fail(d.plainErr(err), "recreate the bucket without a TTL (pdp revoke creates it)")
		return
	}
	st, err := kv.Status(ctx)
	if err != nil {
		rep.fail("status: "+d.plainErr(err), "")
		return
	}
	rep.ok(fmt.Sprintf("exists: %s, no TTL", plural(int(st.Values()), "entry", "entries")))
}

// ---- check 5: the policy ----

// policyName names the configured policy without secrets (a bundle URL's
// query may hold a signature).
func policyName(p config.Policy) string {
	if p.Path == "" {
		return "embedded"
	}
	u, err := url.Parse(p.Path)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return p.Path
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "..."
	}
	return u.String()
}

func (d *doctor) checkPolicy(ctx context.Context, rep report) {
	pol, _, err := server.LoadPolicy(ctx, d.cfg.Policy, slog.New(slog.DiscardHandler))
	if err != nil {
		ps := decision.ProblemsOf(err)
		for _, p := range ps {
			hint := cmp.Or(p.Hint, "fix the policy: pdp check --config "+d.cfgPath+" shows the same")
			p.Details, p.Hint = nil, ""
			rep.fail("refused, the PDP would not start: "+p.String(), hint)
		}
		if len(ps) == 0 {
			rep.fail("refused, the PDP would not start: "+d.plainErr(err), "pdp check --config "+d.cfgPath+" shows the same")
		}
		return
	}
	for _, w := range pol.Warnings() {
		hint := w.Hint
		w.Details, w.Hint = nil, ""
		rep.warn(strings.Replace(w.String(), "warning: ", "", 1), hint)
	}
	rep.ok(fmt.Sprintf("loads as the server would: revision %s, %s", pol.Revision(), plural(len(pol.Bundle().Modules), "module", "modules")))
}

// ---- check 6: TLS and key files ----

// tlsFile is a certificate (with its key), or a CA bundle, of the
// configuration.
type tlsFile struct {
	key      string // the YAML key of the certificate (or CA) file
	cert     string
	keyKey   string // the YAML key of keyFile
	keyFile  string
	ca       bool
	client   bool     // a client certificate
	hosts    []string // the names clients reach it by
	hostsWhy string
}

func (t tlsFile) subject() string { return t.key + " " + t.cert }

func (d *doctor) tlsFiles() []tlsFile {
	c := d.cfg
	var out []tlsFile
	if c.TLS.Enabled() {
		t := tlsFile{key: "tls.cert_file", cert: c.TLS.CertFile, keyKey: "tls.key_file", keyFile: c.TLS.KeyFile}
		if u, err := url.Parse(c.PublicURL); err == nil && c.PublicURL != "" {
			t.hosts, t.hostsWhy = []string{u.Hostname()}, "public_url"
		}
		out = append(out, t)
	}
	if c.Auth.MTLS.ClientCA != "" {
		out = append(out, tlsFile{key: "auth.mtls.client_ca", cert: c.Auth.MTLS.ClientCA, ca: true})
	}
	if g := c.Gateway.TLS; g.Enabled() {
		t := tlsFile{key: "gateway.tls.cert_file", cert: g.CertFile, keyKey: "gateway.tls.key_file", keyFile: g.KeyFile, hostsWhy: "the gateway resources' uri"}
		for _, r := range c.Resources {
			if u, err := url.Parse(r.URI); err == nil && r.Upstream != nil && !slices.Contains(t.hosts, u.Hostname()) {
				t.hosts = append(t.hosts, u.Hostname())
			}
		}
		out = append(out, t)
	}
	if n := c.Audit.NATS; c.Audit.IsEnabled() && n.URL != config.NATSEmbedded {
		if n.TLSCA != "" {
			out = append(out, tlsFile{key: "audit.nats.tls_ca", cert: n.TLSCA, ca: true})
		}
		if n.TLSCert != "" {
			out = append(out, tlsFile{key: "audit.nats.tls_cert", cert: n.TLSCert, keyKey: "audit.nats.tls_key", keyFile: n.TLSKey, client: true})
		}
	}
	if c.Policy.CAFile != "" {
		out = append(out, tlsFile{key: "policy.ca_file", cert: c.Policy.CAFile, ca: true})
	}
	return out
}

func (d *doctor) checkTLSFile(rep report, t tlsFile) {
	raw, err := os.ReadFile(t.cert)
	if err != nil {
		rep.fail("cannot read it: "+plainFileErr(err), "make it readable by the PDP's user")
		return
	}
	var certs []*x509.Certificate
	for rest := raw; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			rep.fail("holds a certificate that does not parse: "+err.Error(), "replace the file with the PEM certificate")
			return
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		rep.fail("holds no PEM certificate", "give a PEM file (-----BEGIN CERTIFICATE-----)")
		return
	}
	if t.ca {
		var parts []string
		for _, c := range certs {
			if d.certTimes(rep, c, "the CA "+certName(c)) {
				parts = append(parts, certName(c)+" until "+day(c.NotAfter))
			}
		}
		if rep.worst() == levelOK {
			rep.ok(fmt.Sprintf("%s: %s", plural(len(certs), "CA certificate", "CA certificates"), strings.Join(parts, ", ")))
		}
		return
	}
	if t.keyFile != "" {
		keyPEM, err := os.ReadFile(t.keyFile)
		switch {
		case err != nil:
			rep.fail(fmt.Sprintf("cannot read %s %s: %s", t.keyKey, t.keyFile, plainFileErr(err)), "make it readable by the PDP's user")
			return
		default:
			if _, err := tls.X509KeyPair(raw, keyPEM); err != nil {
				msg := fmt.Sprintf("does not load with %s %s: %v", t.keyKey, t.keyFile, err)
				if strings.Contains(err.Error(), "does not match") {
					msg = fmt.Sprintf("the key in %s %s is not this certificate's key", t.keyKey, t.keyFile)
				}
				rep.fail(msg, "give the key the certificate was issued for (the PDP would not start)")
				return
			}
		}
	}
	leaf := certs[0]
	d.certTimes(rep, leaf, "it")
	for i := 1; i < len(certs); i++ {
		d.certTimes(rep, certs[i], "the chain's "+certName(certs[i]))
		if err := certs[i-1].CheckSignatureFrom(certs[i]); err != nil {
			rep.warn(fmt.Sprintf("certificate %d of the file is not signed by certificate %d: the chain is out of order or incomplete", i, i+1),
				"put the server certificate first, then each issuer in turn")
		}
	}
	usage := x509.ExtKeyUsageServerAuth
	if t.client {
		usage = x509.ExtKeyUsageClientAuth
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, usage) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		what := map[x509.ExtKeyUsage]string{x509.ExtKeyUsageServerAuth: "server", x509.ExtKeyUsageClientAuth: "client"}[usage]
		rep.warn("it is not a "+what+" certificate (extended key usage): peers refuse it", "issue it for "+what+" authentication")
	}
	names := append(slices.Clone(leaf.DNSNames), ipStrings(leaf.IPAddresses)...)
	if !t.client {
		if len(names) == 0 {
			rep.warn("it names no host (no subject alternative name): clients refuse it", "issue it with the DNS names or IP addresses clients use")
		}
		for _, h := range t.hosts {
			if err := leaf.VerifyHostname(h); err != nil {
				rep.warn(fmt.Sprintf("it is not valid for %s (%s): clients reaching that name refuse it", h, t.hostsWhy), "add "+h+" to its subject alternative names")
			}
		}
	}
	if rep.worst() == levelOK {
		if len(names) > 6 {
			names = append(names[:6], "...")
		}
		forWhat := "for " + strings.Join(names, ", ")
		if t.client {
			forWhat = "client " + certName(leaf)
		}
		rep.ok(fmt.Sprintf("valid until %s (%d days), %s, issued by %s", day(leaf.NotAfter), int(leaf.NotAfter.Sub(d.now).Hours()/24), forWhat, cmp.Or(leaf.Issuer.CommonName, leaf.Issuer.String())))
	}
}

// certTimes reports c's validity period; it returns whether c is valid
// now and for 30 days more.
func (d *doctor) certTimes(rep report, c *x509.Certificate, what string) bool {
	switch left := c.NotAfter.Sub(d.now); {
	case d.now.Before(c.NotBefore):
		rep.fail(fmt.Sprintf("%s is not valid before %s: peers refuse it until then", what, c.NotBefore.UTC().Format(time.RFC3339)),
			"check this host's clock, or use a certificate valid now")
	case left <= 0:
		rep.fail(fmt.Sprintf("%s expired on %s (%d days ago): peers refuse it", what, day(c.NotAfter), int(-left.Hours()/24)),
			"renew it (the PDP reloads its listener's files when they change)")
	case left < certWarnBefore:
		rep.warn(fmt.Sprintf("%s expires on %s, in %d days", what, day(c.NotAfter), int(left.Hours()/24)),
			"renew it before then (the PDP reloads its listener's files when they change)")
	default:
		return true
	}
	return false
}

func certName(c *x509.Certificate) string {
	return fmt.Sprintf("%q", cmp.Or(c.Subject.CommonName, c.Subject.String()))
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

func plainFileErr(err error) string {
	var pe *os.PathError
	switch {
	case errors.Is(err, os.ErrNotExist) && errors.As(err, &pe) && !filepath.IsAbs(pe.Path):
		return "no such file (a relative path is read from the working directory, as the PDP reads it: run pdp doctor where the PDP runs)"
	case errors.Is(err, os.ErrNotExist):
		return "no such file"
	case errors.Is(err, os.ErrPermission):
		return "permission denied"
	case errors.As(err, &pe):
		return pe.Err.Error()
	}
	return err.Error()
}

// keyFile is a secret or key file of the configuration; its content is
// never printed.
type keyFile struct {
	key, path string
	parse     func([]byte) (string, error) // what it holds, or why it is unusable
	missingOK string                       // when set: the PDP creates it, said so
}

func (d *doctor) keyFiles() []keyFile {
	c := d.cfg
	nonEmpty := func(b []byte) (string, error) {
		if len(bytes.TrimSpace(b)) == 0 {
			return "", errors.New("it is empty")
		}
		return "readable, not empty (not shown)", nil
	}
	privateKey := func(b []byte) (string, error) {
		k, err := assertion.ParsePrivateKey(b)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("a %s private key", keyKind(k.Public())), nil
	}
	var out []keyFile
	for i, r := range c.Resources {
		if in := r.Introspection; in != nil {
			k := fmt.Sprintf("resources[%d].introspection.", i)
			if in.ClientSecretFile != "" {
				out = append(out, keyFile{key: k + "client_secret_file", path: in.ClientSecretFile, parse: nonEmpty})
			}
			if in.PrivateKeyFile != "" {
				out = append(out, keyFile{key: k + "private_key_file", path: in.PrivateKeyFile, parse: privateKey})
			}
		}
	}
	if f := c.Policy.BearerTokenFile; f != "" {
		out = append(out, keyFile{key: "policy.bearer_token_file", path: f, parse: func(b []byte) (string, error) {
			if f := strings.Fields(string(b)); len(f) != 1 {
				return "", fmt.Errorf("it holds %d words; it must hold one token", len(f))
			}
			return "one token (not shown)", nil
		}})
	}
	if f := c.Policy.Verification.KeyFile; f != "" {
		out = append(out, keyFile{key: "policy.verification.key_file", path: f, parse: func(b []byte) (string, error) {
			if bytes.Contains(b, []byte("PRIVATE KEY-----")) {
				return "", errors.New("it is a private key: give the public key (the PDP refuses to start)")
			}
			return "readable", nil
		}})
	}
	if n := c.Audit.NATS; c.Audit.IsEnabled() && n.URL != config.NATSEmbedded {
		if n.Credentials != "" {
			out = append(out, keyFile{key: "audit.nats.credentials", path: n.Credentials, parse: func(b []byte) (string, error) {
				if !bytes.Contains(b, []byte("BEGIN NATS USER JWT")) || !bytes.Contains(b, []byte("BEGIN USER NKEY SEED")) {
					return "", errors.New("it is not a NATS .creds file (a user JWT and an NKey seed)")
				}
				return "a NATS .creds file (not shown)", nil
			}})
		}
		if n.NKeySeed != "" {
			out = append(out, keyFile{key: "audit.nats.nkey_seed", path: n.NKeySeed, parse: nonEmpty})
		}
	}
	if c.Audit.IsEnabled() {
		sk := keyFile{key: "audit.checkpoint.signing_key", path: c.Audit.Checkpoint.SigningKey, parse: func(b []byte) (string, error) {
			return "an Ed25519 signing key", nil
		}}
		if sk.path == "" {
			sk.path = filepath.Join(c.DataDir, server.DefaultSigningKey)
			sk.missingOK = "the PDP creates it at its first start"
		}
		out = append(out, sk)
	}
	return out
}

func keyKind(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d-bit", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

func (d *doctor) checkKeyFile(rep report, kf keyFile) {
	b, err := os.ReadFile(kf.path)
	switch {
	case errors.Is(err, os.ErrNotExist) && kf.missingOK != "":
		rep.ok("not there yet: " + kf.missingOK)
		return
	case err != nil:
		rep.fail("cannot read it: "+plainFileErr(err), "make it readable by the PDP's user (the PDP would not start)")
		return
	}
	if kf.key == "audit.checkpoint.signing_key" {
		if _, err := auditsink.LoadSigningKey(kf.path); err != nil {
			rep.fail(err.Error(), "an Ed25519 private key in PEM (openssl genpkey -algorithm ed25519)")
			return
		}
	}
	what, err := kf.parse(b)
	if err != nil {
		rep.fail(err.Error(), "")
		return
	}
	rep.ok(what)
}
