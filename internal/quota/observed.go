package quota

import (
	"sync"
	"time"
)

// observedSet remembers, per counter subject, the latest total this
// replica saw, for Observed. It holds at most max subjects: a new one in a
// full set evicts an ended window's among a few sampled, else one of them
// at random (Go's map order), so that callers minting keys cannot grow
// it.
type observedSet struct {
	mu  sync.Mutex
	max int
	m   map[string]observation
}

type observation struct {
	seq   uint64 // the stream sequence of the message that had total
	total int64
	end   int64 // the window's end, Unix nanoseconds
}

// evictSample is how many entries a full set looks at for an ended
// window before evicting one at random.
const evictSample = 8

func newObservedSet(maxEntries int) *observedSet {
	if maxEntries < 0 {
		maxEntries = 0
	}
	return &observedSet{max: maxEntries, m: make(map[string]observation, min(maxEntries, 1024))}
}

// put records total as of stream sequence seq, unless a later sequence
// is already recorded (acknowledgements of concurrent calls arrive in any
// order).
func (s *observedSet) put(subj string, seq uint64, total int64, end, now time.Time) {
	if s.max == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.m[subj]; ok {
		if seq > o.seq {
			s.m[subj] = observation{seq, total, end.UnixNano()}
		}
		return
	}
	if len(s.m) >= s.max {
		s.evict(now.UnixNano())
	}
	s.m[subj] = observation{seq, total, end.UnixNano()}
}

// evict removes an ended window's entry among evictSample, or else the
// first of them.
func (s *observedSet) evict(now int64) {
	var victim string
	found, n := false, 0
	for k, o := range s.m {
		if o.end <= now {
			delete(s.m, k)
			return
		}
		if !found {
			victim, found = k, true
		}
		if n++; n >= evictSample {
			break
		}
	}
	if found {
		delete(s.m, victim)
	}
}

// get returns the total seen for subj, if its window has not ended by
// now. subj may be a conversion of a byte slice: the map lookup does not
// keep it.
func (s *observedSet) get(subj []byte, now time.Time) (int64, bool) {
	if s.max == 0 {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.m[string(subj)]
	if !ok {
		return 0, false
	}
	if now.UnixNano() >= o.end {
		delete(s.m, string(subj))
		return 0, false
	}
	return o.total, true
}

func (s *observedSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
