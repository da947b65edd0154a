package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
)

// DecisionMetaKey is the `_meta` key, in the params of a request sent to a
// stdio upstream, that carries the id of the decision that allowed it
// (DecisionHeader's counterpart; stdio has no headers).
const DecisionMetaKey = "io.github.mcp-pdp/decision-id"

// errParamsNotObject: a request whose params are not an object (JSON-RPC
// allows an array; MCP does not) cannot carry `_meta`.
var errParamsNotObject = errors.New("the request's params are not an object")

// withMeta returns the request msg (a JSON object the middleware checked)
// with params._meta[k] = v for every pair of meta, replacing whatever the
// client sent under those keys, creating params and _meta when absent.
// The other members, of the message, its params and its _meta, are kept
// as they came (their order may change).
func withMeta(msg []byte, meta map[string]string) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(msg, &top); err != nil {
		return nil, err
	}
	params := map[string]json.RawMessage{}
	if p, ok := top["params"]; ok && !bytes.Equal(bytes.TrimSpace(p), []byte("null")) {
		if err := json.Unmarshal(p, &params); err != nil {
			return nil, errParamsNotObject
		}
	}
	m := map[string]json.RawMessage{}
	if raw, ok := params["_meta"]; ok {
		// A _meta that is not an object is not MCP; it is replaced.
		_ = json.Unmarshal(raw, &m)
		if m == nil {
			m = map[string]json.RawMessage{}
		}
	}
	for k, v := range meta {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		m[k] = b
	}
	var err error
	if params["_meta"], err = json.Marshal(m); err != nil {
		return nil, err
	}
	if top["params"], err = json.Marshal(params); err != nil {
		return nil, err
	}
	return json.Marshal(top)
}
