package auditsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Modes and failure policies.
const (
	ModeAsync     = "async"
	ModeSync      = "sync"
	OnFailureOpen = "open"
	OnFailureDeny = "deny"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultStream            = "MCP_AUDIT"
	DefaultSubjectPrefix     = "mcp.audit"
	DefaultDuplicateWindow   = 2 * time.Minute
	DefaultQueueSize         = 8192
	DefaultMaxPending        = 1024
	DefaultAckTimeout        = 5 * time.Second
	DefaultSyncTimeout       = 5 * time.Second
	DefaultSpoolSyncEvery    = 64
	DefaultSpoolSyncInterval = 50 * time.Millisecond
	DefaultSpoolSegmentBytes = 64 << 20
	DefaultMaxEventBytes     = 256 << 10
)

// spoolProbeInterval: how often a healthy spool checks that it can still
// create, write and fsync a file.
const spoolProbeInterval = 5 * time.Second

// Errors returned by Record. Any error from Record means the event is not
// durable anywhere; with OnFailure "deny" the caller should deny.
var (
	ErrClosed   = errors.New("audit sink is closed")
	ErrNotReady = errors.New("audit event could not be made durable")
)

// Config configures a Sink. Zero values take the defaults above.
type Config struct {
	// Enabled false makes New return a sink whose Record does nothing.
	Enabled bool
	// Mode is "async" (default): Record enqueues and returns; or "sync":
	// Record returns after the JetStream ack (or after an fsynced spool
	// write when NATS cannot ack in SyncTimeout).
	Mode string
	// OnFailure is "open" (default) or "deny": what the caller should do
	// when Record returns an error. The sink itself only reports it; see
	// FailClosed.
	OnFailure string

	// Stream is the JetStream stream name (default MCP_AUDIT).
	Stream string
	// SubjectPrefix (default "mcp.audit"): the stream holds
	// <prefix>.<resource_key>.<method>.<outcome>.
	SubjectPrefix string
	// Replicas of the stream (default 1; 3 recommended on a cluster).
	Replicas int
	// MaxAge of events in the stream (0 = keep forever).
	MaxAge time.Duration
	// DuplicateWindow of the stream (default 2m): a replay of an event
	// within this window after its first store is dropped by JetStream.
	DuplicateWindow time.Duration
	// MaxBytes of the stream (0 = unlimited). When reached, the oldest
	// events are discarded (retention), never new ones.
	MaxBytes int64
	// SkipStreamSetup leaves the stream to the operator: New only checks
	// that it exists instead of creating or updating it.
	SkipStreamSetup bool

	// QueueSize is the in-memory queue of the async mode (default 8192);
	// a full queue spills into the spool.
	QueueSize int
	// MaxPending bounds async publishes awaiting their ack (default 1024)
	// and the replay window.
	MaxPending int
	// AckTimeout bounds the wait for an async ack (default 5s); an event
	// whose ack does not come in time goes to the spool.
	AckTimeout time.Duration
	// SyncTimeout bounds the wait for the ack in sync mode (default 5s).
	SyncTimeout time.Duration

	// SpoolDir is the spool directory (required).
	SpoolDir string
	// SpoolSyncEvery fsyncs the spool after this many records (default 64)
	SpoolSyncEvery int
	// SpoolSyncInterval fsyncs the spool at least this often while it has
	// unsynced records (default 50ms).
	SpoolSyncInterval time.Duration
	// SpoolSegmentBytes rotates spool segments (default 64 MiB).
	SpoolSegmentBytes int64

	// MaxEventBytes bounds one encoded event (default 256 KiB, and never
	// more than the server's max_payload). A larger event loses its
	// arguments and item lists and is marked "truncated".
	MaxEventBytes int

	// PDP is this instance's name, written into every event.
	PDP string

	// Logger (nil = discard).
	Logger *slog.Logger
	// Registerer for the metrics (nil = no metrics).
	Registerer prometheus.Registerer
}

func (c *Config) applyDefaults() {
	if c.Mode == "" {
		c.Mode = ModeAsync
	}
	if c.OnFailure == "" {
		c.OnFailure = OnFailureOpen
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = DefaultSyncTimeout
	}
	if c.SpoolSyncEvery == 0 {
		c.SpoolSyncEvery = DefaultSpoolSyncEvery
	}
	if c.SpoolSyncInterval == 0 {
		c.SpoolSyncInterval = DefaultSpoolSyncInterval
	}
	if c.SpoolSegmentBytes == 0 {
		c.SpoolSegmentBytes = DefaultSpoolSegmentBytes
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
}

// Validate reports the first invalid setting, naming its configuration key.
func (c *Config) Validate() error {
	switch c.Mode {
	case ModeAsync, ModeSync:
	default:
		return fmt.Errorf("audit.mode: %q is not valid: use %q or %q", c.Mode, ModeAsync, ModeSync)
	}
	switch c.OnFailure {
	case OnFailureOpen, OnFailureDeny:
	default:
		return fmt.Errorf("audit.on_failure: %q is not valid: use %q or %q", c.OnFailure, OnFailureOpen, OnFailureDeny)
	}
	if c.Stream == "" || strings.ContainsAny(c.Stream, ".*> \t\r\n/\\") {
		return fmt.Errorf("audit.stream: %q is not a valid stream name (no '.', '*', '>', '/', '\\' or whitespace)", c.Stream)
	}
	for _, tok := range strings.Split(c.SubjectPrefix, ".") {
		if tok == "" || SanitizeToken(tok) != tok {
			return fmt.Errorf("audit.subject_prefix: %q is not a valid subject prefix (dot-separated tokens without '*', '>' or whitespace)", c.SubjectPrefix)
		}
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("audit.replicas: %d is not valid: use 1 to 5 (3 recommended on a cluster, 1 for embedded)", c.Replicas)
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("audit.max_age: %s must not be negative (0 keeps events forever)", c.MaxAge)
	}
	if c.DuplicateWindow < 0 || (c.MaxAge > 0 && c.DuplicateWindow > c.MaxAge) {
		return fmt.Errorf("audit.duplicate_window: %s must be positive and not longer than audit.max_age", c.DuplicateWindow)
	}
	if c.MaxBytes < 0 {
		return fmt.Errorf("audit.max_bytes: %d must not be negative (0 = unlimited)", c.MaxBytes)
	}
	if c.QueueSize < 1 || c.MaxPending < 1 {
		return errors.New("audit.queue_size and audit.max_pending must be at least 1")
	}
	if c.AckTimeout < 0 || c.SyncTimeout < 0 || c.SpoolSyncInterval < 0 || c.SpoolSyncEvery < 0 {
		return errors.New("audit timeouts and spool sync settings must not be negative")
	}
	if c.SpoolDir == "" {
		return errors.New("audit.spool_dir: must be set (default: <data dir>/audit-spool)")
	}
	if c.MaxEventBytes < 1024 {
		return fmt.Errorf("audit.max_event_bytes: %d is too small (at least 1024)", c.MaxEventBytes)
	}
	return nil
}

// Stats are the sink's counters since New.
type Stats struct {
	// Published events acked by JetStream on the direct path (async or sync).
	Published uint64
	// Spooled events written to the spool.
	Spooled uint64
	// Replayed events published from the spool and acked.
	Replayed uint64
	// Duplicates are acks JetStream marked as duplicates (a replay of an
	// event it already had): proof that dedup worked, not an error.
	Duplicates uint64
	// Failed events were lost: neither acked nor written to the spool
	// (Record returned an error for them, or they were queued when the
	// spool failed), or dropped as unpublishable. Must stay 0.
	Failed uint64
	// Corrupt spool records or torn tails skipped on replay.
	Corrupt uint64
	// Queued in memory; InFlight taken from the queue and not yet acked
	// or spooled.
	Queued   int
	InFlight int64
	// SpoolPending events in the spool not yet replayed.
	SpoolPending int64
	// SpoolBytes not yet replayed.
	SpoolBytes int64
	// Pending = Queued + InFlight + SpoolPending.
	Pending int64
	// Spooling is true while new events go to the spool (NATS
	// unavailable or a backlog is being replayed).
	Spooling bool
}

// item is an encoded event.
type item struct {
	id      string
	subject string
	data    []byte
	start   time.Time
}

// Sink publishes audit events to JetStream. It is safe for concurrent use.
type Sink struct {
	cfg      Config
	disabled bool
	nc       *nats.Conn
	js       jetstream.JetStream
	log      *slog.Logger
	sp       *spool
	m        *metrics
	// streamHeader is the Nats-Expected-Stream header value, shared by all
	// messages (nats.go only reads it).
	streamHeader []string

	queue chan *item
	live  *live // published events awaiting their ack
	// ackSub receives the acks of live events; ackWatchDone stops
	// runAckWatch once Close has settled them.
	ackSub       *nats.Subscription
	ackWatchDone chan struct{}

	spooling    atomic.Bool
	streamReady atomic.Bool

	published, spooled, replayed, duplicates, failed atomic.Uint64
	// maxPayload is the server's max_payload, read at each (re)connect.
	maxPayload atomic.Int64
	// nMem counts events accepted into memory (queued, being
	// dispatched or awaiting the ack). An event is counted by its next
	// stage (stream, spool) before it leaves this one, so Pending never
	// reads 0 while an event is on its way.
	nMem atomic.Int64

	kick chan struct{} // wakes the replayer

	closeMu sync.RWMutex
	closed  bool

	abort     chan struct{} // closed when Close's ctx ends: stop waiting for acks
	abortOnce sync.Once
	killed    chan struct{} // closed by crash(): drop memory state

	ctx    context.Context // lifetime of the background goroutines
	cancel context.CancelFunc
	pubWG  sync.WaitGroup // publisher + ack watch
	bgWG   sync.WaitGroup // replayer + syncer
}

// New creates or updates the stream, opens the spool (replaying what a
// previous run left there), and starts the publisher, ack collector,
// replayer and spool syncer. NATS being unreachable is not an error: events
// are spooled until it is back. A stream configuration that the server
// rejects is an error.
func New(ctx context.Context, cfg Config, nc *nats.Conn) (*Sink, error) {
	if !cfg.Enabled {
		return &Sink{cfg: cfg, disabled: true, log: slog.New(slog.DiscardHandler)}, nil
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("auditsink: nil NATS connection")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "auditsink")
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4*cfg.MaxPending+64),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("auditsink: jetstream context: %w", err)
	}
	sp, err := openSpool(cfg.SpoolDir, spoolOptions{
		syncEvery:     cfg.SpoolSyncEvery,
		syncInterval:  cfg.SpoolSyncInterval,
		probeInterval: spoolProbeInterval,
		segmentBytes:  cfg.SpoolSegmentBytes,
		log:           log,
	})
	if err != nil {
		return nil, fmt.Errorf("auditsink: %w", err)
	}
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Sink{
		cfg:          cfg,
		nc:           nc,
		js:           js,
		log:          log,
		sp:           sp,
		streamHeader: []string{cfg.Stream},
		queue:        make(chan *item, cfg.QueueSize),
		live:         newLive(nc.NewInbox()+".", cfg.MaxPending),
		ackWatchDone: make(chan struct{}),
		kick:         make(chan struct{}, 1),
		abort:        make(chan struct{}),
		killed:       make(chan struct{}),
		ctx:          bctx,
		cancel:       cancel,
	}
	var setupErr error
	if nc.IsConnected() {
		setupErr = s.setupStream(ctx)
	} else {
		setupErr = errNotConnected
	}
	if err := setupErr; err != nil {
		if isConfigError(err) {
			cancel()
			_ = sp.close(false)
			return nil, fmt.Errorf("auditsink: stream %s: %w", cfg.Stream, err)
		}
		log.Warn("audit stream not reachable at start-up; events are spooled until it is", "stream", cfg.Stream, "err", err)
		s.spooling.Store(true)
	}
	if sp.stats().pending > 0 {
		// Keep order: the backlog goes out before new events.
		s.spooling.Store(true)
	}
	sub, err := nc.Subscribe(s.live.prefix+"*", s.onAck)
	if err != nil {
		cancel()
		_ = sp.close(false)
		return nil, fmt.Errorf("auditsink: subscribe to acks: %w", err)
	}
	s.ackSub = sub
	if cfg.Registerer != nil {
		m, err := newMetrics(s, cfg.Registerer)
		if err != nil {
			cancel()
			_ = sub.Unsubscribe()
			_ = sp.close(false)
			return nil, fmt.Errorf("auditsink: metrics: %w", err)
		}
		s.m = m
	}
	s.maxPayload.Store(nc.MaxPayload())
	status := nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	s.pubWG.Add(2)
	go s.runPublisher()
	go func() {
		s.runAckWatch(status)
		nc.RemoveStatusListener(status)
	}()
	s.bgWG.Add(2)
	go s.runReplayer()
	go func() { defer s.bgWG.Done(); sp.runSyncer(bctx) }()
	s.wake()
	log.Info("audit sink started", "stream", cfg.Stream, "mode", cfg.Mode, "spool", cfg.SpoolDir, "spooling", s.spooling.Load())
	return s, nil
}

// FailClosed reports whether the configuration asks to deny a decision
// whose event Record could not make durable (audit.on_failure: deny).
func (s *Sink) FailClosed() bool { return s.cfg.OnFailure == OnFailureDeny }

// Mode is "async" or "sync" ("" when disabled).
func (s *Sink) Mode() string {
	if s.disabled {
		return ""
	}
	return s.cfg.Mode
}

// Record makes ev one audit event. In async mode it only encodes and
// enqueues (or, while NATS is unavailable or the queue is full, appends to
// the spool); in sync mode it returns after the JetStream ack or, failing
// that, after an fsynced spool write. A non-nil error means the event is
// durable nowhere. Record does not keep ev.
func (s *Sink) Record(ctx context.Context, ev *Event) error {
	if s.disabled {
		return nil
	}
	if ev == nil {
		return errors.New("auditsink: nil event")
	}
	it, err := s.encode(ev)
	if err != nil {
		s.failed.Add(1)
		return fmt.Errorf("auditsink: encode event %s: %w", ev.ID, err)
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		s.failed.Add(1)
		return fmt.Errorf("auditsink: event %s: %w", it.id, ErrClosed)
	}
	if s.cfg.Mode == ModeSync {
		return s.recordSync(ctx, it)
	}
	if !s.nc.IsConnected() {
		s.enterSpooling("not connected to NATS")
	}
	if s.spooling.Load() || !s.streamReady.Load() {
		return s.spoolItem(it, false)
	}
	s.nMem.Add(1)
	select {
	case s.queue <- it:
		return nil
	default:
		// Queue full: spill to disk rather than block the decision.
		s.nMem.Add(-1)
		return s.spoolItem(it, false)
	}
}

func (s *Sink) recordSync(ctx context.Context, it *item) error {
	if s.nc.IsConnected() && s.streamReady.Load() {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
		ack, err := s.js.PublishMsg(pctx, s.msg(it.subject, it.id, it.data))
		cancel()
		if err == nil {
			s.acked(it, ack, false)
			return nil
		}
		if isPermanent(err) {
			s.failed.Add(1)
			s.log.Error("audit event rejected by JetStream and lost", "id", it.id, "err", err)
			return fmt.Errorf("auditsink: publish %s: %w", it.id, err)
		}
		if ctx.Err() == nil {
			s.enterSpooling(err.Error())
		}
	}
	// Not acked: durable on the local disk before we answer.
	return s.spoolItem(it, true)
}

// spoolItem appends it to the spool (fsynced before return when
// syncNow); an error means the event is lost.
func (s *Sink) spoolItem(it *item, syncNow bool) error {
	frame, err := encodeFrame(it.subject, it.id, it.data)
	if err == nil {
		if syncNow {
			err = s.sp.appendSync(frame)
		} else {
			err = s.sp.append(frame)
		}
	}
	if err != nil {
		s.failed.Add(1)
		s.log.Error("AUDIT EVENT LOST: NATS did not take it and the spool cannot write", "id", it.id, "subject", it.subject, "err", err)
		return fmt.Errorf("auditsink: event %s: %w: %w", it.id, ErrNotReady, err)
	}
	s.spooled.Add(1)
	s.wake()
	return nil
}

func (s *Sink) enterSpooling(reason string) {
	if s.spooling.CompareAndSwap(false, true) {
		s.log.Warn("audit events go to the spool until NATS takes them again", "reason", reason, "spool", s.cfg.SpoolDir)
	}
	s.wake()
}

func (s *Sink) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Sink) acked(it *item, ack *jetstream.PubAck, replay bool) {
	if ack != nil && ack.Duplicate {
		s.duplicates.Add(1)
	}
	if replay {
		s.replayed.Add(1)
		return
	}
	s.published.Add(1)
	if s.m != nil {
		s.m.latency.Observe(time.Since(it.start).Seconds())
	}
}

func (s *Sink) aborted() bool {
	select {
	case <-s.abort:
		return true
	default:
		return false
	}
}

// msg builds the JetStream message of an event: Nats-Msg-Id = event ID
// (dedup) and Nats-Expected-Stream (never stored in another stream). The
// headers are set directly: it saves the publish options' allocations.
func (s *Sink) msg(subject, id string, data []byte) *nats.Msg {
	return &nats.Msg{Subject: subject, Data: data, Header: nats.Header{
		jetstream.MsgIDHeader:          []string{id},
		jetstream.ExpectedStreamHeader: s.streamHeader,
	}}
}

// runPublisher takes events from the queue and publishes them async, or
// spools them while NATS is unavailable. When the queue is closed (Close)
// it waits for the acks of what it published, until Close's deadline.
func (s *Sink) runPublisher() {
	defer s.pubWG.Done()
	defer close(s.ackWatchDone)
	for {
		select {
		case <-s.killed:
			return
		case it, ok := <-s.queue:
			if !ok {
				s.settleAll()
				return
			}
			if !s.dispatch(it) {
				return
			}
		}
	}
}

// dispatch publishes it, or spools it while NATS is unavailable. false:
// the sink is being killed.
func (s *Sink) dispatch(it *item) bool {
	if s.aborted() || s.spooling.Load() || !s.streamReady.Load() || !s.nc.IsConnected() {
		_ = s.spoolItem(it, false)
		s.nMem.Add(-1)
		return true
	}
	return s.publishLive(it)
}

// settleAll waits for the acks of the live events; when Close's deadline
// comes first, the rest are spooled.
func (s *Sink) settleAll() {
	select {
	case <-s.live.waitIdle():
	case <-s.abort:
		s.failPending(true, errCloseTimeout)
	case <-s.killed:
	}
}

func (s *Sink) publishFailed(it *item, err error) {
	if isPermanent(err) {
		s.failed.Add(1)
		s.log.Error("AUDIT EVENT LOST: rejected by JetStream", "id", it.id, "subject", it.subject, "err", err)
		return
	}
	s.enterSpooling(err.Error())
	_ = s.spoolItem(it, false)
}

// runReplayer publishes the spool in order whenever NATS is available,
// commits progress after the acks, and switches back to direct publishing
// once the spool is empty.
func (s *Sink) runReplayer() {
	defer s.bgWG.Done()
	const minBackoff, maxBackoff = 100 * time.Millisecond, 2 * time.Second
	backoff := minBackoff
	idle := time.NewTicker(250 * time.Millisecond)
	defer idle.Stop()
	var lastErr string
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-idle.C:
		}
		err := s.replay(s.ctx)
		if err == nil {
			backoff = minBackoff
			if lastErr != "" {
				s.log.Info("audit spool replay resumed")
				lastErr = ""
			}
			continue
		}
		if s.ctx.Err() != nil {
			return
		}
		if msg := err.Error(); msg != lastErr {
			s.log.Warn("audit spool replay waiting for NATS", "err", err, "spool_pending", s.sp.stats().pending)
			lastErr = msg
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

var errNotConnected = errors.New("not connected to NATS")

func (s *Sink) replay(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !s.nc.IsConnected() {
			if s.sp.stats().segments == 0 {
				return nil // nothing to replay; Record spools and wakes us
			}
			return errNotConnected
		}
		if !s.streamReady.Load() {
			if err := s.setupStream(ctx); err != nil {
				return fmt.Errorf("stream %s: %w", s.cfg.Stream, err)
			}
			s.log.Info("audit stream ready", "stream", s.cfg.Stream)
		}
		start := s.sp.cursorPos()
		b, err := s.sp.readBatch(s.cfg.MaxPending, 4<<20)
		if err != nil {
			return err
		}
		if len(b.recs) == 0 {
			if b.end != start {
				if err := s.sp.commit(b.end, 0); err != nil {
					s.log.Warn("audit spool: commit", "err", err)
				}
				if s.sp.cursorPos() == start {
					return nil // no progress possible now
				}
				continue
			}
			if s.sp.drained(func() {
				if s.spooling.Swap(false) {
					s.log.Info("audit spool drained; publishing directly again")
				}
			}) {
				return nil
			}
			return nil
		}
		consumed, err := s.publishBatch(ctx, b.recs)
		if consumed > 0 {
			end := b.end
			if consumed < len(b.recs) {
				end = b.recs[consumed].start
			}
			if cerr := s.sp.commit(end, consumed); cerr != nil {
				s.log.Warn("audit spool: commit", "err", cerr)
			}
		}
		if err != nil {
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				// No stream behind the subjects (deleted?) or a leader
				// election: check, and recreate it, before the next try.
				s.streamReady.Store(false)
			}
			return err
		}
	}
}

// publishBatch publishes recs async and waits for all acks. It returns
// how many records from the front are done (acked, or dropped as
// unpublishable) and the first error.
func (s *Sink) publishBatch(ctx context.Context, recs []spoolRecord) (int, error) {
	futs := make([]jetstream.PubAckFuture, len(recs))
	errs := make([]error, len(recs))
	for i, r := range recs {
		f, err := s.js.PublishMsgAsync(s.msg(r.subject, r.id, r.data))
		if err != nil {
			errs[i] = err
			if !isPermanent(err) {
				break
			}
			continue
		}
		futs[i] = f
	}
	consumed := 0
	var first error
	prefix := true
	for i, r := range recs {
		err := errs[i]
		if f := futs[i]; f != nil {
			select {
			case ack := <-f.Ok():
				s.acked(&item{id: r.id}, ack, true)
			case err = <-f.Err():
			case <-ctx.Done():
				return consumed, ctx.Err()
			}
		} else if err == nil {
			err = errors.New("not sent")
		}
		if err != nil && isPermanent(err) {
			s.failed.Add(1)
			s.log.Error("AUDIT EVENT LOST: spooled event rejected by JetStream", "id", r.id, "subject", r.subject, "err", err)
			err = nil
		}
		if err != nil {
			if first == nil {
				first = err
			}
			prefix = false
			continue
		}
		if prefix {
			consumed++
		}
	}
	if first != nil {
		return consumed, fmt.Errorf("replay publish: %w", first)
	}
	return consumed, nil
}

func (s *Sink) setupStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.cfg.SkipStreamSetup {
		if _, err := s.js.Stream(ctx, s.cfg.Stream); err != nil {
			return fmt.Errorf("look up stream (audit.skip_stream_setup is set, so it must exist): %w", err)
		}
	} else if _, err := s.js.CreateOrUpdateStream(ctx, StreamConfig(s.cfg)); err != nil {
		if isConfigError(err) {
			return fmt.Errorf("create or update stream: %w", err)
		}
		// Credentials that may publish but not manage streams: use the
		// stream an operator created, if it is there.
		if _, serr := s.js.Stream(ctx, s.cfg.Stream); serr != nil {
			return fmt.Errorf("create or update stream: %w", err)
		}
		s.log.Warn("could not create or update the audit stream; using it as it is", "stream", s.cfg.Stream, "err", err)
	}
	s.streamReady.Store(true)
	return nil
}

// StreamConfig is the stream the sink creates or updates for cfg.
func StreamConfig(cfg Config) jetstream.StreamConfig {
	cfg.applyDefaults()
	return jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "mcp-pdp audit events (" + SchemaVersion + "), one per decision; see docs/audit.md",
		Subjects:    []string{cfg.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		Duplicates:  cfg.DuplicateWindow,
	}
}

// isConfigError: the server understood the request and refused it (a bad
// or conflicting stream configuration) - retrying will not help.
func isConfigError(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case 10074, // replicas > 1 not supported in non-clustered mode
		10052, // invalid stream configuration
		10069: // stream update refused (e.g. a field that cannot change)
		return true
	}
	return apiErr.Code == 400
}

// isPermanent: publishing this message again can never succeed.
func isPermanent(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}

// eventCopies are the scratch copies encode fills in defaults on (ev is
// the caller's and stays untouched); pooled, as a copy handed to
// json.Marshal escapes to the heap.
var eventCopies = sync.Pool{New: func() any { return new(Event) }}

func (s *Sink) encode(ev *Event) (*item, error) {
	e := eventCopies.Get().(*Event)
	defer func() {
		*e = Event{} // drop the references to the caller's data
		eventCopies.Put(e)
	}()
	*e = *ev
	if e.ID == "" {
		e.ID = NewID()
	}
	if len(e.ID) > 1024 || strings.ContainsAny(e.ID, "\r\n") {
		return nil, errors.New("event id longer than 1024 bytes or with a line break")
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Schema == "" {
		e.Schema = SchemaVersion
	}
	if e.PDP == "" {
		e.PDP = s.cfg.PDP
	}
	data, err := marshalEvent(e)
	if err != nil {
		return nil, err
	}
	if limit := s.maxEventBytes(); len(data) > limit {
		e.Arguments, e.Visible, e.Hidden, e.Truncated = nil, nil, nil, true
		if len(e.Reason) > 1024 {
			e.Reason = e.Reason[:1024]
		}
		if data, err = marshalEvent(e); err != nil {
			return nil, err
		}
		if len(data) > limit {
			return nil, fmt.Errorf("event of %d bytes exceeds %d even without arguments and item lists", len(data), limit)
		}
	}
	return &item{id: e.ID, subject: e.NATSSubject(s.cfg.SubjectPrefix), data: data, start: time.Now()}, nil
}

func (s *Sink) maxEventBytes() int {
	limit := s.cfg.MaxEventBytes
	// The server's limit as of the last (re)connect: asking the connection
	// takes its lock, which the publisher and flusher hold, on every event.
	mp := int(s.maxPayload.Load())
	if mp == 0 { // not connected yet at New
		mp = int(s.nc.MaxPayload())
	}
	if mp > 0 && mp-1024 < limit {
		limit = mp - 1024 // room for the headers
	}
	return limit
}

// Healthy returns nil while events can be made durable: NATS being away
// is fine as long as the spool can write. Non-nil (the spool cannot write)
// should fail the PDP's readiness.
func (s *Sink) Healthy() error {
	if s.disabled {
		return nil
	}
	s.closeMu.RLock()
	closed := s.closed
	s.closeMu.RUnlock()
	if closed {
		return ErrClosed
	}
	if err := s.sp.healthy(); err != nil {
		return fmt.Errorf("auditsink: spool unhealthy: %w", err)
	}
	return nil
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	if s.disabled {
		return Stats{}
	}
	sp := s.sp.stats()
	st := Stats{
		Published:    s.published.Load(),
		Spooled:      s.spooled.Load(),
		Replayed:     s.replayed.Load(),
		Duplicates:   s.duplicates.Load(),
		Failed:       s.failed.Load(),
		Corrupt:      s.sp.corrupt.Load(),
		Queued:       len(s.queue),
		InFlight:     max(0, s.nMem.Load()-int64(len(s.queue))),
		SpoolPending: sp.pending,
		SpoolBytes:   sp.bytes,
		Spooling:     s.spooling.Load(),
	}
	st.Pending = max(s.nMem.Load(), int64(st.Queued)) + st.SpoolPending
	return st
}

// Close stops accepting events and flushes: queued events are published
// (or spooled when NATS is away), acks are awaited until ctx ends (then the
// unacked events are spooled too), and the spool is fsynced. Whatever is
// left on the spool is replayed by the next New on the same directory.
func (s *Sink) Close(ctx context.Context) error {
	if s.disabled {
		return nil
	}
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.queue)
	s.closeMu.Unlock()

	stop := context.AfterFunc(ctx, func() { s.abortOnce.Do(func() { close(s.abort) }) })
	s.pubWG.Wait()
	stop()
	_ = s.ackSub.Unsubscribe()
	s.cancel()
	s.bgWG.Wait()
	err := s.sp.close(true)
	s.js.CleanupPublisher()
	if s.m != nil {
		s.m.unregister()
	}
	st := s.Stats()
	s.log.Info("audit sink closed", "published", st.Published, "spooled", st.Spooled, "replayed", st.Replayed,
		"left_on_spool", st.SpoolPending, "failed", st.Failed)
	if err != nil {
		return fmt.Errorf("auditsink: close: %w", err)
	}
	return nil
}

// crash stops the sink like a killed process: memory (queue, in-flight
// acks) is dropped, nothing is flushed or fsynced. What reached the spool
// with write(2) is on disk for the next New. For tests.
func (s *Sink) crash() {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return
	}
	s.closed = true
	s.closeMu.Unlock()
	close(s.killed)
	s.cancel()
	s.pubWG.Wait()
	_ = s.ackSub.Unsubscribe()
	s.bgWG.Wait()
	_ = s.sp.close(false)
	s.js.CleanupPublisher()
	if s.m != nil {
		s.m.unregister()
	}
}
