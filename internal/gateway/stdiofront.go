package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"

	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/pep"
)

// stdioFront speaks Streamable HTTP to clients for a stdio upstream: the
// gateway owns the MCP sessions (it issues Mcp-Session-Id on initialize),
// one child process per session, or per caller for clients without a
// session; answers are JSON; what a child sends outside a call (its
// notifications and requests) goes to the session's GET stream when the
// client holds one open, and is dropped otherwise.
type stdioFront struct {
	pool *stdio.Pool

	mu      sync.Mutex
	streams map[string]chan []byte // session key -> its open GET stream
}

// streamBuffer bounds the messages waiting for a slow GET stream; beyond
// it a child's messages are dropped rather than block its output.
const streamBuffer = 256

func newStdioFront(o stdio.Options) (*stdioFront, error) {
	f := &stdioFront{streams: map[string]chan []byte{}}
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

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// key is the child of a request: its MCP session, or for a client without
// one its caller, so that callers never share a child.
func (g *Gateway) stdioKey(w http.ResponseWriter, r *http.Request, msg *message, d *pep.Response) (key string, ok bool) {
	if sid := r.Header.Get(headerSessionID); sid != "" {
		if !g.sessions.known(sid) {
			writeRPCError(w, http.StatusNotFound, msg.ID, codeInvalidRequest, "session not found: initialize a new one")
			return "", false
		}
		return "session:" + sid, true
	}
	if msg.Method == "initialize" {
		sid := newSessionID()
		g.sessions.bind(sid, newOwner(d.Caller))
		w.Header().Set(headerSessionID, sid)
		return "session:" + sid, true
	}
	return "caller:" + ownerOf(d.Caller), true
}

// postStdio forwards an allowed message to the child and answers its
// response (a list filtered) as JSON.
func (g *Gateway) postStdio(w http.ResponseWriter, r *http.Request, msg *message, authz string, d *pep.Response) {
	key, ok := g.stdioKey(w, r, msg, d)
	if !ok {
		return
	}
	s, err := g.stdio.pool.Session(r.Context(), key)
	if err != nil {
		g.stdioFailed(w, msg.ID, err)
		return
	}
	if !msg.IsRequest() {
		if err := s.Send(r.Context(), msg.Raw); err != nil {
			g.stdioFailed(w, msg.ID, err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	// ResponseTimeout bounds a child's answer as it bounds an HTTP
	// upstream's first byte: a child that never answers costs the client
	// a 504, not its patience (the child is told: notifications/cancelled).
	ctx, cancel := context.WithTimeout(r.Context(), g.o.ResponseTimeout)
	defer cancel()
	out, err := s.Call(ctx, msg.Raw)
	if err != nil {
		g.stdioFailed(w, msg.ID, err)
		return
	}
	if isList(msg.Method) {
		if out, err = g.filterList(r.Context(), msg, out, authz); err != nil {
			writeRPCError(w, http.StatusBadGateway, msg.ID, codeInternalError, err.Error())
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// transportStdio serves GET (the session's stream of the child's own
// messages) and DELETE (stop the session's child).
func (g *Gateway) transportStdio(w http.ResponseWriter, r *http.Request) {
	sid := r.Header.Get(headerSessionID)
	if sid == "" || !g.sessions.known(sid) {
		writeRPCError(w, http.StatusNotFound, nil, codeInvalidRequest, "session not found: initialize a new one")
		return
	}
	key := "session:" + sid
	if r.Method == http.MethodDelete {
		if s, err := g.stdio.pool.Session(r.Context(), key); err == nil {
			_ = s.Close()
		}
		g.sessions.forget(sid)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	ch := make(chan []byte, streamBuffer)
	g.stdio.mu.Lock()
	if g.stdio.streams[key] != nil {
		g.stdio.mu.Unlock()
		writeRPCError(w, http.StatusConflict, nil, codeInvalidRequest, "this session has a stream open already")
		return
	}
	g.stdio.streams[key] = ch
	g.stdio.mu.Unlock()
	defer func() {
		g.stdio.mu.Lock()
		delete(g.stdio.streams, key)
		g.stdio.mu.Unlock()
	}()
	s, err := g.stdio.pool.Session(r.Context(), key)
	if err != nil {
		g.stdioFailed(w, nil, err)
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

// stdioFailed answers a request the child could not answer.
func (g *Gateway) stdioFailed(w http.ResponseWriter, id []byte, err error) {
	status, why := g.stdioFailure(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeRPCError(w, status, id, codeInternalError, why)
}

// stdioFailure logs a failure of a child and says how to answer it.
func (g *Gateway) stdioFailure(err error) (status int, why string) {
	g.log.Warn("gateway: stdio upstream failed", "err", err)
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

// Close stops the gateway's stdio children, if any, within ctx.
func (g *Gateway) Close(ctx context.Context) error {
	if g.stdio == nil {
		return nil
	}
	return g.stdio.pool.Close(ctx)
}
