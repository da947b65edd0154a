package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/labstack/echo/v5"

	"github.com/mcp-pdp/pdp/pep"
)

// jsonBuffer is a reusable response buffer with its encoder.
type jsonBuffer struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// maxPooledAnswer: buffers that grew beyond it (a large filtered list) are
// dropped rather than pooled.
const maxPooledAnswer = 64 << 10

var jsonBuffers = sync.Pool{New: func() any {
	b := &jsonBuffer{}
	b.enc = json.NewEncoder(&b.buf)
	return b
}}

// jsonContentType is the Content-Type header value of every JSON answer,
// shared to spare an allocation per answer; net/http only reads it.
var jsonContentType = []string{echo.MIMEApplicationJSON}

// writeJSON answers v as JSON with status. It writes what echo's c.JSON
// writes (the same Content-Type unless one is set, the encoding/json
// encoding followed by a newline) through a pooled buffer. Nothing is
// written when encoding fails, so the error handler can still answer.
func writeJSON(c *echo.Context, status int, v any) error {
	b := getBuffer()
	defer putBuffer(b)
	if err := b.enc.Encode(v); err != nil {
		return fmt.Errorf("encoding the answer: %w", err)
	}
	return send(c, status, b.buf.Bytes())
}

// writeDecision answers a decision. A list's filtered result (often most of
// the answer) is spliced in as it is, after the other fields: encoding/json
// would validate and compact it byte by byte again, though listfilter built
// it from the MCP server's own (already parsed) JSON.
func writeDecision(c *echo.Context, resp *pep.Response) error {
	if len(resp.Result) == 0 {
		return writeJSON(c, http.StatusOK, resp)
	}
	b := getBuffer()
	defer putBuffer(b)
	head := *resp
	head.Result = nil
	if err := b.enc.Encode(&head); err != nil {
		return fmt.Errorf("encoding the answer: %w", err)
	}
	// Encode wrote {...}\n: reopen the object, add the result, close it.
	b.buf.Truncate(b.buf.Len() - 2)
	b.buf.WriteString(`,"result":`)
	b.buf.Write(resp.Result)
	b.buf.WriteString("}\n")
	return send(c, http.StatusOK, b.buf.Bytes())
}

func getBuffer() *jsonBuffer {
	b := jsonBuffers.Get().(*jsonBuffer)
	b.buf.Reset()
	return b
}

func putBuffer(b *jsonBuffer) {
	if b.buf.Cap() <= maxPooledAnswer {
		b.buf.Reset()
		jsonBuffers.Put(b)
	}
}

// send writes an encoded JSON answer with status, with echo's Content-Type
// unless one is set.
func send(c *echo.Context, status int, body []byte) error {
	w := c.Response()
	h := w.Header()
	if h.Get("Content-Type") == "" {
		h["Content-Type"] = jsonContentType
	}
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("writing the answer: %w", err)
	}
	return nil
}
