package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// testNATS starts an embedded JetStream and connects to it as the PDP
// does: reconnecting forever, quickly.
func testNATS(t *testing.T) (*natstest.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv, nc, js
}

// testBucket creates the revocation bucket.
func testBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := OpenBucket(ctx, js, DefaultBucket, true, 1)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// runWatcher runs w until the returned stop is called (or the test ends);
// stop waits for Run and fails the test if it returned an error.
func runWatcher(t *testing.T, w *Watcher, js jetstream.JetStream) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, js) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return stop
}

// testLogger logs as JSON into a buffer the test reads.
func testLogger() (*slog.Logger, *testkit.SyncBuffer) {
	var buf testkit.SyncBuffer
	return slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func put(t *testing.T, kv jetstream.KeyValue, e *Entry) {
	t.Helper()
	if err := Put(context.Background(), kv, e); err != nil {
		t.Fatal(err)
	}
}

func waitSynced(t *testing.T, w *Watcher) {
	t.Helper()
	testkit.WaitFor(t, "the watcher to sync", func() bool { return w.Status().Synced })
}

func TestWatcherInitialSync(t *testing.T) {
	_, _, js := testNATS(t)
	kv := testBucket(t, js)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	cursor := &Entry{Kind: KindClient, ID: "cursor", Reason: "leaked", By: "ops", Created: now}
	alice := &Entry{Kind: KindSubject, ID: "alice", Created: now, Expires: now.Add(time.Hour)}
	tok := &Entry{Kind: KindToken, ID: fp, Created: now}
	gone := &Entry{Kind: KindSubject, ID: "removed-before-start", Created: now}
	damaged := &Entry{Kind: KindClient, ID: "damaged", Created: now}
	for _, e := range []*Entry{cursor, alice, tok, gone, damaged} {
		put(t, kv, e)
	}
	if err := Remove(ctx, kv, KindSubject, gone.ID); err != nil {
		t.Fatal(err)
	}
	// A value damaged in the bucket: the set keeps what it had for it.
	if _, err := kv.Put(ctx, damaged.Key(), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, Key(KindClient, "never-valid"), []byte(`{"kind":"client","id":"other"}`)); err != nil {
		t.Fatal(err)
	}

	// The set as a snapshot left it: an entry since removed from the
	// bucket, and the damaged key's last good value.
	set := NewSet()
	stale := &Entry{Kind: KindClient, ID: "stale", Created: now}
	set.Replace([]*Entry{stale, gone, damaged})
	log, logs := testLogger()
	w := NewWatcher(set, WatcherConfig{Logger: log})
	if st := w.Status(); st.Connected || st.Synced || !st.LastSync.IsZero() || st.Entries != 3 {
		t.Fatalf("status before Run = %+v", st)
	}
	runWatcher(t, w, js)
	waitSynced(t, w)

	if got, want := set.Entries(), []*Entry{cursor, damaged, alice, tok}; !equalEntries(got, want) {
		t.Fatalf("entries after sync = %s, want %s", fmtEntries(got), fmtEntries(want))
	}
	if m := set.Lookup("cursor", "alice", fp); m.Client == nil || m.Subject == nil || m.Token == nil {
		t.Fatalf("Lookup after sync = %+v", m)
	}
	if m := set.Lookup("stale", "removed-before-start", ""); m.Any() {
		t.Fatalf("entries removed from the bucket still found: %+v", m)
	}
	st := w.Status()
	if !st.Connected || !st.Synced || st.LastSync.IsZero() || st.LastError != "" || st.Entries != 4 {
		t.Fatalf("status after sync = %+v", st)
	}
	for _, key := range []string{damaged.Key(), Key(KindClient, "never-valid")} {
		if !strings.Contains(logs.String(), `"key":"`+key+`"`) {
			t.Errorf("no log line names the malformed key %s:\n%s", key, logs.String())
		}
	}
}

func TestWatcherEmptyBucket(t *testing.T) {
	_, _, js := testNATS(t)
	set := NewSet()
	set.Replace([]*Entry{{Kind: KindClient, ID: "from-snapshot"}})
	w := NewWatcher(set, WatcherConfig{Create: true})
	runWatcher(t, w, js)
	waitSynced(t, w)
	if set.Len() != 0 {
		t.Fatalf("after syncing with a new, empty bucket the set holds %s", fmtEntries(set.Entries()))
	}
}

func TestWatcherUpdates(t *testing.T) {
	_, _, js := testNATS(t)
	kv := testBucket(t, js)
	ctx := context.Background()
	set := NewSet()
	log, logs := testLogger()
	w := NewWatcher(set, WatcherConfig{Logger: log})
	reg := prometheus.NewRegistry()
	if err := w.Register(reg); err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w, js)
	waitSynced(t, w)

	// Each change, and how long it took to reach the set (logged only:
	// timing belongs to benchmarks).
	apply := func(what string, change func(), cond func() bool) {
		t.Helper()
		start := time.Now()
		change()
		testkit.WaitFor(t, what, cond)
		t.Logf("%s: applied after %s", what, time.Since(start))
	}
	now := time.Now().UTC()
	cursor := &Entry{Kind: KindClient, ID: "cursor", Reason: "leaked", Created: now}
	apply("put client", func() { put(t, kv, cursor) }, func() bool { return set.Lookup("cursor", "", "").Client != nil })
	apply("put token", func() { put(t, kv, &Entry{Kind: KindToken, ID: fp, Created: now}) }, func() bool { return set.Lookup("", "", fp).Token != nil })
	again := &Entry{Kind: KindClient, ID: "cursor", Reason: "leaked twice", Created: now}
	apply("replace client", func() { put(t, kv, again) }, func() bool {
		c := set.Lookup("cursor", "", "").Client
		return c != nil && c.Reason == "leaked twice"
	})
	apply("remove client", func() {
		if err := Remove(ctx, kv, KindClient, "cursor"); err != nil {
			t.Fatal(err)
		}
	}, func() bool { return set.Lookup("cursor", "", "").Client == nil })

	// Malformed values are logged naming the key and skipped: the watch
	// goes on, and a damaged value does not lift the revocation it
	// replaces.
	put(t, kv, cursor)
	testkit.WaitFor(t, "cursor revoked again", func() bool { return set.Lookup("cursor", "", "").Client != nil })
	malformed := []struct{ key, value string }{
		{cursor.Key(), "{not json"},
		{Key(KindSubject, "bob"), `{"kind":"subject","id":"mallory"}`},
		{Key(KindSubject, "carol"), `{"kind":"client","id":"carol"}`},
		{Key(KindToken, "tok"), `{"kind":"token","id":"tok"}`},
		{"client.YR", `{"kind":"client","id":"a"}`},
		{"nokind", `{}`},
		{"user.YQ", `{"kind":"user","id":"a"}`},
	}
	for _, m := range malformed {
		if _, err := kv.Put(ctx, m.key, []byte(m.value)); err != nil {
			t.Fatalf("put %s: %v", m.key, err)
		}
	}
	apply("put after malformed values", func() { put(t, kv, &Entry{Kind: KindSubject, ID: "dave", Created: now}) },
		func() bool { return set.Lookup("", "dave", "").Subject != nil })
	for _, m := range malformed {
		if !strings.Contains(logs.String(), `"key":"`+m.key+`"`) {
			t.Errorf("no log line names the malformed key %s", m.key)
		}
	}
	if c := set.Lookup("cursor", "", "").Client; c == nil || c.Reason != "leaked" {
		t.Fatalf("a malformed value replaced the revocation of cursor: %+v", c)
	}
	if got := set.Lookup("mallory", "bob", "").Any(); got {
		t.Fatal("a value for another id was applied")
	}
	if st := w.Status(); !st.Synced || st.Entries != 3 {
		t.Fatalf("status = %+v, want synced with 3 entries (cursor, token, dave)", st)
	}
	if got := metricValue(t, reg, "mcp_pdp_revocation_malformed_total"); got != float64(len(malformed)) {
		t.Errorf("malformed_total = %v, want %d", got, len(malformed))
	}
	if got := metricValue(t, reg, "mcp_pdp_revocation_updates_total"); got != 6 {
		t.Errorf("updates_total = %v, want 6", got)
	}
	if got := metricValue(t, reg, "mcp_pdp_revocations"); got != 3 {
		t.Errorf("mcp_pdp_revocations = %v, want 3", got)
	}
	if got := metricValue(t, reg, "mcp_pdp_revocations_synced"); got != 1 {
		t.Errorf("mcp_pdp_revocations_synced = %v, want 1", got)
	}
}

// metricValue is the value of the metric name (a gauge or a counter
// without labels) gathered from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func itoa(i int) string { return strconv.Itoa(i) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A burst of changes is applied in full (in batches).
func TestWatcherBurst(t *testing.T) {
	_, _, js := testNATS(t)
	kv := testBucket(t, js)
	set := NewSet()
	w := NewWatcher(set, WatcherConfig{})
	runWatcher(t, w, js)
	waitSynced(t, w)
	ctx := context.Background()
	const n = 1000
	start := time.Now()
	for i := range n {
		e := &Entry{Kind: KindSubject, ID: "user-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i)}
		data := mustJSON(t, e)
		if _, err := kv.Put(ctx, e.Key(), data); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, "1000 revocations", func() bool { return set.Len() == n })
	t.Logf("%d puts applied %s after the first was sent; %d versions of the set", n, time.Since(start), set.Version())
}

// A key deleted while the watcher was stopped is gone after it starts
// again, and a key put meanwhile is there.
func TestWatcherDeletedWhileDown(t *testing.T) {
	_, _, js := testNATS(t)
	kv := testBucket(t, js)
	ctx := context.Background()
	set := NewSet()
	put(t, kv, &Entry{Kind: KindClient, ID: "a"})
	put(t, kv, &Entry{Kind: KindClient, ID: "b"})
	w := NewWatcher(set, WatcherConfig{})
	stop := runWatcher(t, w, js)
	waitSynced(t, w)
	if set.Len() != 2 {
		t.Fatalf("entries = %s", fmtEntries(set.Entries()))
	}
	stop()
	if st := w.Status(); st.Connected || st.Synced {
		t.Fatalf("status after Run returned = %+v", st)
	}
	if err := Remove(ctx, kv, KindClient, "a"); err != nil {
		t.Fatal(err)
	}
	put(t, kv, &Entry{Kind: KindSubject, ID: "c"})
	if set.Len() != 2 {
		t.Fatal("the set changed while no watcher ran")
	}
	w2 := NewWatcher(set, WatcherConfig{})
	runWatcher(t, w2, js)
	waitSynced(t, w2)
	if got, want := set.Entries(), []*Entry{{Kind: KindClient, ID: "b"}, {Kind: KindSubject, ID: "c"}}; !equalEntries(got, want) {
		t.Fatalf("entries after the restart = %s, want %s", fmtEntries(got), fmtEntries(want))
	}
}

// NATS stops: the watcher reports it, keeps its set, and resyncs in full
// when NATS is back.
func TestWatcherNATSRestart(t *testing.T) {
	srv, _, js := testNATS(t)
	kv := testBucket(t, js)
	put(t, kv, &Entry{Kind: KindClient, ID: "a"})
	set := NewSet()
	reg := prometheus.NewRegistry()
	w := NewWatcher(set, WatcherConfig{RetryMax: time.Second})
	if err := w.Register(reg); err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w, js)
	waitSynced(t, w)

	srv.Stop()
	testkit.WaitFor(t, "the watcher to report NATS down", func() bool {
		st := w.Status()
		return !st.Connected && !st.Synced && st.LastError != ""
	})
	st := w.Status()
	t.Logf("status while NATS is down: %+v", st)
	if st.Entries != 1 || !set.Lookup("a", "", "").Any() {
		t.Fatalf("the set lost its entries while NATS is down: %s", fmtEntries(set.Entries()))
	}
	if got := metricValue(t, reg, "mcp_pdp_revocations_synced"); got != 0 {
		t.Errorf("mcp_pdp_revocations_synced = %v while down", got)
	}

	srv.Restart()
	testkit.WaitFor(t, "the watcher to resync", func() bool { return w.Status().Synced })
	if got := metricValue(t, reg, "mcp_pdp_revocation_syncs_total"); got < 2 {
		t.Errorf("syncs_total = %v after a reconnection, want at least 2", got)
	}
	// The watch goes on after the resync.
	kv2, err := js.KeyValue(context.Background(), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := Remove(context.Background(), kv2, KindClient, "a"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the removal after the resync", func() bool { return set.Len() == 0 })
	if st := w.Status(); st.LastError != "" {
		t.Errorf("LastError after the resync = %q", st.LastError)
	}
}

// The bucket does not exist and the watcher may not create it: an error
// in the status, retried until it appears.
func TestWatcherMissingBucket(t *testing.T) {
	_, _, js := testNATS(t)
	set := NewSet()
	set.Replace([]*Entry{{Kind: KindClient, ID: "from-snapshot"}})
	w := NewWatcher(set, WatcherConfig{Bucket: "other_bucket", RetryMin: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	runWatcher(t, w, js)
	testkit.WaitFor(t, "the missing bucket reported", func() bool { return strings.Contains(w.Status().LastError, "does not exist") })
	if set.Len() != 1 {
		t.Fatal("the set changed without a sync")
	}
	ctx := context.Background()
	kv, err := OpenBucket(ctx, js, "other_bucket", true, 1)
	if err != nil {
		t.Fatal(err)
	}
	put(t, kv, &Entry{Kind: KindSubject, ID: "x"})
	waitSynced(t, w)
	if got, want := set.Entries(), []*Entry{{Kind: KindSubject, ID: "x"}}; !equalEntries(got, want) {
		t.Fatalf("entries = %s, want %s", fmtEntries(got), fmtEntries(want))
	}
}

func TestWatcherRunErrors(t *testing.T) {
	_, nc, js := testNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := NewWatcher(nil, WatcherConfig{}).Run(ctx, nil); err == nil {
		t.Error("Run without JetStream: no error")
	}
	if err := NewWatcher(nil, WatcherConfig{Bucket: "bad bucket*", Create: true}).Run(ctx, js); !errors.Is(err, jetstream.ErrInvalidBucketName) {
		t.Errorf("Run with an invalid bucket name: %v", err)
	}
	w := NewWatcher(nil, WatcherConfig{Create: true})
	stop := runWatcher(t, w, js)
	waitSynced(t, w)
	if err := w.Run(ctx, js); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v", err)
	}
	stop()
	// The connection closed under a running watcher: Run returns an error.
	w2 := NewWatcher(nil, WatcherConfig{Create: true})
	done := make(chan error, 1)
	go func() { done <- w2.Run(ctx, js) }()
	waitSynced(t, w2)
	nc.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("Run after the connection closed: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return after the connection closed")
	}
}

// Expired entries are swept from the set (and the snapshot) when their
// expiry passes; Lookup ignores them from that instant on.
func TestWatcherSweeps(t *testing.T) {
	_, _, js := testNATS(t)
	kv := testBucket(t, js)
	now := time.Now()
	short := &Entry{Kind: KindClient, ID: "short", Created: now, Expires: now.Add(300 * time.Millisecond)}
	put(t, kv, short)
	put(t, kv, &Entry{Kind: KindClient, ID: "long", Created: now, Expires: now.Add(time.Hour)})
	set := NewSet()
	w := NewWatcher(set, WatcherConfig{SnapshotFile: filepath.Join(t.TempDir(), "revocations.json")})
	runWatcher(t, w, js)
	waitSynced(t, w)
	if set.LookupAt(short.Expires.Add(-time.Millisecond), "short", "", "").Client == nil {
		t.Fatal("the short revocation does not apply before its expiry")
	}
	testkit.WaitFor(t, "the expired entry swept", func() bool { return set.Len() == 1 })
	if time.Now().Before(short.Expires) {
		t.Fatal("swept before its expiry")
	}
	if set.Lookup("short", "", "").Any() || !set.Lookup("long", "", "").Any() {
		t.Fatalf("after the sweep: %s", fmtEntries(set.Entries()))
	}
	testkit.WaitFor(t, "the snapshot without the expired entry", func() bool {
		es, err := LoadSnapshot(w.cfg.SnapshotFile)
		return err == nil && len(es) == 1 && es[0].ID == "long"
	})
}

func TestOpenBucket(t *testing.T) {
	_, _, js := testNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := OpenBucket(ctx, js, "absent", false, 1); !errors.Is(err, jetstream.ErrBucketNotFound) || !strings.Contains(err.Error(), "absent") {
		t.Fatalf("OpenBucket of a missing bucket without create: %v", err)
	}
	kv, err := OpenBucket(ctx, js, "created", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 1 || st.TTL() != 0 || st.Bucket() != "created" {
		t.Fatalf("bucket config: history %d, ttl %s, name %s", st.History(), st.TTL(), st.Bucket())
	}
	if _, err := OpenBucket(ctx, js, "created", true, 1); err != nil {
		t.Fatalf("OpenBucket of an existing bucket: %v", err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "with_ttl", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBucket(ctx, js, "with_ttl", false, 1); err == nil || !strings.Contains(err.Error(), "TTL") {
		t.Fatalf("OpenBucket of a bucket with a TTL: %v", err)
	}
	if cfg := BucketConfig(3); cfg.Replicas != 3 || cfg.Bucket != DefaultBucket || cfg.TTL != 0 || cfg.History != 1 {
		t.Fatalf("BucketConfig(3) = %+v", cfg)
	}
}

// Ids an attacker controls (dots, wildcards, spaces, Unicode, the longest)
// go through the bucket and the watcher unchanged, and match only
// themselves.
func TestHostileIDsRoundTrip(t *testing.T) {
	_, _, js := testNATS(t)
	kv := testBucket(t, js)
	ctx := context.Background()
	set := NewSet()
	w := NewWatcher(set, WatcherConfig{})
	runWatcher(t, w, js)
	waitSynced(t, w)
	ids := hostileIDs()
	var want []*Entry
	for _, id := range ids {
		for _, kind := range []Kind{KindClient, KindSubject} {
			e := &Entry{Kind: kind, ID: id, Reason: "hostile"}
			put(t, kv, e)
			want = append(want, e)
		}
	}
	SortEntries(want)
	testkit.WaitFor(t, "every hostile id applied", func() bool { return set.Len() == len(want) })
	if got := set.Entries(); !equalEntries(got, want) {
		t.Fatalf("entries in the set differ from those put")
	}
	listed, err := List(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	if !equalEntries(listed, want) {
		t.Fatal("List differs from what was put")
	}
	for _, id := range ids {
		if m := set.Lookup(id, id, ""); m.Client == nil || m.Client.ID != id || m.Subject == nil || m.Subject.ID != id {
			t.Errorf("Lookup(%q) = %+v", id, m)
		}
	}
	// A wildcard id is not a wildcard.
	if m := set.Lookup("anything", "a.b.c.d", ""); m.Any() {
		t.Errorf("a wildcard id matched another: %+v", m)
	}
	for _, id := range ids {
		if err := Remove(ctx, kv, KindClient, id); err != nil {
			t.Fatalf("Remove(%q): %v", id, err)
		}
	}
	testkit.WaitFor(t, "the client revocations removed", func() bool { return set.Len() == len(ids) })
	if m := set.Lookup(ids[0], "", ""); m.Any() {
		t.Fatal("a removed hostile id still matches")
	}
}

func TestAdmin(t *testing.T) {
	_, _, js := testNATS(t)
	kv := testBucket(t, js)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	a := &Entry{Kind: KindClient, ID: "a", Reason: "r", By: "me", Created: now, Expires: now.Add(time.Hour)}
	put(t, kv, a)
	// The largest entry JSON can make fits the bucket's value limit.
	huge := &Entry{Kind: KindSubject, ID: strings.Repeat("\x00", MaxIDBytes), Reason: strings.Repeat("<", MaxReasonBytes), By: strings.Repeat("&", MaxReasonBytes), Created: now}
	put(t, kv, huge)
	if err := Remove(ctx, kv, KindSubject, huge.ID); err != nil {
		t.Fatal(err)
	}
	if err := Put(ctx, kv, &Entry{Kind: KindToken, ID: "not-a-fingerprint"}); err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("Put of an invalid entry: %v", err)
	}
	if err := Remove(ctx, kv, KindClient, "absent"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"absent"`) {
		t.Fatalf("Remove of an absent revocation: %v", err)
	}
	if err := Remove(ctx, kv, "user", "a"); err == nil {
		t.Fatal("Remove of an unknown kind: no error")
	}
	if _, err := kv.Put(ctx, Key(KindSubject, "bad"), []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	es, err := List(ctx, kv)
	if err == nil || !strings.Contains(err.Error(), Key(KindSubject, "bad")) {
		t.Fatalf("List with a malformed value: err %v", err)
	}
	if len(es) != 1 || !es[0].Created.Equal(a.Created) || !es[0].Expires.Equal(a.Expires) || es[0].Reason != "r" || es[0].By != "me" {
		t.Fatalf("List = %+v", es)
	}
	// A malformed value is removed by its key.
	if err := Remove(ctx, kv, KindSubject, "bad"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(ctx, kv, KindClient, "a"); err != nil {
		t.Fatal(err)
	}
	if es, err := List(ctx, kv); err != nil || len(es) != 0 {
		t.Fatalf("List after removing everything = %v, %v", es, err)
	}
	if err := Remove(ctx, kv, KindClient, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestSnapshotWrittenAndReloaded(t *testing.T) {
	_, _, js := testNATS(t)
	kv := testBucket(t, js)
	dir := t.TempDir()
	path := filepath.Join(dir, "revocations.json")
	now := time.Now().UTC()
	put(t, kv, &Entry{Kind: KindClient, ID: "a", Created: now})
	set := NewSet()
	w := NewWatcher(set, WatcherConfig{SnapshotFile: path})
	stop := runWatcher(t, w, js)
	waitSynced(t, w)
	testkit.WaitFor(t, "the snapshot after the sync", func() bool {
		es, err := LoadSnapshot(path)
		return err == nil && len(es) == 1
	})
	start := time.Now()
	put(t, kv, &Entry{Kind: KindSubject, ID: "b", Reason: "why", Created: now, Expires: now.Add(time.Hour)})
	testkit.WaitFor(t, "the put in the snapshot", func() bool {
		es, err := LoadSnapshot(path)
		return err == nil && len(es) == 2
	})
	t.Logf("a put reached the snapshot file after %s", time.Since(start))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %v, want 0600", fi.Mode().Perm())
	}
	stop()
	if st := w.Status(); st.LastSnapshot.IsZero() || st.SnapshotError != "" {
		t.Errorf("status = %+v", st)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 1 {
		t.Errorf("files in the snapshot directory: %v, want only the snapshot", files)
	}

	// A restart while NATS is down: the snapshot has every revocation.
	es, err := LoadSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	restarted := NewSet()
	restarted.Replace(es)
	if !equalEntries(restarted.Entries(), set.Entries()) {
		t.Fatalf("reloaded %s, want %s", fmtEntries(restarted.Entries()), fmtEntries(set.Entries()))
	}
}

// A burst of changes is written in a few files, not one per change, and
// the last state is on disk soon after.
func TestSnapshotCoalesced(t *testing.T) {
	_, _, js := testNATS(t)
	testBucket(t, js)
	path := filepath.Join(t.TempDir(), "revocations.json")
	set := NewSet()
	w := NewWatcher(set, WatcherConfig{SnapshotFile: path})
	runWatcher(t, w, js)
	waitSynced(t, w)
	testkit.WaitFor(t, "the first snapshot", func() bool { return w.snapshots.Load() == 1 })
	const n = 1000
	start := time.Now()
	for i := range n {
		set.Apply(Change{Entry: &Entry{Kind: KindSubject, ID: "user-" + itoa(i)}})
	}
	testkit.WaitFor(t, "the burst in the snapshot", func() bool {
		es, err := LoadSnapshot(path)
		return err == nil && len(es) == n
	})
	writes := w.snapshots.Load() - 1
	t.Logf("%d changes: %d snapshot writes, the last on disk %s after the first change", n, writes, time.Since(start))
	if writes > n/10 {
		t.Errorf("%d changes written in %d files", n, writes)
	}
}

func TestSnapshotWriteError(t *testing.T) {
	set := NewSet()
	path := filepath.Join(t.TempDir(), "missing-dir", "revocations.json")
	log, logs := testLogger()
	w := NewWatcher(set, WatcherConfig{SnapshotFile: path, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	written := set.Version()
	go func() {
		defer close(done)
		w.writeSnapshots(ctx, written)
	}()
	set.Apply(Change{Entry: &Entry{Kind: KindClient, ID: "a"}})
	testkit.WaitFor(t, "the write error reported", func() bool { return w.Status().SnapshotError != "" })
	if !strings.Contains(w.Status().SnapshotError, path) || !strings.Contains(logs.String(), "cannot write the snapshot") {
		t.Errorf("status %+v, logs %s", w.Status(), logs.String())
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the retried write", func() bool { return w.Status().SnapshotError == "" })
	cancel()
	<-done
	if es, err := LoadSnapshot(path); err != nil || len(es) != 1 {
		t.Fatalf("LoadSnapshot = %v, %v", es, err)
	}
}

// Run's end writes the change not yet on disk.
func TestSnapshotFlushedAtStop(t *testing.T) {
	set := NewSet()
	path := filepath.Join(t.TempDir(), "revocations.json")
	w := NewWatcher(set, WatcherConfig{SnapshotFile: path, SnapshotInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	written := set.Version()
	go func() {
		defer close(done)
		w.writeSnapshots(ctx, written)
	}()
	set.Apply(Change{Entry: &Entry{Kind: KindClient, ID: "a"}})
	testkit.WaitFor(t, "the first write", func() bool { return w.snapshots.Load() == 1 })
	set.Apply(Change{Entry: &Entry{Kind: KindClient, ID: "b"}}) // waits an hour
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
	if es, err := LoadSnapshot(path); err != nil || len(es) != 2 {
		t.Fatalf("LoadSnapshot after stop = %s, %v", fmtEntries(es), err)
	}
}

func TestLoadSnapshot(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	now := time.Now().UTC()
	want := []*Entry{{Kind: KindClient, ID: "a", Created: now}, {Kind: KindToken, ID: fp, Reason: "r", Expires: now.Add(time.Hour)}}
	if err := WriteSnapshot(good, want); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	emptyOK := filepath.Join(dir, "empty-set.json")
	if err := WriteSnapshot(emptyOK, nil); err != nil {
		t.Fatal(err)
	}
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		testkit.WriteFile(t, p, content)
		return p
	}
	tests := []struct {
		name    string
		path    string
		want    []*Entry
		wantErr string
	}{
		{"written", good, want, ""},
		{"empty set", emptyOK, nil, ""},
		{"missing", filepath.Join(dir, "absent.json"), nil, ""},
		{"truncated", file("truncated.json", string(data[:len(data)/2])), nil, "is corrupt"},
		{"empty file", file("empty.json", ""), nil, "is corrupt"},
		{"not json", file("garbage.json", "\x00\x01garbage"), nil, "is corrupt"},
		{"trailing data", file("trailing.json", string(data)+"{}"), nil, "data after"},
		{"other format", file("format.json", `{"format":"something else","entries":[]}`), nil, "format"},
		{"invalid entry", file("invalid.json", `{"format":"`+snapshotFormat+`","entries":[{"kind":"token","id":"x"}]}`), nil, "entry 0"},
		{"null entry", file("null.json", `{"format":"`+snapshotFormat+`","entries":[null]}`), nil, "entry 0"},
		{"a directory", dir, nil, dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadSnapshot(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.path) {
					t.Fatalf("LoadSnapshot: %v, want an error naming %s with %q", err, tt.path, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("LoadSnapshot = %s, want %s", fmtEntries(got), fmtEntries(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Kind != w.Kind || g.ID != w.ID || g.Reason != w.Reason || !g.Created.Equal(w.Created) || !g.Expires.Equal(w.Expires) {
					t.Fatalf("entry %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}
