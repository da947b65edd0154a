package revoke

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestSetLookup(t *testing.T) {
	now := time.Now()
	cursor := &Entry{Kind: KindClient, ID: "cursor", Reason: "leaked secret"}
	alice := &Entry{Kind: KindSubject, ID: "alice"}
	tok := &Entry{Kind: KindToken, ID: fp}
	// bob's id is also a client id: kinds never mix.
	bobClient := &Entry{Kind: KindClient, ID: "bob"}
	expired := &Entry{Kind: KindSubject, ID: "carol", Expires: now.Add(-time.Minute)}
	later := &Entry{Kind: KindSubject, ID: "dave", Expires: now.Add(time.Hour)}
	s := NewSet()
	s.Replace([]*Entry{cursor, alice, tok, bobClient, expired, later, {Kind: "bogus", ID: "x"}, nil})

	tests := []struct {
		name                  string
		client, subject, fprt string
		want                  Match
	}{
		{"nothing revoked", "claude", "zoe", "sha256:ffffffffffffffffffffffffffffffff", Match{}},
		{"client", "cursor", "zoe", "", Match{Client: cursor}},
		{"subject", "claude", "alice", "", Match{Subject: alice}},
		{"token", "", "", fp, Match{Token: tok}},
		{"all three", "cursor", "alice", fp, Match{Client: cursor, Subject: alice, Token: tok}},
		{"kinds do not mix", "alice", "bob", "", Match{}},
		{"empty ids are not looked up", "", "", "", Match{}},
		{"case matters", "Cursor", "ALICE", "", Match{}},
		{"expired", "", "carol", "", Match{}},
		{"not yet expired", "", "dave", "", Match{Subject: later}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Lookup(tt.client, tt.subject, tt.fprt)
			if got != tt.want {
				t.Fatalf("Lookup = %+v, want %+v", got, tt.want)
			}
			if got.Any() != (tt.want != Match{}) {
				t.Fatalf("Any = %v", got.Any())
			}
		})
	}
	if n := s.Len(); n != 6 {
		t.Fatalf("Len = %d, want 6 (the invalid entries left out)", n)
	}
	if got := (Match{Client: cursor, Subject: alice, Token: tok}).First(); got != tok {
		t.Fatalf("First = %+v, want the token", got)
	}
	if got := (Match{Client: cursor}).First(); got != cursor {
		t.Fatalf("First = %+v, want the client", got)
	}
	if got := (Match{}).First(); got != nil {
		t.Fatalf("First of no match = %+v", got)
	}
}

func TestNilAndZeroSet(t *testing.T) {
	var nilSet *Set
	if m := nilSet.Lookup("c", "s", fp); m.Any() || nilSet.Len() != 0 || nilSet.Version() != 0 || nilSet.Entries() != nil {
		t.Fatal("a nil set found something")
	}
	if m := nilSet.LookupAt(time.Now(), "c", "s", fp); m.Any() {
		t.Fatal("a nil set found something at a time")
	}
	var zero Set
	if m := zero.Lookup("c", "s", fp); m.Any() || zero.Len() != 0 || zero.Entries() != nil {
		t.Fatal("the zero set is not empty")
	}
	ch := zero.Changed()
	zero.Apply(Change{Entry: &Entry{Kind: KindClient, ID: "c"}})
	select {
	case <-ch:
	default:
		t.Fatal("Changed of the zero set not closed by Apply")
	}
	if !zero.Lookup("c", "", "").Any() {
		t.Fatal("the zero set lost its entry")
	}
}

func TestSetApply(t *testing.T) {
	a := &Entry{Kind: KindClient, ID: "a"}
	a2 := &Entry{Kind: KindClient, ID: "a", Reason: "again"}
	b := &Entry{Kind: KindSubject, ID: "b"}
	tests := []struct {
		name        string
		start       []*Entry
		changes     []Change
		wantApplied int
		want        []*Entry
	}{
		{"put", nil, []Change{{Entry: a}}, 1, []*Entry{a}},
		{"put with matching kind and id", nil, []Change{{Kind: KindClient, ID: "a", Entry: a}}, 1, []*Entry{a}},
		{"put replaces", []*Entry{a}, []Change{{Entry: a2}}, 1, []*Entry{a2}},
		{"delete", []*Entry{a, b}, []Change{{Kind: KindClient, ID: "a"}}, 1, []*Entry{b}},
		{"delete absent", []*Entry{b}, []Change{{Kind: KindClient, ID: "a"}}, 1, []*Entry{b}},
		{"put then delete in one batch", nil, []Change{{Entry: a}, {Entry: b}, {Kind: KindClient, ID: "a"}}, 3, []*Entry{b}},
		{"delete then put in one batch", []*Entry{a}, []Change{{Kind: KindClient, ID: "a"}, {Entry: a2}}, 2, []*Entry{a2}},
		{"invalid put keeps the old entry", []*Entry{a}, []Change{{Entry: &Entry{Kind: KindClient, ID: "a", Reason: "x\ny"}}}, 0, []*Entry{a}},
		{"mismatched id skipped", []*Entry{a}, []Change{{Kind: KindClient, ID: "b", Entry: a2}}, 0, []*Entry{a}},
		{"mismatched kind skipped", nil, []Change{{Kind: KindSubject, Entry: a}}, 0, nil},
		{"delete of an unknown kind skipped", []*Entry{{Kind: KindToken, ID: fp}}, []Change{{Kind: "bogus", ID: fp}, {ID: fp}}, 0, []*Entry{{Kind: KindToken, ID: fp}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSet()
			s.Replace(tt.start)
			v, ch := s.Version(), s.Changed()
			if got := s.Apply(tt.changes...); got != tt.wantApplied {
				t.Fatalf("Apply = %d, want %d", got, tt.wantApplied)
			}
			if got := s.Entries(); !equalEntries(got, tt.want) {
				t.Fatalf("entries = %s, want %s", fmtEntries(got), fmtEntries(tt.want))
			}
			changed := tt.wantApplied > 0
			select {
			case <-ch:
				if !changed {
					t.Fatal("Changed closed without a change")
				}
			default:
				if changed {
					t.Fatal("Changed not closed")
				}
			}
			if wantV := v + map[bool]uint64{true: 1}[changed]; s.Version() != wantV {
				t.Fatalf("Version = %d, want %d", s.Version(), wantV)
			}
		})
	}
}

// Apply builds a new state: a lookup holding the old one is not affected.
func TestSetCopyOnWrite(t *testing.T) {
	s := NewSet()
	s.Replace([]*Entry{{Kind: KindClient, ID: "a"}})
	old := s.cur.Load()
	s.Apply(Change{Kind: KindClient, ID: "a"}, Change{Entry: &Entry{Kind: KindClient, ID: "b"}})
	if old.byKind[0]["a"] == nil || old.byKind[0]["b"] != nil || old.n != 1 {
		t.Fatal("Apply modified the previous state")
	}
}

func TestSetExpiry(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	soon := &Entry{Kind: KindClient, ID: "soon", Expires: t0.Add(time.Minute)}
	later := &Entry{Kind: KindSubject, ID: "later", Expires: t0.Add(time.Hour)}
	never := &Entry{Kind: KindToken, ID: fp}
	s := NewSet()
	s.Replace([]*Entry{soon, later, never})

	tests := []struct {
		at   time.Time
		want Match
	}{
		{t0, Match{Client: soon, Subject: later, Token: never}},
		{t0.Add(time.Minute - time.Nanosecond), Match{Client: soon, Subject: later, Token: never}},
		{t0.Add(time.Minute), Match{Subject: later, Token: never}}, // expiry is exclusive
		{t0.Add(time.Hour), Match{Token: never}},
		{t0.Add(1000 * time.Hour), Match{Token: never}},
	}
	for _, tt := range tests {
		if got := s.LookupAt(tt.at, "soon", "later", fp); got != tt.want {
			t.Errorf("LookupAt(%s) = %+v, want %+v", tt.at.Sub(t0), got, tt.want)
		}
	}
	// Lookup reads the real clock: these entries expired long ago.
	if got := s.Lookup("soon", "later", fp); got != (Match{Token: never}) {
		t.Errorf("Lookup = %+v, want only the token", got)
	}

	if gone := s.Sweep(t0); gone != nil {
		t.Fatalf("Sweep before any expiry removed %s", fmtEntries(gone))
	}
	v := s.Version()
	if gone := s.Sweep(t0.Add(time.Minute)); !equalEntries(gone, []*Entry{soon}) {
		t.Fatalf("Sweep at the first expiry removed %s, want soon", fmtEntries(gone))
	}
	if s.Len() != 2 || s.Version() != v+1 || s.nextExpiry() != later.Expires {
		t.Fatalf("after Sweep: Len %d, Version %d (was %d), next expiry %s", s.Len(), s.Version(), v, s.nextExpiry())
	}
	// An entry put again with a later expiry is not swept with the old one.
	renewed := &Entry{Kind: KindSubject, ID: "later", Expires: t0.Add(3 * time.Hour)}
	s.Apply(Change{Entry: renewed})
	if gone := s.Sweep(t0.Add(2 * time.Hour)); gone != nil {
		t.Fatalf("Sweep removed the renewed entry: %s", fmtEntries(gone))
	}
	if gone := s.Sweep(t0.Add(3 * time.Hour)); !equalEntries(gone, []*Entry{renewed}) {
		t.Fatalf("Sweep = %s, want the renewed entry", fmtEntries(gone))
	}
	if !s.nextExpiry().IsZero() || s.Len() != 1 {
		t.Fatalf("after the last sweep: next expiry %s, Len %d", s.nextExpiry(), s.Len())
	}
}

// Lookups race with writers (go test -race): every lookup sees one
// consistent version.
func TestSetConcurrent(t *testing.T) {
	s := NewSet()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := s.Lookup("c1", "s1", fp)
				if m.Client != nil && m.Client.ID != "c1" {
					t.Error("lookup returned another id")
					return
				}
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-s.Changed():
			}
		}
	})
	for i := range 2000 {
		id := fmt.Sprintf("c%d", i%10)
		if i%3 == 0 {
			s.Apply(Change{Kind: KindClient, ID: id})
		} else {
			s.Apply(Change{Entry: &Entry{Kind: KindClient, ID: id, Expires: time.Now().Add(time.Duration(i%5) * time.Millisecond)}})
		}
		if i%100 == 0 {
			s.Sweep(time.Now())
		}
	}
	close(stop)
	wg.Wait()
}

func TestLookupAllocs(t *testing.T) {
	s := NewSet()
	var es []*Entry
	for i := range 1000 {
		es = append(es, &Entry{Kind: KindClient, ID: fmt.Sprintf("client-%d", i)}, &Entry{Kind: KindSubject, ID: fmt.Sprintf("user-%d", i), Expires: time.Now().Add(time.Hour)})
	}
	es = append(es, &Entry{Kind: KindToken, ID: fp})
	s.Replace(es)
	var nilSet *Set
	tests := []struct {
		name                  string
		set                   *Set
		client, subject, fprt string
	}{
		{"miss", s, "nobody", "nobody", "sha256:ffffffffffffffffffffffffffffffff"},
		{"client hit", s, "client-7", "", ""},
		{"hit with an expiry (reads the clock)", s, "", "user-7", ""},
		{"all three", s, "client-1", "user-1", fp},
		{"empty set", NewSet(), "client-1", "user-1", fp},
		{"nil set", nilSet, "client-1", "user-1", fp},
	}
	for _, tt := range tests {
		var m Match
		if a := testing.AllocsPerRun(1000, func() { m = tt.set.Lookup(tt.client, tt.subject, tt.fprt) }); a != 0 {
			t.Errorf("%s: Lookup allocates %.1f times", tt.name, a)
		}
		_ = m
	}
}

func BenchmarkLookup(b *testing.B) {
	s := NewSet()
	var es []*Entry
	for i := range 10000 {
		es = append(es, &Entry{Kind: KindClient, ID: fmt.Sprintf("client-%d", i)}, &Entry{Kind: KindSubject, ID: fmt.Sprintf("user-%d", i), Expires: time.Now().Add(time.Hour)})
	}
	s.Replace(es)
	for _, bb := range []struct {
		name                  string
		set                   *Set
		client, subject, fprt string
	}{
		{"empty", NewSet(), "claude", "alice", fp},
		{"miss", s, "claude", "alice", fp},
		{"hit", s, "client-42", "alice", fp},
		{"hit-expiring", s, "claude", "user-42", fp},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bb.set.Lookup(bb.client, bb.subject, bb.fprt)
			}
		})
	}
}

func equalEntries(a, b []*Entry) bool {
	return slices.EqualFunc(a, b, func(x, y *Entry) bool { return *x == *y })
}

func fmtEntries(es []*Entry) string {
	out := "["
	for i, e := range es {
		if i > 0 {
			out += " "
		}
		out += string(e.Kind) + ":" + e.ID
	}
	return out + "]"
}
