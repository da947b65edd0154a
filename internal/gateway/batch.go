package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/pep"
)

// MaxBatch bounds the messages of one JSON-RPC batch: each is a decision.
const MaxBatch = 100

// batch is a JSON-RPC batch (MCP 2025-03-26) on its way through the
// gateway: every message decided as if it came alone, the refused requests
// answered by the gateway, the allowed messages forwarded together.
type batch struct {
	// answers are the gateway's own answers (refusals, malformed messages),
	// in the batch's order; then the upstream's.
	answers []json.RawMessage
	// forward are the allowed messages, as received.
	forward []*message
	// due are the forwarded requests' ids; lists, the forwarded list
	// requests by position in due.
	due   *owed
	lists map[int]*message
	// allowed is one allowed decision: the caller, for the session check
	// and the identity assertion (a batch has one Authorization).
	allowed *pep.Response
	// challenge is the first refusal at the HTTP level (401, 403, 503): the
	// batch's own status when nothing is forwarded.
	challenge *pep.Response
}

// postBatch serves a JSON-RPC batch. The allowed messages go upstream as
// one batch; its answers are merged with the gateway's: list answers
// filtered, answers to requests that were not forwarded dropped, and a
// forwarded request the upstream did not answer answered with an error.
func (g *Gateway) postBatch(w http.ResponseWriter, r *http.Request, body []byte) {
	b, ok := g.decideBatch(w, r, body)
	if !ok {
		return
	}
	if len(b.forward) == 0 {
		g.writeBatch(w, b, http.StatusOK)
		return
	}
	if !g.sessionAllowed(w, r, nil, b.allowed) {
		return
	}
	if g.stdio != nil {
		g.batchStdio(w, r, b)
		return
	}
	fwd := make([][]byte, len(b.forward))
	for i, m := range b.forward {
		fwd[i] = m.Raw
	}
	up, err := g.forward(r, append(append([]byte{'['}, bytes.Join(fwd, []byte{','})...), ']'), b.allowed)
	if err != nil {
		status, why := g.unreachable(err)
		b.failOwed(why)
		g.writeBatch(w, b, status)
		return
	}
	defer up.Body.Close()
	g.bindSession(up, b.allowed)
	if up.StatusCode >= 300 {
		for _, h := range []string{headerSessionID, "Retry-After", "Www-Authenticate"} {
			if v := up.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		b.failOwed(fmt.Sprintf("the MCP server answered HTTP %d", up.StatusCode))
		g.writeBatch(w, b, up.StatusCode)
		return
	}
	authz := r.Header.Get("Authorization")
	if isSSE(up.Header) {
		copyResponseHeaders(w, up)
		w.WriteHeader(up.StatusCode)
		for _, a := range b.answers {
			_, _ = w.Write(append(append([]byte("event: message\ndata: "), a...), '\n', '\n'))
		}
		g.copyStream(w, up.Body, b.due, func(data []byte) ([]byte, bool, error) {
			if len(bytes.TrimSpace(data)) == 0 {
				return data, false, nil // a priming event
			}
			kept, array, err := g.filterBatchAnswer(r.Context(), b, data, authz)
			switch {
			case err != nil:
				return nil, false, err
			case len(kept) == 0:
				return nil, true, nil
			case !array && len(kept) == 1:
				return kept[0], true, nil
			}
			return joinArray(kept), true, nil
		})
		return
	}
	raw, err := readBounded(up.Body, g.o.MaxResponseBytes)
	if err == nil && len(bytes.TrimSpace(raw)) > 0 {
		var kept []json.RawMessage
		if kept, _, err = g.filterBatchAnswer(r.Context(), b, raw, authz); err == nil {
			b.answers = append(b.answers, kept...)
		}
	}
	if err != nil {
		b.failOwed("the MCP server's answer " + err.Error() + "; it was not relayed")
		g.writeBatch(w, b, http.StatusBadGateway)
		return
	}
	b.failOwed("the MCP server did not answer this request")
	copyResponseHeaders(w, up)
	g.writeBatch(w, b, http.StatusOK)
}

// decideBatch reads and decides every message of the batch. It answers
// the client itself (and reports false) when the batch as a whole is
// refused: not an array of messages, empty, too long, two requests with
// one id, or Mcp-Method/Mcp-Name headers (they describe one message).
func (g *Gateway) decideBatch(w http.ResponseWriter, r *http.Request, body []byte) (*batch, bool) {
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		writeRPCError(w, http.StatusBadRequest, nil, codeInvalidRequest, "the batch is not a JSON array")
		return nil, false
	}
	switch {
	case len(raws) == 0:
		writeRPCError(w, http.StatusBadRequest, nil, codeInvalidRequest, "an empty batch")
		return nil, false
	case len(raws) > MaxBatch:
		writeRPCError(w, http.StatusRequestEntityTooLarge, nil, codeInvalidRequest, fmt.Sprintf("a batch of %d messages; the gateway takes at most %d", len(raws), MaxBatch))
		return nil, false
	case r.Header.Get(headerMethod) != "" || r.Header.Get(headerName) != "":
		writeRPCError(w, http.StatusBadRequest, nil, codeHeaderMismatch, "the Mcp-Method and Mcp-Name headers describe one message, not a batch")
		return nil, false
	}
	b := &batch{lists: map[int]*message{}}
	var ids []json.RawMessage
	authz := r.Header.Get("Authorization")
	owner := g.sessions.ownerCaller(r.Header.Get(headerSessionID))
	for _, raw := range raws {
		msg, err := parseMessage(raw)
		if err == nil && msg.Batch {
			err = &parseError{codeInvalidRequest, "a batch inside a batch"}
		}
		if err != nil {
			b.answers = append(b.answers, rpcError(nil, codeOf(err), err.Error()))
			continue
		}
		if msg.IsRequest() {
			for _, id := range ids {
				if bytes.Equal(id, msg.ID) {
					writeRPCError(w, http.StatusBadRequest, nil, codeInvalidRequest, "two requests of the batch have the id "+string(msg.ID))
					return nil, false
				}
			}
			ids = append(ids, msg.ID)
		}
		preq := &pep.Request{Resource: g.o.Resource, Authorization: authz, Message: msg.Raw, SessionOwner: owner}
		if !msg.IsRequest() && !msg.IsNotification() {
			preq = &pep.Request{Resource: g.o.Resource, Authorization: authz, HTTPMethod: http.MethodPost, SessionOwner: owner}
		}
		resp, err := g.o.Decider.DecideValid(r.Context(), preq, pepName)
		switch {
		case err != nil:
			if msg.IsRequest() {
				_, code, why := g.undecided(err)
				b.answers = append(b.answers, rpcError(msg.ID, code, why))
			}
		case !resp.Allow:
			if msg.IsRequest() {
				_, a := denial(msg.ID, resp)
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
	for _, m := range b.forward {
		if m.IsRequest() {
			if isList(m.Method) {
				b.lists[len(due)] = m
			}
			due = append(due, m.ID)
		}
	}
	b.due = newOwed(due...)
	return b, true
}

// filterBatchAnswer reads an answer of the upstream to a forwarded batch
// (a JSON-RPC message or an array of them) and returns what the client
// may see: the server's own requests and notifications, and the responses
// to forwarded requests, each once, list results filtered for the caller.
// A response to any other id is dropped (it could be an unfiltered list
// under a forged id). With a list among the forwarded requests, an answer
// that is not JSON-RPC is an error: nothing unfiltered passes.
func (g *Gateway) filterBatchAnswer(ctx context.Context, b *batch, data []byte, authz string) (kept []json.RawMessage, array bool, err error) {
	elems := []json.RawMessage{data}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		array = true
		if err := json.Unmarshal(t, &elems); err != nil {
			elems = nil
		}
	}
	for _, e := range elems {
		m, perr := parseMessage(e)
		if perr != nil || m.Batch {
			if len(b.lists) > 0 {
				return nil, false, fmt.Errorf("the upstream answered a batch with a list request with something that is not JSON-RPC; it was not relayed")
			}
			kept = append(kept, e)
			continue
		}
		if m.Method != "" {
			kept = append(kept, e)
			continue
		}
		i := b.due.index(m.ID)
		if i < 0 || !b.due.answer(m.ID) {
			g.log.Warn("gateway: dropped a response to a request the gateway did not forward", "id", string(m.ID))
			continue
		}
		if list := b.lists[i]; list != nil {
			out, ferr := g.filterList(ctx, list, e, authz)
			if ferr != nil {
				return nil, false, ferr
			}
			e = out
		}
		kept = append(kept, e)
	}
	return kept, array, nil
}

// failOwed answers every forwarded request still owed with an error.
func (b *batch) failOwed(why string) {
	for i, id := range b.due.ids {
		if !b.due.done[i] {
			b.due.done[i] = true
			b.due.left--
			b.answers = append(b.answers, rpcError(id, codeInternalError, why))
		}
	}
}

// writeBatch answers the batch with its answers as a JSON array: with
// nothing forwarded and a refusal at the HTTP level, with that refusal's
// status and challenge; with no answer due (notifications only), 202.
func (g *Gateway) writeBatch(w http.ResponseWriter, b *batch, status int) {
	if len(b.forward) == 0 && b.challenge != nil {
		status = b.challenge.HTTPStatus
		if b.challenge.WWWAuthenticate != "" {
			w.Header().Set("WWW-Authenticate", b.challenge.WWWAuthenticate)
		}
	}
	if len(b.answers) == 0 && status == http.StatusOK {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(joinArray(b.answers))
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

// batchStdio sends the allowed messages of a batch to the session's child,
// the requests concurrently, and answers with all the answers as JSON.
func (g *Gateway) batchStdio(w http.ResponseWriter, r *http.Request, b *batch) {
	first := b.forward[0]
	key, ok := g.stdioKey(w, r, first, b.allowed)
	if !ok {
		return
	}
	s, err := g.stdio.pool.Session(r.Context(), key)
	if err != nil {
		g.stdioFailed(w, nil, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.o.ResponseTimeout)
	defer cancel()
	authz := r.Header.Get("Authorization")
	answers := make([]json.RawMessage, len(b.forward))
	var wg sync.WaitGroup
	for i, m := range b.forward {
		if !m.IsRequest() {
			if err := s.Send(ctx, m.Raw); err != nil {
				g.log.Warn("gateway: stdio upstream failed", "err", err)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = g.callStdio(ctx, s, m, authz)
		}()
	}
	wg.Wait()
	for _, a := range answers {
		if a != nil {
			b.answers = append(b.answers, a)
		}
	}
	g.writeBatch(w, b, http.StatusOK)
}

// callStdio is the answer of a child to one request of a batch: its
// response (a list filtered), or a JSON-RPC error saying what failed.
func (g *Gateway) callStdio(ctx context.Context, s *stdio.Session, m *message, authz string) json.RawMessage {
	out, err := s.Call(ctx, m.Raw)
	if err != nil {
		_, why := g.stdioFailure(err)
		return rpcError(m.ID, codeInternalError, why)
	}
	if isList(m.Method) {
		if out, err = g.filterList(ctx, m, out, authz); err != nil {
			return rpcError(m.ID, codeInternalError, err.Error())
		}
	}
	return out
}
