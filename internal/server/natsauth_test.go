package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/natsembed"
)

// Tried as a local attacker would: without the seeds nobody gets in; the
// reader cannot write the audit, and no user can erase it.
func TestEmbeddedNATSPermissions(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	cfg := hConfig(t, iss)
	cfg.Audit.Enabled = nil // on, embedded NATS
	hStart(t, cfg)
	url, err := natsembed.ReadURLFile(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if nc, err := auditsink.Connect(ctx, url, auditsink.ConnectOptions{}); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was let in")
	}
	as := func(role string) (*nats.Conn, jetstream.JetStream) {
		t.Helper()
		nc, err := auditsink.Connect(ctx, url, auditsink.ConnectOptions{NKeySeedFile: natsembed.SeedFile(cfg.DataDir, role)})
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
	_, pdpJS := as(natsembed.RolePDP)
	_, readerJS := as(natsembed.RoleReader)
	_, adminJS := as(natsembed.RoleAdmin)

	// The PDP's user publishes an event (as the PDP does).
	if _, err := pdpJS.Publish(ctx, "mcp.audit.demo.tools/call.allow", []byte(`{"id":"probe"}`), jetstream.WithMsgID("probe")); err != nil {
		t.Fatalf("pdp publish: %v", err)
	}
	msgs := func() uint64 {
		str, err := adminJS.Stream(ctx, auditsink.DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		return str.CachedInfo().State.Msgs
	}
	before := msgs()
	if before == 0 {
		t.Fatal("empty stream")
	}
	// The reader reads...
	n := 0
	if err := auditsink.ReadRaw(ctx, readerJS, auditsink.DefaultStream, func(string, uint64, []byte) error { n++; return nil }); err != nil || uint64(n) != before {
		t.Fatalf("reader read %d of %d: %v", n, before, err)
	}
	// ...and cannot write a fake event.
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = readerJS.Publish(pctx, "mcp.audit.demo.tools/call.allow", []byte(`{"id":"fake","outcome":"allow"}`))
	pcancel()
	if err == nil {
		t.Fatal("the reader published into the audit")
	}
	// Nobody erases: the PDP's user is refused by its permissions, the
	// admin by the stream's deny_delete and deny_purge.
	for role, js := range map[string]jetstream.JetStream{"pdp": pdpJS, "reader": readerJS, "admin": adminJS} {
		ectx, ecancel := context.WithTimeout(ctx, 2*time.Second)
		str, err := js.Stream(ectx, auditsink.DefaultStream)
		if err != nil {
			ecancel()
			t.Fatalf("%s: stream: %v", role, err)
		}
		if err := str.Purge(ectx); err == nil {
			t.Errorf("%s purged the audit", role)
		}
		if err := str.DeleteMsg(ectx, 1); err == nil {
			t.Errorf("%s deleted an audit event", role)
		}
		ecancel()
	}
	for role, js := range map[string]jetstream.JetStream{"pdp": pdpJS, "reader": readerJS} {
		ectx, ecancel := context.WithTimeout(ctx, 2*time.Second)
		err := js.DeleteStream(ectx, auditsink.DefaultStream)
		ecancel()
		if err == nil || errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("%s deleted the audit stream (%v)", role, err)
		}
	}
	if got := msgs(); got < before {
		t.Fatalf("the stream lost events: %d -> %d", before, got)
	}
}
