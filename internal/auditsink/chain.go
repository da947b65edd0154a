package auditsink

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// The chain: every event of an instance carries "chain" (the chain's id),
// "seq" (1, 2, 3, ... without gaps) and "prev" (the hex SHA-256 of the
// exact published bytes of the chain's previous event). Every
// Config.CheckpointEvery events, every Config.CheckpointInterval while
// events come, and at Close, the sink publishes a checkpoint into the same
// stream (subject <prefix>.$chain.<chain>): the chain's head (seq and the
// hash of that event), signed with Ed25519. Together they let `pdp audit
// verify` prove that no event up to the last checkpoint was removed,
// altered or reordered.
//
// The chain's state is persisted in <spool_dir>/chain.json: at start, at
// Close (clean) and with each interval checkpoint (off the decision path). A sink that starts after a clean Close continues
// the chain; after a crash it cannot know what the last events were (async
// events in memory are lost in a crash), so it starts a new chain and its
// first checkpoint (seq 0) names the previous chain and its last
// checkpointed seq.
//
// The links are made in Record, under a mutex, after the event is encoded:
// a hash of the event's bytes and one append. No round trip.

// CheckpointSchema is the "schema" of a checkpoint message.
const CheckpointSchema = "mcp-pdp.audit.checkpoint/v1"

// ChainToken is the subject token (after the prefix) of checkpoints:
// "$" is never in a resource key, so no event subject collides.
const ChainToken = "$chain"

// Checkpoint defaults (audit.checkpoint.every, audit.checkpoint.interval).
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Minute
)

// chainFile is the persisted chain state, in the spool directory.
const chainFile = "chain.json"

// Checkpoint is a signed statement of an instance about its chain: event
// Seq of chain Chain has the hash Head. Seq 0 starts a chain (Head "");
// After names the chain it follows after an unclean stop.
type Checkpoint struct {
	Schema string    `json:"schema"`
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	PDP    string    `json:"pdp"`
	Chain  string    `json:"chain"`
	Seq    uint64    `json:"seq"`
	Head   string    `json:"head"`
	// AfterChain and AfterSeq: this chain follows AfterChain, whose last
	// checkpoint (before an unclean stop) covered AfterSeq.
	AfterChain string `json:"after_chain,omitempty"`
	AfterSeq   uint64 `json:"after_seq,omitempty"`
	// Final is set on the checkpoint written at Close.
	Final bool `json:"final,omitempty"`
	// KeyID names the signing key (KeyID of its public key); Sig is the
	// base64url Ed25519 signature over the message's bytes before
	// `,"sig":"`. Both empty when the sink has no key.
	KeyID string `json:"key_id,omitempty"`
	Sig   string `json:"sig,omitempty"`
}

// KeyID returns the id of an Ed25519 public key: the hex of the first 8
// bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// sigMarker separates the signed bytes of a checkpoint from its signature.
const sigMarker = `,"sig":"`

// SplitCheckpoint returns the signed part of a checkpoint message and its
// signature; ok is false when it carries none.
func SplitCheckpoint(data []byte) (signed, sig []byte, ok bool) {
	i := lastIndex(data, sigMarker)
	if i < 0 || len(data) < i+len(sigMarker)+2 || data[len(data)-2] != '"' || data[len(data)-1] != '}' {
		return nil, nil, false
	}
	enc := data[i+len(sigMarker) : len(data)-2]
	sig = make([]byte, base64.RawURLEncoding.DecodedLen(len(enc)))
	n, err := base64.RawURLEncoding.Decode(sig, enc)
	if err != nil {
		return nil, nil, false
	}
	return data[:i], sig[:n], true
}

func lastIndex(b []byte, s string) int {
	for i := len(b) - len(s); i >= 0; i-- {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}

// chainState is what chain.json holds.
type chainState struct {
	Chain string `json:"chain"`
	Seq   uint64 `json:"seq"`
	Head  string `json:"head"`
	// Clean is true after a Close that checkpointed the head.
	Clean bool `json:"clean"`
}

// chain links events. Its methods are called with the sink's closeMu read
// lock held (Record) or write lock (Close).
type chain struct {
	mu       sync.Mutex
	id       string
	seq      uint64
	head     [32]byte // hash of event seq (zero when seq is 0)
	since    uint64   // events since the last checkpoint
	lastTime time.Time
	every    uint64
	key      ed25519.PrivateKey
	keyID    string
	pdp      string
	subject  string
	path     string
	// after is set for the first checkpoint of a chain started after an
	// unclean stop.
	after   *chainState
	started bool // the seq-0 checkpoint is out
}

// openChain loads or starts the chain of the spool directory dir.
func openChain(dir string, cfg Config) (*chain, error) {
	c := &chain{
		key:     cfg.SigningKey,
		pdp:     cfg.PDP,
		path:    filepath.Join(dir, chainFile),
		subject: cfg.SubjectPrefix + "." + ChainToken,
	}
	if cfg.CheckpointEvery > 0 {
		c.every = uint64(cfg.CheckpointEvery)
	}
	if c.key != nil {
		c.keyID = KeyID(c.key.Public().(ed25519.PublicKey))
	}
	var st chainState
	b, err := os.ReadFile(c.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", c.path, err)
	default:
		if err := json.Unmarshal(b, &st); err != nil || st.Chain == "" {
			return nil, fmt.Errorf("%s is not a chain state (%v): move it away to start a new chain", c.path, err)
		}
	}
	if st.Clean {
		h, err := hex.DecodeString(st.Head)
		if err != nil || (len(h) != 32 && !(len(h) == 0 && st.Seq == 0)) {
			return nil, fmt.Errorf("%s: head %q is not a SHA-256: move the file away to start a new chain", c.path, st.Head)
		}
		c.id, c.seq, c.started = st.Chain, st.Seq, true
		copy(c.head[:], h)
	} else {
		c.id = NewID()
		if st.Chain != "" {
			c.after = &st
		} else {
			c.started = true // a first chain needs no link to a predecessor
		}
	}
	c.subject += "." + c.id
	// From now on an unclean stop must start a new chain.
	if err := c.persist(false); err != nil {
		return nil, err
	}
	return c, nil
}

// save persists the current head (clean: checkpointed at Close).
func (c *chain) save(clean bool) error {
	c.mu.Lock()
	st := chainState{Chain: c.id, Seq: c.seq, Head: c.headHex(), Clean: clean}
	c.mu.Unlock()
	return c.write(st)
}

// persist writes the chain state; the caller owns c (openChain).
func (c *chain) persist(clean bool) error {
	return c.write(chainState{Chain: c.id, Seq: c.seq, Head: c.headHex(), Clean: clean})
}

// write writes st atomically (temp file, fsync, rename).
func (c *chain) write(st chainState) error {
	b, _ := json.Marshal(st)
	tmp := c.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", c.path, err)
	}
	return nil
}

func (c *chain) headHex() string {
	if c.seq == 0 {
		return ""
	}
	return hex.EncodeToString(c.head[:])
}

// link appends the chain fields to the encoded event it.data (a JSON
// object whose chain fields are empty) and advances the head. It returns
// the checkpoints due now (the chain's start, every c.every events), to be
// recorded after it.
func (c *chain) link(it *item, now time.Time) []*item {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*item
	if !c.started {
		out = append(out, c.checkpointLocked(now, false))
		c.started = true
	}
	c.seq++
	d := it.data[:len(it.data)-1] // drop '}'
	d = append(d, `,"chain":"`...)
	d = append(d, c.id...)
	d = append(d, `","seq":`...)
	d = strconv.AppendUint(d, c.seq, 10)
	if c.seq > 1 {
		d = append(d, `,"prev":"`...)
		d = hex.AppendEncode(d, c.head[:])
		d = append(d, '"')
	}
	d = append(d, '}')
	it.data = d
	c.head = sha256.Sum256(d)
	c.since++
	c.lastTime = now
	if c.every > 0 && c.since >= c.every {
		out = append(out, c.checkpointLocked(now, false))
	}
	return out
}

// checkpointDue returns a checkpoint when events came since the last one.
func (c *chain) checkpointDue(now time.Time, final bool) *item {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.since == 0 {
		return nil
	}
	return c.checkpointLocked(now, final)
}

// checkpointLocked builds the signed checkpoint of the current head.
func (c *chain) checkpointLocked(now time.Time, final bool) *item {
	cp := Checkpoint{
		Schema: CheckpointSchema, Time: now.UTC(), PDP: c.pdp,
		Chain: c.id, Seq: c.seq, Head: c.headHex(), Final: final, KeyID: c.keyID,
	}
	cp.ID = "chk-" + c.id + "-" + strconv.FormatUint(c.seq, 10)
	if final {
		cp.ID += "-final"
	}
	if c.seq == 0 && c.after != nil {
		cp.AfterChain, cp.AfterSeq = c.after.Chain, c.after.Seq
	}
	b, _ := json.Marshal(&cp) // plain types: cannot fail
	if c.key != nil {
		signed := b[:len(b)-1]
		sig := ed25519.Sign(c.key, signed)
		b = append(signed, sigMarker...)
		b = base64.RawURLEncoding.AppendEncode(b, sig)
		b = append(b, `"}`...)
	}
	c.since = 0
	return &item{id: cp.ID, subject: c.subject, data: b, start: now}
}
