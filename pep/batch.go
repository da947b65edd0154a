package pep

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// batch is a JSON-RPC batch (MCP 2025-03-26) on its way to the handler:
// every message decided as if it came alone, the refused requests
// answered by the middleware, the allowed messages handed on together.
type batch struct {
	// answers are the middleware's own answers (refusals, malformed
	// messages), in the batch's order; then the handler's.
	answers []json.RawMessage
	// forward are the allowed messages, as received.
	forward []*message
	// due are the forwarded requests' ids; lists, the forwarded list
	// requests by position in due.
	due   *owed
	lists map[int]*message
	// allowed is one allowed decision: the caller (a batch has one
	// Authorization).
	allowed *Response
	// challenge is the first refusal at the HTTP level (401, 403, 503): the
	// batch's own status when nothing is handed on.
	challenge *Response
}

// postBatch serves a JSON-RPC batch: the allowed messages go to the
// handler as one batch; its answers are merged with the middleware's:
// list answers filtered, answers to requests that were not handed on
// dropped, a request left unanswered answered with an error.
func (m *middleware) postBatch(w http.ResponseWriter, r *http.Request, body []byte) {
	creds := m.credentials(r) // one HTTP request: its decisions share one http.id (DPoP)
	b, ok := m.decideBatch(w, r, body, creds)
	if !ok {
		return
	}
	if len(b.forward) == 0 {
		b.write(w, http.StatusOK)
		return
	}
	if !m.sessionAllowed(w, r, nil, b.allowed) {
		return
	}
	raws := make([][]byte, len(b.forward))
	for i, f := range b.forward {
		raws[i] = f.raw
	}
	iw := m.intercept(w, r, b.allowed)
	iw.batch, iw.due, iw.creds = b, b.due, creds
	m.serve(iw, r, append(append([]byte{'['}, bytes.Join(raws, []byte{','})...), ']'), b.allowed)
}

// decideBatch reads and decides every message of the batch. It answers
// the client itself (and reports false) when the batch as a whole is
// refused: not an array of messages, empty, too long, two requests with
// one id, or Mcp-Method/Mcp-Name headers (they describe one message).
func (m *middleware) decideBatch(w http.ResponseWriter, r *http.Request, body []byte, creds credentials) (*batch, bool) {
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		WriteError(w, http.StatusBadRequest, nil, codeInvalidRequest, "the batch is not a JSON array")
		return nil, false
	}
	switch {
	case len(raws) == 0:
		WriteError(w, http.StatusBadRequest, nil, codeInvalidRequest, "an empty batch")
		return nil, false
	case len(raws) > MaxBatch:
		WriteError(w, http.StatusRequestEntityTooLarge, nil, codeInvalidRequest, fmt.Sprintf("a batch of %d messages; at most %d are taken", len(raws), MaxBatch))
		return nil, false
	case r.Header.Get(headerMethod) != "" || r.Header.Get(headerName) != "":
		WriteError(w, http.StatusBadRequest, nil, codeHeaderMismatch, "the Mcp-Method and Mcp-Name headers describe one message, not a batch")
		return nil, false
	}
	b := &batch{lists: map[int]*message{}}
	var ids []json.RawMessage
	for _, raw := range raws {
		msg, err := parseMessage(raw)
		if err == nil && msg.batch {
			err = &parseError{codeInvalidRequest, "a batch inside a batch"}
		}
		if err != nil {
			b.answers = append(b.answers, rpcError(nil, codeOf(err), err.Error()))
			continue
		}
		if msg.isRequest() {
			for _, id := range ids {
				if bytes.Equal(id, msg.id) {
					WriteError(w, http.StatusBadRequest, nil, codeInvalidRequest, "two requests of the batch have the id "+string(msg.id))
					return nil, false
				}
			}
			ids = append(ids, msg.id)
		}
		resp, err := m.o.Decider.Decide(r.Context(), m.request(r, msg, creds))
		switch {
		case err != nil:
			if msg.isRequest() {
				_, code, why := m.undecided(err)
				b.answers = append(b.answers, rpcError(msg.id, code, why))
			}
		case !resp.Allow:
			if msg.isRequest() {
				_, a := denial(msg.id, resp)
				b.answers = append(b.answers, a)
			}
			if b.challenge == nil && resp.HTTPStatus != http.StatusOK {
				b.challenge = resp
			}
		default:
			b.forward = append(b.forward, msg)
			if b.allowed == nil {
				b.allowed = resp
			}
		}
	}
	var due []json.RawMessage
	for _, f := range b.forward {
		if f.isRequest() {
			if isList(f.method) {
				b.lists[len(due)] = f
			}
			due = append(due, f.id)
		}
	}
	b.due = newOwed(due...)
	return b, true
}

// filterBatchAnswer reads an answer of the handler to a batch (a JSON-RPC
// message or an array of them) and returns what the client may see: the
// server's own requests and notifications, and the responses to handed-on
// requests, each once, list results filtered for the caller. A response
// to any other id is dropped (it could be an unfiltered list under a
// forged id). With a list among the requests, an answer that is not
// JSON-RPC is an error: nothing unfiltered passes.
func (m *middleware) filterBatchAnswer(ctx context.Context, b *batch, data []byte, creds credentials) (kept []json.RawMessage, array bool, err error) {
	elems := []json.RawMessage{data}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		array = true
		if err := json.Unmarshal(t, &elems); err != nil {
			elems = nil
		}
	}
	for _, e := range elems {
		msg, perr := parseMessage(e)
		if perr != nil || msg.batch {
			if len(b.lists) > 0 {
				return nil, false, fmt.Errorf("the MCP server answered a batch with a list request with something that is not JSON-RPC; it was not relayed")
			}
			kept = append(kept, e)
			continue
		}
		if msg.method != "" {
			kept = append(kept, e)
			continue
		}
		i := b.due.index(msg.id)
		if i < 0 || !b.due.answer(msg.id) {
			m.log.Warn("pep: dropped a response to a request that was not handed on", "id", string(msg.id))
			continue
		}
		if list := b.lists[i]; list != nil {
			out, ferr := m.filterList(ctx, list, msg, creds)
			if ferr != nil {
				return nil, false, ferr
			}
			e = out
		}
		kept = append(kept, e)
	}
	return kept, array, nil
}

// failOwed answers every handed-on request still owed with an error.
func (b *batch) failOwed(why string) {
	for i, id := range b.due.ids {
		if !b.due.done[i] {
			b.due.done[i] = true
			b.due.left--
			b.answers = append(b.answers, rpcError(id, codeInternalError, why))
		}
	}
}

// write answers the batch with its answers as a JSON array: with nothing
// handed on and a refusal at the HTTP level, with that refusal's status
// and challenge; with no answer due (notifications only), 202.
func (b *batch) write(w http.ResponseWriter, status int) {
	if len(b.forward) == 0 && b.challenge != nil {
		status = b.challenge.HTTPStatus
		if b.challenge.WWWAuthenticate != "" {
			w.Header().Set("WWW-Authenticate", b.challenge.WWWAuthenticate)
		}
		if b.challenge.DPoPNonce != "" {
			w.Header().Set("DPoP-Nonce", b.challenge.DPoPNonce)
		}
		if b.challenge.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(b.challenge.RetryAfter))
		}
	}
	if status/100 == 2 {
		if len(b.answers) == 0 {
			w.WriteHeader(http.StatusAccepted) // notifications only
			return
		}
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(joinArray(b.answers))
}
