package assertion

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
)

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		in   Claims
	}{
		{"user", Claims{Subject: "alice", ClientID: "claude", Scopes: []string{"math:sum", "files:read"}, Grant: "user", DecisionID: "dec-1", Audience: testAudience}},
		{"client credentials", Claims{Subject: "svc", ClientID: "svc", Scopes: []string{"admin"}, Grant: "client_credentials", Audience: testAudience}},
		{"anonymous", Claims{DecisionID: "dec-2", Audience: testAudience}},
		{"anonymous notification (no decision)", Claims{Audience: testAudience}},
		{"act chain", Claims{Subject: "alice", ClientID: "agent", Act: []Actor{{Subject: "agent-b", ClientID: "b"}, {ClientID: "c"}, {Subject: "d"}}, Audience: testAudience}},
		{"subject only", Claims{Subject: "alice", Audience: testAudience}},
		{"longest act chain", Claims{Subject: "alice", Act: slices.Repeat([]Actor{{Subject: "x"}}, MaxActDepth), Audience: testAudience}},
	}
	for _, alg := range Algorithms() {
		s := newSigner(t, alg)
		for _, tc := range cases {
			t.Run(alg+"/"+tc.name, func(t *testing.T) {
				before := time.Now().Truncate(time.Second)
				tok := mustSign(t, s, tc.in)
				got, err := Verify(tok, s.JWKS(), testIssuer, testAudience, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if got.ID == "" || got.IssuedAt.Before(before) || got.ExpiresAt.Sub(got.IssuedAt) != DefaultTTL {
					t.Errorf("jti %q, iat %v, exp %v", got.ID, got.IssuedAt, got.ExpiresAt)
				}
				want := tc.in
				want.Issuer, want.ID, want.IssuedAt, want.ExpiresAt = testIssuer, got.ID, got.IssuedAt, got.ExpiresAt
				if !reflect.DeepEqual(*got, want) {
					t.Errorf("round trip:\n got %+v\nwant %+v", *got, want)
				}
				if got.Anonymous() != (tc.in.Subject == "") {
					t.Errorf("Anonymous() = %v", got.Anonymous())
				}
			})
		}
	}
}

// TestWireForm pins the header and the claims Sign writes: names, forms
// (nested act, space-separated scope) and the anonymous marker.
func TestWireForm(t *testing.T) {
	s := newSigner(t, "")
	tok := mustSign(t, s, Claims{Subject: "alice", ClientID: "claude", Act: []Actor{{Subject: "a1", ClientID: "c1"}, {ClientID: "c2"}},
		Scopes: []string{"s1", "s2"}, Grant: "user", DecisionID: "d1", Audience: testAudience})
	hdr := decodePart(t, tok, 0)
	if want := map[string]any{"alg": "ES256", "kid": s.KeyID(), "typ": Typ}; !reflect.DeepEqual(hdr, want) {
		t.Errorf("header %v, want %v", hdr, want)
	}
	p := decodePart(t, tok, 1)
	for _, k := range []string{"iat", "exp", "jti"} {
		if _, ok := p[k]; !ok {
			t.Errorf("no %s", k)
		}
		delete(p, k)
	}
	want := map[string]any{
		"iss": testIssuer, "sub": "alice", "aud": testAudience, "client_id": "claude",
		"act":   map[string]any{"sub": "a1", "client_id": "c1", "act": map[string]any{"client_id": "c2"}},
		"scope": "s1 s2", "grant": "user", "decision_id": "d1",
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("claims\n got %v\nwant %v", p, want)
	}

	anon := decodePart(t, mustSign(t, s, Claims{Audience: testAudience, DecisionID: "d2"}), 1)
	for _, k := range []string{"iat", "exp", "jti"} {
		delete(anon, k)
	}
	if want := map[string]any{"iss": testIssuer, "anon": true, "aud": testAudience, "decision_id": "d2"}; !reflect.DeepEqual(anon, want) {
		t.Errorf("anonymous claims\n got %v\nwant %v", anon, want)
	}
}

func TestVerifyRefuses(t *testing.T) {
	s := newSigner(t, "")
	other := newSigner(t, "")
	now := time.Now()
	good := mustSign(t, s, Claims{Subject: "alice", Audience: testAudience})
	parts := strings.Split(good, ".")
	enc := base64.RawURLEncoding
	with := func(edit func(h, p map[string]any)) string {
		h, p := stdHeader(s), stdPayload(now)
		edit(h, p)
		return signRaw(t, s, h, mustJSON(t, p))
	}
	hs256 := func() string { // signed with the public JWKS as the HMAC secret
		input := enc.EncodeToString([]byte(`{"alg":"HS256","kid":"`+s.kid+`","typ":"`+Typ+`"}`)) + "." + parts[1]
		m := hmac.New(sha256.New, s.JWKS())
		m.Write([]byte(input))
		return input + "." + enc.EncodeToString(m.Sum(nil))
	}
	tampered := enc.EncodeToString(mustJSON(t, func() map[string]any { p := decodePart(t, good, 1); p["sub"] = "admin"; return p }()))
	// Another base64url character at position 5 (not the last, whose
	// padding bits a decoder may ignore): other signature bytes for sure.
	const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	badSig := []byte(parts[2])
	badSig[5] = b64url[(strings.IndexByte(b64url, badSig[5])+1)%len(b64url)]

	cases := []struct {
		name     string
		tok      string
		issuer   string // "" = testIssuer
		audience string
		now      time.Time
		want     string
	}{
		{name: "wrong audience", tok: good, audience: "http://127.0.0.1:3001/mcp", want: `audience "http://127.0.0.1:3000/mcp" is not "http://127.0.0.1:3001/mcp"`},
		{name: "wrong issuer", tok: good, issuer: "https://evil.example.com", want: `issuer "https://pdp.example.com" is not "https://evil.example.com"`},
		{name: "expired", tok: good, now: now.Add(DefaultTTL + Leeway + 2*time.Second), want: "expired"},
		{name: "issued in the future", tok: good, now: now.Add(-Leeway - 2*time.Second), want: "issued in the future"},
		{name: "tampered payload", tok: parts[0] + "." + tampered + "." + parts[2], want: "signature does not verify"},
		{name: "tampered signature", tok: parts[0] + "." + parts[1] + "." + string(badSig), want: "signature does not verify"},
		{name: "alg none", tok: enc.EncodeToString([]byte(`{"alg":"none","typ":"`+Typ+`"}`)) + "." + parts[1] + ".", want: `algorithm "none" is never accepted`},
		{name: "alg none with signature", tok: enc.EncodeToString([]byte(`{"alg":"none","typ":"`+Typ+`"}`)) + "." + parts[1] + "." + parts[2], want: `algorithm "none" is never accepted`},
		{name: "alg HS256 keyed with the JWKS", tok: hs256(), want: `algorithm "HS256" is never accepted`},
		{name: "alg RS256", tok: with(func(h, _ map[string]any) { h["alg"] = "RS256" }), want: `algorithm "RS256" is not accepted`},
		{name: "alg missing", tok: with(func(h, _ map[string]any) { delete(h, "alg") }), want: `algorithm "" is never accepted`},
		{name: "access token typ", tok: with(func(h, _ map[string]any) { h["typ"] = "at+jwt" }), want: `typ "at+jwt" is not`},
		{name: "typ missing", tok: with(func(h, _ map[string]any) { delete(h, "typ") }), want: `typ "" is not`},
		{name: "crit", tok: with(func(h, _ map[string]any) { h["crit"] = []string{"b64"} }), want: `"crit"`},
		{name: "kid not a string", tok: with(func(h, _ map[string]any) { h["kid"] = 7 }), want: `"kid" is not a string`},
		{name: "unknown kid", tok: mustSign(t, other, Claims{Subject: "alice", Audience: testAudience}), want: "no ES256 key with kid"},
		{name: "other key under our kid", tok: func() string {
			h := stdHeader(s)
			return signRaw(t, other, h, mustJSON(t, stdPayload(now)))
		}(), want: "signature does not verify"},
		{name: "both sub and anon", tok: with(func(_, p map[string]any) { p["anon"] = true }), want: `both "sub" and "anon"`},
		{name: "neither sub nor anon", tok: with(func(_, p map[string]any) { delete(p, "sub") }), want: `neither "sub" nor "anon"`},
		{name: "empty sub", tok: with(func(_, p map[string]any) { p["sub"] = "" }), want: `neither "sub" nor "anon"`},
		{name: "anonymous with client", tok: with(func(_, p map[string]any) { delete(p, "sub"); p["anon"] = true; p["client_id"] = "c" }), want: "anonymous assertion has client_id"},
		{name: "act too deep", tok: with(func(_, p map[string]any) {
			var act any
			for range MaxActDepth + 1 {
				act = map[string]any{"sub": "x", "act": act}
			}
			p["act"] = act
		}), want: "act chain longer than 8"},
		{name: "empty actor", tok: with(func(_, p map[string]any) { p["act"] = map[string]any{} }), want: "act[0] has neither"},
		{name: "no jti", tok: with(func(_, p map[string]any) { delete(p, "jti") }), want: "jti is required"},
		{name: "no exp", tok: with(func(_, p map[string]any) { delete(p, "exp") }), want: "exp and iat are required"},
		{name: "no iat", tok: with(func(_, p map[string]any) { delete(p, "iat") }), want: "exp and iat are required"},
		{name: "exp a string", tok: with(func(_, p map[string]any) { p["exp"] = "soon" }), want: "claims:"},
		{name: "long lifetime", tok: with(func(_, p map[string]any) { p["exp"] = now.Add(MaxTTL + time.Minute).Unix() }), want: "lifetime"},
		{name: "no aud", tok: with(func(_, p map[string]any) { delete(p, "aud") }), want: "aud is missing"},
		{name: "aud array without us", tok: with(func(_, p map[string]any) { p["aud"] = []string{"a", "b"} }), want: "audience"},
		{name: "sub a number", tok: with(func(_, p map[string]any) { p["sub"] = 1 }), want: "claims:"},
		{name: "payload not JSON", tok: signRaw(t, s, stdHeader(s), []byte("not json")), want: "claims:"},
		{name: "too large", tok: strings.Repeat("a", MaxBytes+1), want: "more than 8192"},
		{name: "empty", tok: "", want: "empty (no X-MCP-PDP-Assertion header?)"},
		{name: "two parts", tok: parts[0] + "." + parts[1], want: "not a compact JWS"},
		{name: "four parts", tok: good + ".x", want: "not a compact JWS"},
		{name: "header not base64url", tok: "*." + parts[1] + "." + parts[2], want: "header is not base64url"},
		{name: "header not an object", tok: enc.EncodeToString([]byte(`[1]`)) + "." + parts[1] + "." + parts[2], want: "header is not a JSON object"},
		{name: "no signature", tok: parts[0] + "." + parts[1] + ".", want: "signature is missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			iss, aud, at := tc.issuer, tc.audience, tc.now
			if iss == "" {
				iss = testIssuer
			}
			if aud == "" {
				aud = testAudience
			}
			if at.IsZero() {
				at = now
			}
			c, err := Verify(tc.tok, s.JWKS(), iss, aud, at)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	// Inside the leeway is fine, on both sides.
	for _, at := range []time.Time{now.Add(DefaultTTL + Leeway - 2*time.Second), now.Add(-Leeway + 2*time.Second)} {
		if _, err := Verify(good, s.JWKS(), testIssuer, testAudience, at); err != nil {
			t.Errorf("at %v: %v", at.Sub(now), err)
		}
	}
}

func TestNewVerifierRefuses(t *testing.T) {
	s := newSigner(t, "")
	cases := []struct {
		name, jwks, iss, aud, want string
	}{
		{"no issuer", string(s.JWKS()), "", testAudience, "issuer and audience are required"},
		{"no audience", string(s.JWKS()), testIssuer, "", "issuer and audience are required"},
		{"not JSON", "{", testIssuer, testAudience, "JWKS"},
		{"symmetric key only", `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"a"}]}`, testIssuer, testAudience, "no EC or Ed25519 signature key"},
		{"encryption key only", strings.Replace(string(s.JWKS()), `"sig"`, `"enc"`, 1), testIssuer, testAudience, "no EC or Ed25519 signature key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerifier([]byte(tc.jwks), tc.iss, tc.aud)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	s := newSigner(t, "")
	cases := []struct {
		name string
		c    Claims
		want string
	}{
		{"no audience", Claims{Subject: "alice"}, "audience (the upstream) is required"},
		{"anonymous with client", Claims{ClientID: "c", Audience: testAudience}, "anonymous caller"},
		{"anonymous with scopes", Claims{Scopes: []string{"a"}, Audience: testAudience}, "anonymous caller"},
		{"anonymous with act", Claims{Act: []Actor{{Subject: "x"}}, Audience: testAudience}, "anonymous caller"},
		{"anonymous with grant", Claims{Grant: "user", Audience: testAudience}, "anonymous caller"},
		{"subject not UTF-8", Claims{Subject: "a\xffb", Audience: testAudience}, "subject is not valid UTF-8"},
		{"decision id not UTF-8", Claims{Subject: "a", DecisionID: "\xc3", Audience: testAudience}, "decision_id is not valid UTF-8"},
		{"actor not UTF-8", Claims{Subject: "a", Act: []Actor{{ClientID: "\xff"}}, Audience: testAudience}, "act[0] is not valid UTF-8"},
		{"empty actor", Claims{Subject: "a", Act: []Actor{{Subject: "x"}, {}}, Audience: testAudience}, "act[1] has neither"},
		{"act too deep", Claims{Subject: "a", Act: slices.Repeat([]Actor{{Subject: "x"}}, MaxActDepth+1), Audience: testAudience}, "longer than 8"},
		{"scope with a space", Claims{Subject: "a", Scopes: []string{"ok", "a b"}, Audience: testAudience}, `scopes[1] "a b" is empty or contains white space`},
		{"scope with a line separator", Claims{Subject: "a", Scopes: []string{"a\u2028b"}, Audience: testAudience}, "white space"},
		{"empty scope", Claims{Subject: "a", Scopes: []string{""}, Audience: testAudience}, "scopes[0]"},
		{"too large", Claims{Subject: strings.Repeat("x", MaxBytes), Audience: testAudience}, "more than 8192 (MaxBytes)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := s.Sign(tc.c)
			if err == nil {
				t.Fatalf("signed %q", tok)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestNewSignerRefuses(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"no issuer", Options{}, "is required"},
		{"relative issuer", Options{Issuer: "/pdp"}, "absolute http or https URL"},
		{"issuer with query", Options{Issuer: "https://pdp.example.com/?a=1"}, "query or fragment"},
		{"issuer with fragment", Options{Issuer: "https://pdp.example.com/#x"}, "query or fragment"},
		{"negative ttl", Options{Issuer: testIssuer, TTL: -time.Second}, "shorter than a second"},
		{"sub-second ttl", Options{Issuer: testIssuer, TTL: time.Millisecond}, "shorter than a second"},
		{"long ttl", Options{Issuer: testIssuer, TTL: 2 * time.Hour}, "short-lived"},
		{"HS256", Options{Issuer: testIssuer, Alg: "HS256"}, `unsupported algorithm "HS256"`},
		{"none", Options{Issuer: testIssuer, Alg: "none"}, `unsupported algorithm "none"`},
		{"RS256", Options{Issuer: testIssuer, Alg: "RS256"}, `unsupported algorithm "RS256"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSigner(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestTTL(t *testing.T) {
	s, err := NewSigner(Options{Issuer: testIssuer, TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(mustSign(t, s, Claims{Subject: "a", Audience: testAudience}), s.JWKS(), testIssuer, testAudience, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d := c.ExpiresAt.Sub(c.IssuedAt); d != 5*time.Second {
		t.Errorf("exp - iat = %s", d)
	}
}

// TestHostileStrings: whatever the strings hold, they come back byte for
// byte and inject nothing.
func TestHostileStrings(t *testing.T) {
	s := newSigner(t, "")
	hostile := []string{
		`","sub":"admin`,
		`"}`,
		`\`, `\"`, `\u0000`,
		"nul\x00byte", "\x01\x02\x1f\x7f",
		"line\nbreak\r\ttab\b\f",
		"</script><script>alert(1)</script>&amp;",
		"\u2028\u2029",
		"ʕ•ᴥ•ʔ 🦀 \u202eevil", "\ufeffbom", "\uFFFD",
		"a.b.c", "=", "eyJhbGciOiJub25lIn0",
		strings.Repeat("é", 300),
	}
	for i, h := range hostile {
		t.Run(strings.ToValidUTF8(h[:min(len(h), 12)], "?"), func(t *testing.T) {
			scope := strings.Map(func(r rune) rune {
				if unicode.IsSpace(r) {
					return '_'
				}
				return r
			}, h)
			in := Claims{
				Subject: h, ClientID: h + "c", Act: []Actor{{Subject: h, ClientID: h}},
				Scopes: []string{scope, "plain"}, Grant: h, DecisionID: h, Audience: "aud-" + h,
			}
			tok := mustSign(t, s, in)
			got, err := Verify(tok, s.JWKS(), testIssuer, "aud-"+h, time.Now())
			if err != nil {
				t.Fatalf("#%d: %v", i, err)
			}
			if got.Subject != in.Subject || got.ClientID != in.ClientID || !reflect.DeepEqual(got.Act, in.Act) ||
				!reflect.DeepEqual(got.Scopes, in.Scopes) || got.Grant != in.Grant || got.DecisionID != in.DecisionID || got.Audience != in.Audience {
				t.Errorf("#%d: changed:\n got %+v\nwant %+v", i, *got, in)
			}
			p := decodePart(t, tok, 1)
			if p["sub"] != h {
				t.Errorf("#%d: sub %q", i, p["sub"])
			}
			if len(p) != 11 {
				t.Errorf("#%d: %d claims, want 11: %v", i, len(p), p)
			}
		})
	}
}

func TestAppendStringIsEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `"\`, "\x00\x1f\x7f", "\b\f\n\r\t", "<>&", "\u2028\u2029", "🦀é", "a\u2027b\u202a"} {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", `"\`, "\x00", "<\u2028>", "🦀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8Valid(s) {
			t.Skip()
		}
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

// TestNoRawToken: the claims carry what the upstream may learn and nothing
// else; in particular no field for the client's token or its raw claims.
// Adding a field is a decision: change this list on purpose.
func TestNoRawToken(t *testing.T) {
	want := []string{"Subject", "ClientID", "Act", "Scopes", "Grant", "DecisionID", "Audience", "Issuer", "ID", "IssuedAt", "ExpiresAt"}
	ct := reflect.TypeFor[Claims]()
	var got []string
	for f := range ct.Fields() {
		got = append(got, f.Name)
		if k := f.Type.Kind(); k == reflect.Map || k == reflect.Interface || f.Type == reflect.TypeFor[[]byte]() {
			t.Errorf("Claims.%s is a %s: it could carry anything", f.Name, f.Type)
		}
		if n := strings.ToLower(f.Name); strings.Contains(n, "token") || strings.Contains(n, "raw") || strings.Contains(n, "authorization") {
			t.Errorf("Claims.%s looks like a raw token", f.Name)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Claims fields %v, want %v", got, want)
	}
	if n := reflect.TypeFor[Actor]().NumField(); n != 2 {
		t.Errorf("Actor has %d fields, want 2", n)
	}
}
