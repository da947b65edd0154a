package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/mcp-pdp/pdp/internal/jsonfast"
	"github.com/mcp-pdp/pdp/pep"
)

// Request bodies are read into pooled buffers. Buffers that grew beyond
// maxPooledBody (a large list result) are dropped rather than pooled, so a
// burst of big requests does not pin memory.
const (
	initialBodyBuffer = 4 << 10
	maxPooledBody     = 64 << 10
)

var bodyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, initialBodyBuffer)
	return &b
}}

// readRequest decodes one JSON object of at most limit bytes. size is the
// Content-Length (-1 when unknown); it only sizes the buffer, the limit is
// enforced on the bytes actually read. The Message and Result of the
// request it returns are valid JSON (both decoders check every value they
// read), which is what Decider.DecideValid relies on.
func readRequest(body io.Reader, size, limit int64) (*pep.Request, error) {
	bp := bodyBuffers.Get().(*[]byte)
	buf, err := readBody(body, (*bp)[:0], size, limit)
	defer func() {
		if cap(buf) <= maxPooledBody {
			*bp = buf[:0]
			bodyBuffers.Put(bp)
		}
	}()
	if err != nil {
		return nil, apiError(http.StatusBadRequest, "invalid_request", "reading the body failed: "+err.Error())
	}
	if int64(len(buf)) > limit {
		return nil, apiError(http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("the body exceeds the limit of %d bytes", limit))
	}
	if len(bytes.TrimSpace(buf)) == 0 {
		return nil, apiError(http.StatusBadRequest, "invalid_request", "the body is empty; send a JSON object")
	}
	// Nothing decoded below aliases buf: strings and json.RawMessage values
	// are copies, so the buffer can go back to the pool.
	var req pep.Request
	if decodeFast(buf, &req) {
		return &req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, apiError(http.StatusBadRequest, "invalid_json", describeJSONError(err))
	}
	if dec.More() {
		return nil, apiError(http.StatusBadRequest, "invalid_json", "unexpected data after the JSON object")
	}
	return &req, nil
}

// readBody appends body to buf until EOF or until more than limit bytes
// were read (the caller then answers 413; reading stops at limit+1 bytes).
// A known size within the limit sizes the buffer in one step.
func readBody(body io.Reader, buf []byte, size, limit int64) ([]byte, error) {
	max := limit + 1
	if size >= 0 && size <= limit && int64(cap(buf)) < size+1 {
		// +1: room for the read that reports EOF, so it does not grow the buffer.
		buf = make([]byte, 0, size+1)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		room := buf[len(buf):cap(buf)]
		if left := max - int64(len(buf)); int64(len(room)) > left {
			room = room[:left]
		}
		n, err := body.Read(room)
		buf = buf[:len(buf)+n]
		if int64(len(buf)) >= max {
			return buf, nil
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// Keys of a request object, as bits of decodeFast's "seen" set.
const (
	keyResource = 1 << iota
	keyAuthorization
	keyMessage
	keyResult
	keyHTTPMethod
	keyDPoP
	keyMCPMethod
	keyMCPName
)

// decodeFast decodes the common shape of a request without reflection: one
// object whose keys are spelled exactly as documented, each at most once;
// resource, authorization, http_method and dpop printable ASCII strings without
// escapes;
// message and result any valid JSON value; nothing but whitespace after the
// object. It reports false for anything else, and the caller decodes with
// encoding/json, which gives the same Request for every body decodeFast
// accepts (FuzzDecodeFast checks this) and the precise error for the rest.
func decodeFast(buf []byte, req *pep.Request) bool {
	i := jsonfast.SkipSpace(buf, 0)
	if i >= len(buf) || buf[i] != '{' {
		return false
	}
	i = jsonfast.SkipSpace(buf, i+1)
	if i >= len(buf) {
		return false
	}
	var seen int
	if buf[i] != '}' {
		for {
			key, next, ok := jsonfast.PlainString(buf, i)
			if !ok {
				return false
			}
			var bit int
			switch string(key) {
			case "resource":
				bit = keyResource
			case "authorization":
				bit = keyAuthorization
			case "message":
				bit = keyMessage
			case "result":
				bit = keyResult
			case "http_method":
				bit = keyHTTPMethod
			case "dpop":
				bit = keyDPoP
			case "mcp_method":
				bit = keyMCPMethod
			case "mcp_name":
				bit = keyMCPName
			default:
				return false
			}
			if seen&bit != 0 {
				return false
			}
			seen |= bit
			i = jsonfast.SkipSpace(buf, next)
			if i >= len(buf) || buf[i] != ':' {
				return false
			}
			i = jsonfast.SkipSpace(buf, i+1)
			switch bit {
			case keyResource, keyAuthorization, keyHTTPMethod, keyDPoP, keyMCPMethod, keyMCPName:
				s, next, ok := jsonfast.PlainString(buf, i)
				if !ok {
					return false
				}
				switch bit {
				case keyResource:
					req.Resource = string(s)
				case keyAuthorization:
					req.Authorization = string(s)
				case keyDPoP:
					req.DPoP = string(s)
				case keyMCPMethod:
					req.MCPMethod = string(s)
				case keyMCPName:
					req.MCPName = string(s)
				default:
					req.HTTPMethod = string(s)
				}
				i = next
			default:
				end, ok := jsonfast.ValueEnd(buf, i)
				if !ok || !json.Valid(buf[i:end]) {
					return false
				}
				v := json.RawMessage(bytes.Clone(buf[i:end]))
				if bit == keyMessage {
					req.Message = v
				} else {
					req.Result = v
				}
				i = end
			}
			i = jsonfast.SkipSpace(buf, i)
			if i >= len(buf) {
				return false
			}
			if buf[i] == '}' {
				break
			}
			if buf[i] != ',' {
				return false
			}
			i = jsonfast.SkipSpace(buf, i+1)
		}
	}
	return jsonfast.SkipSpace(buf, i+1) == len(buf)
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at offset %d: %v", se.Offset, se)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s, not %s", te.Field, te.Type, te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ") + "; known fields: resource, authorization, message, result, http_method, session_owner, dpop, http, mcp_method, mcp_name"
	}
	return "malformed JSON: " + err.Error()
}
