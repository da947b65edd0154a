package authzen

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"github.com/mcp-pdp/pdp/internal/token"
)

// Resource types of the COAZ-MCP default mappings (§"Default Mappings").
const (
	TypeTool      = "tool"
	TypePrompt    = "prompt"
	TypeResource  = "resource"
	TypeTask      = "task"
	TypeMCPServer = "mcp_server"
)

// SubjectAnonymous is the subject type of a caller without a token (an
// extension of this PDP: the COAZ-MCP mappings always carry the token's
// subject). Its id is ignored.
const SubjectAnonymous = "anonymous"

// ContextServer is the context member that names the MCP server (its
// configured resource URI) when resource.type is not mcp_server.
const ContextServer = "mcp_server"

// mapped is an evaluation as the core decides it.
type mapped struct {
	server  string
	message json.RawMessage
	caller  *token.Claims // nil: anonymous
	// scopesSent: the subject carried properties.scopes.
	scopesSent bool
}

// targets are the methods decided on a target of the server, with the
// resource types they take (COAZ-MCP §"Default Mappings").
var targets = map[string][]string{
	"tools/call":            {TypeTool},
	"prompts/get":           {TypePrompt},
	"resources/read":        {TypeResource},
	"resources/subscribe":   {TypeResource},
	"resources/unsubscribe": {TypeResource},
	"completion/complete":   {TypePrompt, TypeResource},
	"tasks/get":             {TypeTask},
	"tasks/result":          {TypeTask},
	"tasks/cancel":          {TypeTask},
}

// serverMethods are the methods decided on the server as a whole: resource
// type mcp_server, resource.id the server (COAZ-MCP §"Default Mappings",
// and the lifecycle and list methods of MCP 2025-06-18 to 2026-07-28).
var serverMethods = map[string]bool{
	"initialize": true, "server/discover": true, "ping": true,
	"tools/list": true, "prompts/list": true, "resources/list": true, "resources/templates/list": true,
	"tasks/list": true, "logging/setLevel": true, "subscriptions/listen": true,
}

// mapEvaluation builds the JSON-RPC message, the server and the caller of
// one evaluation.
func (s *Service) mapEvaluation(ev *evaluation) (*mapped, error) {
	method, res := ev.action.name, ev.resource
	m := &mapped{}
	var err error
	if m.server, err = s.serverOf(ev); err != nil {
		return nil, err
	}
	params := map[string]any{}
	switch types, targeted := targets[method]; {
	case targeted:
		if !slices.Contains(types, res.typ) {
			return nil, badRequest("invalid_request", "action %s is decided on resource.type %s, not %q", method, strings.Join(types, " or "), res.typ)
		}
		switch method {
		case "tools/call", "prompts/get":
			params["name"] = res.id
			args, err := arguments(ev)
			if err != nil {
				return nil, err
			}
			params["arguments"] = args
		case "completion/complete":
			if res.typ == TypePrompt {
				params["ref"] = map[string]any{"type": "ref/prompt", "name": res.id}
			} else {
				params["ref"] = map[string]any{"type": "ref/resource", "uri": res.id}
			}
			if v, ok := present(ev.context, "argument"); ok {
				params["argument"] = v
			}
		case "tasks/get", "tasks/result", "tasks/cancel":
			params["taskId"] = res.id
		default: // resources/read, subscribe, unsubscribe
			params["uri"] = res.id
		}
	case serverMethods[method] || strings.HasPrefix(method, "notifications/"):
		if res.typ != TypeMCPServer {
			return nil, badRequest("invalid_request", "action %s is decided on resource.type mcp_server (the server), not %q", method, res.typ)
		}
		switch method {
		case "initialize":
			if v, ok := present(ev.context, "protocol_version"); ok {
				params["protocolVersion"] = v
			}
		case "logging/setLevel":
			if v, ok := present(ev.context, "level"); ok {
				params["level"] = v
			}
		}
	default:
		// A method this mapping does not know: the core decides it as
		// /v1/decide would (the default policy denies unknown methods).
	}
	msg := map[string]any{"jsonrpc": "2.0", "method": method}
	if !strings.HasPrefix(method, "notifications/") {
		msg["id"] = 1
	}
	if len(params) > 0 {
		msg["params"] = params
	}
	if m.message, err = marshal(msg); err != nil {
		return nil, err
	}
	m.caller, m.scopesSent, err = callerOf(ev)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// arguments are a call's arguments: resource.properties.arguments, else
// context.arguments, else {}. They are passed as sent; the core refuses
// arguments that are not an object (Invalid params), as for /v1/decide.
func arguments(ev *evaluation) (json.RawMessage, error) {
	if v, ok := present(ev.resource.properties, "arguments"); ok {
		return v, nil
	}
	if v, ok := present(ev.context, "arguments"); ok {
		return v, nil
	}
	return json.RawMessage("{}"), nil
}

// serverOf is the MCP server an evaluation is for: resource.id when
// resource.type is mcp_server, else context.mcp_server, else the one
// configured server.
func (s *Service) serverOf(ev *evaluation) (string, error) {
	var server string
	if ev.resource.typ == TypeMCPServer {
		server = ev.resource.id
	}
	if v, ok := present(ev.context, ContextServer); ok {
		c, err := stringValue(v, "context."+ContextServer)
		if err != nil {
			return "", err
		}
		if server != "" && c != server {
			return "", badRequest("invalid_request", "context.%s %q contradicts resource.id %q", ContextServer, c, server)
		}
		server = c
	}
	if server != "" {
		return server, nil
	}
	if len(s.resources) == 1 {
		return s.resources[0], nil
	}
	return "", badRequest("invalid_request", "%d MCP servers are configured: name the server in context.%s (its resource URI)", len(s.resources), ContextServer)
}

// callerOf is the caller the subject describes (nil for an anonymous
// subject), and whether it carried scopes.
func callerOf(ev *evaluation) (*token.Claims, bool, error) {
	sub := ev.subject
	if sub.typ == SubjectAnonymous {
		return nil, false, nil
	}
	c := &token.Claims{Subject: sub.id, Validation: token.ValidationPEP, Raw: map[string]any{}}
	for k, v := range sub.properties {
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			return nil, false, badRequest("invalid_json", "subject.properties.%s: %v", k, err)
		}
		c.Raw[k] = x
	}
	if v, ok := present(ev.context, "agent"); ok {
		agent, err := stringValue(v, "context.agent")
		if err != nil {
			return nil, false, err
		}
		c.ClientID = agent
	}
	if v, ok := present(sub.properties, "issuer"); ok {
		iss, err := stringValue(v, "subject.properties.issuer")
		if err != nil {
			return nil, false, err
		}
		c.Issuer = iss
	}
	var err error
	v, scopesSent := present(sub.properties, "scopes")
	if scopesSent {
		if c.Scopes, err = scopesOf(v); err != nil {
			return nil, false, err
		}
	}
	if c.Grant, err = grantOf(sub.properties, c.Subject, c.ClientID); err != nil {
		return nil, false, err
	}
	// The claims the policy reads as the token's: the subject's, not a
	// property that says otherwise.
	c.Raw["sub"] = c.Subject
	setOrDelete(c.Raw, "client_id", c.ClientID)
	setOrDelete(c.Raw, "iss", c.Issuer)
	setOrDelete(c.Raw, "scope", strings.Join(c.Scopes, " "))
	return c, scopesSent, nil
}

func setOrDelete(m map[string]any, k, v string) {
	if v == "" {
		delete(m, k)
		return
	}
	m[k] = v
}

// scopesOf reads subject.properties.scopes: an array of strings or one
// space-delimited string; duplicates dropped, order kept.
func scopesOf(v json.RawMessage) ([]string, error) {
	var list []string
	v = bytes.TrimSpace(v)
	switch {
	case len(v) > 0 && v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, badRequest("invalid_request", "subject.properties.scopes must be an array of strings or a space-delimited string")
		}
		list = strings.Fields(s)
	case len(v) > 0 && v[0] == '[':
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, badRequest("invalid_request", "subject.properties.scopes must be an array of strings or a space-delimited string")
		}
	default:
		return nil, badRequest("invalid_request", "subject.properties.scopes must be an array of strings or a space-delimited string")
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return nil, badRequest("invalid_request", "subject.properties.scopes: %q is not a scope", s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// grantOf is subject.properties.grant ("user" or "client_credentials")
// when given, else the token package's guess: the subject is the client ->
// client_credentials; both known and different -> user.
func grantOf(props map[string]json.RawMessage, sub, client string) (string, error) {
	if v, ok := present(props, "grant"); ok {
		var g string
		if json.Unmarshal(v, &g) != nil || (g != token.GrantUser && g != token.GrantClientCredentials) {
			return "", badRequest("invalid_request", `subject.properties.grant must be "user" or "client_credentials"`)
		}
		return g, nil
	}
	if sub != "" && client != "" {
		if sub == client {
			return token.GrantClientCredentials, nil
		}
		return token.GrantUser, nil
	}
	return "", nil
}
