package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/quota"
	"github.com/mcp-pdp/pdp/internal/revoke"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// doctorSecret is the introspection client secret of the tests: it must
// appear in no output.
const doctorSecret = "s3cret-never-printed-4f1c"

// doctorEnv is a deployment's real parts: an authorization server (the dev
// one: RFC 8414 metadata with PKCE S256, a JWKS), a PDP serving the
// resource's metadata on the resource's host, NATS with JetStream, an
// introspection endpoint, TLS files.
type doctorEnv struct {
	dir      string
	issuer   string
	resource string
	nats     string
	intro    string // introspection endpoint (client "pdp", doctorSecret)
}

// doctorAuthServer starts the dev authorization server for an issuer URL of
// its own address plus suffix ("" or "/").
func doctorAuthServer(t *testing.T, suffix string) string {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	u := "http://" + hs.Listener.Addr().String() + suffix
	iss, err := devissuer.New(u, "ES256")
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = iss.AuthServer(devissuer.AuthServerOptions{}).Handler()
	hs.Start()
	t.Cleanup(hs.Close)
	return u
}

func newDoctorEnv(t *testing.T) *doctorEnv {
	t.Helper()
	e := &doctorEnv{dir: t.TempDir(), issuer: doctorAuthServer(t, "")}

	// The PDP itself serves the resource's RFC 9728 document, on the
	// resource's host, as an MCP server passing the path to it would.
	hs := httptest.NewUnstartedServer(nil)
	e.resource = "http://" + hs.Listener.Addr().String() + "/mcp"
	pcfg := &config.Config{DataDir: t.TempDir(), Resources: []config.Resource{{URI: e.resource, Issuer: e.issuer}}}
	off := false
	pcfg.Audit.Enabled = &off
	pcfg.ApplyDefaults()
	pdp, err := server.New(context.Background(), pcfg, server.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = pdp.Handler()
	hs.Start()
	t.Cleanup(func() { hs.Close(); _ = pdp.Close() })

	// NATS with the streams and the bucket the PDP makes.
	ns := natstest.Start(t)
	e.nats = ns.URL()
	nc, err := nats.Connect(e.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, auditsink.StreamConfig(auditsink.Config{})); err != nil {
		t.Fatal(err)
	}
	if err := quota.EnsureStream(ctx, js, quota.Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := revoke.OpenBucket(ctx, js, revoke.DefaultBucket, true, 1); err != nil {
		t.Fatal(err)
	}

	// An RFC 7662 endpoint: the authorization server's, which this dev
	// one has not.
	intro := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "pdp" || secret != doctorSecret {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active": false}`))
	}))
	t.Cleanup(intro.Close)
	e.intro = intro.URL + "/introspect"
	return e
}

// config is the healthy configuration, as YAML values to change.
func (e *doctorEnv) config(t *testing.T) map[string]any {
	t.Helper()
	cert, key := writeCert(t, e.dir, "pdp", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	testkit.WriteFile(t, filepath.Join(e.dir, "client-secret"), doctorSecret+"\n")
	return map[string]any{
		"listen":   "127.0.0.1:8443",
		"data_dir": filepath.Join(e.dir, "data"),
		"resources": []map[string]any{{
			"uri": e.resource, "issuer": e.issuer, "scopes_supported": []string{"qr:generate"},
			"introspection": map[string]any{"endpoint": e.intro, "client_id": "pdp", "client_secret_file": filepath.Join(e.dir, "client-secret")},
		}},
		"audit": map[string]any{"nats": map[string]any{"url": e.nats}},
		"tls":   map[string]any{"cert_file": cert, "key_file": key},
	}
}

func resource0(m map[string]any) map[string]any { return m["resources"].([]map[string]any)[0] }

func writeDoctorConfig(t *testing.T, m map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "pdp.yaml")
	testkit.WriteFile(t, p, string(b))
	return p
}

// writeCert writes a self-signed server certificate for 127.0.0.1 and its
// key, valid from notBefore to notAfter.
func writeCert(t *testing.T, dir, name string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	testkit.WriteFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	testkit.WriteFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	return certFile, keyFile
}

// closedPort is a local address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// serveJSON serves one document at every path.
func serveJSON(t *testing.T, doc string) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(doc))
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

func runDoctorCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"doctor"}, args...), &out, &errOut)
	if errOut.Len() > 0 {
		t.Fatalf("stderr: %s", errOut.String())
	}
	if strings.Contains(out.String(), doctorSecret) {
		t.Fatalf("the output shows the client secret:\n%s", out.String())
	}
	return out.String(), code
}

// hasLine reports whether a line of out starts with level and holds every
// part.
func hasLine(out, level string, parts ...string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if !strings.HasPrefix(line, level+" ") {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

func TestDoctorHealthy(t *testing.T) {
	e := newDoctorEnv(t)
	cfg := writeDoctorConfig(t, e.config(t))
	out, code := runDoctorCmd(t, "--config", cfg, "--timeout", "5s")
	if code != 0 || strings.Contains(out, "\nwarn ") || strings.Contains(out, "\nFAIL ") {
		t.Fatalf("exit %d, want 0 and no warning:\n%s", code, out)
	}
	for _, want := range [][]string{
		{"ok", "resource " + e.resource + ": jwks", "/jwks.json (the jwks_uri of the issuer's metadata): 1 key; the PDP verifies kid ", ": ES256"},
		{"ok", ": introspection", `answers {"active": false} for a made-up token, as client "pdp"`},
		{"ok", ": metadata", "clients derive " + strings.Replace(e.resource, "/mcp", "/.well-known/oauth-protected-resource/mcp", 1), "authorization_servers [" + e.issuer + "]"},
		{"ok", "issuer " + e.issuer + ": metadata", "RFC 8414 metadata at", "exactly the configured one"},
		{"ok", "nats " + e.nats, "connected to", "JetStream API level"},
		{"ok", "stream MCP_AUDIT", "exists: 0 events, file storage, 1 replica, max_age unlimited, deny_delete and deny_purge"},
		{"ok", "stream PDP_QUOTAS", "exists and counts"},
		{"ok", "bucket pdp_revocations", "exists: 0 entries, no TTL"},
		{"ok", "policy embedded", "loads as the server would: revision sha256:"},
		{"ok", "tls.cert_file", "valid until", "for 127.0.0.1"},
		{"ok", "client_secret_file", "readable, not empty (not shown)"},
		{"ok", "audit.checkpoint.signing_key", "the PDP creates it at its first start"},
	} {
		if !hasLine(out, want[0], want[1:]...) {
			t.Errorf("no %s line with %q:\n%s", want[0], want[1:], out)
		}
	}

	// --json: the same findings for scripts.
	js, code := runDoctorCmd(t, "--config", cfg, "--json")
	var rep struct {
		Status   string `json:"status"`
		ExitCode int    `json:"exit_code"`
		Findings []struct {
			Level, Check, Subject, Message string
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, js)
	}
	if code != 0 || rep.ExitCode != 0 || rep.Status != "ok" || len(rep.Findings) < 12 || rep.Findings[0].Check != "config" {
		t.Fatalf("--json: exit %d, %+v", code, rep)
	}
}

func TestDoctorFindings(t *testing.T) {
	e := newDoctorEnv(t)
	badPolicy := polDir(t, map[string]string{"authz.rego": "package mcp.authz\n\ndecision := {\"allow\": allowed}\n"})
	noUsableKey := serveJSON(t, `{"keys": [{"kty": "EC", "crv": "P-256", "kid": "enc-1", "use": "enc",
		"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
	privateKey := serveJSON(t, `{"keys": [{"kty": "EC", "crv": "P-256", "kid": "leaked", "use": "sig",
		"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
		"d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]}`)
	slashIssuer := doctorAuthServer(t, "/")
	es256 := devissuertest.New(t, "ES256")
	// A JWKS that answers too late, and a NATS that accepts connections
	// but says nothing.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.Close() })
	go func() {
		var conns []net.Conn
		for {
			c, err := mute.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	// An audit stream an operator made without deny_delete, and a NATS
	// whose PDP_QUOTAS is no counter stream.
	openStream := "OPEN_AUDIT"
	other := natstest.Start(t)
	for _, sc := range []struct {
		url string
		cfg jetstream.StreamConfig
	}{
		{e.nats, jetstream.StreamConfig{Name: openStream, Subjects: []string{"open.audit.>"}, Storage: jetstream.FileStorage}},
		{other.URL(), jetstream.StreamConfig{Name: quota.DefaultStream, Subjects: []string{quota.DefaultPrefix + ".>"}, Storage: jetstream.FileStorage}},
	} {
		nc, err := nats.Connect(sc.url)
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(context.Background(), sc.cfg); err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	tests := []struct {
		name    string
		change  func(t *testing.T, m map[string]any)
		code    int
		level   string
		parts   []string
		timeout string
	}{
		{"unreachable JWKS", func(t *testing.T, m map[string]any) {
			resource0(m)["jwks_uri"] = "http://" + closedPort(t) + "/jwks.json"
		}, 3, "warn", []string{": jwks", "cannot fetch the signing keys", "connection refused: nothing listens at that address"}, ""},
		{"unreachable JWKS without introspection fails", func(t *testing.T, m map[string]any) {
			resource0(m)["jwks_uri"] = "http://" + closedPort(t) + "/jwks.json"
			delete(resource0(m), "introspection")
		}, 1, "FAIL", []string{": jwks", "cannot fetch the signing keys", "connection refused"}, ""},
		{"JWKS with no usable key", func(t *testing.T, m map[string]any) {
			resource0(m)["jwks_uri"] = noUsableKey + "/jwks.json"
			delete(resource0(m), "introspection")
		}, 1, "FAIL", []string{": jwks", "holds no key the PDP can use", "no usable signature verification keys"}, ""},
		{"JWKS key for encryption only is named", func(t *testing.T, m map[string]any) {
			resource0(m)["jwks_uri"] = noUsableKey + "/jwks.json"
		}, 3, "warn", []string{": jwks", `key "enc-1" has use=enc: it is not for signatures`}, ""},
		{"JWKS publishing a private key", func(t *testing.T, m map[string]any) {
			resource0(m)["jwks_uri"] = privateKey + "/jwks.json"
		}, 1, "FAIL", []string{": jwks", `key "leaked" publishes its private part (d)`}, ""},
		{"JWKS without a key for the accepted algorithms", func(t *testing.T, m map[string]any) {
			resource0(m)["jwks_uri"] = es256.JWKSURI()
			resource0(m)["algorithms"] = []string{"RS256", "PS256"}
			delete(resource0(m), "introspection")
		}, 1, "FAIL", []string{": jwks", "none of its 1 key can verify the algorithms the PDP accepts (RS256 PS256)", "set resources[0].algorithms"}, ""},
		{"issuer mismatch by a trailing slash", func(t *testing.T, m map[string]any) {
			resource0(m)["issuer"] = strings.TrimSuffix(slashIssuer, "/")
		}, 1, "FAIL", []string{"issuer " + strings.TrimSuffix(slashIssuer, "/") + ": metadata", "differ by a trailing slash", `set resources[0].issuer to "` + slashIssuer + `" exactly`}, ""},
		{"introspection with a wrong secret", func(t *testing.T, m map[string]any) {
			f := filepath.Join(t.TempDir(), "secret")
			testkit.WriteFile(t, f, "wrong")
			resource0(m)["introspection"].(map[string]any)["client_secret_file"] = f
		}, 1, "FAIL", []string{": introspection", "refused the PDP's own credentials (401 Unauthorized"}, ""},
		{"NATS unreachable", func(t *testing.T, m map[string]any) {
			m["audit"] = map[string]any{"nats": map[string]any{"url": "nats://" + closedPort(t)}}
		}, 1, "FAIL", []string{"nats nats://", "no NATS server answers at", "nothing accepts connections there"}, ""},
		{"NATS that does not speak, within --timeout", func(t *testing.T, m map[string]any) {
			m["audit"] = map[string]any{"nats": map[string]any{"url": "nats://" + mute.Addr().String()}}
		}, 1, "FAIL", []string{"nats nats://", "no NATS server answers at", "no answer in time"}, "1s"},
		{"audit stream that allows deleting events", func(t *testing.T, m map[string]any) {
			m["audit"] = map[string]any{"nats": map[string]any{"url": e.nats}, "stream": openStream, "subject_prefix": "open.audit", "manage_stream": false}
		}, 3, "warn", []string{"stream " + openStream, "it allows deleting or purging events (deny_delete false, deny_purge false): anyone with the rights can erase the audit"}, ""},
		{"quota stream that is not a counter stream", func(t *testing.T, m map[string]any) {
			m["audit"] = map[string]any{"nats": map[string]any{"url": other.URL()}}
		}, 1, "FAIL", []string{"stream PDP_QUOTAS", "cannot be used: it is not a counter stream (allow_msg_counter)"}, ""},
		{"JWKS that answers too late", func(t *testing.T, m map[string]any) {
			resource0(m)["jwks_uri"] = slow.URL + "/jwks.json"
			delete(resource0(m), "introspection")
			m["jwks"] = map[string]any{"fetch_timeout": "300ms"}
		}, 1, "FAIL", []string{": jwks", "cannot fetch the signing keys", "/jwks.json: no answer in time"}, ""},
		{"policy that does not compile", func(t *testing.T, m map[string]any) {
			m["policy"] = map[string]any{"path": badPolicy}
		}, 1, "FAIL", []string{"policy " + badPolicy, "authz.rego:3: rego_unsafe_var_error: var allowed is unsafe"}, ""},
		{"expired certificate", func(t *testing.T, m map[string]any) {
			cert, key := writeCert(t, t.TempDir(), "old", time.Now().Add(-400*24*time.Hour), time.Now().Add(-2*24*time.Hour))
			m["tls"] = map[string]any{"cert_file": cert, "key_file": key}
		}, 1, "FAIL", []string{"tls.cert_file", "it expired on", "(2 days ago)"}, ""},
		{"certificate expiring in 10 days", func(t *testing.T, m map[string]any) {
			cert, key := writeCert(t, t.TempDir(), "soon", time.Now().Add(-24*time.Hour), time.Now().Add(10*24*time.Hour+time.Hour))
			m["tls"] = map[string]any{"cert_file": cert, "key_file": key}
		}, 3, "warn", []string{"tls.cert_file", "it expires on", "in 10 days", "renew it"}, ""},
		{"API keys in clear text on the network", func(t *testing.T, m map[string]any) {
			m["listen"] = "0.0.0.0:8181"
			delete(m, "tls")
			m["auth"] = map[string]any{"api_keys": []map[string]any{{"name": "gw", "sha256": strings.Repeat("ab", 32)}}}
		}, 3, "warn", []string{"config ", "listen 0.0.0.0:8181 without tls: the PEPs' API keys cross the network in clear text"}, ""},
		{"key of another certificate", func(t *testing.T, m map[string]any) {
			d := t.TempDir()
			cert, _ := writeCert(t, d, "a", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
			_, key := writeCert(t, d, "b", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
			m["tls"] = map[string]any{"cert_file": cert, "key_file": key}
		}, 1, "FAIL", []string{"tls.cert_file", "is not this certificate's key"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := e.config(t)
			tc.change(t, m)
			out, code := runDoctorCmd(t, "--config", writeDoctorConfig(t, m), "--timeout", cmp.Or(tc.timeout, "5s"))
			if code != tc.code || !hasLine(out, tc.level, tc.parts...) {
				t.Fatalf("exit %d (want %d), want a %s line with %q:\n%s", code, tc.code, tc.level, tc.parts, out)
			}
		})
	}
}

// A configuration that does not load is the first finding, with its
// file:line; nothing else is checked.
func TestDoctorConfigError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pdp.yaml")
	testkit.WriteFile(t, p, "resources:\n  - uri: https://mcp.example.com/mcp\n    isuer: https://auth.example.com\n")
	out, code := runDoctorCmd(t, "--config", p)
	if code != 1 || !hasLine(out, "FAIL", "config "+p+":3", `resources[0].isuer: not a known key; did you mean "issuer"?`) || strings.Contains(out, "ok ") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = runDoctorCmd(t, "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !hasLine(out, "FAIL", "cannot read it") {
		t.Fatalf("missing file: exit %d:\n%s", code, out)
	}
}

func TestDoctorUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"doctor", "-h"}, 0, "Exit status: 0 all ok"},
		{[]string{"doctor"}, 2, "--config is required"},
		{[]string{"doctor", "--config", "x.yaml", "--timeout", "0s"}, 2, "--timeout must be positive"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, want %d and %q:\n%s%s", tc.args, code, tc.code, tc.want, out.String(), errOut.String())
		}
	}
}

// audit.nats.url embedded: the doctor reaches the NATS of a PDP running
// from the data directory (as pdp audit does, as its reader), or says
// that none runs.
func TestDoctorEmbeddedNATS(t *testing.T) {
	issuer := doctorAuthServer(t, "")
	dataDir := t.TempDir()
	m := map[string]any{
		"data_dir":  dataDir,
		"resources": []map[string]any{{"uri": "https://mcp.example.invalid/mcp", "issuer": issuer}},
	}
	cfgPath := writeDoctorConfig(t, m)
	out, code := runDoctorCmd(t, "--config", cfgPath)
	if code != 0 || !hasLine(out, "ok", "nats embedded:", "no PDP is running from here") {
		t.Fatalf("no PDP: exit %d:\n%s", code, out)
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	pdp, err := server.New(context.Background(), cfg, server.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pdp.Close() })
	// The PDP makes its stream and bucket in the background.
	testkit.WaitFor(t, "the PDP's audit stream and revocation bucket", func() bool {
		out, code = runDoctorCmd(t, "--config", cfgPath)
		return hasLine(out, "ok", "stream MCP_AUDIT", "exists:") && hasLine(out, "ok", "bucket pdp_revocations", "exists:")
	})
	for _, want := range [][]string{
		{"nats embedded (nats://127.0.0.1:", "connected to", "JetStream"},
		{"stream MCP_AUDIT", "exists:"},
		{"bucket pdp_revocations", "exists:"},
		{"resource https://mcp.example.invalid/mcp: metadata", "clients derive https://mcp.example.invalid/.well-known/oauth-protected-resource/mcp", "not reachable from here"},
	} {
		if !hasLine(out, "ok", want...) && !hasLine(out, "info", want...) {
			t.Errorf("no line with %q", want)
		}
	}
	if code != 0 || t.Failed() {
		t.Fatalf("exit %d:\n%s", code, out)
	}

	if err := pdp.Close(); err != nil {
		t.Fatal(err)
	}
	out, code = runDoctorCmd(t, "--config", cfgPath)
	if code != 0 || !hasLine(out, "ok", "nats embedded:") || strings.Contains(out, "stream MCP_AUDIT") {
		t.Fatalf("PDP stopped: exit %d:\n%s", code, out)
	}
}
