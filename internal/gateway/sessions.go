package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/mcp-pdp/pdp/pep"
)

// sessions remembers which caller owns each MCP session, so that a request
// presenting another caller's token on a session is refused (session
// hijack, MCP security best practices). A session first seen anonymous may
// be claimed once by an authenticated caller (the client stepped up on the
// same session); after that it belongs to that caller. Bounded: the oldest
// session is forgotten first.
type sessions struct {
	mu sync.Mutex
	// issued: the gateway issues the session ids (stdio upstreams), so an
	// id it does not know is not bound on first sight.
	issued bool
	max    int
	owner  map[string]string
	order  []string // insertion order, for eviction
}

func newSessions(max int) *sessions {
	return &sessions{max: max, owner: map[string]string{}}
}

// anonymous is the owner of a session opened without a token.
const anonymous = ""

// ownerOf names the caller of an allowed decision: issuer, subject and
// client; anonymous without a verified token.
func ownerOf(c *pep.Caller) string {
	if c == nil {
		return anonymous
	}
	return strings.Join([]string{c.Issuer, c.Subject, c.ClientID}, "\x00")
}

// check reports whether caller may use session id, binding it when the
// session is new to this gateway or still anonymous.
func (s *sessions) check(id, caller string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	owner, ok := s.owner[id]
	switch {
	case !ok:
		if !s.issued {
			s.add(id, caller)
		}
		return true
	case owner == caller:
		return true
	case owner == anonymous:
		s.owner[id] = caller // stepped up on the same session
		return true
	}
	return false
}

// bind records the owner of a session the upstream just opened.
func (s *sessions) bind(id, caller string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.owner[id]; !ok {
		s.add(id, caller)
	}
}

func (s *sessions) add(id, caller string) {
	if len(s.order) >= s.max {
		oldest := s.order[0]
		s.order = s.order[1:]
		delete(s.owner, oldest)
	}
	s.owner[id] = caller
	s.order = append(s.order, id)
}

// known reports whether the gateway knows session id.
func (s *sessions) known(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.owner[id]
	return ok
}

func (s *sessions) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.owner, id)
	// order keeps the id until it is evicted; a forgotten id's eviction
	// deletes nothing.
}

// sessionAllowed refuses a request on another caller's session (403).
func (g *Gateway) sessionAllowed(w http.ResponseWriter, r *http.Request, id json.RawMessage, d *pep.Response) bool {
	sid := r.Header.Get(headerSessionID)
	if sid == "" || g.sessions.check(sid, ownerOf(d.Caller)) {
		return true
	}
	g.log.Warn("gateway: request on another caller's session refused", "decision_id", d.DecisionID)
	writeRPCError(w, http.StatusForbidden, id, codeInvalidRequest, "this session belongs to another caller")
	return false
}

// bindSession binds the session the upstream's answer opened.
func (g *Gateway) bindSession(up *http.Response, d *pep.Response) {
	if sid := up.Header.Get(headerSessionID); sid != "" {
		g.sessions.bind(sid, ownerOf(d.Caller))
	}
}
