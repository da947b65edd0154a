package assertion

import (
	"bytes"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// TestInteropJWX: an upstream using a general JOSE library (here jwx's own
// JWT parser, not this package's Verify) accepts the assertions and reads
// the same claims, for every algorithm.
func TestInteropJWX(t *testing.T) {
	for _, alg := range Algorithms() {
		t.Run(alg, func(t *testing.T) {
			s := newSigner(t, alg)
			set, err := jwk.Parse(s.JWKS())
			if err != nil {
				t.Fatal(err)
			}
			for range 50 { // exercise short r and s (left padding)
				tok := mustSign(t, s, Claims{Subject: "alice", ClientID: "claude", Scopes: []string{"a", "b"}, Audience: testAudience})
				jt, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithIssuer(testIssuer), jwt.WithAudience(testAudience), jwt.WithValidate(true))
				if err != nil {
					t.Fatalf("jwx refuses %s: %v", tok, err)
				}
				var scope string
				if sub, _ := jt.Subject(); sub != "alice" || jt.Get("scope", &scope) != nil || scope != "a b" {
					t.Fatalf("jwx reads sub %q scope %q", sub, scope)
				}
				msg, err := jws.Parse([]byte(tok))
				if err != nil {
					t.Fatal(err)
				}
				if typ, _ := msg.Signatures()[0].ProtectedHeaders().Type(); typ != Typ {
					t.Fatalf("typ %q", typ)
				}
			}
		})
	}
}

func TestDERToRS(t *testing.T) {
	r32 := bytes.Repeat([]byte{0x11}, 32)
	cases := []struct {
		name string
		der  []byte
		want []byte // nil = error
	}{
		{"full", append(append([]byte{0x30, 68, 0x02, 32}, r32...), append([]byte{0x02, 32}, r32...)...), append(append([]byte{}, r32...), r32...)},
		{"sign byte", append(append([]byte{0x30, 70, 0x02, 33, 0x00}, append([]byte{0x80}, r32[1:]...)...), append([]byte{0x02, 33, 0x00}, append([]byte{0x80}, r32[1:]...)...)...),
			append(append([]byte{0x80}, r32[1:]...), append([]byte{0x80}, r32[1:]...)...)},
		{"short", []byte{0x30, 6, 0x02, 1, 0x05, 0x02, 1, 0x07}, append(append(make([]byte, 31), 0x05), append(make([]byte, 31), 0x07)...)},
		{"trailing", []byte{0x30, 6, 0x02, 1, 0x05, 0x02, 1, 0x07, 0}, nil},
		{"extra element", []byte{0x30, 9, 0x02, 1, 0x05, 0x02, 1, 0x07, 0x02, 1, 1}, nil},
		{"negative", []byte{0x30, 6, 0x02, 1, 0x85, 0x02, 1, 0x07}, nil},
		{"too long", append(append([]byte{0x30, 71, 0x02, 33, 0x01}, r32...), append([]byte{0x02, 32}, r32...)...), nil},
		{"not a sequence", []byte{0x31, 0}, nil},
		{"truncated", []byte{0x30, 6, 0x02, 1}, nil},
		{"empty", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := derToRS(tc.der, 32)
			switch {
			case tc.want == nil && err == nil:
				t.Errorf("accepted: %x", got)
			case tc.want != nil && err != nil:
				t.Error(err)
			case tc.want != nil && !bytes.Equal(got, tc.want):
				t.Errorf("got  %x\nwant %x", got, tc.want)
			case err != nil && !strings.Contains(err.Error(), "malformed"):
				t.Errorf("error %v", err)
			}
		})
	}
}
