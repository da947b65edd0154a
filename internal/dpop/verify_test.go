package dpop

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// The keys of the matrix, made once (RSA key generation is slow).
type keys struct {
	es256, es256b, es384, es512, rs256, ps256, eddsa *testKey
}

func testKeys(tb testing.TB) *keys {
	tb.Helper()
	return &keys{
		es256:  newKey(tb, "ES256"),
		es256b: newKey(tb, "ES256"),
		es384:  newKey(tb, "ES384"),
		es512:  newKey(tb, "ES512"),
		rs256:  newKey(tb, "RS256"),
		ps256:  newKey(tb, "PS256"),
		eddsa:  newKey(tb, "EdDSA"),
	}
}

func TestVerifyAccepts(t *testing.T) {
	ks := testKeys(t)
	for _, tc := range []struct {
		name string
		key  *testKey
		mod  func(p *proof, c *Check)
	}{
		{name: "ES256", key: ks.es256},
		{name: "ES384", key: ks.es384},
		{name: "ES512", key: ks.es512},
		{name: "RS256 2048", key: ks.rs256},
		{name: "PS256 2048", key: ks.ps256},
		{name: "EdDSA", key: ks.eddsa},
		{name: "unbound token: the key is only reported", key: ks.es256, mod: func(_ *proof, c *Check) { c.JKT = "" }},
		{name: "no access token: ath not required", key: ks.es256, mod: func(p *proof, c *Check) {
			delete(p.claims, "ath")
			c.AccessToken, c.JKT = "", ""
		}},
		{name: "request URL with a query, htu without", key: ks.es256, mod: func(_ *proof, c *Check) { c.URL = testURL + "?session=1#frag" }},
		{name: "htu with a query and fragment (ignored)", key: ks.es256, mod: func(p *proof, _ *Check) { p.claims["htu"] = testURL + "?x=1#y" }},
		{name: "htu with upper-case scheme and host, default port", key: ks.es256, mod: func(p *proof, _ *Check) {
			p.claims["htu"] = "HTTPS://MCP.Example.COM:443/mcp"
		}},
		{name: "htu with percent-encoded unreserved and dot segments", key: ks.es256, mod: func(p *proof, _ *Check) {
			p.claims["htu"] = "https://mcp.example.com/a/../%6dcp"
		}},
		{name: "iat at the edge of the window (-5 min)", key: ks.es256, mod: func(p *proof, _ *Check) {
			p.claims["iat"] = testNow.Add(-DefaultWindow).Unix()
		}},
		{name: "iat at the edge of the window (+5 min)", key: ks.es256, mod: func(p *proof, _ *Check) {
			p.claims["iat"] = testNow.Add(DefaultWindow).Unix()
		}},
		{name: "fractional iat", key: ks.es256, mod: func(p *proof, _ *Check) { p.claims["iat"] = float64(testNow.Unix()) + 0.25 }},
		{name: "jwk with matching alg member and a kid", key: ks.es256, mod: func(p *proof, _ *Check) {
			var m map[string]any
			_ = json.Unmarshal(ks.es256.jwk, &m)
			m["alg"], m["kid"] = "ES256", "k1"
			p.header["jwk"] = m
		}},
		{name: "unknown header and claims are ignored", key: ks.es256, mod: func(p *proof, _ *Check) {
			p.header["kid"] = "x"
			p.claims["extra"] = []int{1}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, nil)
			p := newProof(tc.key)
			c := check("", tc.key)
			if tc.mod != nil {
				tc.mod(p, &c)
			}
			c.Proof = p.build(t)
			got, err := v.Verify(context.Background(), c)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.JKT != tc.key.jkt || got.JTI != p.claims["jti"] || got.Alg != tc.key.alg {
				t.Errorf("proof = %+v; want jkt %s, jti %v, alg %s", got, tc.key.jkt, p.claims["jti"], tc.key.alg)
			}
			if iat := got.IssuedAt.Unix(); iat < testNow.Add(-DefaultWindow).Unix() || iat > testNow.Add(DefaultWindow).Unix() {
				t.Errorf("IssuedAt = %s", got.IssuedAt)
			}
		})
	}
}

// A proof signed by jwx itself (jws.Sign with the jwk and typ headers) is
// accepted: no dependence on this test's hand-made encoding.
func TestVerifyAcceptsJWXSignedProof(t *testing.T) {
	k := newKey(t, "ES256")
	pub, err := jwk.ParseKey(k.jwk)
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	for name, val := range map[string]any{jws.TypeKey: "dpop+jwt", jws.JWKKey: pub} {
		if err := hdr.Set(name, val); err != nil {
			t.Fatal(err)
		}
	}
	payload := mustJSON(t, map[string]any{"jti": "j-1", "htm": "GET", "htu": "https://mcp.example.com/mcp", "iat": testNow.Unix()})
	signed, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), k.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	v := newTestVerifier(t, nil)
	got, err := v.Verify(context.Background(), Check{Proof: string(signed), Method: "GET", URL: "https://mcp.example.com/mcp", JKT: k.jkt})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.JKT != k.jkt || got.JTI != "j-1" {
		t.Errorf("proof = %+v", got)
	}
}

func TestVerifyRejects(t *testing.T) {
	ks := testKeys(t)
	es := ks.es256
	publicJWK := func(k *testKey) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(k.jwk, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	valid := func() string { return newProof(es).build(t) }
	type tc struct {
		name string
		key  *testKey
		// mod changes the proof before it is signed; raw, when set,
		// replaces the whole DPoP header value.
		mod  func(p *proof, c *Check)
		raw  func() string
		code string
		desc string
	}
	cases := []tc{
		{name: "missing proof", raw: func() string { return "" }, desc: descMissing},
		{name: "not a JWS", raw: func() string { return "not-a-jws" }, desc: descNotJWS},
		{name: "two segments", raw: func() string { return "eyJhIjoxfQ.eyJhIjoxfQ" }, desc: descNotJWS},
		{name: "four segments (JWE-like)", raw: func() string { return valid() + ".AAAA" }, desc: descNotJWS},
		{name: "padded base64", raw: func() string { return "eyJhIjoxfQ==.eyJhIjoxfQ.AAAA" }, desc: descNotJWS},
		{name: "space around", raw: func() string { return " " + valid() }, desc: descNotJWS},
		{name: "two proofs joined", raw: func() string { return valid() + ", " + valid() }, desc: descSeveral},
		{name: "oversized", raw: func() string { return strings.Repeat("A", MaxProofBytes+1) }, desc: descTooLarge},
		{name: "header not JSON", raw: func() string { return enc.EncodeToString([]byte("{typ")) + ".e30.AAAA" }, desc: descHeader},
		{name: "header a JSON array", raw: func() string { return enc.EncodeToString([]byte(`["dpop+jwt"]`)) + ".e30.AAAA" }, desc: descHeader},
		{name: "header with a repeated member", raw: func() string {
			p := newProof(es)
			h := `{"typ":"dpop+jwt","alg":"ES256","jwk":` + string(es.jwk) + `,"t\u0079p":"jwt"}`
			return p.buildRaw(t, []byte(h), mustJSON(t, p.claims))
		}, desc: descHeader},
		{name: "typ missing", mod: func(p *proof, _ *Check) { delete(p.header, "typ") }, desc: descTyp},
		{name: "typ jwt", mod: func(p *proof, _ *Check) { p.header["typ"] = "jwt" }, desc: descTyp},
		{name: "typ in another case", mod: func(p *proof, _ *Check) { p.header["typ"] = "DPoP+JWT" }, desc: descTyp},
		{name: "typ not a string", mod: func(p *proof, _ *Check) { p.header["typ"] = 1 }, desc: descTyp},
		{name: "alg missing", mod: func(p *proof, _ *Check) { delete(p.header, "alg") }, desc: descNoAlg},
		{name: "alg not a string", mod: func(p *proof, _ *Check) { p.header["alg"] = []string{"ES256"} }, desc: descHeader},
		{name: "alg none", mod: func(p *proof, _ *Check) { p.header["alg"], p.signAlg = "none", "none" }, desc: descAlgNotAllowed + "none"},
		{name: "HS256 with an oct jwk", mod: func(p *proof, _ *Check) {
			secret := []byte("0123456789abcdef0123456789abcdef")
			p.header["alg"], p.signAlg, p.signKey = "HS256", "HS256", secret
			p.header["jwk"] = map[string]any{"kty": "oct", "k": enc.EncodeToString(secret)}
		}, desc: descAlgNotAllowed + "HS256"},
		{name: "alg not allowed (ES256K)", mod: func(p *proof, _ *Check) { p.header["alg"] = "ES256K" }, desc: descAlgNotAllowed + "ES256K"},
		{name: "crit header", mod: func(p *proof, _ *Check) { p.header["crit"] = []string{"exp"} }, desc: descCrit},
		{name: "no jwk", mod: func(p *proof, _ *Check) { delete(p.header, "jwk") }, desc: descNoJWK},
		{name: "jwk not an object", mod: func(p *proof, _ *Check) { p.header["jwk"] = "key" }, desc: descJWK},
		{name: "ES256 alg with an RSA key", key: ks.rs256, mod: func(p *proof, _ *Check) { p.header["alg"] = "ES256" }, desc: descKeyFit + "ES256"},
		{name: "ES384 alg with a P-256 key", mod: func(p *proof, _ *Check) { p.header["alg"], p.signAlg = "ES384", "ES384" }, desc: descKeyFit + "ES384"},
		{name: "EdDSA alg with an EC key", mod: func(p *proof, _ *Check) { p.header["alg"] = "EdDSA" }, desc: descKeyFit + "EdDSA"},
		{name: "RS256 alg with an Ed25519 key", key: ks.eddsa, mod: func(p *proof, _ *Check) { p.header["alg"] = "RS256" }, desc: descKeyFit + "RS256"},
		{name: "jwk alg member for another alg", mod: func(p *proof, _ *Check) {
			m := publicJWK(es)
			m["alg"] = "ES384"
			p.header["jwk"] = m
		}, desc: descKeyFit + "ES256"},
		{name: "private EC key in jwk", mod: func(p *proof, _ *Check) { p.header["jwk"] = es.full }, desc: descPrivateKey},
		{name: "private RSA key in jwk", key: ks.rs256, mod: func(p *proof, _ *Check) { p.header["jwk"] = ks.rs256.full }, desc: descPrivateKey},
		{name: "private Ed25519 key in jwk", key: ks.eddsa, mod: func(p *proof, _ *Check) { p.header["jwk"] = ks.eddsa.full }, desc: descPrivateKey},
		{name: "only the RSA p member", key: ks.rs256, mod: func(p *proof, _ *Check) {
			m := publicJWK(ks.rs256)
			m["p"] = "AQAB"
			p.header["jwk"] = m
		}, desc: descPrivateKey},
		{name: "oct jwk without k", mod: func(p *proof, _ *Check) { p.header["jwk"] = map[string]any{"kty": "oct"} }, desc: descSymmetricKey},
		{name: "unknown kty", mod: func(p *proof, _ *Check) { p.header["jwk"] = map[string]any{"kty": "XYZ"} }, desc: descKeyType},
		{name: "EC x coordinate not full size", mod: func(p *proof, _ *Check) {
			m := publicJWK(es)
			m["x"] = enc.EncodeToString(make([]byte, 31))
			p.header["jwk"] = m
		}, desc: descJWK},
		{name: "EC point not on the curve", mod: func(p *proof, _ *Check) {
			m := publicJWK(es)
			y, _ := enc.DecodeString(m["y"].(string))
			y[len(y)-1] ^= 1
			m["y"] = enc.EncodeToString(y)
			p.header["jwk"] = m
		}, desc: descJWK},
		{name: "RSA key of 1024 bits", mod: func(p *proof, _ *Check) {
			m := publicJWK(ks.rs256)
			n, _ := enc.DecodeString(m["n"].(string))
			m["n"] = enc.EncodeToString(n[:128])
			p.header["alg"], p.header["jwk"] = "RS256", m
		}, desc: descRSAShort},
		{name: "RSA key of more than 8192 bits", key: ks.rs256, mod: func(p *proof, _ *Check) {
			m := publicJWK(ks.rs256)
			n := make([]byte, 1025)
			n[0] = 1
			m["n"] = enc.EncodeToString(n)
			p.header["jwk"] = m
		}, desc: descRSALong},
		{name: "RSA n with a leading zero octet", key: ks.rs256, mod: func(p *proof, _ *Check) {
			m := publicJWK(ks.rs256)
			n, _ := enc.DecodeString(m["n"].(string))
			m["n"] = enc.EncodeToString(append([]byte{0}, n...))
			p.header["jwk"] = m
		}, desc: descJWK},
		{name: "EC x with a line break", mod: func(p *proof, _ *Check) {
			m := publicJWK(es)
			x := m["x"].(string)
			m["x"] = x[:10] + "\n" + x[10:] // base64 decoding alone would skip it
			p.header["jwk"] = m
		}, desc: descJWK},
		{name: "wrong signature (another key)", mod: func(p *proof, _ *Check) { p.signKey = ks.es256b.priv }, desc: descSignature},
		{name: "signature of another payload", raw: func() string {
			a := strings.Split(newProof(es).build(t), ".")
			b := strings.Split(newProof(es).build(t), ".")
			return a[0] + "." + a[1] + "." + b[2]
		}, desc: descSignature},
		{name: "empty signature", raw: func() string {
			a := strings.Split(valid(), ".")
			return a[0] + "." + a[1] + "."
		}, desc: descSignature},
		{name: "payload not an object", raw: func() string {
			p := newProof(es)
			return p.buildRaw(t, mustJSON(t, p.header), []byte(`"claims"`))
		}, desc: descPayload},
		{name: "payload with a repeated claim", raw: func() string {
			p := newProof(es)
			return p.buildRaw(t, mustJSON(t, p.header), []byte(`{"jti":"a","htm":"POST","htm":"GET"}`))
		}, desc: descPayload},
		{name: "missing jti", mod: func(p *proof, _ *Check) { delete(p.claims, "jti") }, desc: "missing jti claim"},
		{name: "empty jti", mod: func(p *proof, _ *Check) { p.claims["jti"] = "" }, desc: "missing jti claim"},
		{name: "jti not a string", mod: func(p *proof, _ *Check) { p.claims["jti"] = 42 }, desc: "malformed jti claim"},
		{name: "jti too long", mod: func(p *proof, _ *Check) { p.claims["jti"] = strings.Repeat("j", 257) }, desc: descJTITooLong},
		{name: "missing htm", mod: func(p *proof, _ *Check) { delete(p.claims, "htm") }, desc: "missing htm claim"},
		{name: "wrong htm", mod: func(p *proof, _ *Check) { p.claims["htm"] = "GET" }, desc: descHTM},
		{name: "htm in lower case", mod: func(p *proof, _ *Check) { p.claims["htm"] = "post" }, desc: descHTM},
		{name: "missing htu", mod: func(p *proof, _ *Check) { delete(p.claims, "htu") }, desc: "missing htu claim"},
		{name: "htu another host", mod: func(p *proof, _ *Check) { p.claims["htu"] = "https://evil.example.com/mcp" }, desc: descHTU},
		{name: "htu another path", mod: func(p *proof, _ *Check) { p.claims["htu"] = "https://mcp.example.com/other" }, desc: descHTU},
		{name: "htu another scheme", mod: func(p *proof, _ *Check) { p.claims["htu"] = "http://mcp.example.com/mcp" }, desc: descHTU},
		{name: "htu another port", mod: func(p *proof, _ *Check) { p.claims["htu"] = "https://mcp.example.com:8443/mcp" }, desc: descHTU},
		{name: "htu a path prefix", mod: func(p *proof, _ *Check) { p.claims["htu"] = "https://mcp.example.com/mc" }, desc: descHTU},
		{name: "htu a query instead of the path", mod: func(p *proof, c *Check) {
			p.claims["htu"] = "https://mcp.example.com/?/mcp"
		}, desc: descHTU},
		{name: "htu relative", mod: func(p *proof, _ *Check) { p.claims["htu"] = "/mcp" }, desc: "malformed htu claim"},
		{name: "htu with userinfo", mod: func(p *proof, _ *Check) { p.claims["htu"] = "https://mcp.example.com@evil.example.com/mcp" }, desc: "malformed htu claim"},
		{name: "request URL not absolute", mod: func(_ *proof, c *Check) { c.URL = "/mcp" }, desc: descRequestURL},
		{name: "iat missing", mod: func(p *proof, _ *Check) { delete(p.claims, "iat") }, desc: "missing iat claim"},
		{name: "iat stale (-6 min)", mod: func(p *proof, _ *Check) { p.claims["iat"] = testNow.Add(-6 * time.Minute).Unix() }, desc: descStale},
		{name: "iat in the future (+6 min)", mod: func(p *proof, _ *Check) { p.claims["iat"] = testNow.Add(6 * time.Minute).Unix() }, desc: descFuture},
		{name: "iat not a number", mod: func(p *proof, _ *Check) { p.claims["iat"] = "1760000000" }, desc: "malformed iat claim"},
		{name: "iat negative", mod: func(p *proof, _ *Check) { p.claims["iat"] = -1 }, desc: "malformed iat claim"},
		{name: "iat huge", mod: func(p *proof, _ *Check) { p.claims["iat"] = 1e300 }, desc: "malformed iat claim"},
		{name: "ath missing", mod: func(p *proof, _ *Check) { delete(p.claims, "ath") }, desc: "missing ath claim"},
		{name: "ath of another token", mod: func(p *proof, _ *Check) { p.claims["ath"] = AccessTokenHash(testToken + "x") }, desc: descATH},
		{name: "ath the token itself", mod: func(p *proof, _ *Check) { p.claims["ath"] = testToken }, desc: descATH},
		{name: "JKT mismatch", mod: func(_ *proof, c *Check) { c.JKT = ks.es256b.jkt }, desc: descJKT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, nil)
			k := tc.key
			if k == nil {
				k = es
			}
			p := newProof(k)
			c := check("", k)
			if tc.mod != nil {
				tc.mod(p, &c)
			}
			if tc.raw != nil {
				c.Proof = tc.raw()
			} else {
				c.Proof = p.build(t)
			}
			got, err := v.Verify(context.Background(), c)
			want := tc.code
			if want == "" {
				want = CodeInvalidProof
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("Verify = %+v, %v; want *Error %s %q", got, err, want, tc.desc)
			}
			if de.Code != want || de.Description != tc.desc {
				t.Errorf("Verify: %s %q (cause %v); want %s %q", de.Code, de.Description, de.Unwrap(), want, tc.desc)
			}
			if de.Nonce != "" {
				t.Errorf("Nonce = %q on a %s error", de.Nonce, de.Code)
			}
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	ks := testKeys(t)
	v := newTestVerifier(t, nil)
	ctx := context.Background()
	p := newProof(ks.es256)
	c := check(p.build(t), ks.es256)
	if _, err := v.Verify(ctx, c); err != nil {
		t.Fatalf("first use: %v", err)
	}
	_, err := v.Verify(ctx, c)
	var de *Error
	if !errors.As(err, &de) || de.Code != CodeInvalidProof || de.Description != descReplayed {
		t.Fatalf("replay: %v; want %s", err, descReplayed)
	}

	// Another proof with the same jti by the same key: a replay too.
	p2 := newProof(ks.es256)
	p2.claims["jti"] = p.claims["jti"]
	p2.claims["iat"] = testNow.Unix() - 1
	if _, err := v.Verify(ctx, check(p2.build(t), ks.es256)); !errors.As(err, &de) || de.Description != descReplayed {
		t.Fatalf("same jti, same key: %v; want %s", err, descReplayed)
	}

	// The same jti chosen by another client does not collide.
	p3 := newProof(ks.es256b)
	p3.claims["jti"] = p.claims["jti"]
	if _, err := v.Verify(ctx, check(p3.build(t), ks.es256b)); err != nil {
		t.Fatalf("same jti, another key: %v", err)
	}

	// A proof refused for another reason does not use up its jti.
	p4 := newProof(ks.es256)
	c4 := check(p4.build(t), ks.es256)
	c4.Method = "GET"
	if _, err := v.Verify(ctx, c4); !errors.As(err, &de) || de.Description != descHTM {
		t.Fatalf("wrong method: %v", err)
	}
	c4.Method = testMethod
	if _, err := v.Verify(ctx, c4); err != nil {
		t.Fatalf("the same proof for the right method: %v", err)
	}
}

// The replay entry lasts until iat + window: a proof still in its window is
// refused; the cache has forgotten it by the time it is stale anyway.
func TestVerifyReplayEntryLifetime(t *testing.T) {
	k := newKey(t, "ES256")
	mem := NewMemoryReplay(10)
	now := testNow
	mem.now = func() time.Time { return now }
	v := newTestVerifier(t, func(o *Options) {
		o.Replay = mem
		o.Now = func() time.Time { return now }
	})
	ctx := context.Background()
	c := check(newProof(k).build(t), k)
	if _, err := v.Verify(ctx, c); err != nil {
		t.Fatal(err)
	}
	now = testNow.Add(DefaultWindow) // the last instant the proof is acceptable
	var de *Error
	if _, err := v.Verify(ctx, c); !errors.As(err, &de) || de.Description != descReplayed {
		t.Fatalf("at iat+window: %v; want replay", err)
	}
	now = testNow.Add(DefaultWindow + time.Second)
	if _, err := v.Verify(ctx, c); !errors.As(err, &de) || de.Description != descStale {
		t.Fatalf("after the window: %v; want %s", err, descStale)
	}
	if n := mem.Len(); n != 0 {
		t.Errorf("cache holds %d entries after the window", n)
	}
}

func TestVerifyNonces(t *testing.T) {
	k := newKey(t, "ES256")
	key := []byte("0123456789abcdef0123456789abcdef")
	now := testNow
	clock := func() time.Time { return now }
	nonces, err := NewNonces(key, time.Minute, clock)
	if err != nil {
		t.Fatal(err)
	}
	v := newTestVerifier(t, func(o *Options) { o.Nonces, o.Now = nonces, clock })
	ctx := context.Background()

	// No nonce: use_dpop_nonce with the nonce to send.
	_, err = v.Verify(ctx, check(newProof(k).build(t), k))
	var de *Error
	if !errors.As(err, &de) || de.Code != CodeUseNonce || de.Description != descNonceMissing {
		t.Fatalf("no nonce: %v; want %s %s", err, CodeUseNonce, descNonceMissing)
	}
	if de.Nonce == "" || de.Nonce != nonces.Current() {
		t.Fatalf("Nonce = %q; want the current %q", de.Nonce, nonces.Current())
	}
	issued := de.Nonce

	// With it: accepted (the proof without the nonce did not use its jti).
	p := newProof(k)
	p.claims["nonce"] = issued
	if _, err := v.Verify(ctx, check(p.build(t), k)); err != nil {
		t.Fatalf("with the nonce: %v", err)
	}

	// A nonce from the previous slot is still accepted.
	now = testNow.Add(time.Minute)
	p = newProof(k)
	p.claims["nonce"], p.claims["iat"] = issued, now.Unix()
	if _, err := v.Verify(ctx, check(p.build(t), k)); err != nil {
		t.Fatalf("with the previous slot's nonce: %v", err)
	}

	for _, tc := range []struct {
		name  string
		nonce any
		desc  string
	}{
		{"stale nonce", issued, descNonceExpired},
		{"forged nonce", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", descNonceInvalid},
		{"nonce of another key", mustNonces(t, []byte("another key of thirty-two bytes!"), clock).Current(), descNonceInvalid},
		{"nonce not base64url", "not a nonce", descNonceInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = testNow.Add(2*time.Minute + time.Second) // two slots later
			p := newProof(k)
			p.claims["nonce"], p.claims["iat"] = tc.nonce, now.Unix()
			_, err := v.Verify(ctx, check(p.build(t), k))
			var de *Error
			if !errors.As(err, &de) || de.Code != CodeUseNonce || de.Description != tc.desc {
				t.Fatalf("%v; want %s %s", err, CodeUseNonce, tc.desc)
			}
			if de.Nonce != nonces.Current() || de.Nonce == issued {
				t.Errorf("Nonce = %q; want a fresh one (%q)", de.Nonce, nonces.Current())
			}
		})
	}

	// A nonce that is not a string is a malformed proof.
	p = newProof(k)
	p.claims["nonce"] = 7
	if _, err := v.Verify(ctx, check(p.build(t), k)); !errors.As(err, &de) || de.Code != CodeInvalidProof || de.Description != "malformed nonce claim" {
		t.Fatalf("numeric nonce: %v", err)
	}
}

func mustNonces(t *testing.T, key []byte, now func() time.Time) *Nonces {
	t.Helper()
	n, err := NewNonces(key, time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A replay cache that cannot answer is not a rejection of the proof: the
// error is not an *Error, and the caller answers 503.
func TestVerifyReplayCacheFull(t *testing.T) {
	k := newKey(t, "ES256")
	v := newTestVerifier(t, func(o *Options) { o.Replay = newTestMemory(1, func() time.Time { return testNow }) })
	ctx := context.Background()
	if _, err := v.Verify(ctx, check(newProof(k).build(t), k)); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(ctx, check(newProof(k).build(t), k))
	var de *Error
	if err == nil || errors.As(err, &de) || !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("full cache: %v; want ErrReplayCacheFull, not *Error", err)
	}
}

func TestNewOptions(t *testing.T) {
	mem := NewMemoryReplay(1)
	for _, tc := range []struct {
		name string
		o    Options
		want string // substring of the error; "" = accepted
	}{
		{"defaults", Options{Replay: mem}, ""},
		{"no replay cache", Options{}, "replay cache is required"},
		{"none", Options{Replay: mem, Algorithms: []string{"ES256", "none"}}, "never accepted"},
		{"HS256", Options{Replay: mem, Algorithms: []string{"HS256"}}, "never accepted"},
		{"unknown", Options{Replay: mem, Algorithms: []string{"ES256K"}}, "unsupported"},
		{"negative window", Options{Replay: mem, Window: -time.Second}, "negative"},
		{"Ed25519", Options{Replay: mem, Algorithms: []string{"Ed25519", "ES256", "ES256"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.o)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New: %v; want an error with %q", err, tc.want)
			}
			if err == nil && len(tc.o.Algorithms) == 0 && strings.Join(v.Algorithms(), " ") != strings.Join(DefaultAlgorithms(), " ") {
				t.Errorf("Algorithms() = %v", v.Algorithms())
			}
		})
	}
	v, err := New(Options{Replay: mem, Algorithms: []string{"Ed25519", "ES256", "ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(v.Algorithms(), " "); got != "Ed25519 ES256" {
		t.Errorf("Algorithms() = %q", got)
	}
}

// Ed25519 (RFC 9864) as the header alg, when allowed, takes the same key.
func TestVerifyEd25519Alg(t *testing.T) {
	k := newKey(t, "Ed25519")
	v := newTestVerifier(t, func(o *Options) { o.Algorithms = []string{"Ed25519"} })
	if _, err := v.Verify(context.Background(), check(newProof(k).build(t), k)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// EdDSA is not in that allow-list.
	k2 := newKey(t, "EdDSA")
	var de *Error
	if _, err := v.Verify(context.Background(), check(newProof(k2).build(t), k2)); !errors.As(err, &de) || de.Description != descAlgNotAllowed+"EdDSA" {
		t.Fatalf("EdDSA: %v", err)
	}
}

// Whatever the header value, Verify does not panic, every refusal is an
// *Error, and only a seed (a real proof) is ever accepted.
func FuzzVerify(f *testing.F) {
	k := newKey(f, "ES256")
	seeds := map[string]bool{}
	for _, mod := range []func(p *proof){
		func(*proof) {},
		func(p *proof) { p.claims["htu"] = "HTTPS://MCP.EXAMPLE.COM:443/./mcp?q" },
		func(p *proof) { p.header["kid"] = "k\u00e9" },
	} {
		p := newProof(k)
		mod(p)
		s := p.build(f)
		seeds[s] = true
		f.Add(s)
	}
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		v := newTestVerifier(t, nil)
		got, err := v.Verify(context.Background(), check(s, k))
		if err == nil {
			if !seeds[s] {
				t.Fatalf("accepted a proof that is no seed: %q (%+v)", s, got)
			}
			return
		}
		var de *Error
		if !errors.As(err, &de) || de.Description == "" {
			t.Fatalf("refusal %v is not an *Error with a description", err)
		}
	})
}
