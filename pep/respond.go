package pep

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// owed are the requests an answer must respond to: the request of a POST,
// or a batch's forwarded requests.
type owed struct {
	ids  []json.RawMessage
	done []bool
	left int
}

func newOwed(ids ...json.RawMessage) *owed {
	return &owed{ids: ids, done: make([]bool, len(ids)), left: len(ids)}
}

// answer marks the request id answered; it reports whether id was owed
// and not answered before.
func (o *owed) answer(id json.RawMessage) bool {
	for i, x := range o.ids {
		if !o.done[i] && bytes.Equal(x, id) {
			o.done[i] = true
			o.left--
			return true
		}
	}
	return false
}

// index is the position of id among the owed requests, answered or not;
// -1 when it is not one of them.
func (o *owed) index(id json.RawMessage) int {
	for i, x := range o.ids {
		if bytes.Equal(x, id) {
			return i
		}
	}
	return -1
}

// Modes of an interceptor, chosen when the handler writes its header.
const (
	modePass    = iota // relayed as written (no request owed an answer)
	modeJSON           // the answer to a request, read whole, then written
	modeSSE            // an SSE stream answering requests, event by event
	modeFailure        // a status >= 300 answering requests
)

// maxFailureBytes bounds the body of a failure answer that is read.
const maxFailureBytes = 64 << 10

// errStreamCut tells a handler still writing that the middleware ended
// its stream (an answer that could not be filtered, or too large).
var errStreamCut = errors.New("pep: the stream was cut: the answer could not be relayed")

// interceptor is the ResponseWriter next writes to: it relays what may be
// relayed, filters list answers, and makes sure every request it owes an
// answer gets one.
type interceptor struct {
	m    *middleware
	w    http.ResponseWriter
	r    *http.Request
	d    *Response
	due  *owed
	list *message // the list request whose answer is filtered
	// one, oneID and oneDone hold due for a single request, without
	// allocations of their own.
	one     owed
	oneID   [1]json.RawMessage
	oneDone [1]bool
	// replay is the session of a GET stream, get that the answer is one:
	// a response in it is a replayed answer, filtered if it answers a
	// list request.
	replay string
	get    bool
	creds  credentials
	batch  *batch

	wroteHeader   bool
	mode          int
	status        int
	buf           []byte
	over          bool
	sse           splitter
	cut           bool
	handlerFailed bool
	// ctxVal is what the handler's context carries (DecisionFrom,
	// RefundCall), in the interceptor's allocation.
	ctxVal decided
}

func (m *middleware) intercept(w http.ResponseWriter, r *http.Request, d *Response) *interceptor {
	return &interceptor{m: m, w: w, r: r, d: d, sse: splitter{limit: m.o.MaxResponseBytes}}
}

// owe makes the answer owe one to the request id.
func (iw *interceptor) owe(id json.RawMessage) {
	iw.oneID[0] = id
	iw.one = owed{ids: iw.oneID[:], done: iw.oneDone[:], left: 1}
	iw.due = &iw.one
}

func (iw *interceptor) Header() http.Header { return iw.w.Header() }

// Unwrap lets http.ResponseController reach the underlying writer.
func (iw *interceptor) Unwrap() http.ResponseWriter { return iw.w }

// owes reports whether the answer must respond to requests (or, for a
// batch, carry the middleware's own answers).
func (iw *interceptor) owes() bool { return iw.batch != nil || (iw.due != nil && len(iw.due.ids) > 0) }

func (iw *interceptor) WriteHeader(status int) {
	if iw.wroteHeader || status < 200 {
		if status >= 100 && status < 200 && !iw.wroteHeader {
			iw.w.WriteHeader(status) // informational: passes
		}
		return
	}
	iw.wroteHeader, iw.status = true, status
	iw.bindSession(status)
	h := iw.w.Header()
	switch {
	case iw.r.Method == http.MethodGet && status < 300 && isSSE(h):
		iw.mode, iw.get = modeSSE, true
		h.Del("Content-Length")
		iw.w.WriteHeader(status)
		iw.flush()
	case !iw.owes():
		iw.mode = modePass
		iw.w.WriteHeader(status)
	case status >= 300:
		iw.mode = modeFailure
	case isSSE(h):
		iw.mode = modeSSE
		h.Del("Content-Length")
		iw.w.WriteHeader(status)
		if iw.batch != nil {
			for _, a := range iw.batch.answers {
				_, _ = iw.w.Write(messageEvent(a))
			}
		}
		iw.flush()
	default:
		iw.mode = modeJSON
		if cl := h.Get("Content-Length"); cl == "" {
			// undeclared: the buffer grows as the answer is written
		} else if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n > 0 && n <= iw.m.o.MaxResponseBytes {
			iw.buf = make([]byte, 0, n) // the answer in one allocation
		}
	}
}

// bindSession binds the session of an answered request to its caller, and
// forgets a session that a DELETE ended.
func (iw *interceptor) bindSession(status int) {
	if status >= 300 {
		return
	}
	reqSID := iw.r.Header.Get(headerSessionID)
	if iw.r.Method == http.MethodDelete {
		if reqSID != "" {
			iw.m.sessions.forget(reqSID)
		}
		return
	}
	sid := cmp.Or(iw.w.Header().Get(headerSessionID), reqSID)
	if sid != "" {
		iw.m.sessions.bind(sid, newOwner(iw.d.Caller))
	}
}

// room reports whether n more bytes fit the buffered answer.
func (iw *interceptor) room(n int) error {
	limit := iw.m.o.MaxResponseBytes
	if iw.mode == modeFailure {
		limit = maxFailureBytes
	}
	if int64(len(iw.buf)+n) > limit {
		iw.over = true
		return fmt.Errorf("pep: the answer exceeds %d bytes", limit)
	}
	return nil
}

// WriteString is Write for a handler that writes strings (io.WriteString):
// a buffered answer takes s without converting it first.
func (iw *interceptor) WriteString(s string) (int, error) {
	if !iw.wroteHeader && iw.w.Header().Get("Content-Type") != "" {
		iw.WriteHeader(http.StatusOK)
	}
	if iw.wroteHeader && (iw.mode == modeJSON || iw.mode == modeFailure) {
		if err := iw.room(len(s)); err != nil {
			return 0, err
		}
		iw.buf = append(iw.buf, s...)
		return len(s), nil
	}
	return iw.Write([]byte(s))
}

func (iw *interceptor) Write(p []byte) (int, error) {
	if !iw.wroteHeader {
		if iw.w.Header().Get("Content-Type") == "" {
			iw.w.Header().Set("Content-Type", http.DetectContentType(p))
		}
		iw.WriteHeader(http.StatusOK)
	}
	switch iw.mode {
	case modePass:
		return iw.w.Write(p)
	case modeJSON, modeFailure:
		if err := iw.room(len(p)); err != nil {
			return 0, err
		}
		iw.buf = append(iw.buf, p...)
		return len(p), nil
	}
	if iw.cut {
		return 0, errStreamCut
	}
	iw.sse.add(p)
	for {
		ev, err := iw.sse.next()
		if err != nil {
			iw.fail(fmt.Sprintf("the MCP server sent an event over %d bytes; the stream was cut", iw.m.o.MaxResponseBytes))
			return 0, errStreamCut
		}
		if ev == nil {
			break
		}
		if !iw.relay(ev) {
			return 0, errStreamCut
		}
	}
	if iw.sse.overLimit() {
		iw.fail(fmt.Sprintf("the MCP server sent an event over %d bytes; the stream was cut", iw.m.o.MaxResponseBytes))
		return 0, errStreamCut
	}
	return len(p), nil
}

// Flush sends what was relayed so far.
func (iw *interceptor) Flush() {
	if iw.mode == modePass || iw.mode == modeSSE {
		iw.flush()
	}
}

func (iw *interceptor) flush() { _ = http.NewResponseController(iw.w).Flush() }

// relay writes one event of an SSE answer, filtered as it must be; false
// when the stream was cut instead.
func (iw *interceptor) relay(ev *event) bool {
	out := ev.raw
	filtering := iw.list != nil || iw.batch != nil
	if iw.get {
		return iw.relayReplay(ev)
	}
	switch {
	case filtering && ev.bareCR():
		iw.fail("the MCP server framed its stream with bare CR line endings, which the PEP does not read; the stream was cut")
		return false
	case !ev.hasData:
	case iw.list != nil:
		parts, rewritten, err := iw.filterListEvent(ev.data)
		if err != nil {
			iw.fail(err.Error())
			return false
		}
		if rewritten {
			// The event's other lines, then its new data line written
			// piece by piece: the filtered list is not copied again.
			if err := ev.writeWithData(iw.w, parts); err != nil {
				iw.cut = true
				return false
			}
			iw.flush()
			return true
		}
	case iw.batch != nil:
		if len(bytes.TrimSpace(ev.data)) == 0 {
			break // a priming event
		}
		kept, array, err := iw.m.filterBatchAnswer(iw.r.Context(), iw.batch, ev.data, iw.creds)
		switch {
		case err != nil:
			iw.fail(err.Error())
			return false
		case len(kept) == 0:
			return true // nothing of it may pass
		case !array && len(kept) == 1:
			out = ev.withData(kept[0])
		default:
			out = ev.withData(joinArray(kept))
		}
	case iw.due.left > 0:
		markAnswers(ev.data, iw.due)
	}
	if _, err := iw.w.Write(out); err != nil {
		iw.cut = true // the client went away
		return false
	}
	iw.flush()
	return true
}

// relayReplay writes one event of a GET stream. The server's requests and
// notifications pass; a response is a replayed answer: one to a list
// request of the session is filtered for this caller; one that is not
// but looks like a list (its result has a tools, prompts, resources or
// resourceTemplates member) is dropped; others pass.
func (iw *interceptor) relayReplay(ev *event) bool {
	out := ev.raw
	if ev.bareCR() {
		// Lines ended by a lone CR hide their fields from the splitter but
		// not from a client: the event could be a list; drop it.
		iw.m.log.Warn("pep: dropped a GET stream event framed with bare CR line endings")
		return true
	}
	if ev.hasData && len(bytes.TrimSpace(ev.data)) > 0 {
		m, err := parseMessage(ev.data)
		switch {
		case err == nil && m.batch:
			iw.m.log.Warn("pep: dropped a GET stream event it cannot read")
			return true
		case err != nil || m.method != "":
		case iw.replay != "" && iw.m.sessions.listRequest(iw.replay, m.id) != nil:
			list := iw.m.sessions.listRequest(iw.replay, m.id)
			filtered, ferr := iw.m.filterList(iw.r.Context(), list, m, iw.creds)
			if ferr != nil {
				iw.m.log.Warn("pep: dropped a replayed list answer", "err", ferr)
				return true
			}
			out = ev.withData(filtered)
		case looksLikeList(m.result):
			iw.m.log.Warn("pep: dropped a replayed answer to an unknown list request", "id", string(m.id))
			return true
		}
	}
	if _, err := iw.w.Write(out); err != nil {
		iw.cut = true
		return false
	}
	iw.flush()
	return true
}

// looksLikeList reports whether a result has a member that list results
// carry.
func looksLikeList(result json.RawMessage) bool {
	if len(result) == 0 {
		return false
	}
	var r map[string]json.RawMessage
	if json.Unmarshal(result, &r) != nil {
		return false
	}
	for _, k := range []string{"tools", "prompts", "resources", "resourceTemplates"} {
		if _, ok := r[k]; ok {
			return true
		}
	}
	return false
}

// filterListEvent filters the event that carries the list response; the
// server's own requests and notifications pass; anything else in a list
// stream is an error, so that nothing unfiltered passes.
func (iw *interceptor) filterListEvent(data []byte) ([][]byte, bool, error) {
	msg := iw.list
	if len(bytes.TrimSpace(data)) == 0 {
		// A priming event (an id to resume from, no message): servers
		// send one at the start of a stream (2025-11-25).
		return nil, false, nil
	}
	ev, err := parseMessage(data)
	if err != nil || ev.batch {
		return nil, false, fmt.Errorf("the MCP server sent an event that is not one JSON-RPC message during %s; the stream was cut", msg.method)
	}
	if ev.method != "" {
		return nil, false, nil // the server's own request or notification
	}
	if !bytes.Equal(ev.id, msg.id) {
		// A response in a list stream is the list's, whatever its id says
		// (3.0, "3"): refuse rather than relay it unfiltered.
		return nil, false, fmt.Errorf("the MCP server answered %s with another id; the stream was cut", msg.method)
	}
	parts, err := iw.m.filterListParts(iw.r.Context(), msg, ev, iw.creds)
	if err != nil {
		return nil, false, err
	}
	iw.due.answer(msg.id)
	return parts, true, nil
}

// fail ends an SSE answer with a JSON-RPC error event for every request
// still owed, and drops whatever the handler writes after.
func (iw *interceptor) fail(why string) {
	iw.cut = true
	if iw.due == nil {
		return // a GET stream owes no answer
	}
	for i, id := range iw.due.ids {
		if !iw.due.done[i] {
			iw.due.done[i] = true
			iw.due.left--
			_, _ = iw.w.Write(errorEvent(id, why))
		}
	}
	iw.flush()
}

// finish completes the answer once the handler returned.
func (iw *interceptor) finish() {
	if !iw.wroteHeader {
		if !iw.owes() {
			if iw.handlerFailed {
				WriteError(iw.w, http.StatusInternalServerError, nil, codeInternalError, "the MCP server failed")
			}
			return
		}
		iw.status = http.StatusBadGateway
		iw.mode = modeFailure
		iw.wroteHeader = true
	}
	switch iw.mode {
	case modeSSE:
		if iw.cut {
			return
		}
		if ev := iw.sse.rest(); ev != nil && !iw.relay(ev) {
			return
		}
		if iw.due != nil && iw.due.left > 0 {
			iw.fail("the MCP server ended its stream without answering the request")
		}
	case modeJSON:
		iw.finishJSON()
	case modeFailure:
		iw.finishFailure()
	}
}

// finishJSON writes the JSON answer to the request(s), filtered.
func (iw *interceptor) finishJSON() {
	raw := iw.buf
	switch {
	case iw.over:
		iw.failJSON(fmt.Sprintf("the MCP server's answer is over %d bytes; it was not relayed", iw.m.o.MaxResponseBytes))
		return
	case iw.batch != nil:
		if len(bytes.TrimSpace(raw)) > 0 {
			if !json.Valid(raw) {
				iw.failJSON("the MCP server's answer is not valid JSON (cut short?); it was not relayed")
				return
			}
			kept, _, err := iw.m.filterBatchAnswer(iw.r.Context(), iw.batch, raw, iw.creds)
			if err != nil {
				iw.failJSON(err.Error())
				return
			}
			iw.batch.answers = append(iw.batch.answers, kept...)
		}
		iw.batch.failOwed("the MCP server did not answer this request")
		iw.batch.write(iw.w, iw.status)
		return
	case iw.list == nil && !json.Valid(raw):
		iw.failJSON("the MCP server's answer is not valid JSON (cut short?); it was not relayed")
		return
	case iw.list != nil:
		m, err := parseMessage(raw)
		var parts [][]byte
		if err == nil {
			parts, err = iw.m.filterListParts(iw.r.Context(), iw.list, m, iw.creds)
		} else {
			err = fmt.Errorf("the MCP server's %s answer is not a JSON-RPC response; it was not relayed", iw.list.method)
		}
		if err != nil {
			iw.failJSON(err.Error())
			return
		}
		iw.w.Header().Del("Content-Length")
		iw.w.WriteHeader(iw.status)
		for _, p := range parts {
			if _, err := iw.w.Write(p); err != nil {
				return
			}
		}
		return
	}
	iw.w.Header().Del("Content-Length")
	iw.w.WriteHeader(iw.status)
	_, _ = iw.w.Write(raw)
}

// failJSON answers the owed requests with 502 and a JSON-RPC error.
func (iw *interceptor) failJSON(why string) {
	if iw.batch != nil {
		iw.batch.failOwed(why)
		iw.batch.write(iw.w, http.StatusBadGateway)
		return
	}
	WriteError(iw.w, http.StatusBadGateway, iw.due.ids[0], codeInternalError, why)
}

// finishFailure answers a refusal of the server (HTTP 3xx-5xx) with its
// status: its body when that is a JSON-RPC error (a null id becomes the
// request's), else a JSON-RPC error saying what happened. Nothing else of
// it is relayed (it could carry a list).
func (iw *interceptor) finishFailure() {
	why := fmt.Sprintf("the MCP server answered HTTP %d", iw.status)
	if iw.handlerFailed {
		iw.status, why = http.StatusInternalServerError, "the MCP server failed"
	} else if iw.status == http.StatusBadGateway && len(iw.buf) == 0 {
		why = "the MCP server sent no answer"
	}
	if iw.batch != nil {
		iw.batch.failOwed(why)
		iw.batch.write(iw.w, iw.status)
		return
	}
	id := iw.due.ids[0]
	if !iw.over && !iw.handlerFailed {
		if m, err := parseMessage(iw.buf); err == nil && m.isResponse() && m.err != nil && m.result == nil {
			var e JSONRPCError
			if json.Unmarshal(m.err, &e) == nil && e.Message != "" {
				iw.w.Header().Del("Content-Length")
				WriteError(iw.w, iw.status, id, e.Code, e.Message)
				return
			}
		}
	}
	WriteError(iw.w, iw.status, id, codeInternalError, why)
}

// markAnswers marks the owed requests that data (a JSON-RPC message or a
// batch of them) answers.
func markAnswers(data []byte, due *owed) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		var elems []json.RawMessage
		if json.Unmarshal(t, &elems) == nil {
			for _, e := range elems {
				markAnswers(e, due)
			}
		}
		return
	}
	if m, err := parseMessage(data); err == nil && m.isResponse() {
		due.answer(m.id)
	}
}

func isSSE(h http.Header) bool {
	ct := h.Get("Content-Type")
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/event-stream")
}

// filterList returns the JSON-RPC response resp to the list request msg
// with its result filtered for the caller (the response phase of the list
// decision). An error response passes unchanged; anything that is not a
// response to msg is an error, so that nothing unfiltered is relayed.
func (m *middleware) filterList(ctx context.Context, msg, resp *message, c credentials) ([]byte, error) {
	parts, err := m.filterListParts(ctx, msg, resp, c)
	if err != nil {
		return nil, err
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	return bytes.Join(parts, nil), nil
}

// filterListParts is filterList's answer in pieces to be written one
// after the other: the answer of a list mcp-pdp filtered is its envelope
// around the PDP's result, which is not copied.
func (m *middleware) filterListParts(ctx context.Context, msg, resp *message, c credentials) ([][]byte, error) {
	if !resp.isResponse() {
		return nil, fmt.Errorf("the MCP server's %s answer is not a JSON-RPC response; it was not relayed", msg.method)
	}
	if !bytes.Equal(resp.id, msg.id) {
		return nil, fmt.Errorf("the MCP server answered %s with another request's id; it was not relayed", msg.method)
	}
	switch {
	case resp.err != nil && resp.result != nil:
		// Both: a client may read the result. Refuse rather than relay a
		// list unfiltered.
		return nil, fmt.Errorf("the MCP server answered %s with both a result and an error; it was not relayed", msg.method)
	case resp.err != nil:
		return [][]byte{resp.raw}, nil
	}
	d, err := m.o.Decider.Decide(ctx, &Request{Resource: m.o.Resource, Authorization: c.authorization, DPoP: c.dpop, HTTP: c.http, Message: msg.raw, Result: resp.result})
	if err != nil {
		return nil, fmt.Errorf("the MCP server's %s answer could not be filtered: %v; it was not relayed", msg.method, err)
	}
	if !d.Allow {
		// Refused at the response phase (e.g. the token expired in
		// between): answer with the denial's JSON-RPC error.
		e := d.JSONRPCError
		if e == nil {
			e = &JSONRPCError{Code: codeInternalError, Message: "the list was refused"}
		}
		b, err := json.Marshal(rpcErrorResponse{JSONRPC: "2.0", ID: msg.id, Error: e})
		return [][]byte{b}, err
	}
	if trimmed := bytes.TrimSpace(d.Result); bytes.HasPrefix(trimmed, []byte(`{"cacheScope":"private"`)) {
		// mcp-pdp marks its filtered lists itself (first): the envelope
		// around the result as it is.
		return [][]byte{envelopeHead, msg.id, envelopeResult, trimmed, envelopeTail}, nil
	}
	// The id and the result (valid JSON), marked private, are spliced into
	// the envelope in one allocation: no encoding pass.
	out, err := appendPrivate(make([]byte, 0, len(d.Result)+len(msg.id)+64), msg.id, d.Result)
	if err != nil {
		return nil, fmt.Errorf("the filtered %s result: %v; it was not relayed", msg.method, err)
	}
	return [][]byte{out}, nil
}

// The pieces of a JSON-RPC response around its id and result.
var (
	envelopeHead   = []byte(`{"jsonrpc":"2.0","id":`)
	envelopeResult = []byte(`,"result":`)
	envelopeTail   = []byte(`}`)
)

// appendPrivate appends the JSON-RPC response for id whose result is
// result marked cacheScope "private".
func appendPrivate(out, id, result []byte) ([]byte, error) {
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, id...)
	out = append(out, `,"result":`...)
	trimmed := bytes.TrimSpace(result)
	if bytes.HasPrefix(trimmed, []byte(`{"cacheScope":"private"`)) {
		// mcp-pdp marks its filtered lists itself (first, at once); a
		// second cacheScope could not follow in its output.
		return append(append(out, trimmed...), '}'), nil
	}
	if len(trimmed) >= 2 && trimmed[0] == '{' && !bytes.Contains(trimmed, []byte(`"cacheScope"`)) {
		out = append(out, `{"cacheScope":"private"`...) // the common case: none yet; first
		if rest := bytes.TrimSpace(trimmed[1:]); len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(append(out, trimmed[1:]...), '}'), nil
	}
	r, err := privateCache(result)
	if err != nil {
		return nil, err
	}
	return append(append(out, r...), '}'), nil
}
