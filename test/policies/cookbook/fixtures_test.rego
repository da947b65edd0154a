# Inputs shared by the cookbook tests, shaped exactly like the PDP's input
# document (docs/policy.md, "The input document").
package cookbook.fixtures

resource := "https://mcp.example.com/mcp"

anonymous := {"present": false, "valid": false, "scopes": [], "claims": {}}

token(sub, client, grant, scopes, claims) := {
	"present": true, "valid": true, "sub": sub, "client_id": client, "iss": "https://idp.example.com",
	"grant": grant, "scopes": scopes, "act": [], "claims": claims,
}

user(scopes) := token("alice", "desktop-app", "user", scopes, {})

agent(scopes) := token("nightly-bot", "nightly-bot", "client_credentials", scopes, {})

call(name, args, tok) := {
	"resource": resource, "method": "tools/call", "operation": "call", "kind": "tool",
	"target": {"kind": "tool", "name": name, "arguments": args},
	"tool": {"kind": "tool", "name": name, "arguments": args},
	"token": tok,
}

list(names, tok) := {
	"resource": resource, "method": "tools/list", "operation": "list", "kind": "tool",
	"token": tok, "items": [{"name": n} | some n in names], "names": names,
}
