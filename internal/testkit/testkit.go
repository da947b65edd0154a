// Package testkit holds the helpers that tests of several mcp-pdp packages
// share: polling for a condition, writing files, key pairs and a test
// certificate authority. It is imported by tests only; it imports nothing
// of mcp-pdp, so that any package's tests may use it without a cycle.
package testkit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// WaitTimeout is how long WaitFor waits before it fails the test: generous,
// as a loaded CI machine is slow, and a passing test does not wait it out.
const WaitTimeout = 60 * time.Second

// WaitFor polls cond every 10ms until it holds, and fails the test naming
// what it waited for when it does not hold within WaitTimeout.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WriteFile writes content to path, creating its directory.
func WriteFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// WriteAtomic replaces a file the way certificate tools do: a temporary
// file renamed over the old one.
func WriteAtomic(tb testing.TB, path string, data []byte) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// RSAKeyFiles writes a fresh 2048-bit RSA key pair as PEM files (PKCS #8
// private key, PKIX public key) in a temporary directory.
func RSAKeyFiles(tb testing.TB) (priv, pub string) {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return KeyFiles(tb, k)
}

// ECKeyFiles writes a fresh ECDSA P-256 key pair as PEM files, as
// RSAKeyFiles does.
func ECKeyFiles(tb testing.TB) (priv, pub string) {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return KeyFiles(tb, k)
}

// KeyFiles writes key and its public key as PEM files (PKCS #8 private
// key "key.pem", PKIX public key "pub.pem") in a temporary directory and
// returns their paths.
func KeyFiles(tb testing.TB, key crypto.Signer) (priv, pub string) {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	priv, pub = filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	WriteFile(tb, priv, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	WriteFile(tb, pub, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})))
	return priv, pub
}

// SyncBuffer is an io.Writer safe for concurrent writers, e.g. a log sink
// that a test reads while the server writes.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// CA is a certificate authority made for one test (ECDSA P-256, valid from
// an hour ago for a day).
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA whose subject common name is cn.
func NewCA(tb testing.TB, cn string) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(tb), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{Cert: cert, key: key}
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// Leaf describes a certificate Issue signs.
type Leaf struct {
	// CommonName is the subject's common name.
	CommonName string
	// DNSNames are subject alternative names; a server certificate without
	// them is issued for 127.0.0.1.
	DNSNames []string
	// Client makes a client certificate (ExtKeyUsageClientAuth) instead of
	// a server certificate.
	Client bool
}

// Issue returns the PEM certificate and private key of a leaf signed by ca.
func (ca *CA) Issue(tb testing.TB, l Leaf) (certPEM, keyPEM []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(tb), Subject: pkix.Name{CommonName: l.CommonName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, DNSNames: l.DNSNames}
	switch {
	case l.Client:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if len(l.DNSNames) == 0 {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// KeyPair is Issue as a tls.Certificate.
func (ca *CA) KeyPair(tb testing.TB, l Leaf) tls.Certificate {
	tb.Helper()
	c, k := ca.Issue(tb, l)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		tb.Fatal(err)
	}
	return pair
}

// PEM returns the CA certificate in PEM form.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool returns a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Decision is what a test reads of a /v1/decide answer.
type Decision struct {
	Status   int
	Allow    bool
	Reason   string
	Revision string // policy_revision
}

// PostDecide posts body to base's /v1/decide and reads the answer; a body
// that is not JSON is an error naming the status and the body.
func PostDecide(c *http.Client, base string, body []byte) (Decision, error) {
	resp, err := c.Post(base+"/v1/decide", "application/json", bytes.NewReader(body))
	if err != nil {
		return Decision{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Allow          bool   `json:"allow"`
		Reason         string `json:"reason"`
		PolicyRevision string `json:"policy_revision"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		return Decision{Status: resp.StatusCode}, fmt.Errorf("HTTP %d %s", resp.StatusCode, raw)
	}
	return Decision{resp.StatusCode, out.Allow, out.Reason, out.PolicyRevision}, nil
}

// MarkedPolicy is a policy (file name to content) whose rules and data both
// carry name: every decision is allowed with the reason
// "rules-<name>/data-<name>", so that a decision made from the rules of one
// bundle and the data of another shows as "rules-a/data-b".
func MarkedPolicy(name string) map[string]string {
	return map[string]string{
		"authz.rego": fmt.Sprintf(`package mcp.authz

decision := {"allow": true, "reason": concat("/", ["rules-%s", data.marker])}
`, name),
		"data.json": fmt.Sprintf(`{"marker": "data-%s"}`, name),
	}
}
