package token

import (
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	big := strings.Repeat("a", 16<<10)
	tests := []struct {
		name string
		in   string
		want string
		code string // "" = no error
		desc string
	}{
		{name: "empty is anonymous", in: "", want: ""},
		{name: "Bearer", in: "Bearer abc.def.ghi", want: "abc.def.ghi"},
		{name: "bearer lower", in: "bearer abc.def.ghi", want: "abc.def.ghi"},
		{name: "BEARER upper", in: "BEARER abc.def.ghi", want: "abc.def.ghi"},
		{name: "surrounding spaces and several separators", in: " \tBearer   abc \t", want: "abc"},
		{name: "b64token alphabet and padding", in: "Bearer aZ09-._~+/==", want: "aZ09-._~+/=="},
		{name: "max size", in: "Bearer " + strings.Repeat("a", MaxTokenBytes), want: strings.Repeat("a", MaxTokenBytes)},
		{name: "whitespace only", in: "  \t ", code: CodeInvalidRequest, desc: descEmptyHeader},
		{name: "Basic", in: "Basic dXNlcjpwYXNz", code: CodeInvalidRequest, desc: descBadScheme},
		{name: "DPoP scheme", in: "DPoP abc", code: CodeInvalidRequest, desc: descBadScheme},
		{name: "scheme without separator", in: "Bearerabc", code: CodeInvalidRequest, desc: descBadScheme},
		{name: "tab separator", in: "Bearer\tabc", code: CodeInvalidRequest, desc: descBadScheme},
		{name: "unicode lookalike scheme", in: "Bearer\u212a abc", code: CodeInvalidRequest, desc: descBadScheme},
		{name: "Bearer alone", in: "Bearer", code: CodeInvalidRequest, desc: descMissingToken},
		{name: "Bearer and spaces", in: "Bearer    ", code: CodeInvalidRequest, desc: descMissingToken},
		{name: "two tokens", in: "Bearer a b", code: CodeInvalidRequest, desc: descMultipleTokens},
		{name: "comma joined", in: "Bearer a, Bearer b", code: CodeInvalidRequest, desc: descSeveralCredentials},
		{name: "comma no space", in: "Bearer a,b", code: CodeInvalidRequest, desc: descSeveralCredentials},
		{name: "two headers, one empty", in: "Bearer a, ", code: CodeInvalidRequest, desc: descSeveralCredentials},
		{name: "two headers, the first empty", in: ", Bearer a", code: CodeInvalidRequest, desc: descSeveralCredentials},
		{name: "quote", in: `Bearer "abc"`, code: CodeInvalidRequest, desc: descBadTokenChars},
		{name: "non-ASCII", in: "Bearer abcé", code: CodeInvalidRequest, desc: descBadTokenChars},
		{name: "NUL", in: "Bearer ab\x00c", code: CodeInvalidRequest, desc: descBadTokenChars},
		{name: "newline", in: "Bearer ab\ncd", code: CodeInvalidRequest, desc: descBadTokenChars},
		{name: "padding first", in: "Bearer =abc", code: CodeInvalidRequest, desc: descBadTokenChars},
		{name: "padding in the middle", in: "Bearer ab=c", code: CodeInvalidRequest, desc: descBadTokenChars},
		{name: "one byte too large", in: "Bearer " + strings.Repeat("a", MaxTokenBytes+1), code: CodeInvalidToken, desc: descTooLarge},
		{name: "16 KiB token", in: "Bearer " + big, code: CodeInvalidToken, desc: descTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAuthorization(tt.in)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if got != tt.want {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
				return
			}
			if got != "" {
				t.Fatalf("got token %q with an error", got)
			}
			wantErr(t, err, tt.code, tt.desc)
		})
	}
}

func TestParseAuthorizationNoAllocs(t *testing.T) {
	h := "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseAuthorization(h) }); n != 0 {
		t.Fatalf("%v allocs per call, want 0", n)
	}
}

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"", "Bearer abc", "bearer a.b.c", "Basic x", "Bearer", "Bearer a b", "Bearer a, Bearer b", "Bearer ab==", "Bearer =", " Bearer\tx "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := ParseAuthorization(h)
		if err != nil {
			if tok != "" {
				t.Fatalf("token %q returned with error %v", tok, err)
			}
			te, ok := err.(*Error)
			if !ok || (te.Code != CodeInvalidRequest && te.Code != CodeInvalidToken) || te.Description == "" {
				t.Fatalf("bad error %#v", err)
			}
			return
		}
		if h != "" && tok == "" {
			t.Fatalf("non-empty header %q accepted as anonymous", h)
		}
		if len(tok) > MaxTokenBytes {
			t.Fatalf("token of %d bytes accepted", len(tok))
		}
		pad := false
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			switch {
			case c == '=' && i > 0:
				pad = true
			case isB64TokenChar(c) && !pad:
			default:
				t.Fatalf("accepted token %q has invalid byte %q at %d", tok, c, i)
			}
		}
		if tok != "" && !strings.Contains(h, tok) {
			t.Fatalf("token %q not in header %q", tok, h)
		}
	})
}

func TestParseCredentials(t *testing.T) {
	for _, tt := range []struct{ in, scheme, tok, desc string }{
		{"Bearer abc", SchemeBearer, "abc", ""},
		{"DPoP abc.def-_~+/=", SchemeDPoP, "abc.def-_~+/=", ""},
		{"dpop  abc", SchemeDPoP, "abc", ""},
		{"DPOP abc", SchemeDPoP, "abc", ""},
		{"", "", "", ""},
		{"DPoP", "", "", descMissingToken},
		{"DPoP a b", "", "", descMultipleTokens},
		{"DPoP a, Bearer b", "", "", descSeveralCredentials},
		{"Basic abc", "", "", descBadScheme},
	} {
		scheme, tok, err := ParseCredentials(tt.in)
		if tt.desc != "" {
			wantErr(t, err, CodeInvalidRequest, tt.desc)
			continue
		}
		if err != nil || scheme != tt.scheme || tok != tt.tok {
			t.Errorf("%q: %q %q %v", tt.in, scheme, tok, err)
		}
	}
	// ParseAuthorization takes Bearer only.
	_, err := ParseAuthorization("DPoP abc")
	wantErr(t, err, CodeInvalidRequest, descBadScheme)
}
