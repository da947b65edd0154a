package pep

import (
	"strings"
	"sync"
)

// sessions remembers which user owns each MCP session, so that a request
// presenting another user's token on a session is refused (session
// hijack, MCP security best practices). A session is bound once the
// server has answered on it (the server knows the id); one first used
// anonymously may be claimed once by an authenticated caller (the client
// stepped up on the same session), and then belongs to that caller.
// Bounded: the oldest session is forgotten first.
type sessions struct {
	mu    sync.Mutex
	max   int
	owner map[string]owner
	order []string // insertion order, for eviction
	// lists are each session's last list requests handed on, so that a
	// list answer the server replays on a GET stream (a client resuming
	// with Last-Event-ID) is filtered like the first time.
	lists map[string]*listRing
}

// listRingSize bounds the list requests remembered per session.
const listRingSize = 16

type listRing struct {
	msgs [listRingSize]*message
	next int
}

// owner is the caller a session is bound to: its key (ownerKey) and, for
// an authenticated caller, its identity, which every later decision on
// the session is taken against (Request.SessionOwner).
type owner struct {
	key    string
	caller *Caller // nil: anonymous
}

// anonymous is the key of a session opened without a token.
const anonymous = ""

// newOwner is the owner of a session opened by c (nil: anonymous).
func newOwner(c *Caller) owner {
	if c == nil {
		return owner{key: anonymous}
	}
	return owner{key: ownerKey(c), caller: &Caller{Issuer: c.Issuer, Subject: c.Subject, ClientID: c.ClientID}}
}

// ownerKey names the user of an allowed decision: issuer and subject (the
// client may change: clients register anew when they step up), or issuer
// and client for a token without a subject. It matches the PDP's check of
// Request.SessionOwner.
func ownerKey(c *Caller) string {
	if c.Subject == "" {
		return strings.Join([]string{c.Issuer, "", c.ClientID}, "\x00")
	}
	return strings.Join([]string{c.Issuer, c.Subject}, "\x00")
}

func newSessions(max int) *sessions {
	return &sessions{max: max, owner: map[string]owner{}, lists: map[string]*listRing{}}
}

// ownerCaller is the authenticated owner of session id, for the decision
// on it to check; nil when the session is unknown or anonymous.
func (s *sessions) ownerCaller(id string) *Caller {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owner[id].caller
}

// check reports whether caller may use session id; a session still
// anonymous is claimed by an authenticated caller. The decision refuses
// (and audits) a request on an authenticated caller's session already;
// check settles the rest: two callers racing to claim an anonymous
// session, one of which loses.
func (s *sessions) check(id string, caller owner) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.owner[id]
	switch {
	case !ok, o.key == caller.key:
		return true
	case o.key == anonymous:
		s.owner[id] = caller // stepped up on the same session
		return true
	}
	return false
}

// bind records the owner of a session the server answered on, unless it
// has one.
func (s *sessions) bind(id string, caller owner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.owner[id]; ok {
		return
	}
	if len(s.order) >= s.max {
		oldest := s.order[0]
		s.order = s.order[1:]
		delete(s.owner, oldest)
		delete(s.lists, oldest)
	}
	s.owner[id] = caller
	s.order = append(s.order, id)
}

// forget drops a session that ended.
func (s *sessions) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.owner, id)
	delete(s.lists, id)
	// order keeps the id until it is evicted; evicting a forgotten id
	// deletes nothing.
}

// rememberList notes a list request handed on in session id (a session
// the middleware knows).
func (s *sessions) rememberList(id string, m *message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.owner[id]; !ok {
		return
	}
	r := s.lists[id]
	if r == nil {
		r = &listRing{}
		s.lists[id] = r
	}
	r.msgs[r.next] = m
	r.next = (r.next + 1) % listRingSize
}

// listRequest is the list request of session sid with JSON-RPC id, if
// it is one of those remembered.
func (s *sessions) listRequest(sid string, id []byte) *message {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.lists[sid]
	if r == nil {
		return nil
	}
	for _, m := range r.msgs {
		if m != nil && string(m.id) == string(id) {
			return m
		}
	}
	return nil
}
