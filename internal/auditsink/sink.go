package auditsink

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

	"github.com/mcp-pdp/pdp/internal/spool"
)

// Errors returned by Record. Any error from Record means the event is not
// durable anywhere; a PDP set to deny unaudited decisions (audit.on_failure:
// deny) denies the decision.
var (
	// ErrClosed: Record was called after Close.
	ErrClosed = errors.New("audit sink is closed")
	// ErrNotDurable: NATS did not take the event and the spool could not
	// write it.
	ErrNotDurable = errors.New("audit event could not be made durable")
)

// Stats are the sink's counters since New. They count messages: events
// and the chain's checkpoints (chain.go).
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
	// Batches published (batch.go); Published / Batches is the mean
	// batch size.
	Batches uint64
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
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
	sp  *spool.Spool
	m   *metrics
	// chain links the events and makes the checkpoints (chain.go).
	chain *chain
	// streamHeader is the Nats-Expected-Stream header value, shared by all
	// messages (nats.go only reads it).
	streamHeader []string
	subjects     subjectCache

	queue chan *item
	live  *live // published events awaiting their ack
	// ackSub receives the acks of live events; ackWatchDone stops
	// runAckWatch once Close has settled them.
	ackSub       *nats.Subscription
	ackWatchDone chan struct{}

	// Batches (batch.go). batching: the stream allows batch publishing.
	// batchSub delivers the acks of batches into batchAcks, read by the
	// publisher. connLost is signalled (and connEpoch counted) when the
	// connection is lost.
	batching    atomic.Bool
	setupLogged bool // setupStream has logged the publishing mode
	batchInbox  string
	burstPrefix string
	batchSub    *nats.Subscription
	batchAcks   chan *nats.Msg
	connLost    chan struct{}
	connEpoch   atomic.Uint64
	// The publisher goroutine's own: the batch in flight, its counter and
	// timer, the gathered events, and the message and headers it reuses
	// for every publish (nats.go encodes them before PublishMsg returns).
	cur        burst
	burstSeq   uint64
	burstTimer *time.Timer
	gathered   []*item
	replyBuf   []byte
	pub        nats.Msg
	pubID      []string

	spooling    atomic.Bool
	streamReady atomic.Bool

	published, spooled, replayed, duplicates, failed, batches atomic.Uint64
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
func New(ctx context.Context, cfg Config, nc *nats.Conn) (_ *Sink, err error) {
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
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4*cfg.MaxPending+64),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("auditsink: jetstream context: %w", err)
	}
	sp, err := spool.Open(cfg.SpoolDir, spool.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("auditsink: %w", err)
	}
	ch, err := openChain(cfg.SpoolDir, cfg)
	if err != nil {
		_ = sp.Close(false)
		return nil, fmt.Errorf("auditsink: chain: %w", err)
	}
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Sink{
		cfg:          cfg,
		nc:           nc,
		js:           js,
		log:          log,
		sp:           sp,
		chain:        ch,
		streamHeader: []string{cfg.Stream},
		queue:        make(chan *item, cfg.QueueSize),
		live:         newLive(nc.NewInbox()+".", cfg.MaxPending),
		ackWatchDone: make(chan struct{}),
		batchInbox:   nc.NewInbox() + ".",
		burstPrefix:  NewID()[:12],
		batchAcks:    make(chan *nats.Msg, 4*maxBurst),
		connLost:     make(chan struct{}, 1),
		burstTimer:   stoppedTimer(),
		gathered:     make([]*item, 0, min(maxBurst, cfg.MaxPending)),
		pubID:        make([]string, 1),
		kick:         make(chan struct{}, 1),
		abort:        make(chan struct{}),
		ctx:          bctx,
		cancel:       cancel,
	}
	defer func() {
		if err != nil { // undo what New started, in reverse order
			if s.ackSub != nil {
				_ = s.ackSub.Unsubscribe()
			}
			if s.batchSub != nil {
				_ = s.batchSub.Unsubscribe()
			}
			cancel()
			_ = sp.Close(false)
		}
	}()
	var setupErr error
	if nc.IsConnected() {
		setupErr = s.setupStream(ctx)
	} else {
		setupErr = errNotConnected
	}
	if err := setupErr; err != nil {
		if isConfigError(err) {
			return nil, fmt.Errorf("auditsink: stream %s: %w", cfg.Stream, err)
		}
		log.Warn("audit stream not reachable at start-up; events are spooled until it is", "stream", cfg.Stream, "err", err)
		s.spooling.Store(true)
	}
	if sp.Stats().Pending > 0 {
		// Keep order: the backlog goes out before new events.
		s.spooling.Store(true)
	}
	s.pub.Header = nats.Header{
		jetstream.MsgIDHeader:          s.pubID,
		jetstream.ExpectedStreamHeader: s.streamHeader,
	}
	if s.ackSub, err = nc.Subscribe(s.live.prefix+"*", s.onAck); err != nil {
		return nil, fmt.Errorf("auditsink: subscribe to acks: %w", err)
	}
	// Delivered by nats.go's reader straight to the publisher, which
	// waits for them.
	if s.batchSub, err = nc.ChanSubscribe(s.batchInbox+">", s.batchAcks); err != nil {
		return nil, fmt.Errorf("auditsink: subscribe to batch acks: %w", err)
	}
	if cfg.Registerer != nil {
		if s.m, err = newMetrics(s, cfg.Registerer); err != nil {
			return nil, fmt.Errorf("auditsink: metrics: %w", err)
		}
	}
	s.maxPayload.Store(nc.MaxPayload())
	status := nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	s.pubWG.Add(2)
	go s.runPublisher()
	go func() {
		s.runAckWatch(status)
		nc.RemoveStatusListener(status)
	}()
	s.bgWG.Add(3)
	go s.runReplayer()
	go s.runCheckpoints()
	go func() { defer s.bgWG.Done(); sp.Run(bctx) }()
	s.wake()
	log.Info("audit sink started", "stream", cfg.Stream, "mode", cfg.Mode, "spool", cfg.SpoolDir, "spooling", s.spooling.Load(),
		"chain", ch.id, "seq", ch.seq, "signing_key", ch.keyID)
	if ch.after != nil {
		log.Warn("the previous run did not stop cleanly: a new audit chain starts, linked to the previous one by its first checkpoint",
			"chain", ch.id, "previous_chain", ch.after.Chain, "previous_seq", ch.after.Seq)
	}
	return s, nil
}

// Record makes ev one audit event. In async mode it only encodes and
// enqueues (or, while NATS is unavailable or the queue is full, appends to
// the spool); in sync mode it returns after the JetStream ack or, failing
// that, after an fsynced spool write. A non-nil error means the event is
// durable nowhere. Record does not keep ev.
func (s *Sink) Record(ctx context.Context, ev *Event) error {
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
		err := fmt.Errorf("auditsink: event %s: %w", it.id, ErrClosed)
		recycle(it)
		return err
	}
	checkpoints := s.chain.link(it, it.start)
	err = s.deliver(ctx, it)
	for _, cp := range checkpoints {
		s.deliverCheckpoint(ctx, cp)
	}
	return err
}

// deliver publishes it (sync mode) or enqueues or spools it (async). The
// caller holds closeMu (read or write) and has checked closed.
func (s *Sink) deliver(ctx context.Context, it *item) error {
	if s.cfg.Mode == ModeSync {
		return s.recordSync(ctx, it)
	}
	if !s.nc.IsConnected() {
		s.enterSpooling("not connected to NATS")
	}
	if s.spooling.Load() || !s.streamReady.Load() {
		return s.spoolRecycle(it, false)
	}
	s.nMem.Add(1)
	select {
	case s.queue <- it:
		return nil
	default:
		// Queue full: spill to disk rather than block the decision.
		s.nMem.Add(-1)
		return s.spoolRecycle(it, false)
	}
}

func (s *Sink) recordSync(ctx context.Context, it *item) error {
	if s.nc.IsConnected() && s.streamReady.Load() {
		pctx, cancel := context.WithTimeout(ctx, syncTimeout)
		ack, err := s.js.PublishMsg(pctx, s.msg(it.subject, it.id, it.data))
		cancel()
		if err == nil {
			s.acked(it, ack, false)
			recycle(it)
			return nil
		}
		if isPermanent(err) {
			s.failed.Add(1)
			s.log.Error("audit event rejected by JetStream and lost", "id", it.id, "err", err)
			err = fmt.Errorf("auditsink: publish %s: %w", it.id, err)
			recycle(it)
			return err
		}
		if ctx.Err() == nil {
			s.enterSpooling(err.Error())
		}
	}
	// Not acked: durable on the local disk before we answer.
	return s.spoolRecycle(it, true)
}

// spoolRecycle spools it, whose only owner the caller is, and recycles
// it (the spool copied its bytes).
func (s *Sink) spoolRecycle(it *item, syncNow bool) error {
	err := s.spoolItem(it, syncNow)
	recycle(it)
	return err
}

// spoolItem appends it to the spool (fsynced before return when
// syncNow); an error means the event is lost.
func (s *Sink) spoolItem(it *item, syncNow bool) error {
	var err error
	if syncNow {
		err = s.sp.AppendSync(it.subject, it.id, it.data)
	} else {
		err = s.sp.Append(it.subject, it.id, it.data)
	}
	if err != nil {
		s.failed.Add(1)
		s.log.Error("AUDIT EVENT LOST: NATS did not take it and the spool cannot write", "id", it.id, "subject", it.subject, "err", err)
		return fmt.Errorf("auditsink: event %s: %w: %w", it.id, ErrNotDurable, err)
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

// runPublisher takes events from the queue, gathered (collect), and
// publishes them: as one batch when the stream allows it, else each with
// its own ack; or spools them while NATS is unavailable. When the queue is
// closed (Close) it waits for the acks of what it published, until
// Close's deadline.
func (s *Sink) runPublisher() {
	defer s.pubWG.Done()
	defer close(s.ackWatchDone)
	var last time.Time // start of the previous batch
	for {
		items, open := s.collect(last)
		if len(items) > 0 {
			last = time.Now()
			s.dispatch(items)
		}
		if !open {
			break
		}
	}
	s.settleAll()
}

// collect returns the next events to publish: it waits for one, then
// gathers more until BatchLinger after the start of the previous batch
// (last) or until a batch is full. open is false once the queue is closed
// and empty. Acks of batches settled before are dropped on the way.
func (s *Sink) collect(last time.Time) (items []*item, open bool) {
	items = s.gathered[:0]
	limit := cap(s.gathered)
	for len(items) == 0 {
		select {
		case it, ok := <-s.queue:
			if !ok {
				return items, false
			}
			items = append(items, it)
		case <-s.batchAcks: // late
		}
	}
	timerSet := false
	defer func() {
		if timerSet {
			s.burstTimer.Stop()
		}
	}()
	for len(items) < limit {
		select {
		case it, ok := <-s.queue:
			if !ok {
				return items, false
			}
			items = append(items, it)
			continue
		default:
		}
		if !timerSet {
			wait := time.Until(last.Add(s.cfg.BatchLinger))
			if wait <= 0 || s.cfg.BatchLinger < 0 {
				return items, true
			}
			s.burstTimer.Reset(wait)
			timerSet = true
		}
		select {
		case it, ok := <-s.queue:
			if !ok {
				return items, false
			}
			items = append(items, it)
		case <-s.burstTimer.C:
			timerSet = false
			return items, true
		case <-s.abort:
			return items, true
		case <-s.batchAcks: // late
		}
	}
	return items, true
}

// dispatch publishes items (as one batch when the stream allows it), or
// spools them while NATS is unavailable.
func (s *Sink) dispatch(items []*item) {
	if s.aborted() || s.spooling.Load() || !s.streamReady.Load() || !s.nc.IsConnected() {
		for _, it := range items {
			_ = s.spoolRecycle(it, false)
			s.nMem.Add(-1)
		}
		clear(items)
		return
	}
	if s.batching.Load() {
		s.publishBurst(items)
		return
	}
	for _, it := range items {
		s.publishLive(it)
	}
	clear(items)
}

// publishMsg publishes the event it with reply subject reply, its headers
// written into the publisher's reused message. Only the publisher calls it.
func (s *Sink) publishMsg(it *item, reply string) error {
	s.pubID[0] = it.id
	s.pub.Subject, s.pub.Reply, s.pub.Data = it.subject, reply, it.data
	err := s.nc.PublishMsg(&s.pub)
	s.pub.Data = nil
	return err
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// settleAll waits for the acks of the live events; when Close's deadline
// comes first, the rest are spooled.
func (s *Sink) settleAll() {
	select {
	case <-s.live.waitIdle():
	case <-s.abort:
		s.failPending(true, errCloseTimeout)
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

// Healthy returns nil while events can be made durable: NATS being away
// is fine as long as the spool can write. Non-nil (the spool cannot write)
// should fail the PDP's readiness.
func (s *Sink) Healthy() error {
	s.closeMu.RLock()
	closed := s.closed
	s.closeMu.RUnlock()
	if closed {
		return ErrClosed
	}
	if err := s.sp.Healthy(); err != nil {
		return fmt.Errorf("auditsink: spool unhealthy: %w", err)
	}
	return nil
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	sp := s.sp.Stats()
	st := Stats{
		Published:    s.published.Load(),
		Spooled:      s.spooled.Load(),
		Replayed:     s.replayed.Load(),
		Duplicates:   s.duplicates.Load(),
		Failed:       s.failed.Load(),
		Corrupt:      sp.Corrupt,
		Queued:       len(s.queue),
		InFlight:     max(0, s.nMem.Load()-int64(len(s.queue))),
		SpoolPending: sp.Pending,
		SpoolBytes:   sp.Bytes,
		Spooling:     s.spooling.Load(),
		Batches:      s.batches.Load(),
	}
	st.Pending = max(s.nMem.Load(), int64(st.Queued)) + st.SpoolPending
	return st
}

// deliverCheckpoint delivers a checkpoint like an event; its failure is
// logged (the decision's own event is not affected).
func (s *Sink) deliverCheckpoint(ctx context.Context, cp *item) {
	if err := s.deliver(ctx, cp); err != nil {
		s.log.Error("audit checkpoint lost", "id", cp.id, "err", err)
	}
}

// runCheckpoints writes a checkpoint every CheckpointInterval when events
// came since the last one, and persists the chain's head with it.
func (s *Sink) runCheckpoints() {
	defer s.bgWG.Done()
	t := time.NewTicker(s.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.closeMu.RLock()
			if !s.closed {
				if cp := s.chain.checkpointDue(now, false); cp != nil {
					s.deliverCheckpoint(s.ctx, cp)
					if err := s.chain.save(false); err != nil {
						s.log.Warn("cannot persist the audit chain head", "err", err)
					}
				}
			}
			s.closeMu.RUnlock()
		}
	}
}

// Close stops accepting events and flushes: queued events are published
// (or spooled when NATS is away), acks are awaited until ctx ends (then the
// unacked events are spooled too), and the spool is fsynced. Whatever is
// left on the spool is replayed by the next New on the same directory.
func (s *Sink) Close(ctx context.Context) error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	// The last checkpoint covers every event recorded.
	clean := true
	if cp := s.chain.checkpointDue(time.Now(), true); cp != nil {
		if err := s.deliver(ctx, cp); err != nil {
			s.log.Error("final audit checkpoint lost", "id", cp.id, "err", err)
			clean = false
		}
	}
	close(s.queue)
	s.closeMu.Unlock()

	stop := context.AfterFunc(ctx, func() { s.abortOnce.Do(func() { close(s.abort) }) })
	s.pubWG.Wait()
	stop()
	_ = s.ackSub.Unsubscribe()
	_ = s.batchSub.Unsubscribe()
	s.cancel()
	s.bgWG.Wait()
	err := s.sp.Close(true)
	if err == nil && clean {
		if serr := s.chain.save(true); serr != nil {
			s.log.Warn("cannot persist the audit chain head; the next run starts a new chain", "err", serr)
		}
	}
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
