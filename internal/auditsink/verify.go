package auditsink

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Verification of the chain (chain.go): a Verifier takes every message of
// a source (the stream, or the audit store's raw bytes), in any order, and
// reports per chain the events checked and every finding.

// Kinds of Finding. Each means the audit is not what the PDPs wrote.
const (
	// FindingGap: events of a chain are missing (removed, or lost).
	FindingGap = "gap"
	// FindingDuplicate: two different events claim one seq.
	FindingDuplicate = "duplicate"
	// FindingModified: an event's bytes are not what the next event (or a
	// checkpoint) says they were.
	FindingModified = "modified"
	// FindingReorder: an event links to an event other than the one its
	// seq puts before it: it was moved.
	FindingReorder = "reorder"
	// FindingBadSignature: a checkpoint's signature does not verify, it is
	// unsigned, or signed by a key that is not trusted.
	FindingBadSignature = "bad_signature"
	// FindingMalformed: a message that is neither an event nor a
	// checkpoint, or a chained event without its fields.
	FindingMalformed = "malformed"
)

// Finding is one problem, with the ids of the events it concerns.
type Finding struct {
	Kind   string   `json:"kind"`
	Chain  string   `json:"chain,omitempty"`
	Seq    uint64   `json:"seq,omitempty"`
	IDs    []string `json:"ids,omitempty"`
	Detail string   `json:"detail"`
}

// ChainReport is what was checked of one chain.
type ChainReport struct {
	Chain string `json:"chain"`
	PDP   string `json:"pdp"`
	// Events checked (distinct seqs), from FirstSeq to LastSeq.
	Events   int    `json:"events"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Checkpoints seen; Covered is the highest seq a valid checkpoint
	// covers (events after it can be removed from the tail undetected
	// until the next checkpoint); Final: the chain ended with a clean stop.
	Checkpoints int    `json:"checkpoints"`
	Covered     uint64 `json:"covered"`
	Final       bool   `json:"final"`
	// AfterChain: this chain began after an unclean stop of AfterChain.
	AfterChain string `json:"after_chain,omitempty"`
	// IdenticalCopies: the same event stored twice (a replay outside the
	// duplicate window): not a finding.
	IdenticalCopies int `json:"identical_copies,omitempty"`
}

// Report is the result of a verification.
type Report struct {
	Chains   []ChainReport `json:"chains"`
	Findings []Finding     `json:"findings"`
	// Unchained events carry no chain (written before chains existed).
	Unchained int `json:"unchained"`
	// SignaturesChecked is false when no trusted key was given: the
	// checkpoints' heads are checked, their signatures are not.
	SignaturesChecked bool `json:"signatures_checked"`
}

// OK reports whether the verification found nothing.
func (r *Report) OK() bool { return len(r.Findings) == 0 }

// VerifyOptions tune a Verifier.
type VerifyOptions struct {
	// Keys are the trusted checkpoint keys (the PDPs' public keys). None:
	// signatures are not checked.
	Keys []ed25519.PublicKey
	// AllowExpired accepts chains that begin after seq 1 (their first
	// events expired from the stream by its retention) instead of
	// reporting the missing start as a gap.
	AllowExpired bool
}

// Verifier checks chains. Add every message, then call Report.
type Verifier struct {
	opts   VerifyOptions
	keys   map[string]ed25519.PublicKey
	chains map[string]*chainCheck
	order  []string
	rep    Report
}

type chainCheck struct {
	pdp         string
	events      []linkRec
	checkpoints []Checkpoint
	sigOK       []bool
}

type linkRec struct {
	seq     uint64
	id      string
	prev    [32]byte
	hasPrev bool
	badPrev bool // prev is not a SHA-256 in hex
	hash    [32]byte
}

// NewVerifier returns a Verifier.
func NewVerifier(o VerifyOptions) *Verifier {
	v := &Verifier{opts: o, keys: map[string]ed25519.PublicKey{}, chains: map[string]*chainCheck{}}
	for _, k := range o.Keys {
		v.keys[KeyID(k)] = k
	}
	v.rep.SignaturesChecked = len(v.keys) > 0
	return v
}

// chainMsg is the union of what an event and a checkpoint say about the
// chain.
type chainMsg struct {
	Schema     string `json:"schema"`
	ID         string `json:"id"`
	PDP        string `json:"pdp"`
	Chain      string `json:"chain"`
	Seq        uint64 `json:"seq"`
	Prev       string `json:"prev"`
	Head       string `json:"head"`
	AfterChain string `json:"after_chain"`
	AfterSeq   uint64 `json:"after_seq"`
	Final      bool   `json:"final"`
	KeyID      string `json:"key_id"`
}

// Add takes one message: an event or a checkpoint, its exact bytes. where
// names it in findings (e.g. "stream sequence 12").
func (v *Verifier) Add(data []byte, where string) {
	var m chainMsg
	if err := json.Unmarshal(data, &m); err != nil || m.ID == "" {
		v.finding(Finding{Kind: FindingMalformed, Detail: fmt.Sprintf("%s is not an audit event or checkpoint (%v)", where, err)})
		return
	}
	if m.Schema == CheckpointSchema {
		v.addCheckpoint(data, &m, where)
		return
	}
	if m.Chain == "" && m.Seq == 0 && m.Prev == "" {
		v.rep.Unchained++
		return
	}
	if m.Chain == "" || m.Seq == 0 {
		v.finding(Finding{Kind: FindingMalformed, Chain: m.Chain, Seq: m.Seq, IDs: []string{m.ID},
			Detail: fmt.Sprintf("%s: event %s has a partial chain (chain %q, seq %d)", where, m.ID, m.Chain, m.Seq)})
		return
	}
	c := v.chain(m.Chain, m.PDP)
	r := linkRec{seq: m.Seq, id: m.ID, hash: sha256.Sum256(data)}
	if m.Prev != "" {
		r.hasPrev = true
		if n, err := hex.Decode(r.prev[:], []byte(m.Prev)); err != nil || n != 32 || len(m.Prev) != 64 {
			r.badPrev = true
		}
	}
	c.events = append(c.events, r)
}

func (v *Verifier) addCheckpoint(data []byte, m *chainMsg, where string) {
	c := v.chain(m.Chain, m.PDP)
	cp := Checkpoint{ID: m.ID, PDP: m.PDP, Chain: m.Chain, Seq: m.Seq, Head: m.Head,
		AfterChain: m.AfterChain, AfterSeq: m.AfterSeq, Final: m.Final, KeyID: m.KeyID}
	ok := true
	if len(v.keys) > 0 {
		signed, sig, signedOK := SplitCheckpoint(data)
		key := v.keys[m.KeyID]
		switch {
		case !signedOK:
			ok = false
			v.finding(Finding{Kind: FindingBadSignature, Chain: m.Chain, Seq: m.Seq, IDs: []string{m.ID},
				Detail: fmt.Sprintf("checkpoint %s (%s) is not signed", m.ID, where)})
		case key == nil:
			ok = false
			v.finding(Finding{Kind: FindingBadSignature, Chain: m.Chain, Seq: m.Seq, IDs: []string{m.ID},
				Detail: fmt.Sprintf("checkpoint %s (%s) is signed by key %q, which is not trusted", m.ID, where, m.KeyID)})
		case !ed25519.Verify(key, signed, sig):
			ok = false
			v.finding(Finding{Kind: FindingBadSignature, Chain: m.Chain, Seq: m.Seq, IDs: []string{m.ID},
				Detail: fmt.Sprintf("checkpoint %s (%s): the signature by key %s does not verify: it was altered", m.ID, where, m.KeyID)})
		}
	}
	c.checkpoints = append(c.checkpoints, cp)
	c.sigOK = append(c.sigOK, ok)
}

func (v *Verifier) chain(id, pdp string) *chainCheck {
	c := v.chains[id]
	if c == nil {
		c = &chainCheck{pdp: pdp}
		v.chains[id] = c
		v.order = append(v.order, id)
	}
	if c.pdp == "" {
		c.pdp = pdp
	}
	return c
}

func (v *Verifier) finding(f Finding) { v.rep.Findings = append(v.rep.Findings, f) }

// Report checks every chain added and returns the result. Call it once.
func (v *Verifier) Report() *Report {
	slices.Sort(v.order)
	for _, id := range v.order {
		v.rep.Chains = append(v.rep.Chains, v.check(id, v.chains[id]))
	}
	return &v.rep
}

// check verifies one chain: numbering, links, checkpoints.
func (v *Verifier) check(id string, c *chainCheck) ChainReport {
	cr := ChainReport{Chain: id, PDP: c.pdp, Checkpoints: len(c.checkpoints)}
	slices.SortStableFunc(c.events, func(a, b linkRec) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	// One record per seq; identical copies are harmless, different ones
	// are a finding.
	evs := c.events[:0]
	for i, r := range c.events {
		if i > 0 && r.seq == c.events[i-1].seq {
			last := &evs[len(evs)-1]
			if r.hash == last.hash {
				cr.IdenticalCopies++
			} else {
				v.finding(Finding{Kind: FindingDuplicate, Chain: id, Seq: r.seq, IDs: []string{last.id, r.id},
					Detail: fmt.Sprintf("seq %d is claimed by two different events", r.seq)})
			}
			continue
		}
		evs = append(evs, r)
	}
	bySeq := func(seq uint64) *linkRec {
		i, found := slices.BinarySearchFunc(evs, seq, func(r linkRec, s uint64) int {
			switch {
			case r.seq < s:
				return -1
			case r.seq > s:
				return 1
			}
			return 0
		})
		if !found {
			return nil
		}
		return &evs[i]
	}
	var byHash map[[32]byte]*linkRec // built on the first broken link
	cr.Events = len(evs)
	if len(evs) > 0 {
		cr.FirstSeq, cr.LastSeq = evs[0].seq, evs[len(evs)-1].seq
		if evs[0].seq > 1 && !v.opts.AllowExpired {
			v.finding(Finding{Kind: FindingGap, Chain: id, Seq: 1, IDs: []string{evs[0].id},
				Detail: fmt.Sprintf("seqs 1-%d are missing: the chain's first events were removed (or expired: see --allow-expired)", evs[0].seq-1)})
		}
	}
	for i := range evs {
		r := &evs[i]
		if r.badPrev {
			v.finding(Finding{Kind: FindingModified, Chain: id, Seq: r.seq, IDs: []string{r.id},
				Detail: fmt.Sprintf("event %s (seq %d) has a prev that is not a SHA-256", r.id, r.seq)})
			continue
		}
		if r.seq == 1 {
			if r.hasPrev {
				v.finding(Finding{Kind: FindingModified, Chain: id, Seq: 1, IDs: []string{r.id},
					Detail: fmt.Sprintf("event %s is seq 1 but links to a predecessor", r.id)})
			}
			continue
		}
		if i == 0 {
			continue // its predecessor is outside the source (reported above)
		}
		p := &evs[i-1]
		if p.seq != r.seq-1 {
			v.finding(Finding{Kind: FindingGap, Chain: id, Seq: p.seq + 1, IDs: []string{p.id, r.id},
				Detail: fmt.Sprintf("seqs %s are missing between event %s and event %s", seqRange(p.seq+1, r.seq-1), p.id, r.id)})
			continue
		}
		if r.hasPrev && r.prev == p.hash {
			continue
		}
		if byHash == nil {
			byHash = make(map[[32]byte]*linkRec, len(evs))
			for j := range evs {
				byHash[evs[j].hash] = &evs[j]
			}
		}
		if o := byHash[r.prev]; r.hasPrev && o != nil {
			v.finding(Finding{Kind: FindingReorder, Chain: id, Seq: r.seq, IDs: []string{r.id, o.id},
				Detail: fmt.Sprintf("event %s is numbered seq %d but follows event %s (seq %d): it was moved", r.id, r.seq, o.id, o.seq)})
			continue
		}
		v.finding(Finding{Kind: FindingModified, Chain: id, Seq: r.seq, IDs: []string{p.id, r.id},
			Detail: fmt.Sprintf("the link from seq %d (event %s) to seq %d (event %s) is broken: one of them was altered", p.seq, p.id, r.seq, r.id)})
	}
	for i, cp := range c.checkpoints {
		if cp.AfterChain != "" {
			cr.AfterChain = cp.AfterChain
		}
		if !c.sigOK[i] {
			continue
		}
		if cp.Final {
			cr.Final = true
		}
		if cp.Seq == 0 {
			continue
		}
		r := bySeq(cp.Seq)
		switch {
		case r == nil && cp.Seq > cr.LastSeq:
			from := cr.LastSeq + 1
			v.finding(Finding{Kind: FindingGap, Chain: id, Seq: from, IDs: []string{cp.ID},
				Detail: fmt.Sprintf("checkpoint %s covers seq %d, but seqs %s are missing: the chain's last events were removed", cp.ID, cp.Seq, seqRange(from, cp.Seq))})
		case r == nil:
			// Inside a gap, reported above.
		case hex.EncodeToString(r.hash[:]) != cp.Head:
			v.finding(Finding{Kind: FindingModified, Chain: id, Seq: cp.Seq, IDs: []string{r.id, cp.ID},
				Detail: fmt.Sprintf("event %s (seq %d) is not what checkpoint %s says it was: it was altered", r.id, cp.Seq, cp.ID)})
		}
		cr.Covered = max(cr.Covered, cp.Seq)
	}
	if cr.Final && cr.Covered < cr.LastSeq {
		// Events after a final checkpoint: the chain continued after a
		// clean restart; only a later checkpoint covers them.
		cr.Final = false
	}
	return cr
}

func seqRange(from, to uint64) string {
	if from == to {
		return fmt.Sprint(from)
	}
	return fmt.Sprintf("%d-%d", from, to)
}

// FormatReport writes r for people: per chain a line, then the findings.
func FormatReport(r *Report) string {
	var b strings.Builder
	for _, c := range r.Chains {
		fmt.Fprintf(&b, "chain %s (pdp %s): %d events, seq %d-%d, %d checkpoints, covered to seq %d",
			c.Chain, c.PDP, c.Events, c.FirstSeq, c.LastSeq, c.Checkpoints, c.Covered)
		switch {
		case c.Final:
			b.WriteString(", stopped cleanly")
		case c.LastSeq > c.Covered:
			fmt.Fprintf(&b, ", %d events after the last checkpoint", c.LastSeq-c.Covered)
		}
		if c.AfterChain != "" {
			fmt.Fprintf(&b, ", follows chain %s (unclean stop)", c.AfterChain)
		}
		if c.IdenticalCopies > 0 {
			fmt.Fprintf(&b, ", %d identical copies", c.IdenticalCopies)
		}
		b.WriteByte('\n')
	}
	if r.Unchained > 0 {
		fmt.Fprintf(&b, "%d events without a chain (written before chains existed): not checked\n", r.Unchained)
	}
	if !r.SignaturesChecked {
		b.WriteString("checkpoint signatures not checked: no trusted public key given\n")
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "FINDING %s: %s\n", f.Kind, f.Detail)
	}
	if r.OK() {
		b.WriteString("OK: no event removed, altered or reordered\n")
	} else {
		fmt.Fprintf(&b, "%d findings\n", len(r.Findings))
	}
	return b.String()
}
