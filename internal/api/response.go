package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/labstack/echo/v5"
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
	b := jsonBuffers.Get().(*jsonBuffer)
	defer func() {
		if b.buf.Cap() <= maxPooledAnswer {
			b.buf.Reset()
			jsonBuffers.Put(b)
		}
	}()
	b.buf.Reset()
	if err := b.enc.Encode(v); err != nil {
		return fmt.Errorf("encoding the answer: %w", err)
	}
	w := c.Response()
	h := w.Header()
	if h.Get("Content-Type") == "" {
		h["Content-Type"] = jsonContentType
	}
	w.WriteHeader(status)
	if _, err := w.Write(b.buf.Bytes()); err != nil {
		return fmt.Errorf("writing the answer: %w", err)
	}
	return nil
}
