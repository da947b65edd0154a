package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/pep"
)

// stdioFront is the handler behind the middleware for a stdio upstream:
// it speaks Streamable HTTP to clients, owns the MCP sessions (it issues
// Mcp-Session-Id on initialize), one child process per session, or per
// caller for clients without a session; answers are JSON; what a child
// sends outside a call (its notifications and requests) goes to the
// session's GET stream when the client holds one open, and is dropped
// otherwise.
type stdioFront struct {
	pool     *stdio.Pool
	timeout  time.Duration // bounds a child's answer
	asserter Asserter      // nil: requests go as they came
	metaKey  string        // the assertion's _meta key
	log      *slog.Logger

	mu      sync.Mutex
	streams map[string]chan []byte // session key -> its open GET stream
	issued  map[string]bool        // session ids issued
	order   []string               // issued, oldest first
	max     int
}

// streamBuffer bounds the messages waiting for a slow GET stream; beyond
// it a child's messages are dropped rather than block its output.
const streamBuffer = 256

func newStdioFront(o stdio.Options, timeout time.Duration, maxSessions int, a Asserter, metaKey string, log *slog.Logger) (*stdioFront, error) {
	f := &stdioFront{timeout: timeout, asserter: a, metaKey: metaKey, log: log, streams: map[string]chan []byte{}, issued: map[string]bool{}, max: maxSessions}
	o.OnMessage = f.deliver
	p, err := stdio.NewPool(o)
	if err != nil {
		return nil, err
	}
	f.pool = p
	return f, nil
}

// deliver hands a child's message to its session's GET stream.
func (f *stdioFront) deliver(s *stdio.Session, msg []byte) {
	f.mu.Lock()
	ch := f.streams[s.Key()]
	f.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- msg:
	default: // the client reads too slowly: drop rather than stall the child
	}
}

// issue returns a new session id, remembered (bounded: the oldest is
// forgotten first).
func (f *stdioFront) issue() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	sid := hex.EncodeToString(b[:])
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.order) >= f.max {
		delete(f.issued, f.order[0])
		f.order = f.order[1:]
	}
	f.issued[sid] = true
	f.order = append(f.order, sid)
	return sid
}

func (f *stdioFront) known(sid string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued[sid]
}

func (f *stdioFront) forget(sid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.issued, sid)
}

// callerKey names the caller of a request without a session, so that
// callers never share a child: the user (issuer and subject), or the
// client for a token without a subject.
func callerKey(c *pep.Caller) string {
	if c == nil {
		return "caller:"
	}
	if c.Subject == "" {
		return "caller:" + strings.Join([]string{c.Issuer, "", c.ClientID}, "\x00")
	}
	return "caller:" + strings.Join([]string{c.Issuer, c.Subject}, "\x00")
}

// envelope is what the front reads of a message the middleware allowed.
type envelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
}

func (e envelope) isRequest() bool {
	return e.Method != "" && len(e.ID) > 0 && !bytes.Equal(e.ID, []byte("null"))
}

func (f *stdioFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		f.post(w, r)
	case http.MethodGet:
		f.stream(w, r)
	case http.MethodDelete:
		sid := r.Header.Get("Mcp-Session-Id")
		if sid == "" || !f.known(sid) {
			pep.WriteError(w, http.StatusNotFound, nil, codeInvalidRequest, "session not found: initialize a new one")
			return
		}
		if s, err := f.pool.Session(r.Context(), "session:"+sid); err == nil {
			_ = s.Close()
		}
		f.forget(sid)
		w.WriteHeader(http.StatusNoContent)
	}
}

// key is the child of a request: its MCP session, or for a client
// without one its caller. A new session is issued on initialize.
func (f *stdioFront) key(w http.ResponseWriter, r *http.Request, initialize bool) (string, bool) {
	if sid := r.Header.Get("Mcp-Session-Id"); sid != "" {
		if !f.known(sid) {
			pep.WriteError(w, http.StatusNotFound, nil, codeInvalidRequest, "session not found: initialize a new one")
			return "", false
		}
		return "session:" + sid, true
	}
	if initialize {
		sid := f.issue()
		w.Header().Set("Mcp-Session-Id", sid)
		return "session:" + sid, true
	}
	return callerKey(pep.CallerFrom(r.Context())), true
}

// post sends an allowed message (or batch) to the child and answers its
// response as JSON.
func (f *stdioFront) post(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		pep.WriteError(w, http.StatusBadRequest, nil, codeInvalidRequest, "the request body could not be read")
		return
	}
	var msgs []json.RawMessage
	isBatch := len(bytes.TrimSpace(body)) > 0 && bytes.TrimSpace(body)[0] == '['
	if isBatch {
		if err := json.Unmarshal(body, &msgs); err != nil || len(msgs) == 0 {
			pep.WriteError(w, http.StatusBadRequest, nil, codeInvalidRequest, "the batch is not a JSON array")
			return
		}
	} else {
		msgs = []json.RawMessage{body}
	}
	envs := make([]envelope, len(msgs))
	initialize := false
	for i, m := range msgs {
		_ = json.Unmarshal(m, &envs[i]) // the middleware checked each message
		initialize = initialize || envs[i].Method == "initialize"
	}
	key, ok := f.key(w, r, initialize && !isBatch)
	if !ok {
		return
	}
	s, err := f.pool.Session(r.Context(), key)
	if err != nil {
		f.failed(w, err)
		return
	}
	if f.asserter != nil {
		if err := f.assert(r.Context(), msgs, envs); errors.Is(err, errParamsNotObject) {
			pep.WriteError(w, http.StatusBadRequest, nil, codeInvalidParams, "params must be an object")
			return
		} else if err != nil {
			f.log.Error("gateway: identity assertion for a stdio upstream failed", "err", err)
			pep.WriteError(w, http.StatusInternalServerError, nil, codeInternalError, "the gateway could not vouch for the caller")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), f.timeout)
	defer cancel()
	answers := make([][]byte, len(msgs))
	var firstErr error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, m := range msgs {
		if !envs[i].isRequest() {
			if err := s.Send(ctx, m); err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := s.Call(ctx, m)
			if err != nil {
				_, why := f.failure(err)
				out = rpcErrorBytes(envs[i].ID, why)
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
			}
			answers[i] = out
		}()
	}
	wg.Wait()
	var kept [][]byte
	for _, a := range answers {
		if a != nil {
			kept = append(kept, a)
		}
	}
	switch {
	case !isBatch && firstErr != nil:
		f.failed(w, firstErr)
	case len(kept) == 0:
		w.WriteHeader(http.StatusAccepted)
	case !isBatch:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(kept[0])
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(append([]byte{'['}, bytes.Join(kept, []byte{','})...), ']'))
	}
}

// assert puts the identity assertion (under metaKey) and the decision
// id (DecisionMetaKey) into the _meta of every request of msgs, in place
// of anything the client sent under those keys. In a batch, the decision
// is the first allowed message's, as the DecisionHeader of an HTTP
// upstream.
func (f *stdioFront) assert(ctx context.Context, msgs []json.RawMessage, envs []envelope) error {
	d, _ := pep.DecisionFrom(ctx)
	var caller *pep.Caller
	var id string
	if d != nil {
		caller, id = d.Caller, d.DecisionID
	}
	a, err := f.asserter.Assert(caller)
	if err != nil {
		return err
	}
	meta := map[string]string{f.metaKey: a, DecisionMetaKey: id}
	for i := range msgs {
		if !envs[i].isRequest() {
			continue
		}
		m, err := withMeta(msgs[i], meta)
		if err != nil {
			return fmt.Errorf("request %s: %w", envs[i].ID, err)
		}
		msgs[i] = m
	}
	return nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func rpcErrorBytes(id json.RawMessage, why string) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "error": map[string]any{"code": codeInternalError, "message": why}})
	return b
}

// stream serves GET: the session's stream of the child's own messages.
func (f *stdioFront) stream(w http.ResponseWriter, r *http.Request) {
	sid := r.Header.Get("Mcp-Session-Id")
	if sid == "" || !f.known(sid) {
		pep.WriteError(w, http.StatusNotFound, nil, codeInvalidRequest, "session not found: initialize a new one")
		return
	}
	key := "session:" + sid
	ch := make(chan []byte, streamBuffer)
	f.mu.Lock()
	if f.streams[key] != nil {
		f.mu.Unlock()
		pep.WriteError(w, http.StatusConflict, nil, codeInvalidRequest, "this session has a stream open already")
		return
	}
	f.streams[key] = ch
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.streams, key)
		f.mu.Unlock()
	}()
	s, err := f.pool.Session(r.Context(), key)
	if err != nil {
		f.failed(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for {
		select {
		case m := <-ch:
			ev := append(append([]byte("event: message\ndata: "), m...), '\n', '\n')
			if _, err := w.Write(ev); err != nil {
				return
			}
			_ = rc.Flush()
		case <-s.Done():
			return
		case <-r.Context().Done():
			return
		}
	}
}

// failed answers a request the child could not answer.
func (f *stdioFront) failed(w http.ResponseWriter, err error) {
	status, why := f.failure(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	pep.WriteError(w, status, nil, codeInternalError, why)
}

// failure logs a failure of a child and says how to answer it.
func (f *stdioFront) failure(err error) (status int, why string) {
	f.log.Warn("gateway: stdio upstream failed", "err", err)
	switch {
	case errors.Is(err, stdio.ErrTooManyProcesses), errors.Is(err, stdio.ErrRestartBackoff):
		return http.StatusServiceUnavailable, "the MCP server is busy or restarting; retry later"
	case errors.Is(err, stdio.ErrExited):
		return http.StatusBadGateway, "the MCP server exited"
	case errors.Is(err, stdio.ErrInvalidMessage):
		return http.StatusBadRequest, "the message cannot be sent to the MCP server"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "the MCP server did not answer in time"
	}
	return http.StatusBadGateway, "the MCP server failed"
}
