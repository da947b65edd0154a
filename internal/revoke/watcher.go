package revoke

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// The watcher's defaults.
const (
	DefaultRetryMin         = 250 * time.Millisecond
	DefaultRetryMax         = 10 * time.Second
	DefaultSweepInterval    = time.Minute
	DefaultSnapshotInterval = 50 * time.Millisecond
	DefaultStallCheck       = 250 * time.Millisecond
	// openTimeout bounds each step of binding the bucket and starting the
	// watch, plus the current retry delay: short at first, so that a
	// request lost in a cluster's leader election (a node just died) is
	// retried within a second or two rather than after ten.
	openTimeout    = time.Second
	maxOpenTimeout = 10 * time.Second
	// maxBatch bounds the updates applied as one version of the set.
	maxBatch = 1024
)

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// Bucket is the key-value bucket ("" = DefaultBucket).
	Bucket string
	// SnapshotFile, when set, receives the set after every change
	// (WriteSnapshot), so that LoadSnapshot finds it at the next start.
	SnapshotFile string
	// Logger receives the changes, malformed values and connection
	// problems (nil = discard).
	Logger *slog.Logger
	// Create creates the bucket when it does not exist (BucketConfig with
	// Replicas); otherwise a missing bucket is an error, retried.
	Create   bool
	Replicas int
	// RetryMin and RetryMax bound the backoff between two attempts to
	// watch (0 = DefaultRetryMin, DefaultRetryMax); a reconnection of the
	// NATS connection retries at once.
	RetryMin, RetryMax time.Duration
	// SweepInterval is the longest time between two sweeps of expired
	// entries (0 = DefaultSweepInterval); an expiry sooner than that is
	// swept when it passes. Lookup ignores an expired entry anyway: the
	// sweep only frees it (and updates the metrics and the snapshot).
	SweepInterval time.Duration
	// SnapshotInterval is the least time between two snapshot writes (0 =
	// DefaultSnapshotInterval): a burst of changes is written once, the
	// last state, at most this long after it started.
	SnapshotInterval time.Duration
	// StallCheck is how often the watcher compares the bucket's last
	// revision with the last one its watch delivered (0 =
	// DefaultStallCheck). A watch that is still behind a revision one
	// check later is restarted: the ordered consumer behind it may sit on
	// a NATS node that died, which nats.go notices only after missed
	// heartbeats (10 s and more), or the watch may have lost its way.
	StallCheck time.Duration
}

// WatcherStatus is what a Watcher reports for /readyz and the metrics.
type WatcherStatus struct {
	// Connected: the watch of the bucket is established.
	Connected bool
	// Synced: connected, and the set is the bucket's (the initial values
	// are applied, updates follow within milliseconds). It is false while
	// NATS is unreachable: the set is then the last one seen.
	Synced bool
	// LastSync is when the last full sync completed (zero: none since the
	// watcher started; the set is what the snapshot held).
	LastSync time.Time
	// LastError is the last reason the watch failed or broke ("" = none
	// since the last sync).
	LastError string
	// Entries is the number of entries the set holds.
	Entries int
	// LastSnapshot is when the snapshot file was last written, and
	// SnapshotError why its last write failed ("" = it succeeded).
	LastSnapshot  time.Time
	SnapshotError string
}

// Watcher keeps a Set equal to the revocation bucket: it watches every
// key, applies each change as it comes, resyncs in full after every
// reconnection, sweeps expired entries and writes the snapshot file.
type Watcher struct {
	set     *Set
	cfg     WatcherConfig
	log     *slog.Logger
	running atomic.Bool

	mu     sync.Mutex
	status WatcherStatus

	updates, malformed, syncs, snapshots, stalls atomic.Uint64
}

// NewWatcher returns a watcher that keeps set (nil: a new one, see Set)
// equal to the bucket of cfg once Run runs.
func NewWatcher(set *Set, cfg WatcherConfig) *Watcher {
	if set == nil {
		set = NewSet()
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(DefaultRetryMax, cfg.RetryMin)
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.StallCheck <= 0 {
		cfg.StallCheck = DefaultStallCheck
	}
	if cfg.SnapshotInterval <= 0 {
		cfg.SnapshotInterval = DefaultSnapshotInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{set: set, cfg: cfg, log: log}
}

// Set is the set the watcher keeps.
func (w *Watcher) Set() *Set { return w.set }

// Status reports the watch; safe for concurrent use.
func (w *Watcher) Status() WatcherStatus {
	w.mu.Lock()
	st := w.status
	w.mu.Unlock()
	st.Entries = w.set.Len()
	return st
}

// Register registers the watcher's metrics with reg: the gauges
// mcp_pdp_revocations (entries held) and mcp_pdp_revocations_synced (1
// while synced), the counters mcp_pdp_revocation_updates_total (changes
// applied after a sync), mcp_pdp_revocation_syncs_total (full syncs),
// mcp_pdp_revocation_malformed_total (values skipped) and
// mcp_pdp_revocation_snapshots_total (snapshot files written) and
// mcp_pdp_revocation_watch_stalls_total (watches restarted, see
// WatcherConfig.StallCheck).
func (w *Watcher) Register(reg prometheus.Registerer) error {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mcp_pdp_revocation_" + name + "_total", Help: help},
			func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcp_pdp_revocations", Help: "Revocations held by the PDP (expired ones not yet swept included)."},
			func() float64 { return float64(w.set.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcp_pdp_revocations_synced", Help: "1 while the revocation set follows its NATS bucket, 0 while it is the last one seen."},
			func() float64 {
				if w.Status().Synced {
					return 1
				}
				return 0
			}),
		counter("updates", "Revocation changes (puts and removals) applied as they came.", &w.updates),
		counter("syncs", "Full syncs of the revocation set with its bucket.", &w.syncs),
		counter("malformed", "Values of the revocation bucket skipped because they are not valid revocations.", &w.malformed),
		counter("snapshots", "Snapshot files of the revocation set written.", &w.snapshots),
		counter("watch_stalls", "Watches of the revocation bucket restarted because they fell behind the bucket (a dead NATS node under the consumer).", &w.stalls),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("revoke: metrics: %w", err)
		}
	}
	return nil
}

// Run keeps the set equal to the bucket until ctx ends, then returns nil
// after its goroutines (the snapshot writer, the sweeper) have stopped,
// the last change written. While the bucket is unreachable it keeps the
// set and retries with backoff; each new watch starts with a full sync.
// It returns an error only when it can never succeed: no JetStream, an
// invalid bucket name, the NATS connection closed. Run once at a time.
func (w *Watcher) Run(ctx context.Context, js jetstream.JetStream) error {
	if js == nil || js.Conn() == nil {
		return fmt.Errorf("revoke: watch bucket %s: no JetStream context", w.cfg.Bucket)
	}
	if !w.running.CompareAndSwap(false, true) {
		return fmt.Errorf("revoke: watch bucket %s: the watcher is already running", w.cfg.Bucket)
	}
	defer w.running.Store(false)
	nc := js.Conn()
	statusCh := nc.StatusChanged()
	defer nc.RemoveStatusListener(statusCh)

	var wg sync.WaitGroup
	gctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	if w.cfg.SnapshotFile != "" {
		// The set as Run starts is taken as on disk: the caller loaded it
		// from there (or it is empty, and the first sync writes it).
		written := w.set.Version()
		wg.Go(func() { w.writeSnapshots(gctx, written) })
	}
	wg.Go(func() { w.sweep(gctx) })

	delay := w.cfg.RetryMin
	for {
		synced, err := w.session(ctx, js, nc, statusCh, min(openTimeout+delay, maxOpenTimeout))
		if ctx.Err() != nil {
			w.setDown(nil)
			return nil
		}
		w.setDown(err)
		if nc.IsClosed() {
			return fmt.Errorf("revoke: watch bucket %s: the NATS connection is closed", w.cfg.Bucket)
		}
		if errors.Is(err, jetstream.ErrInvalidBucketName) {
			return fmt.Errorf("revoke: watch bucket %s: %w", w.cfg.Bucket, err)
		}
		if synced {
			delay = w.cfg.RetryMin
		}
		w.log.Warn("revocations: no watch of the bucket; keeping the current set, retrying",
			"bucket", w.cfg.Bucket, "err", err, "entries", w.set.Len(), "retry_in", delay)
		if !w.wait(ctx, nc, statusCh, delay) {
			return nil
		}
		delay = min(2*delay, w.cfg.RetryMax)
	}
}

// wait waits d, or less if the connection comes back; false if ctx ended.
func (w *Watcher) wait(ctx context.Context, nc *nats.Conn, statusCh <-chan nats.Status, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case s := <-statusCh:
			if s == nats.CONNECTED && nc.Status() == nats.CONNECTED {
				return true
			}
		}
	}
}

// session binds the bucket, watches it, syncs in full and applies the
// updates until the watch breaks or ctx ends; synced tells whether the
// full sync completed.
func (w *Watcher) session(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, statusCh <-chan nats.Status, openTimeout time.Duration) (synced bool, err error) {
	for len(statusCh) > 0 { // events of before this attempt
		<-statusCh
	}
	if s := nc.Status(); s != nats.CONNECTED {
		return false, fmt.Errorf("NATS is %s", s)
	}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	kv, err := OpenBucket(octx, js, w.cfg.Bucket, w.cfg.Create, w.cfg.Replicas)
	cancel()
	if err != nil {
		return false, err
	}
	// The bucket's last revision before the watch starts: the initial
	// values cover everything up to it, and every later change arrives
	// with a higher revision (see pollHead).
	hctx, hcancel := context.WithTimeout(ctx, openTimeout)
	lastRev, err := bucketHead(hctx, kv)
	hcancel()
	if err != nil {
		return false, fmt.Errorf("revocation bucket %s: %w", w.cfg.Bucket, err)
	}
	// The watch's context must live as long as the watch (nats.go
	// unsubscribes when it ends), so it is the session's; a timer bounds
	// the start of the watch (its consumer creation waits on it).
	sctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	heads := make(chan uint64, 1)
	var pollWG sync.WaitGroup
	defer pollWG.Wait() // after cancelWatch (deferred earlier, runs later)
	defer cancelWatch()
	pollWG.Go(func() { w.pollHead(sctx, kv, heads) })
	var behind uint64 // a revision the watch has not delivered yet
	var behindSince time.Time
	timer := time.AfterFunc(openTimeout, cancelWatch)
	kw, err := kv.WatchAll(sctx)
	if !timer.Stop() && err == nil {
		stopWatch(kw)
		err = fmt.Errorf("not started within %s", openTimeout)
	}
	if err != nil {
		return false, fmt.Errorf("revocation bucket %s: watch: %w", w.cfg.Bucket, err)
	}
	defer stopWatch(kw)
	w.setConnected()

	// The initial values, then nil: the full state, applied at once so that
	// a key deleted meanwhile disappears.
	initial := make(map[string]*Entry)
	before := w.set.cur.Load()
	for {
		select {
		case <-ctx.Done():
			return synced, ctx.Err()
		case s := <-statusCh:
			if s != nats.CONNECTED {
				return synced, fmt.Errorf("NATS %s", s)
			}
		case head := <-heads:
			switch {
			case head <= lastRev:
				behind = 0
			case behind == 0:
				behind, behindSince = head, time.Now()
			case lastRev < behind && time.Since(behindSince) >= w.cfg.StallCheck:
				w.stalls.Add(1)
				return synced, fmt.Errorf("revocation bucket %s: the watch stalled: the bucket is at revision %d, the watch at %d for %s", w.cfg.Bucket, head, lastRev, time.Since(behindSince).Round(time.Millisecond))
			}
		case kve, ok := <-kw.Updates():
			if !ok {
				return synced, fmt.Errorf("revocation bucket %s: the watch ended", w.cfg.Bucket)
			}
			if kve != nil {
				lastRev = max(lastRev, kve.Revision())
				if behind != 0 && lastRev >= behind {
					behind = 0
				}
			}
			if !synced {
				if kve != nil {
					w.collect(initial, kve, before)
					continue
				}
				w.fullSync(initial)
				initial, before, synced = nil, nil, true
				continue
			}
			if kve == nil {
				continue
			}
			batch := w.changes(nil, kve)
		drain:
			for len(batch) < maxBatch {
				select {
				case kve, ok := <-kw.Updates():
					if !ok {
						break drain
					}
					if kve != nil {
						lastRev = max(lastRev, kve.Revision())
						batch = w.changes(batch, kve)
					}
				default:
					break drain
				}
			}
			if n := w.set.Apply(batch...); n > 0 {
				w.updates.Add(uint64(n))
			}
		}
	}
}

// collect adds an initial value to the full state. A malformed value
// leaves the entry the set held for that key, if any: a value damaged in
// the bucket never lifts a revocation.
func (w *Watcher) collect(initial map[string]*Entry, kve jetstream.KeyValueEntry, before *state) {
	key := kve.Key()
	if kve.Operation() != jetstream.KeyValuePut {
		delete(initial, key)
		return
	}
	e, err := decodeEntry(key, kve.Value())
	if err == nil {
		initial[key] = e
		return
	}
	w.malformedValue(kve, err)
	if kind, id, kerr := ParseKey(key); kerr == nil && before != nil {
		if old := before.byKind[kind.index()][id]; old != nil {
			initial[key] = old
			w.log.Warn("revocations: keeping the previous value of a malformed key", "key", key, "kind", kind, "id", id)
		}
	}
}

// fullSync makes the initial values the set.
func (w *Watcher) fullSync(initial map[string]*Entry) {
	entries := make([]*Entry, 0, len(initial))
	for _, e := range initial {
		entries = append(entries, e)
	}
	had := w.set.Len()
	w.set.Replace(entries)
	w.syncs.Add(1)
	now := time.Now()
	w.mu.Lock()
	w.status.Synced, w.status.LastSync, w.status.LastError = true, now, ""
	w.mu.Unlock()
	w.log.Info("revocations: synced with the bucket", "bucket", w.cfg.Bucket, "entries", len(entries), "held_before", had)
}

// changes appends the change of one update to batch; a malformed value
// is logged and skipped (the set keeps what it held for the key).
func (w *Watcher) changes(batch []Change, kve jetstream.KeyValueEntry) []Change {
	key := kve.Key()
	if kve.Operation() != jetstream.KeyValuePut {
		kind, id, err := ParseKey(key)
		if err != nil {
			w.malformedValue(kve, err)
			return batch
		}
		w.log.Info("revocation removed", "kind", kind, "id", id, "revision", kve.Revision())
		return append(batch, Change{Kind: kind, ID: id})
	}
	e, err := decodeEntry(key, kve.Value())
	if err != nil {
		w.malformedValue(kve, err)
		return batch
	}
	w.log.Info("revocation added", "kind", e.Kind, "id", e.ID, "reason", e.Reason, "by", e.By, "expires", e.Expires, "revision", kve.Revision())
	return append(batch, Change{Entry: e})
}

func (w *Watcher) malformedValue(kve jetstream.KeyValueEntry, err error) {
	w.malformed.Add(1)
	w.log.Warn("revocations: malformed value skipped", "bucket", w.cfg.Bucket, "key", kve.Key(), "revision", kve.Revision(), "err", err)
}

func (w *Watcher) setConnected() {
	w.mu.Lock()
	w.status.Connected = true
	w.mu.Unlock()
}

// setDown records that the watch ended, for err (nil: ctx ended).
func (w *Watcher) setDown(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.Connected, w.status.Synced = false, false
	if err != nil {
		w.status.LastError = err.Error()
	}
}

// stopWatch stops kw and drains what it still delivers, so that the NATS
// client's delivery (blocked on a full channel) ends.
func stopWatch(kw jetstream.KeyWatcher) {
	_ = kw.Stop()
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case _, ok := <-kw.Updates():
			if !ok {
				return
			}
		case <-t.C:
			return
		}
	}
}

// writeSnapshots writes the set to the snapshot file after each change:
// the latest state, at most one write per SnapshotInterval, retried every
// second after a failure, and once more when ctx ends if a change is not
// on disk yet. The version written is on disk already.
func (w *Watcher) writeSnapshots(ctx context.Context, written uint64) {
	var last time.Time
	for {
		st := w.set.cur.Load()
		if st == nil || st.version == written {
			var changed <-chan struct{}
			if st != nil {
				changed = st.changed
			} else {
				changed = w.set.Changed()
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
				continue
			}
		}
		if wait := w.cfg.SnapshotInterval - time.Since(last); wait > 0 {
			if !sleep(ctx, wait) {
				w.writeSnapshot(w.set.cur.Load())
				return
			}
			continue // write the state of now
		}
		last = time.Now()
		if !w.writeSnapshot(st) {
			if !sleep(ctx, time.Second) {
				w.writeSnapshot(w.set.cur.Load())
				return
			}
			continue
		}
		written = st.version
	}
}

// writeSnapshot writes st and records the outcome.
func (w *Watcher) writeSnapshot(st *state) bool {
	err := WriteSnapshot(w.cfg.SnapshotFile, st.entries())
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if w.status.SnapshotError == "" {
			w.log.Error("revocations: cannot write the snapshot; retrying", "err", err)
		}
		w.status.SnapshotError = err.Error()
		return false
	}
	if w.status.SnapshotError != "" {
		w.log.Info("revocations: snapshot written again", "file", w.cfg.SnapshotFile)
	}
	w.status.SnapshotError, w.status.LastSnapshot = "", time.Now()
	w.snapshots.Add(1)
	return true
}

// sweep removes expired entries: when the next expiry passes, and at
// least every SweepInterval.
func (w *Watcher) sweep(ctx context.Context) {
	t := time.NewTimer(w.cfg.SweepInterval)
	defer t.Stop()
	for {
		changed := w.set.Changed()
		wait := w.cfg.SweepInterval
		if next := w.set.nextExpiry(); !next.IsZero() {
			wait = min(wait, max(time.Until(next), 0))
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-changed:
			continue // the next expiry may be sooner
		case <-t.C:
		}
		for _, e := range w.set.Sweep(time.Now()) {
			w.log.Info("revocation expired", "kind", e.Kind, "id", e.ID, "expires", e.Expires)
		}
	}
}

// sleep waits d; false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// bucketHead is the last revision (stream sequence) of the bucket.
func bucketHead(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("status: %w", err)
	}
	si, ok := st.(interface{ StreamInfo() *jetstream.StreamInfo })
	if !ok || si.StreamInfo() == nil {
		return 0, fmt.Errorf("status: no stream info")
	}
	return si.StreamInfo().State.LastSeq, nil
}

// pollHead sends the bucket's last revision to heads every StallCheck
// until ctx ends, replacing a value not taken yet. A failed poll sends
// nothing: the connection's own status ends the session when NATS is
// gone.
func (w *Watcher) pollHead(ctx context.Context, kv jetstream.KeyValue, heads chan uint64) {
	t := time.NewTicker(w.cfg.StallCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, w.cfg.StallCheck)
		head, err := bucketHead(pctx, kv)
		cancel()
		if err != nil {
			continue
		}
		select {
		case <-heads:
		default:
		}
		heads <- head
	}
}
