package dpop

import (
	"strings"
	"testing"
	"time"
)

func TestNewNoncesRefuses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		key      []byte
		lifetime time.Duration
		want     string
	}{
		{"short key", make([]byte, 31), time.Minute, "at least 32"},
		{"no key", nil, time.Minute, "at least 32"},
		{"zero lifetime", make([]byte, 32), 0, "shorter than one second"},
		{"sub-second lifetime", make([]byte, 32), time.Millisecond, "shorter than one second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewNonces(tc.key, tc.lifetime, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewNonces: %v; want an error with %q", err, tc.want)
			}
		})
	}
}

func TestNoncesSlots(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := testNow.Truncate(time.Minute)
	n, err := NewNonces(key, time.Minute, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	first := n.Current()
	if len(first) != nonceLen || !isB64URL(first) {
		t.Fatalf("nonce %q: want %d base64url characters", first, nonceLen)
	}
	now = now.Add(59 * time.Second)
	if got := n.Current(); got != first {
		t.Fatalf("within the slot: %q, then %q", first, got)
	}
	// Another replica with the same key issues and accepts the same nonce.
	other, _ := NewNonces(append([]byte(nil), key...), time.Minute, func() time.Time { return now })
	if other.Current() != first || other.check(first) != nonceValid {
		t.Fatal("a replica with the same key disagrees")
	}
	for _, tc := range []struct {
		at   time.Duration // from the issuing slot's start
		want nonceStatus
	}{
		{-time.Second, nonceValid}, // one slot early: a replica whose clock runs behind
		{-61 * time.Second, nonceInvalid},
		{0, nonceValid},
		{time.Minute, nonceValid}, // the next slot
		{2*time.Minute - time.Nanosecond, nonceValid},
		{2 * time.Minute, nonceExpired},
		{time.Hour, nonceExpired},
	} {
		now = testNow.Truncate(time.Minute).Add(tc.at)
		if got := n.check(first); got != tc.want {
			t.Errorf("at %s: check = %d; want %d", tc.at, got, tc.want)
		}
	}
	now = testNow.Truncate(time.Minute).Add(time.Minute)
	if got := n.Current(); got == first {
		t.Fatal("the nonce did not change with the slot")
	}
	// Tampering with the slot or the MAC invalidates it.
	for i := range first {
		b := []byte(first)
		b[i] = map[bool]byte{true: 'B', false: 'A'}[b[i] == 'A']
		if n.check(string(b)) == nonceValid {
			t.Errorf("nonce with character %d changed still valid", i)
		}
	}
}
