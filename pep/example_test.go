package pep_test

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"

	"github.com/mcp-pdp/pdp/pep"
)

// Example builds the body of POST /v1/decide for a tools/call and reads the
// PDP's answer: here a challenge, which the MCP server passes on as HTTP 401
// with the WWW-Authenticate header.
func Example() {
	req := pep.Request{
		Resource:      "https://mcp.example.com/mcp",
		Authorization: "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
		Message:       json.RawMessage(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"generate_qr_url"}}`),
	}
	body, err := json.Marshal(&req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(body))

	// What the PDP answers (HTTP 200) for a token without the scope.
	answer := `{"decision_id":"ZqJkrpMjHbnAL9clPtpBOV","allow":false,"outcome":"challenge","http_status":403,` +
		`"www_authenticate":"Bearer error=\"insufficient_scope\", scope=\"qr:generate\"",` +
		`"required_scopes":["qr:generate"],"missing_scopes":["qr:generate"],"reason":"missing scope qr:generate"}`
	var resp pep.Response
	if err := json.Unmarshal([]byte(answer), &resp); err != nil {
		log.Fatal(err)
	}
	switch {
	case resp.Allow:
		fmt.Println("run the request")
	case resp.WWWAuthenticate != "":
		fmt.Printf("%s: HTTP %d, WWW-Authenticate: %s\n", resp.Outcome, resp.HTTPStatus, resp.WWWAuthenticate)
	}
	fmt.Println(resp.Outcome == pep.OutcomeChallenge, resp.MissingScopes)

	// Output:
	// {"resource":"https://mcp.example.com/mcp","authorization":"Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln","message":{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"generate_qr_url"}}}
	// challenge: HTTP 403, WWW-Authenticate: Bearer error="insufficient_scope", scope="qr:generate"
	// true [qr:generate]
}

// ExampleRequestError decodes the body of a non-200 answer.
func ExampleRequestError() {
	body := `{"error":"unknown_resource","error_description":"resource \"https://nope.example/mcp\" is not configured on this PDP"}`
	e := &pep.RequestError{Status: 400} // from the HTTP status line
	if err := json.Unmarshal([]byte(body), e); err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Status, e)
	// Output:
	// 400 unknown_resource: resource "https://nope.example/mcp" is not configured on this PDP
}

// ExampleCaller reads the caller of an allowed answer, to hand to the tool
// handler, and builds the body for a Streamable HTTP GET.
func ExampleCaller() {
	answer := `{"decision_id":"ufrxeUv53zl8wk2Z1Gu70h","allow":true,"outcome":"allow","http_status":200,` +
		`"required_scopes":["qr:generate"],"missing_scopes":[],"reason":"step_up access",` +
		`"caller":{"sub":"alice","client_id":"demo","scopes":["qr:generate"],"act":[{"sub":"agent-7"}],"grant":"user","issuer":"https://as.example.com"}}`
	var resp pep.Response
	if err := json.Unmarshal([]byte(answer), &resp); err != nil {
		log.Fatal(err)
	}
	if c := resp.Caller; resp.Allow && c != nil {
		fmt.Printf("%s via %s (acting: %s), scopes %v\n", c.Subject, c.ClientID, c.Act[0].Subject, c.Scopes)
	}

	get, err := json.Marshal(&pep.Request{Resource: "https://mcp.example.com/mcp", HTTPMethod: pep.HTTPMethodGet})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(get))
	// Output:
	// alice via demo (acting: agent-7), scopes [qr:generate]
	// {"resource":"https://mcp.example.com/mcp","message":null,"http_method":"GET"}
}

// ExampleMiddleware protects an MCP server's Streamable HTTP handler with
// a PDP reached over HTTP; the handler reads the caller of each allowed
// request. The runnable servers are in examples/.
func ExampleMiddleware() {
	pdp, err := pep.NewClient("http://127.0.0.1:8181", pep.ClientOptions{})
	if err != nil {
		log.Fatal(err)
	}
	mcpHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := pep.CallerFrom(r.Context()); c != nil {
			log.Printf("called by %s via %s", c.Subject, c.ClientID)
		}
		// ... the MCP SDK's Streamable HTTP handler answers here
	})
	http.Handle("/mcp", pep.Middleware(mcpHandler, pep.Options{Decider: pdp, Resource: "https://mcp.example.com/mcp"}))
}
