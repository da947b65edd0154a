package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
)

// MinNonceKeyBytes is the shortest key [NewNonces] accepts.
const MinNonceKeyBytes = 32

// nonceMACBytes is the truncated HMAC-SHA256 length carried in a nonce
// (128 bits); with the 8-byte slot, a nonce is 24 bytes, 32 characters.
const (
	nonceMACBytes = 16
	nonceRawBytes = 8 + nonceMACBytes
	nonceLen      = (nonceRawBytes*8 + 5) / 6
)

// Nonces issues and checks resource-server DPoP nonces (RFC 9449 §8, §9)
// without state: a nonce is a time slot (the current time divided by the
// lifetime) and its HMAC-SHA256 under a key that every replica shares, so
// that any replica accepts the nonce another issued. A nonce is valid in
// the slot it was issued in and the next one (so between one and two
// lifetimes), and, for replicas whose clock runs slightly behind the
// issuer's, one slot early. Nonces is safe for concurrent use.
type Nonces struct {
	key      []byte
	lifetime int64 // nanoseconds
	now      func() time.Time
	cur      atomic.Pointer[nonceSlot]
}

type nonceSlot struct {
	slot  int64
	nonce string
}

type nonceStatus uint8

const (
	nonceValid nonceStatus = iota
	nonceExpired
	nonceInvalid
)

// NewNonces returns nonces of the given lifetime (at least one second)
// authenticated with key (at least [MinNonceKeyBytes] random bytes, the
// same on every replica). now nil means time.Now.
func NewNonces(key []byte, lifetime time.Duration, now func() time.Time) (*Nonces, error) {
	if len(key) < MinNonceKeyBytes {
		return nil, fmt.Errorf("dpop: nonce key has %d bytes; at least %d random bytes are required", len(key), MinNonceKeyBytes)
	}
	if lifetime < time.Second {
		return nil, fmt.Errorf("dpop: nonce lifetime %s is shorter than one second", lifetime)
	}
	if now == nil {
		now = time.Now
	}
	return &Nonces{key: append([]byte(nil), key...), lifetime: int64(lifetime), now: now}, nil
}

func (n *Nonces) slotAt(t time.Time) int64 {
	ns := t.UnixNano()
	s := ns / n.lifetime
	if ns < 0 && ns%n.lifetime != 0 {
		s--
	}
	return s
}

// Current returns the nonce of the current slot, to send in the DPoP-Nonce
// response header.
func (n *Nonces) Current() string {
	slot := n.slotAt(n.now())
	if c := n.cur.Load(); c != nil && c.slot == slot {
		return c.nonce
	}
	var raw [nonceRawBytes]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(slot))
	n.mac(raw[8:8], raw[:8])
	s := b64.EncodeToString(raw[:])
	n.cur.Store(&nonceSlot{slot: slot, nonce: s})
	return s
}

// mac appends the truncated HMAC of the 8-byte slot to dst.
func (n *Nonces) mac(dst, slot []byte) []byte {
	h := hmac.New(sha256.New, n.key)
	h.Write([]byte("mcp-pdp dpop nonce\x00"))
	h.Write(slot)
	var sum [sha256.Size]byte
	return append(dst, h.Sum(sum[:0])[:nonceMACBytes]...)
}

// check reports whether s is a nonce of this key for the current, the
// previous or the next slot.
func (n *Nonces) check(s string) nonceStatus {
	if len(s) != nonceLen || !isB64URL(s) {
		return nonceInvalid
	}
	var raw [nonceRawBytes]byte
	if k, err := b64.Decode(raw[:], []byte(s)); err != nil || k != nonceRawBytes {
		return nonceInvalid
	}
	var want [nonceMACBytes]byte
	if !hmac.Equal(n.mac(want[:0], raw[:8]), raw[8:]) {
		return nonceInvalid
	}
	slot := int64(binary.BigEndian.Uint64(raw[:8]))
	switch d := n.slotAt(n.now()) - slot; {
	case d >= -1 && d <= 1:
		return nonceValid
	case d > 1:
		return nonceExpired
	}
	return nonceInvalid
}
