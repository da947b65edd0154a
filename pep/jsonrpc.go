package pep

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// JSON-RPC 2.0 error codes the middleware answers with.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeInternalError  = -32603
	// codeForbidden is the PDP's code for authorization refusals.
	codeForbidden = -32001
	// codeHeaderMismatch: HTTP headers that contradict the body (MCP
	// 2026-07-28, HeaderMismatch).
	codeHeaderMismatch = -32020
)

// message is what the middleware reads of a JSON-RPC message: enough to
// tell a request, a notification and a response apart and to match ids.
type message struct {
	// raw is the message as received (valid JSON).
	raw []byte
	// batch: the body is a JSON array of messages.
	batch bool
	// id is the id as raw JSON; nil when absent or null.
	id     json.RawMessage
	method string
	// name is params.name (tools/call, prompts/get) or params.uri
	// (resources/read): what Mcp-Name mirrors.
	name   string
	result json.RawMessage
	err    json.RawMessage
}

func (m *message) isRequest() bool      { return m.method != "" && m.id != nil }
func (m *message) isNotification() bool { return m.method != "" && m.id == nil }
func (m *message) isResponse() bool {
	return m.method == "" && m.id != nil && (m.result != nil || m.err != nil)
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

// parseMessage reads one JSON-RPC message (or notes a batch).
func parseMessage(raw []byte) (*message, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if !json.Valid(trimmed) {
			return nil, &parseError{codeParseError, "the body is not valid JSON"}
		}
		return &message{raw: raw, batch: true}, nil
	}
	if m, ok := scanMessage(raw, trimmed); ok {
		return m, nil
	}
	return parseMessageJSON(raw, trimmed)
}

// parseMessageJSON reads a message with encoding/json: the reference, and
// the path for what scanMessage does not read.
func parseMessageJSON(raw, trimmed []byte) (*message, error) {
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
	// Unmarshal checks the whole input is valid JSON before it decodes
	// (a syntax error is reported as such): no separate validation pass.
	if err := json.Unmarshal(trimmed, &m); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || len(trimmed) == 0 {
			return nil, &parseError{codeParseError, "the body is not valid JSON"}
		}
		return nil, &parseError{codeInvalidRequest, "the body is not a JSON-RPC message object"}
	}
	if k, ok := caseVariantKey(trimmed); ok {
		return nil, &parseError{codeInvalidRequest, fmt.Sprintf("the key %q differs from a JSON-RPC or MCP member only in case: keys are read exactly, so the message is ambiguous", k)}
	}
	if m.JSONRPC != "2.0" {
		return nil, &parseError{codeInvalidRequest, `jsonrpc must be "2.0"`}
	}
	out := &message{raw: raw, result: m.Result, err: m.Error}
	out.name, _ = m.Params.Name.(string)
	if m.Method != nil {
		if *m.Method == "" {
			return nil, &parseError{codeInvalidRequest, "method must not be empty"}
		}
		out.method = *m.Method
		if out.method == "resources/read" {
			out.name, _ = m.Params.URI.(string)
		}
	}
	if len(m.ID) > 0 && !bytes.Equal(m.ID, []byte("null")) {
		// A string or a number has no insignificant space inside: as
		// encoding/json hands it over, it is compact.
		if c := m.ID[0]; c != '"' && c != '-' && (c < '0' || c > '9') {
			return nil, &parseError{codeInvalidRequest, "the id must be a string or a number"}
		}
		out.id = m.ID
	}
	if out.method == "" && !out.isResponse() {
		return nil, &parseError{codeInvalidRequest, "a message needs a method, or an id with a result or an error"}
	}
	return out, nil
}

// caseVariantKey returns a key of the message (valid JSON), or of its
// params, that matches a member the middleware reads only up to case
// ("Params", "NAME"). encoding/json takes such a key for the member; the
// MCP server behind the middleware, reading keys exactly as JSON.parse,
// Python's json and most SDKs do, would not, and the message decided would
// not be the message served. Such a message is refused.
func caseVariantKey(msg []byte) (string, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(msg, &top) != nil {
		return "", false
	}
	if k, ok := foldedKey(top, "jsonrpc", "id", "method", "result", "error", "params"); ok {
		return k, true
	}
	var params map[string]json.RawMessage
	if json.Unmarshal(top["params"], &params) != nil {
		return "", false
	}
	if k, ok := foldedKey(params, "name", "uri"); ok { // the PDP checks what else it reads
		return "params." + k, true
	}
	return "", false
}

// foldedKey returns a key of m equal to one of names up to case only.
func foldedKey(m map[string]json.RawMessage, names ...string) (string, bool) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		for _, n := range names {
			if k != n && strings.EqualFold(k, n) {
				return k, true
			}
		}
	}
	return "", false
}

// Headers of Streamable HTTP the middleware reads or writes.
const (
	headerSessionID = "Mcp-Session-Id"
	// headerMethod and headerName mirror the body (MCP 2026-07-28).
	headerMethod = "Mcp-Method"
	headerName   = "Mcp-Name"
	base64Prefix = "=?base64?"
	base64Suffix = "?="
)

// headerMismatch checks the Mcp-Method and Mcp-Name headers a client sent
// against the body: the decision is taken on the body, so a header that
// says otherwise (for infrastructure that routes or limits by headers) is
// refused. Absent headers are left to the server, which requires them
// for 2026-07-28 clients. It returns what is wrong, or "".
func headerMismatch(h http.Header, m *message) string {
	if !m.isRequest() && !m.isNotification() {
		return ""
	}
	if v := h.Values(headerMethod); len(v) > 0 {
		got, ok := decodeHeaderValue(v[0])
		if len(v) > 1 || !ok || got != m.method {
			return fmt.Sprintf("the %s header does not match the method of the body (%q)", headerMethod, m.method)
		}
	}
	switch m.method {
	case "tools/call", "prompts/get", "resources/read":
		if v := h.Values(headerName); len(v) > 0 {
			got, ok := decodeHeaderValue(v[0])
			if len(v) > 1 || !ok || got != m.name {
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
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   *JSONRPCError   `json:"error"`
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

// rpcError is a JSON-RPC error response for the request id (nil: null).
func rpcError(id json.RawMessage, code int, msg string) []byte {
	b, _ := json.Marshal(rpcErrorResponse{JSONRPC: "2.0", ID: nullID(id), Error: &JSONRPCError{Code: code, Message: msg}})
	return b
}

// WriteError answers an MCP request with an HTTP status and a JSON-RPC
// error body for the request id (nil: the JSON null): clients (the
// go-sdk's among them) drop their session on an error with an empty body.
func WriteError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(rpcError(id, code, msg))
}

// writeDenial answers a refused message exactly as the decision says: the
// HTTP challenge (401/403 with WWW-Authenticate), 429 with Retry-After or
// 503 with a JSON-RPC error body, or in band (HTTP 200) with the JSON-RPC error or the tool
// result.
func writeDenial(w http.ResponseWriter, id json.RawMessage, d *Response) {
	if d.WWWAuthenticate != "" {
		w.Header().Set("WWW-Authenticate", d.WWWAuthenticate)
	}
	if d.DPoPNonce != "" {
		w.Header().Set("DPoP-Nonce", d.DPoPNonce) // RFC 9449 §8
	}
	if d.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(d.RetryAfter)) // RFC 9110 §10.2.3
	}
	status, b := denial(id, d)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// denial is the HTTP status and the JSON-RPC response that answer the
// request id refused by d.
func denial(id json.RawMessage, d *Response) (int, []byte) {
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
		body = rpcErrorResponse{JSONRPC: "2.0", ID: nullID(id), Error: &JSONRPCError{Code: code, Message: msg}}
	}
	b, err := json.Marshal(body)
	if err != nil {
		b = rpcError(nil, codeInternalError, "forbidden")
	}
	return status, b
}

func isList(method string) bool {
	switch method {
	case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
		return true
	}
	return false
}

// privateCache marks a filtered list result cacheScope "private" (MCP
// 2026-07-28): it varies per caller, whatever the server said, and no
// cache may share it across authorization contexts.
func privateCache(result json.RawMessage) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(result)
	if len(trimmed) < 2 || trimmed[0] != '{' {
		return nil, errors.New("the list result is not a JSON object")
	}
	if !bytes.Contains(trimmed, []byte(`"cacheScope"`)) {
		// The common case: no cacheScope yet; put it first.
		out := make([]byte, 0, len(trimmed)+24)
		out = append(out, `{"cacheScope":"private"`...)
		if rest := bytes.TrimSpace(trimmed[1:]); len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, trimmed[1:]...), nil
	}
	// The server set one (or the text occurs in a string): replace it.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return nil, err
	}
	fields["cacheScope"] = json.RawMessage(`"private"`)
	return json.Marshal(fields)
}

func joinArray(elems []json.RawMessage) []byte {
	n := 2
	for _, e := range elems {
		n += len(e) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, e := range elems {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']')
}
