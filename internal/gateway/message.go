package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/mcp-pdp/pdp/internal/jsonfast"
	"github.com/mcp-pdp/pdp/pep"
)

// JSON-RPC 2.0 error codes the gateway answers with.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeInternalError  = -32603
	// codeForbidden is the PDP's code for authorization refusals.
	codeForbidden = -32001
)

// message is what the gateway reads of a JSON-RPC message: enough to tell
// a request, a notification and a response apart and to match ids.
type message struct {
	// Raw is the message as received (valid JSON).
	Raw []byte
	// Batch: the body is a JSON array of messages.
	Batch bool
	// ID is the id as raw JSON, compacted; nil when absent.
	ID     json.RawMessage
	Method string
	// Name is params.name (tools/call, prompts/get) or params.uri
	// (resources/read): what Mcp-Name mirrors.
	Name   string
	Result json.RawMessage
	Error  json.RawMessage
}

// IsRequest: a method and an id.
func (m *message) IsRequest() bool { return m.Method != "" && m.ID != nil }

// IsNotification: a method, no id.
func (m *message) IsNotification() bool { return m.Method != "" && m.ID == nil }

// IsResponse: no method, an id, and a result or an error.
func (m *message) IsResponse() bool {
	return m.Method == "" && m.ID != nil && (m.Result != nil || m.Error != nil)
}

// parseError is a body that is not a JSON-RPC message.
type parseError struct {
	code int
	msg  string
}

func (e *parseError) Error() string { return e.msg }

func codeOf(err error) int {
	var pe *parseError
	if errors.As(err, &pe) {
		return pe.code
	}
	return codeInvalidRequest
}

// parseMessage reads one JSON-RPC message (or notes a batch). The
// message's parts (ID, Result, Error) are slices of raw, not copies.
func parseMessage(raw []byte) (*message, error) {
	trimmed := bytes.TrimSpace(raw)
	if !json.Valid(trimmed) {
		return nil, &parseError{codeParseError, "the body is not valid JSON"}
	}
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return &message{Raw: raw, Batch: true}, nil
	}
	f, ok := readFieldsFast(trimmed)
	if !ok {
		var err error
		if f, err = readFields(trimmed); err != nil {
			return nil, err
		}
	}
	return f.message(raw)
}

// fields are the members of a JSON-RPC message object the gateway reads,
// as encoding/json would decode them into a struct (duplicate keys: the
// last wins; "method": null is no method).
type fields struct {
	jsonrpc       string
	id            json.RawMessage
	method        *string
	result, error json.RawMessage
	name, uri     string // params.name and params.uri when strings
}

// readFields decodes with encoding/json: the reference for readFieldsFast
// and the path for what it does not read.
func readFields(b []byte) (fields, error) {
	var m struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Method  *string         `json:"method"`
		Result  json.RawMessage `json:"result"`
		Error   json.RawMessage `json:"error"`
		Params  struct {
			Name any `json:"name"`
			URI  any `json:"uri"`
		} `json:"params"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fields{}, &parseError{codeInvalidRequest, "the body is not a JSON-RPC message object"}
	}
	f := fields{jsonrpc: m.JSONRPC, id: m.ID, method: m.Method, result: m.Result, error: m.Error}
	f.name, _ = m.Params.Name.(string)
	f.uri, _ = m.Params.URI.(string)
	return f, nil
}

// readFieldsFast reads the common shape of a message (an object of plain
// members, params an object) without reflection or copies; ok is false
// for anything else (keys that match only up to case, a non-string
// jsonrpc, params that is not an object, ...), which readFields then
// decodes. FuzzParseMessage holds the two to the same result.
func readFieldsFast(b []byte) (f fields, ok bool) {
	const (
		kJSONRPC = iota
		kID
		kMethod
		kResult
		kError
		kParams
	)
	_, ok = jsonfast.Members(b, 0, func(k, v []byte) bool {
		switch jsonfast.Field(k, "jsonrpc", "id", "method", "result", "error", "params") {
		case -1:
			return true
		case kJSONRPC:
			s, isString := jsonfast.String(v)
			f.jsonrpc = s
			return isString
		case kID:
			f.id = v
		case kMethod:
			if string(v) == "null" {
				f.method = nil
				return true
			}
			s, isString := jsonfast.String(v)
			f.method = &s
			return isString
		case kResult:
			f.result = v
		case kError:
			f.error = v
		case kParams:
			if string(v) == "null" {
				return true // encoding/json leaves the struct as it was
			}
			_, pok := jsonfast.Members(v, 0, func(pk, pv []byte) bool {
				var dst *string
				switch jsonfast.Field(pk, "name", "uri") {
				case -1:
					return true
				case 0:
					dst = &f.name
				case 1:
					dst = &f.uri
				default:
					return false
				}
				*dst, _ = jsonfast.String(pv) // not a string: ""
				return true
			})
			return pok
		default: // matches a field only up to case
			return false
		}
		return true
	})
	return f, ok
}

// message checks f as a JSON-RPC message and returns it.
func (f fields) message(raw []byte) (*message, error) {
	if f.jsonrpc != "2.0" {
		return nil, &parseError{codeInvalidRequest, `jsonrpc must be "2.0"`}
	}
	out := &message{Raw: raw, Result: f.result, Error: f.error, Name: f.name}
	if f.method != nil {
		if *f.method == "" {
			return nil, &parseError{codeInvalidRequest, "method must not be empty"}
		}
		out.Method = *f.method
		if out.Method == "resources/read" {
			out.Name = f.uri
		}
	}
	if len(f.id) > 0 && !bytes.Equal(f.id, []byte("null")) {
		// A string or a number has no insignificant space inside: it is
		// compact as it is.
		if c := f.id[0]; c != '"' && c != '-' && (c < '0' || c > '9') {
			return nil, &parseError{codeInvalidRequest, "the id must be a string or a number"}
		}
		out.ID = f.id
	}
	if out.Method == "" && !out.IsResponse() {
		return nil, &parseError{codeInvalidRequest, "a message needs a method, or an id with a result or an error"}
	}
	return out, nil
}

// codeHeaderMismatch: HTTP headers that contradict the body (MCP
// 2026-07-28, HeaderMismatch).
const codeHeaderMismatch = -32020

// Headers that mirror the body (MCP 2026-07-28, SEP-2243).
const (
	headerMethod = "Mcp-Method"
	headerName   = "Mcp-Name"
	base64Prefix = "=?base64?"
	base64Suffix = "?="
)

// headerMismatch checks the Mcp-Method and Mcp-Name headers a client sent
// against the body: the decision is taken on the body, so a header that
// says otherwise (for infrastructure that routes or limits by headers)
// is refused. Absent headers are left to the upstream, which requires them
// for 2026-07-28 clients. It returns what is wrong, or "".
func headerMismatch(h http.Header, m *message) string {
	if !m.IsRequest() && !m.IsNotification() {
		return ""
	}
	if v := h.Values(headerMethod); len(v) > 0 {
		got, ok := decodeHeaderValue(v[0])
		if len(v) > 1 || !ok || got != m.Method {
			return fmt.Sprintf("the %s header does not match the method of the body (%q)", headerMethod, m.Method)
		}
	}
	switch m.Method {
	case "tools/call", "prompts/get", "resources/read":
		if v := h.Values(headerName); len(v) > 0 {
			got, ok := decodeHeaderValue(v[0])
			if len(v) > 1 || !ok || got != m.Name {
				return fmt.Sprintf("the %s header does not match the name of the body's target", headerName)
			}
		}
	}
	return ""
}

// decodeHeaderValue reads a header value that may be Base64-encoded as
// =?base64?...?= (values that are not plain printable ASCII).
func decodeHeaderValue(v string) (string, bool) {
	if enc, ok := strings.CutPrefix(v, base64Prefix); ok {
		if enc, ok = strings.CutSuffix(enc, base64Suffix); ok {
			b, err := base64.StdEncoding.DecodeString(enc)
			return string(b), err == nil
		}
	}
	return v, true
}

type rpcErrorResponse struct {
	JSONRPC string            `json:"jsonrpc"`
	ID      json.RawMessage   `json:"id"`
	Error   *pep.JSONRPCError `json:"error"`
}

type rpcResultResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result"`
}

func nullID(id json.RawMessage) json.RawMessage {
	if id == nil {
		return json.RawMessage("null")
	}
	return id
}

// writeRPCError answers with status and a JSON-RPC error body: clients
// (the go-sdk's among them) drop their session on an empty error body.
func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(rpcError(id, code, msg))
}

// rpcError is a JSON-RPC error response for the request id (null: none).
func rpcError(id json.RawMessage, code int, msg string) []byte {
	b, _ := json.Marshal(rpcErrorResponse{JSONRPC: "2.0", ID: nullID(id), Error: &pep.JSONRPCError{Code: code, Message: msg}})
	return b
}

// writeDenial answers a refused message exactly as the decision says: the
// HTTP challenge (401/403 with WWW-Authenticate) or 503 with a JSON-RPC
// error body, or in band (HTTP 200) with the JSON-RPC error or the tool
// result.
func writeDenial(w http.ResponseWriter, id json.RawMessage, d *pep.Response) {
	if d.WWWAuthenticate != "" {
		w.Header().Set("WWW-Authenticate", d.WWWAuthenticate)
	}
	status, b := denial(id, d)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// denial is the HTTP status and the JSON-RPC response that answer the
// request id refused by d.
func denial(id json.RawMessage, d *pep.Response) (int, []byte) {
	status := d.HTTPStatus
	if status == 0 {
		status = http.StatusForbidden
	}
	var body any
	switch {
	case status == http.StatusOK && d.ToolResult != nil:
		body = rpcResultResponse{JSONRPC: "2.0", ID: nullID(id), Result: d.ToolResult}
	case d.JSONRPCError != nil:
		body = rpcErrorResponse{JSONRPC: "2.0", ID: nullID(id), Error: d.JSONRPCError}
	default:
		code, msg := codeForbidden, "forbidden: the token lacks a scope this operation needs (see WWW-Authenticate)"
		switch status {
		case http.StatusUnauthorized:
			msg = "authorization required (see WWW-Authenticate)"
		case http.StatusServiceUnavailable:
			code, msg = codeInternalError, "authorization unavailable; retry later"
		}
		body = rpcErrorResponse{JSONRPC: "2.0", ID: nullID(id), Error: &pep.JSONRPCError{Code: code, Message: msg}}
	}
	b, err := json.Marshal(body)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":null,"error":{"code":%d,"message":"forbidden"}}`, codeInternalError))
	}
	return status, b
}
