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
	owner  map[string]owner
	order  []string // insertion order, for eviction
}

// owner is the caller a session is bound to: its key (ownerOf) and, for an
// authenticated caller, its identity, which every later decision on the
// session is taken against (pep.Request.SessionOwner).
type owner struct {
	key    string
	caller *pep.Caller // nil: anonymous
}

func newOwner(c *pep.Caller) owner {
	if c == nil {
		return owner{key: anonymous}
	}
	return owner{key: ownerOf(c), caller: &pep.Caller{Issuer: c.Issuer, Subject: c.Subject, ClientID: c.ClientID}}
}

func newSessions(max int) *sessions {
	return &sessions{max: max, owner: map[string]owner{}}
}

// anonymous is the owner of a session opened without a token.
const anonymous = ""

// ownerOf names the user of an allowed decision: issuer and subject (the
// client may change: clients register anew when they step up), or issuer
// and client for a token without a subject; anonymous without a verified
// token. It matches the core's check of pep.Request.SessionOwner.
func ownerOf(c *pep.Caller) string {
	if c == nil {
		return anonymous
	}
	if c.Subject == "" {
		return strings.Join([]string{c.Issuer, "", c.ClientID}, "\x00")
	}
	return strings.Join([]string{c.Issuer, c.Subject}, "\x00")
}

// ownerCaller is the authenticated owner of session id, for the decision
// on it to check; nil when the session is unknown or anonymous.
func (s *sessions) ownerCaller(id string) *pep.Caller {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owner[id].caller
}

// check reports whether caller may use session id, binding it when the
// session is new to this gateway or still anonymous. The decision refuses
// (and audits) a request on an authenticated caller's session already;
// check settles the rest: two callers racing to claim an anonymous
// session, one of which loses.
func (s *sessions) check(id string, caller owner) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.owner[id]
	switch {
	case !ok:
		if !s.issued {
			s.add(id, caller)
		}
		return true
	case o.key == caller.key:
		return true
	case o.key == anonymous:
		s.owner[id] = caller // stepped up on the same session
		return true
	}
	return false
}

// bind records the owner of a session the upstream just opened.
func (s *sessions) bind(id string, caller owner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.owner[id]; !ok {
		s.add(id, caller)
	}
}

func (s *sessions) add(id string, caller owner) {
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
	if sid == "" || g.sessions.check(sid, newOwner(d.Caller)) {
		return true
	}
	g.log.Warn("gateway: request on another caller's session refused", "decision_id", d.DecisionID)
	writeRPCError(w, http.StatusForbidden, id, codeInvalidRequest, "this session belongs to another caller")
	return false
}

// bindSession binds the session the upstream's answer opened.
func (g *Gateway) bindSession(up *http.Response, d *pep.Response) {
	if sid := up.Header.Get(headerSessionID); sid != "" {
		g.sessions.bind(sid, newOwner(d.Caller))
	}
}
