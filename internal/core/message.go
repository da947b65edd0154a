package core

import (
	"bytes"
	"encoding/json"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/jsonfast"
)

// parseMessageFast reads the common shape of a JSON-RPC request, and its
// params when they are an object, in one validation and one walk over the
// bytes: every key spelled exactly (a key that matches a field only up to
// case, which encoding/json would also take, sends the message to
// encoding/json), jsonrpc and method strings, params absent or an object
// whose name and uri are strings. It reports false for anything else, and
// Decide then decodes with encoding/json, which gives the same message and
// params for every input parseMessageFast accepts (FuzzParseMessageFast
// checks this) and the precise error for the rest. valid says raw is known
// to be valid JSON; else it is checked. params and arguments
// alias raw; the id is copied, as it outlives the request in the audit
// event (an auditor may keep events, and a small id must not pin a large
// message).
func parseMessageFast(raw []byte, valid bool, msg *message, p *callParams) bool {
	if !valid && !json.Valid(raw) {
		return false
	}
	var params []byte
	end, ok := jsonfast.Members(raw, jsonfast.SkipSpace(raw, 0), func(k, v []byte) bool {
		switch jsonfast.Field(k, "jsonrpc", "id", "method", "params") {
		case 0:
			if string(v) == `"2.0"` {
				msg.JSONRPC = "2.0" // no allocation for the only valid value
				return true
			}
			s, ok := jsonfast.String(v)
			msg.JSONRPC = s
			return ok
		case 1:
			msg.ID = bytes.Clone(v)
		case 2:
			if s, end, ok := jsonfast.PlainString(v, 0); ok && end == len(v) {
				msg.Method = decision.MethodString(s)
				return true
			}
			s, ok := jsonfast.String(v)
			msg.Method = s
			return ok
		case 3:
			msg.Params, params = v, v
		case -1:
		default:
			return false
		}
		return true
	})
	if !ok || jsonfast.SkipSpace(raw, end) != len(raw) {
		return false
	}
	if params == nil {
		return true
	}
	_, ok = jsonfast.Members(params, 0, func(k, v []byte) bool {
		switch jsonfast.Field(k, "name", "uri", "arguments", "_meta") {
		case 0:
			s, ok := jsonfast.String(v)
			p.Name = s
			return ok
		case 1:
			s, ok := jsonfast.String(v)
			p.URI = s
			return ok
		case 2:
			p.Arguments = v
		case 3:
			p.Meta = v
		case -1:
		default:
			return false
		}
		return true
	})
	return ok
}

// caseVariantKey returns a key of the message raw (valid JSON), or of its
// params, that matches a member the decision reads only up to case
// ("Params", "NAME", "Arguments"). encoding/json would take it for that
// member; a server that reads keys exactly (JSON.parse, Python's json, most
// SDKs) would not, and then the request decided would not be the request
// served. Such a message is refused, never decided.
func caseVariantKey(raw []byte) (string, bool) {
	var found string
	var params []byte
	check := func(prefix string, names ...string) func(k, v []byte) bool {
		return func(k, v []byte) bool {
			switch jsonfast.Field(k, names...) {
			case -2:
				s, _ := jsonfast.String(k)
				found = prefix + s
				return false
			case 3:
				if prefix == "" {
					params = v
				}
			}
			return true
		}
	}
	jsonfast.Members(raw, jsonfast.SkipSpace(raw, 0), check("", "jsonrpc", "id", "method", "params"))
	if found == "" && params != nil {
		jsonfast.Members(params, 0, check("params.", "name", "uri", "arguments"))
	}
	return found, found != ""
}

// retryOf returns the authorizationContextId a client echoes in its
// request's _meta after a structured denial (SEP-2643, draft): the id of
// the decision that refused its previous attempt. It is the client's word,
// not authorization material: recorded in the audit event (retry_of) to
// link a retry to its denial, and only when it looks like a decision id
// (at most 64 letters, digits, '-' and '_'); else "".
func retryOf(meta []byte) string {
	if len(meta) == 0 || meta[0] != '{' || !bytes.Contains(meta, []byte(`authorization-context-id`)) {
		return ""
	}
	var id string
	jsonfast.Members(meta, 0, func(k, v []byte) bool {
		if string(k) != `"io.modelcontextprotocol/authorization-context-id"` {
			return true
		}
		s, end, ok := jsonfast.PlainString(v, 0)
		if !ok || end != len(v) || len(s) == 0 || len(s) > 64 {
			return false
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
				return false
			}
		}
		id = string(s)
		return false
	})
	return id
}
