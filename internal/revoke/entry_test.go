package revoke

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// validKVKey is what a NATS key-value key may hold (nats.go's rule).
var validKVKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

// hostileIDs are ids an attacker (or an odd IdP) may hand out: NATS
// subject syntax, spaces, Unicode, the longest id.
func hostileIDs() []string {
	return []string{
		"plain",
		"a.b.c",
		"*",
		">",
		"a.*.>",
		"$KV.pdp_revocations.>",
		" spaced  id ",
		"tab\tand\nnewline",
		"ünïcødé ✓ 漢字 🚀",
		"slash/and\\backslash",
		"=padding==",
		"\x00nul",
		strings.Repeat("x", MaxIDBytes),
		strings.Repeat("é", MaxIDBytes/2),
	}
}

func TestKeyRoundTrip(t *testing.T) {
	for _, id := range hostileIDs() {
		for _, kind := range []Kind{KindClient, KindSubject} {
			key := Key(kind, id)
			if !validKVKey.MatchString(key) {
				t.Errorf("Key(%s, %q) = %q: not a valid NATS KV key", kind, id, key)
			}
			gotKind, gotID, err := ParseKey(key)
			if err != nil || gotKind != kind || gotID != id {
				t.Errorf("ParseKey(Key(%s, %q)) = %s, %q, %v", kind, id, gotKind, gotID, err)
			}
		}
	}
	if Key(KindClient, "a") == Key(KindSubject, "a") {
		t.Error("kinds share a key")
	}
}

func TestParseKeyRejects(t *testing.T) {
	tests := []struct {
		name, key string
	}{
		{"no dot", "client"},
		{"unknown kind", "user.YQ"},
		{"empty kind", ".YQ"},
		{"empty id", "client."},
		{"not base64url", "client.a+b/"},
		{"padded", "client.YQ=="},
		{"non-zero padding bits", "client.YR"},
		{"line break", "client.Y\nQ"},
		{"std alphabet", "client.+/8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if kind, id, err := ParseKey(tt.key); err == nil {
				t.Errorf("ParseKey(%q) = %s, %q, want an error", tt.key, kind, id)
			} else if !strings.Contains(err.Error(), strconv.Quote(tt.key)) {
				t.Errorf("error %q does not name the key %q", err, tt.key)
			}
		})
	}
}

const fp = "sha256:0123456789abcdef0123456789abcdef"

func TestValidate(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		e       *Entry
		wantErr string // "" = valid
	}{
		{"client", &Entry{Kind: KindClient, ID: "cursor", Created: now}, ""},
		{"subject with reason and expiry", &Entry{Kind: KindSubject, ID: "alice", Reason: "left the company", By: "ops", Created: now, Expires: now.Add(time.Hour)}, ""},
		{"token", &Entry{Kind: KindToken, ID: fp}, ""},
		{"longest id", &Entry{Kind: KindSubject, ID: strings.Repeat("x", MaxIDBytes)}, ""},
		{"nil", nil, "no revocation"},
		{"unknown kind", &Entry{Kind: "user", ID: "alice"}, `unknown revocation kind "user"`},
		{"empty kind", &Entry{ID: "alice"}, "unknown revocation kind"},
		{"no id", &Entry{Kind: KindClient}, "without an id"},
		{"id too long", &Entry{Kind: KindClient, ID: strings.Repeat("x", MaxIDBytes+1)}, "more than 1024"},
		{"id not utf-8", &Entry{Kind: KindClient, ID: "\xff"}, "not valid UTF-8"},
		{"token not a fingerprint", &Entry{Kind: KindToken, ID: "eyJhbGciOi"}, "not a fingerprint"},
		{"token upper case", &Entry{Kind: KindToken, ID: strings.ToUpper(fp)}, "not a fingerprint"},
		{"token without prefix", &Entry{Kind: KindToken, ID: fp[7:]}, "not a fingerprint"},
		{"reason too long", &Entry{Kind: KindClient, ID: "c", Reason: strings.Repeat("r", MaxReasonBytes+1)}, "reason is 1025 bytes"},
		{"reason two lines", &Entry{Kind: KindClient, ID: "c", Reason: "a\nb"}, "reason must be one line"},
		{"reason line separator", &Entry{Kind: KindClient, ID: "c", Reason: "a\u2028b"}, "reason must be one line"},
		{"by with escape", &Entry{Kind: KindClient, ID: "c", By: "\x1b[31mroot"}, "by must be one line"},
		{"expires before created", &Entry{Kind: KindClient, ID: "c", Created: now, Expires: now.Add(-time.Second)}, "not after its creation"},
		{"expires at created", &Entry{Kind: KindClient, ID: "c", Created: now, Expires: now}, "not after its creation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate: no error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate: %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestActive(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		expires time.Time
		at      time.Time
		want    bool
	}{
		{"no expiry", time.Time{}, now, true},
		{"before", now.Add(time.Nanosecond), now, true},
		{"at expiry", now, now, false},
		{"after", now.Add(-time.Nanosecond), now, false},
	}
	for _, tt := range tests {
		e := &Entry{Kind: KindClient, ID: "c", Expires: tt.expires}
		if got := e.Active(tt.at); got != tt.want {
			t.Errorf("%s: Active = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNormalizeFingerprint(t *testing.T) {
	tests := []struct {
		in, want string // want "" = error
	}{
		{fp, fp},
		{fp[7:], fp},
		{strings.ToUpper(fp), fp},
		{"  " + fp + "\n", fp},
		{"SHA256:" + strings.ToUpper(fp[7:]), fp},
		{"", ""},
		{"sha256:", ""},
		{fp + "0", ""},
		{fp[:len(fp)-1], ""},
		{"sha256:0123456789abcdef0123456789abcdeg", ""},
		{"sha1:0123456789abcdef0123456789abcdef", ""},
		{"sha256:" + strings.Repeat("0", 64), ""}, // the whole digest is not what audit events carry
	}
	for _, tt := range tests {
		got, err := NormalizeFingerprint(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("NormalizeFingerprint(%q) = %q, want an error", tt.in, got)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("NormalizeFingerprint(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeID(t *testing.T) {
	tests := []struct {
		kind     Kind
		id, want string // want "" = error
	}{
		{KindClient, " spaced ", " spaced "},
		{KindSubject, "Alice", "Alice"},
		{KindToken, strings.ToUpper(fp[7:]), fp},
		{KindToken, "nope", ""},
		{KindClient, "", ""},
		{"user", "alice", ""},
	}
	for _, tt := range tests {
		got, err := NormalizeID(tt.kind, tt.id)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("NormalizeID(%s, %q) = %q, want an error", tt.kind, tt.id, got)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("NormalizeID(%s, %q) = %q, %v, want %q", tt.kind, tt.id, got, err, tt.want)
		}
	}
}
