package auditsink

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// The stream the sink creates cannot lose an event to a delete or purge,
// and an existing stream is brought to the configuration only where that
// does not weaken it.
func TestStreamHardening(t *testing.T) {
	base := StreamConfig(Config{})
	tests := []struct {
		name     string
		existing *jetstream.StreamConfig // nil: none
		cfg      func(*Config)
		wantErr  string
		check    func(t *testing.T, got jetstream.StreamConfig)
	}{
		{name: "created hardened", check: func(t *testing.T, got jetstream.StreamConfig) {
			if !got.DenyDelete || !got.DenyPurge {
				t.Fatalf("deny_delete %v deny_purge %v", got.DenyDelete, got.DenyPurge)
			}
		}},
		{name: "an operator's hardened stream is used", existing: func() *jetstream.StreamConfig {
			c := base
			c.MaxBytes = 1 << 30
			return &c
		}(), check: func(t *testing.T, got jetstream.StreamConfig) {
			if !got.DenyDelete || !got.DenyPurge || got.MaxBytes != 1<<30 {
				t.Fatalf("%+v", got)
			}
		}},
		{name: "an old soft stream is hardened", existing: func() *jetstream.StreamConfig {
			c := base
			c.DenyDelete, c.DenyPurge = false, false
			return &c
		}(), check: func(t *testing.T, got jetstream.StreamConfig) {
			if !got.DenyDelete || !got.DenyPurge {
				t.Fatalf("%+v", got)
			}
		}},
		{name: "a shorter retention is not applied", existing: &base, cfg: func(c *Config) { c.MaxAge = time.Hour },
			check: func(t *testing.T, got jetstream.StreamConfig) {
				if got.MaxAge != 0 {
					t.Fatalf("max_age %s: the PDP shortened the retention", got.MaxAge)
				}
			}},
		{name: "a longer retention is applied", existing: func() *jetstream.StreamConfig {
			c := base
			c.MaxAge = time.Hour
			return &c
		}(), cfg: func(c *Config) { c.MaxAge = 48 * time.Hour },
			check: func(t *testing.T, got jetstream.StreamConfig) {
				if got.MaxAge != 48*time.Hour {
					t.Fatalf("max_age %s", got.MaxAge)
				}
			}},
		{name: "unmanaged: used as it is", existing: func() *jetstream.StreamConfig {
			c := base
			c.DenyDelete, c.DenyPurge, c.MaxAge = false, false, time.Hour
			return &c
		}(), cfg: func(c *Config) { c.SkipStreamSetup = true },
			check: func(t *testing.T, got jetstream.StreamConfig) {
				if got.DenyDelete || got.MaxAge != time.Hour {
					t.Fatalf("an unmanaged stream was changed: %+v", got)
				}
			}},
		{name: "unmanaged: missing", cfg: func(c *Config) { c.SkipStreamSetup = true }, wantErr: "must exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := natstest.Start(t)
			nc := connect(t, n.URL())
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t)
			if tc.existing != nil {
				if _, err := js.CreateStream(ctx, *tc.existing); err != nil {
					t.Fatal(err)
				}
			}
			cfg := baseConfig(t, t.TempDir())
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			s, err := New(ctx, cfg, nc)
			if tc.wantErr != "" {
				if err == nil {
					_ = s.Close(context.Background())
					t.Fatal("New succeeded")
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close(context.Background()) })
			recordN(t, s, 0, 3)
			waitDrained(t, s)
			str, err := js.Stream(ctx, DefaultStream)
			if err != nil {
				t.Fatal(err)
			}
			got := str.CachedInfo().Config
			tc.check(t, got)
			if got.DenyDelete {
				if err := str.DeleteMsg(ctx, 1); err == nil {
					t.Fatal("a message of a deny_delete stream was deleted")
				}
			}
			if got.DenyPurge {
				if err := str.Purge(ctx); err == nil {
					t.Fatal("a deny_purge stream was purged")
				}
			}
			if info, err := str.Info(ctx); err != nil || info.State.Msgs != 3 {
				t.Fatalf("stream holds %d messages (%v), want 3", info.State.Msgs, err)
			}
		})
	}
}
