package assertion_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/mcp-pdp/pdp/internal/assertion"
)

// A tool behind the gateway answers "who is the end user?" from the
// assertion, checked against the gateway's JWKS.
func ExampleVerifier_Verify() {
	// The gateway's side: a signer and its JWKS endpoint.
	signer, err := assertion.NewSigner(assertion.Options{Issuer: "https://pdp.example.com"})
	if err != nil {
		panic(err)
	}
	jwksServer := httptest.NewServer(signer.Handler())
	defer jwksServer.Close()
	tok, err := signer.Sign(assertion.Claims{
		Subject: "alice", ClientID: "claude", Scopes: []string{"math:sum"},
		Grant: "user", DecisionID: "d-1", Audience: "http://127.0.0.1:3000/mcp",
	})
	if err != nil {
		panic(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	req.Header.Set(assertion.Header, tok)

	// The tool's side: fetch the JWKS once, verify every request.
	resp, err := http.Get(jwksServer.URL)
	if err != nil {
		panic(err)
	}
	jwks, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		panic(err)
	}
	v, err := assertion.NewVerifier(jwks, "https://pdp.example.com", "http://127.0.0.1:3000/mcp")
	if err != nil {
		panic(err)
	}
	who, err := v.Verify(req.Header.Get(assertion.Header), time.Now())
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println(who.Subject, who.ClientID, who.Scopes, who.Anonymous())
	// Output: alice claude [math:sum] false
}
