package assertion

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestKeyFileCreatedAndReused(t *testing.T) {
	for _, alg := range []string{"", "ES384", "EdDSA"} {
		t.Run("alg="+alg, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "not-yet", "assertion-key.pem")
			s1, err := NewSigner(Options{KeyFile: path, Issuer: testIssuer, Alg: alg})
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS != "windows" {
				if m := fi.Mode().Perm(); m != 0o600 {
					t.Errorf("key file mode %o, want 600", m)
				}
				di, _ := os.Stat(filepath.Dir(path))
				if m := di.Mode().Perm(); m != 0o700 {
					t.Errorf("key directory mode %o, want 700", m)
				}
			}
			b, _ := os.ReadFile(path)
			if blk, _ := pem.Decode(b); blk == nil || blk.Type != "PRIVATE KEY" {
				t.Errorf("key file is not a PEM PRIVATE KEY:\n%s", b)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".assertion-key-*")); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}

			// A restart: the same key (Alg "" takes the file's), so that
			// assertions of the first process verify with the JWKS of the
			// second.
			s2, err := NewSigner(Options{KeyFile: path, Issuer: testIssuer})
			if err != nil {
				t.Fatal(err)
			}
			if s2.KeyID() != s1.KeyID() || string(s2.JWKS()) != string(s1.JWKS()) || s2.Alg() != s1.Alg() {
				t.Errorf("second start: kid %s alg %s, first: kid %s alg %s", s2.KeyID(), s2.Alg(), s1.KeyID(), s1.Alg())
			}
			if want := map[string]string{"": "ES256"}[alg]; want != "" && s1.Alg() != want {
				t.Errorf("alg %s, want %s", s1.Alg(), want)
			}
			tok := mustSign(t, s1, Claims{Subject: "alice", Audience: testAudience})
			if _, err := Verify(tok, s2.JWKS(), testIssuer, testAudience, time.Now()); err != nil {
				t.Error(err)
			}
			after, _ := os.ReadFile(path)
			if string(after) != string(b) {
				t.Error("the second start rewrote the key file")
			}
		})
	}
}

// TestKeyFileConcurrentCreation: two gateways starting at once on a missing
// file end up with one key.
func TestKeyFileConcurrentCreation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.pem")
	const n = 4
	kids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := NewSigner(Options{KeyFile: path, Issuer: testIssuer})
			errs[i] = err
			if err == nil {
				kids[i] = s.KeyID()
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if kids[i] != kids[0] {
			t.Errorf("signer %d has kid %s, signer 0 %s", i, kids[i], kids[0])
		}
	}
}

func TestKeyFileRefused(t *testing.T) {
	ecDER := func(c elliptic.Curve) []byte {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p256 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER(elliptic.P256())})
	cases := []struct {
		name    string
		content []byte
		alg     string
		want    string
	}{
		{"garbage", []byte("not a key\n"), "", "no PEM private key in it"},
		{"empty", nil, "", "no PEM private key in it"},
		{"certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), "", `PEM block "CERTIFICATE" is not a private key`},
		{"corrupt PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage")}), "", "PRIVATE KEY:"},
		{"truncated", p256[:len(p256)/2], "", "no PEM private key in it"},
		{"RSA key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}), "", "holds a *rsa.PrivateKey; supported: EC P-256"},
		{"P-256 key for EdDSA", p256, "EdDSA", "holds an EC P-256 key, which cannot sign EdDSA (it signs ES256)"},
		{"P-256 key for ES384", p256, "ES384", "cannot sign ES384"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewSigner(Options{KeyFile: path, Issuer: testIssuer, Alg: tc.alg})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q should name %s and contain %q", err, path, tc.want)
			}
			if b, _ := os.ReadFile(path); string(b) != string(tc.content) {
				t.Error("the refused key file was changed")
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		_, err := NewSigner(Options{KeyFile: dir, Issuer: testIssuer})
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("error %v should name %s", err, dir)
		}
	})
}

// TestKeyFileOpenSSL: a key made with `openssl ecparam -genkey -name
// prime256v1` (EC PARAMETERS, then a SEC 1 EC PRIVATE KEY) is read.
func TestKeyFileOpenSSL(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	params := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07} // OID prime256v1
	b := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: params}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(Options{KeyFile: path, Issuer: testIssuer})
	if err != nil {
		t.Fatal(err)
	}
	if !s.priv.(*ecdsa.PrivateKey).Equal(k) || s.Alg() != "ES256" {
		t.Errorf("not the file's key, or alg %s", s.Alg())
	}
}

// TestParsePrivateKey: the PEM forms of a private key the PDP reads (an
// assertion key, the introspection client's private_key_jwt key), and what
// is refused.
func TestParsePrivateKey(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pub, _ := x509.MarshalPKIXPublicKey(ec.Public())
	enc := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	for _, tt := range []struct {
		name string
		pem  []byte
		want string // "" = parsed
	}{
		{"PKCS #8", enc("PRIVATE KEY", pkcs8), ""},
		{"SEC 1 after EC PARAMETERS", append(enc("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), enc("EC PRIVATE KEY", sec1)...), ""},
		{"PKCS #1 RSA", enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), ""},
		{"a public key", enc("PUBLIC KEY", pub), "is not a private key"},
		{"not PEM", []byte("hello"), "no PEM private key"},
		{"a broken key", enc("PRIVATE KEY", []byte{1, 2, 3}), "PRIVATE KEY:"},
	} {
		k, err := ParsePrivateKey(tt.pem)
		switch {
		case tt.want == "" && (err != nil || k == nil):
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
