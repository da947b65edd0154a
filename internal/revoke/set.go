package revoke

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Set is the revocation set of one PDP: what its Watcher last saw in the
// bucket (or read from the snapshot at start). Lookups read an immutable
// state behind an atomic pointer: no lock, no allocation. Writers (the
// watcher, Sweep) replace the state copy-on-write, one at a time. Safe for
// concurrent use; the zero Set is empty and ready, and a nil *Set finds
// nothing (Lookup, Len, Version, Entries: revocation not configured).
type Set struct {
	cur atomic.Pointer[state]
	mu  sync.Mutex // serializes writers
}

// state is one immutable version of the set: per kind, id -> entry.
type state struct {
	byKind [numKinds]map[string]*Entry
	n      int
	// nextExpiry is the earliest expiry among the entries (zero: none).
	nextExpiry time.Time
	version    uint64
	// changed is closed when a newer state replaces this one.
	changed chan struct{}
}

// NewSet returns an empty set.
func NewSet() *Set {
	s := &Set{}
	s.cur.Store(&state{changed: make(chan struct{})})
	return s
}

// current returns the current state, creating the first one of a zero
// Set. s.mu is held.
func (s *Set) current() *state {
	st := s.cur.Load()
	if st == nil {
		st = &state{changed: make(chan struct{})}
		s.cur.Store(st)
	}
	return st
}

// Match is what Lookup found for a caller: the revocations of its client,
// its subject and its token that apply (nil: none). The entries are
// shared: read them, never modify them.
type Match struct {
	Client, Subject, Token *Entry
}

// Any reports whether a revocation matched.
func (m Match) Any() bool { return m.Client != nil || m.Subject != nil || m.Token != nil }

// First is the revocation that matched, the most specific first (token,
// then subject, then client); nil if none did.
func (m Match) First() *Entry { return cmp.Or(m.Token, m.Subject, m.Client) }

// activeAt drops the entries that have expired at now.
func (m Match) activeAt(now time.Time) Match {
	if m.Client != nil && !m.Client.Active(now) {
		m.Client = nil
	}
	if m.Subject != nil && !m.Subject.Active(now) {
		m.Subject = nil
	}
	if m.Token != nil && !m.Token.Active(now) {
		m.Token = nil
	}
	return m
}

// Lookup returns the revocations of a caller that apply now: those of its
// client_id, of its subject and of its token fingerprint (empty ones are
// not looked up; the fingerprint is token.Fingerprint's, "sha256:" and 32
// lower-case hex digits). An entry applies until its Expires (exclusive):
// an expired one is not returned, whether or not the set has been swept
// since. It takes no lock and allocates nothing; it reads the clock only
// when a matching entry has an expiry.
func (s *Set) Lookup(clientID, subject, fingerprint string) Match {
	m, expiring := s.find(clientID, subject, fingerprint)
	if !expiring {
		return m
	}
	return m.activeAt(time.Now())
}

// LookupAt is Lookup at the time now (a decision's own clock, a test's).
func (s *Set) LookupAt(now time.Time, clientID, subject, fingerprint string) Match {
	m, _ := s.find(clientID, subject, fingerprint)
	return m.activeAt(now)
}

// find returns the entries held for a caller, expired or not, and whether
// one of them has an expiry.
func (s *Set) find(clientID, subject, fingerprint string) (Match, bool) {
	if s == nil {
		return Match{}, false
	}
	st := s.cur.Load()
	if st == nil || st.n == 0 {
		return Match{}, false
	}
	var m Match
	if clientID != "" {
		m.Client = st.byKind[0][clientID]
	}
	if subject != "" {
		m.Subject = st.byKind[1][subject]
	}
	if fingerprint != "" {
		m.Token = st.byKind[2][fingerprint]
	}
	if st.nextExpiry.IsZero() {
		return m, false
	}
	return m, expiring(m.Client) || expiring(m.Subject) || expiring(m.Token)
}

func expiring(e *Entry) bool { return e != nil && !e.Expires.IsZero() }

// Len is the number of entries held (expired ones not yet swept included).
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	if st := s.cur.Load(); st != nil {
		return st.n
	}
	return 0
}

// Version counts the changes of the set: it grows with every Replace,
// Apply and Sweep that changes it. A cache of decisions that depend on
// the set can key on it.
func (s *Set) Version() uint64 {
	if s == nil {
		return 0
	}
	if st := s.cur.Load(); st != nil {
		return st.version
	}
	return 0
}

// Changed returns a channel closed at the next change of the set (after
// the call). Any number of goroutines may wait; call it again after each
// change.
func (s *Set) Changed() <-chan struct{} {
	if st := s.cur.Load(); st != nil {
		return st.changed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current().changed
}

// Entries returns the entries held, sorted by kind and id.
func (s *Set) Entries() []*Entry {
	if s == nil {
		return nil
	}
	st := s.cur.Load()
	if st == nil {
		return nil
	}
	return st.entries()
}

func (st *state) entries() []*Entry {
	out := make([]*Entry, 0, st.n)
	for _, m := range st.byKind {
		for _, e := range m {
			out = append(out, e)
		}
	}
	SortEntries(out)
	return out
}

// SortEntries sorts entries by kind (client, subject, token) and id.
func SortEntries(es []*Entry) {
	slices.SortFunc(es, func(a, b *Entry) int {
		return cmp.Or(cmp.Compare(a.Kind.index(), b.Kind.index()), cmp.Compare(a.ID, b.ID))
	})
}

// Change is one change of the set: Entry set (a revocation, stored under
// its own kind and id; Kind and ID may then be left empty, and when set
// they must be the entry's), or Entry nil (the revocation of Kind and ID
// removed).
type Change struct {
	Kind  Kind
	ID    string
	Entry *Entry
}

// Replace makes entries the whole set (a full sync, or the snapshot).
// Invalid entries are left out; of two entries with the same kind and id,
// the later one is kept.
func (s *Set) Replace(entries []*Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &state{}
	for i := range st.byKind {
		st.byKind[i] = make(map[string]*Entry)
	}
	for _, e := range entries {
		if e.Validate() != nil {
			continue
		}
		st.byKind[e.Kind.index()][e.ID] = e
	}
	s.publish(st)
}

// Apply applies changes in order, as one new version of the set, and
// returns how many it applied: a put of an invalid entry (or one whose
// kind or id differs from the change's) and a removal of an unknown kind
// are skipped, leaving what the set held. Removing an id the set does not
// hold counts as applied.
func (s *Set) Apply(changes ...Change) int {
	if len(changes) == 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current()
	st := &state{byKind: old.byKind}
	var cloned [numKinds]bool
	applied := 0
	for _, c := range changes {
		kind, id := c.Kind, c.ID
		if e := c.Entry; e != nil {
			if (kind != "" && kind != e.Kind) || (id != "" && id != e.ID) || e.Validate() != nil {
				continue
			}
			kind, id = e.Kind, e.ID
		}
		i := kind.index()
		if i < 0 {
			continue
		}
		if !cloned[i] {
			st.byKind[i] = cloneMap(old.byKind[i], 1)
			cloned[i] = true
		}
		applied++
		if c.Entry == nil {
			delete(st.byKind[i], id)
		} else {
			st.byKind[i][id] = c.Entry
		}
	}
	if applied > 0 {
		s.publish(st)
	}
	return applied
}

// Sweep removes the entries whose expiry is at or before now (those
// Lookup no longer returns) and returns them.
func (s *Set) Sweep(now time.Time) []*Entry {
	if st := s.cur.Load(); st == nil || st.nextExpiry.IsZero() || now.Before(st.nextExpiry) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current() // again, under the lock: a put may have replaced an expired entry
	st := &state{byKind: old.byKind}
	var gone []*Entry
	for i, m := range old.byKind {
		cloned := false
		for id, e := range m {
			if e.Active(now) {
				continue
			}
			if !cloned {
				st.byKind[i] = cloneMap(m, 0)
				cloned = true
			}
			delete(st.byKind[i], id)
			gone = append(gone, e)
		}
	}
	if len(gone) > 0 {
		s.publish(st)
	}
	SortEntries(gone)
	return gone
}

// nextExpiry is the earliest expiry among the entries (zero: none).
func (s *Set) nextExpiry() time.Time {
	if st := s.cur.Load(); st != nil {
		return st.nextExpiry
	}
	return time.Time{}
}

// publish completes st (count, next expiry, version), makes it current
// and closes the channel of the state it replaces. s.mu is held.
func (s *Set) publish(st *state) {
	for _, m := range st.byKind {
		st.n += len(m)
		for _, e := range m {
			if !e.Expires.IsZero() && (st.nextExpiry.IsZero() || e.Expires.Before(st.nextExpiry)) {
				st.nextExpiry = e.Expires
			}
		}
	}
	old := s.current()
	st.version = old.version + 1
	st.changed = make(chan struct{})
	s.cur.Store(st)
	close(old.changed)
}

func cloneMap(m map[string]*Entry, extra int) map[string]*Entry {
	out := make(map[string]*Entry, len(m)+extra)
	for k, v := range m {
		out[k] = v
	}
	return out
}
