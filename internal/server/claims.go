package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/token"
)

// claimsIssuer signs the stand-in tokens of ClaimsToken; .invalid never
// resolves, and the JWKS is served in memory.
const claimsIssuer = "https://pdp-eval.invalid"

// ClaimsToken turns token claims into a token that the returned verifier
// accepts for resource r, so that `pdp eval --claims` decides through the
// server's own claims-to-policy mapping (scopes, grant, act). The claims
// are signed with a throwaway key whose JWKS is served in memory; signature,
// issuer, audience and expiry are thereby not checked: missing iss, aud and
// exp are filled in (r's issuer, its URI, an hour from now), given ones are
// accepted. It returns the Authorization header value.
func ClaimsToken(claims map[string]any, r config.Resource) (string, *token.Verifier, error) {
	iss, _ := claims["iss"].(string)
	if iss == "" {
		iss = r.Issuer
		claims["iss"] = iss
	}
	auds := r.Audiences
	switch aud := claims["aud"].(type) {
	case nil:
		claims["aud"] = r.URI
		auds = []string{r.URI}
	case string:
		auds = []string{aud}
	case []any:
		auds = nil
		for _, x := range aud {
			if s, ok := x.(string); ok {
				auds = append(auds, s)
			}
		}
	}
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	signer, err := devissuer.New(claimsIssuer, "ES256")
	if err != nil {
		return "", nil, err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", nil, err
	}
	tok, err := signer.SignJSON(map[string]any{"typ": "at+jwt"}, payload)
	if err != nil {
		return "", nil, err
	}
	keys := token.NewKeySets(token.KeySetsConfig{HTTPClient: &http.Client{Transport: staticJWKS(signer.JWKS())}})
	v, err := token.NewVerifier(token.Config{
		Resource: r.URI, Issuer: iss, Audiences: auds, JWKSURI: claimsIssuer + "/jwks", Algorithms: []string{"ES256"},
		ClockSkew: r.ClockSkew.D(),
	}, keys, token.NewCache(8), nil)
	if err != nil {
		return "", nil, err
	}
	return "Bearer " + tok, v, nil
}

// staticJWKS answers every request with one JWKS document, in memory.
type staticJWKS []byte

func (s staticJWKS) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": []string{"application/jwk-set+json"}},
		Body:    io.NopCloser(bytes.NewReader(s)),
		Request: r, ContentLength: int64(len(s)),
	}, nil
}
