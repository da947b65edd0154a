package quota

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

func TestStreamConfig(t *testing.T) {
	sc := StreamConfig(Config{})
	if sc.Name != DefaultStream || len(sc.Subjects) != 1 || sc.Subjects[0] != "pdp.quota.>" || !sc.AllowMsgCounter || !sc.AllowDirect ||
		sc.Storage != jetstream.FileStorage || sc.Retention != jetstream.LimitsPolicy || sc.Discard != jetstream.DiscardOld ||
		sc.MaxMsgsPerSubject != 1 || sc.MaxMsgs != -1 || sc.MaxBytes != -1 || sc.MaxAge != DefaultMaxAge || sc.Replicas != 1 {
		t.Fatalf("%+v", sc)
	}
	if sc := StreamConfig(Config{Stream: "Q", Prefix: "acme.q", Replicas: 3, MaxAge: 40 * 24 * time.Hour}); sc.Name != "Q" ||
		sc.Subjects[0] != "acme.q.>" || sc.Replicas != 3 || sc.MaxAge != 40*24*time.Hour {
		t.Fatalf("%+v", sc)
	}
}

// TestEnsureStream: creation, idempotence, and what an existing stream
// gets: brought up to the configuration, left alone (never weakened), or
// refused as unfit.
func TestEnsureStream(t *testing.T) {
	srv := natstest.Start(t)
	nc := connect(t, srv.URL())
	js := newJS(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	base := func(name string) jetstream.StreamConfig {
		sc := StreamConfig(Config{Stream: name, Prefix: strings.ToLower(name)})
		return sc
	}
	tests := []struct {
		name     string
		existing func(sc jetstream.StreamConfig) jetstream.StreamConfig // nil: none
		cfg      Config
		kept     bool   // ErrStreamKept
		refused  string // an error containing this
		check    func(t *testing.T, have jetstream.StreamConfig)
	}{
		{name: "CREATED", check: func(t *testing.T, have jetstream.StreamConfig) {
			if !have.AllowMsgCounter || !have.AllowDirect || have.MaxMsgsPerSubject != 1 || have.MaxAge != DefaultMaxAge {
				t.Fatalf("%+v", have)
			}
		}},
		{name: "SAME", existing: func(sc jetstream.StreamConfig) jetstream.StreamConfig { return sc }},
		{name: "LONGER", existing: func(sc jetstream.StreamConfig) jetstream.StreamConfig {
			sc.MaxAge = 40 * 24 * time.Hour
			return sc
		}, kept: true, check: func(t *testing.T, have jetstream.StreamConfig) {
			if have.MaxAge != 40*24*time.Hour {
				t.Fatalf("max age changed to %v", have.MaxAge)
			}
		}},
		{name: "FOREVER", existing: func(sc jetstream.StreamConfig) jetstream.StreamConfig {
			sc.MaxAge = 0
			return sc
		}, kept: true},
		{name: "UPGRADED", existing: func(sc jetstream.StreamConfig) jetstream.StreamConfig {
			sc.MaxAge = 33 * 24 * time.Hour
			sc.AllowDirect = false
			sc.Description = ""
			return sc
		}, check: func(t *testing.T, have jetstream.StreamConfig) {
			if have.MaxAge != DefaultMaxAge || !have.AllowDirect || have.Description == "" {
				t.Fatalf("not brought up: %+v", have)
			}
		}},
		{name: "TOOSHORT", existing: func(sc jetstream.StreamConfig) jetstream.StreamConfig {
			sc.MaxAge = 24 * time.Hour
			return sc
		}, check: func(t *testing.T, have jetstream.StreamConfig) {
			if have.MaxAge != DefaultMaxAge {
				t.Fatalf("max age %v", have.MaxAge)
			}
		}},
		{name: "OTHERSUBJECTS", existing: func(sc jetstream.StreamConfig) jetstream.StreamConfig {
			sc.Subjects = []string{"elsewhere.>"}
			return sc
		}, check: func(t *testing.T, have jetstream.StreamConfig) {
			if len(have.Subjects) != 2 || have.Subjects[1] != "othersubjects.>" {
				t.Fatalf("subjects %v", have.Subjects)
			}
		}},
		{name: "PLAIN", existing: func(sc jetstream.StreamConfig) jetstream.StreamConfig {
			sc.AllowMsgCounter = false
			return sc
		}, refused: "not a counter stream"},
		{name: "BOUNDED", existing: func(sc jetstream.StreamConfig) jetstream.StreamConfig {
			sc.MaxBytes = 1 << 20
			return sc
		}, refused: "max_bytes 1048576"},
		{name: "MEMORY", existing: func(sc jetstream.StreamConfig) jetstream.StreamConfig {
			sc.Storage = jetstream.MemoryStorage
			return sc
		}, kept: true},
		{name: "MEMORYSHORT", existing: func(sc jetstream.StreamConfig) jetstream.StreamConfig {
			sc.Storage = jetstream.MemoryStorage
			sc.MaxAge = time.Hour
			return sc
		}, refused: "max_age 1h0m0s is shorter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Stream, cfg.Prefix = tt.name, strings.ToLower(tt.name)
			if tt.existing != nil {
				if _, err := js.CreateStream(ctx, tt.existing(base(tt.name))); err != nil {
					t.Fatalf("set up: %v", err)
				}
			}
			err := EnsureStream(ctx, js, cfg)
			switch {
			case tt.refused != "":
				if err == nil || errors.Is(err, ErrStreamKept) || !strings.Contains(err.Error(), tt.refused) || !strings.Contains(err.Error(), tt.name) {
					t.Fatalf("err %v, want one saying %q", err, tt.refused)
				}
			case tt.kept:
				var ke *StreamKeptError
				if !errors.Is(err, ErrStreamKept) || !errors.As(err, &ke) || ke.Stream != tt.name || len(ke.Weaker) == 0 {
					t.Fatalf("err %v, want the stream kept", err)
				}
				t.Logf("%v", err)
			case err != nil:
				t.Fatal(err)
			}
			str, err := js.Stream(ctx, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, str.CachedInfo().Config)
			}
			if tt.refused != "" || tt.kept {
				return
			}
			// Usable, and a second call changes nothing.
			if err := EnsureStream(ctx, js, cfg); err != nil {
				t.Fatalf("second call: %v", err)
			}
			c := mustNew(t, nc, cfg)
			if res, err := c.Take(ctx, Rule{Limit: 1, Period: Day}, "k", time.Now()); err != nil || !res.Allowed {
				t.Fatalf("take: %+v, %v", res, err)
			}
		})
	}
	if err := EnsureStream(ctx, nil, Config{}); err == nil {
		t.Fatal("no JetStream")
	}
	if err := EnsureStream(ctx, js, Config{MaxAge: time.Hour}); err == nil || !strings.Contains(err.Error(), "shorter than the minimum") {
		t.Fatalf("short max age: %v", err)
	}
}

// TestPermissions: the NATS permissions docs/operations.md gives are
// enough: a PDP user counts with publish on the counter subjects and
// subscribe on its inbox; creating the stream takes three JetStream API
// subjects more.
func TestPermissions(t *testing.T) {
	user := func(t *testing.T) (nkeys.KeyPair, string) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		return kp, pub
	}
	counting, countingPub := user(t)
	managing, managingPub := user(t)
	inbox := &server.SubjectPermission{Allow: []string{"_INBOX.>"}}
	srv, err := natsembed.Start(context.Background(), natsembed.Options{
		StoreDir: filepath.Join(t.TempDir(), "js"), Port: natsembed.RandomPort,
		Users: []*server.NkeyUser{
			{Nkey: countingPub, Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"pdp.quota.>"}},
				Subscribe: inbox,
			}},
			{Nkey: managingPub, Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{"pdp.quota.>",
					"$JS.API.STREAM.INFO.PDP_QUOTAS", "$JS.API.STREAM.CREATE.PDP_QUOTAS", "$JS.API.STREAM.UPDATE.PDP_QUOTAS"}},
				Subscribe: inbox,
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	as := func(kp nkeys.KeyPair, pub string) *nats.Conn {
		return connect(t, srv.ClientURL(), nats.Nkey(pub, kp.Sign), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rule := Rule{Limit: 2, Period: Day}
	now := time.Now()

	cnc := as(counting, countingPub)
	denied, cancelDenied := context.WithTimeout(ctx, 500*time.Millisecond) // a denied request goes unanswered
	defer cancelDenied()
	if err := EnsureStream(denied, newJS(t, cnc), Config{}); err == nil {
		t.Fatal("a user without the stream API created the stream")
	}
	mnc := as(managing, managingPub)
	if err := EnsureStream(ctx, newJS(t, mnc), Config{}); err != nil {
		t.Fatalf("the managing user: %v", err)
	}
	if err := EnsureStream(ctx, newJS(t, mnc), Config{}); err != nil {
		t.Fatalf("the managing user, again: %v", err)
	}
	c := mustNew(t, cnc, Config{})
	for i, want := range []bool{true, true, false} {
		res, err := c.Take(ctx, rule, "k", now)
		if err != nil || res.Allowed != want {
			t.Fatalf("take %d: %+v, %v", i+1, res, err)
		}
	}
	if err := c.Refund(ctx, rule, "k", now); err != nil {
		t.Fatal(err)
	}
	if used, err := c.Used(ctx, rule, "k", now); err != nil || used != 1 {
		t.Fatalf("used %d, %v", used, err)
	}
}
