// Package revoke is the PDP's revocation set: clients, subjects and single
// tokens cut off until an operator removes them (or their expiry passes).
//
// The set lives in a NATS JetStream key-value bucket (DefaultBucket) that
// every PDP replica watches (Watcher): a change applies within
// milliseconds of its write, without a policy reload. Each replica keeps
// the last state it saw in memory, behind an atomic pointer, so that a
// lookup on the decision path takes no lock and allocates nothing; and on
// disk (a snapshot file written atomically on every change), so that a
// revocation survives a restart while NATS is unreachable.
//
// The package imports nothing internal: the decision core looks callers up
// (Set.Lookup) and hands the matches to the policy.
package revoke

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind is what a revocation names.
type Kind string

// The kinds of revocations.
const (
	// KindClient revokes every token of an OAuth client (client_id).
	KindClient Kind = "client"
	// KindSubject revokes every token of a subject (sub: the user).
	KindSubject Kind = "subject"
	// KindToken revokes one token by its fingerprint
	// ("sha256:" + 32 hex digits, as audit events carry it).
	KindToken Kind = "token"
)

// numKinds is the number of kinds.
const numKinds = 3

// Kinds returns the kinds in the order they are listed.
func Kinds() []Kind { return []Kind{KindClient, KindSubject, KindToken} }

// index is k's position in Kinds, -1 for an unknown kind.
func (k Kind) index() int {
	switch k {
	case KindClient:
		return 0
	case KindSubject:
		return 1
	case KindToken:
		return 2
	}
	return -1
}

// ParseKind reads a kind by name.
func ParseKind(s string) (Kind, error) {
	if k := Kind(s); k.index() >= 0 {
		return k, nil
	}
	return "", fmt.Errorf("unknown revocation kind %q: use client, subject or token", s)
}

// MaxIDBytes bounds an id: the bucket key holds it base64-encoded, and a
// NATS subject should stay well below the server's limits.
const MaxIDBytes = 1024

// MaxReasonBytes bounds a reason (and By).
const MaxReasonBytes = 1024

// ErrNotFound is returned (wrapped) by Remove for a revocation the bucket
// does not hold.
var ErrNotFound = errors.New("no such revocation")

// Entry is one revocation.
type Entry struct {
	Kind Kind `json:"kind"`
	// ID is the client_id, the subject or the token fingerprint.
	ID string `json:"id"`
	// Reason is shown to the caller and audited (the default policy's
	// deny reason ends with it).
	Reason string `json:"reason,omitempty"`
	// By names who revoked (the operator's login, by default).
	By      string    `json:"by,omitempty"`
	Created time.Time `json:"created"`
	// Expires, when set, ends the revocation at that time (pdp revoke --for).
	Expires time.Time `json:"expires,omitzero"`
}

// Active reports whether e applies at now: it has no expiry or now is
// before it.
func (e *Entry) Active(now time.Time) bool { return e.Expires.IsZero() || now.Before(e.Expires) }

// Key is the bucket key of e.
func (e *Entry) Key() string { return Key(e.Kind, e.ID) }

// Validate checks what a stored entry must hold: a known kind, an id
// (valid UTF-8, at most MaxIDBytes; a token's is a fingerprint as
// NormalizeFingerprint returns it), a reason and a by of one printable
// line each (they end up in deny reasons, logs and audit events), and an
// expiry, if any, after the creation time.
func (e *Entry) Validate() error {
	if e == nil {
		return errors.New("no revocation")
	}
	if _, err := ParseKind(string(e.Kind)); err != nil {
		return err
	}
	if e.ID == "" {
		return fmt.Errorf("%s revocation without an id", e.Kind)
	}
	if len(e.ID) > MaxIDBytes {
		return fmt.Errorf("%s id is %d bytes, more than %d", e.Kind, len(e.ID), MaxIDBytes)
	}
	if !utf8.ValidString(e.ID) {
		return fmt.Errorf("%s id is not valid UTF-8", e.Kind)
	}
	if e.Kind == KindToken && !validFingerprint(e.ID) {
		return fmt.Errorf("token id %q is not a fingerprint (sha256: and 32 lower-case hex digits, as audit events show it)", e.ID)
	}
	for _, f := range [...]struct{ name, v string }{{"reason", e.Reason}, {"by", e.By}} {
		if len(f.v) > MaxReasonBytes {
			return fmt.Errorf("%s %s: %s is %d bytes, more than %d", e.Kind, quoteID(e.ID), f.name, len(f.v), MaxReasonBytes)
		}
		if !printable(f.v) {
			return fmt.Errorf("%s %s: %s must be one line of printable UTF-8", e.Kind, quoteID(e.ID), f.name)
		}
	}
	if !e.Expires.IsZero() && !e.Created.IsZero() && !e.Expires.After(e.Created) {
		return fmt.Errorf("%s %s: expires %s, not after its creation %s", e.Kind, quoteID(e.ID),
			e.Expires.Format(time.RFC3339), e.Created.Format(time.RFC3339))
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// quoteID quotes an id for an error message, shortened past 64 bytes.
func quoteID(id string) string {
	if len(id) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(id[cut]) {
			cut--
		}
		return strconv.Quote(id[:cut]) + "..."
	}
	return strconv.Quote(id)
}

// Key is the bucket key of a revocation: the kind, a dot and the id in
// unpadded base64url, so that any id (dots, spaces, wildcards, slashes,
// any Unicode) makes a valid key and two ids never share one.
func Key(kind Kind, id string) string {
	return string(kind) + "." + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// ParseKey is Key's inverse. It accepts only the key Key makes (the
// canonical encoding): a decoder that also took other spellings of the
// same id (stray line breaks, non-zero padding bits) would let two keys
// hold one revocation, and deleting one would leave the other.
func ParseKey(key string) (Kind, string, error) {
	k, enc, ok := strings.Cut(key, ".")
	if !ok {
		return "", "", fmt.Errorf("revocation key %q: no kind prefix", key)
	}
	kind, err := ParseKind(k)
	if err != nil {
		return "", "", fmt.Errorf("revocation key %q: %w", key, err)
	}
	id, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(id) == 0 || base64.RawURLEncoding.EncodeToString(id) != enc {
		return "", "", fmt.Errorf("revocation key %q: the id is not canonical unpadded base64url", key)
	}
	return kind, string(id), nil
}

// NormalizeID returns id as a revocation of kind stores it: a token's
// fingerprint normalized (NormalizeFingerprint), any other id as it is
// (client ids and subjects are compared byte for byte, as the token
// carries them), after checking it is not empty.
func NormalizeID(kind Kind, id string) (string, error) {
	if _, err := ParseKind(string(kind)); err != nil {
		return "", err
	}
	if kind == KindToken {
		return NormalizeFingerprint(id)
	}
	if id == "" {
		return "", fmt.Errorf("%s revocation without an id", kind)
	}
	return id, nil
}

// NormalizeFingerprint returns a token fingerprint as audit events write
// it ("sha256:" + 32 lower-case hex digits), accepting it without the
// prefix or in upper case.
func NormalizeFingerprint(in string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(in))
	if !strings.HasPrefix(s, "sha256:") {
		s = "sha256:" + s
	}
	if !validFingerprint(s) {
		return "", fmt.Errorf("%s is not a token fingerprint: sha256: and 32 hex digits (the token_fingerprint of an audit event)", quoteID(in))
	}
	return s, nil
}

func validFingerprint(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 32 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
