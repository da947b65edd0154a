package auditsink

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Modes of Record (the YAML key audit.mode).
const (
	ModeAsync = "async"
	ModeSync  = "sync"
)

// Defaults that New applies to zero Config fields. internal/config's YAML
// defaults for the audit.* keys must equal them.
const (
	DefaultStream          = "MCP_AUDIT"
	DefaultSubjectPrefix   = "mcp.audit"
	DefaultReplicas        = 1
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultQueueSize       = 8192
	DefaultMaxPending      = 1024
	DefaultAckTimeout      = 5 * time.Second
	DefaultBatchLinger     = 5 * time.Millisecond
)

// Fixed settings (no option sets them).
const (
	// syncTimeout bounds the wait for the ack in sync mode; an event not
	// acked in time is fsynced to the spool instead.
	syncTimeout = 5 * time.Second
	// maxEventBytes bounds one encoded event (and never more than the
	// server's max_payload, less room for the headers). A larger event
	// loses its arguments and item lists and is marked "truncated".
	maxEventBytes = 256 << 10
	// maxBurst bounds the events of one batch (and never more than
	// Config.MaxPending): JetStream sends one flow ack every 500 messages of
	// a batch at most, so a batch of up to 500 events is acked once.
	maxBurst = 500
)

// Config configures a Sink. The zero value of each field means its
// default, given on the field. Fields that are YAML keys name them
// (audit.*); the others have no key, and the PDP leaves them zero.
type Config struct {
	// Mode (audit.mode) is "async" (the default for ""): Record enqueues
	// and returns; or "sync": Record returns after the JetStream ack, or
	// after an fsynced spool write when NATS cannot ack within 5s.
	Mode string

	// Stream (audit.stream) is the JetStream stream name ("" =
	// DefaultStream, "MCP_AUDIT").
	Stream string
	// SubjectPrefix (audit.subject_prefix; "" = DefaultSubjectPrefix,
	// "mcp.audit"): the stream holds
	// <prefix>.<resource_key>.<method>.<outcome>.
	SubjectPrefix string
	// Replicas (audit.replicas) of the stream (0 = DefaultReplicas, 1; 3
	// recommended on a cluster).
	Replicas int
	// MaxAge (audit.max_age) of events in the stream (0 = keep forever).
	// When the stream is full of old events, the oldest are discarded,
	// never new ones.
	MaxAge time.Duration
	// DuplicateWindow (audit.duplicate_window) of the stream (0 =
	// DefaultDuplicateWindow, 2m): a replay of an event within this window
	// after its first store is dropped by JetStream.
	DuplicateWindow time.Duration
	// SkipStreamSetup leaves the stream to the operator: New only checks
	// that it exists instead of creating or updating it. Not a YAML key:
	// kept for the tests that need a stream the sink must not touch
	// (TestAckTimeoutSpoolsThenReplays).
	SkipStreamSetup bool

	// QueueSize (audit.queue_size) is the in-memory queue of the async
	// mode (0 = DefaultQueueSize, 8192); a full queue spills into the
	// spool.
	QueueSize int
	// MaxPending bounds async publishes awaiting their ack and the replay
	// window (0 = DefaultMaxPending, 1024). Not a YAML key: kept for the
	// test that fills the queue (TestQueueFullSpillsToSpool).
	MaxPending int
	// AckTimeout bounds the wait for an async ack (0 = DefaultAckTimeout,
	// 5s); an event whose ack does not come in time goes to the spool. Not
	// a YAML key: kept for the tests of ack timeouts and fail-over, which
	// would otherwise wait the full default.
	AckTimeout time.Duration
	// BatchLinger (0 = DefaultBatchLinger, 5ms; negative = none) is how
	// long the async publisher gathers events before it publishes them
	// together, counted from the start of the previous batch: under load
	// a batch goes out every BatchLinger; an event after a quiet spell goes
	// out at once. Each event stays one message in the stream; a batch is
	// one network write and, on a stream that allows batch publishing
	// (allow_batched, which the sink sets on a stream it manages), one
	// acknowledgement. Not a YAML key: the tests and benchmarks set it.
	BatchLinger time.Duration

	// SpoolDir (audit.spool_dir) is the spool directory. Required: the PDP
	// defaults it to <data_dir>/spool.
	SpoolDir string

	// PDP is this instance's name, written into every event.
	PDP string

	// SigningKey signs the chain's checkpoints (audit.checkpoint.signing_key;
	// the PDP generates one in its data directory when none is given). Nil:
	// checkpoints are unsigned, and `pdp audit verify` with trusted keys
	// reports them.
	SigningKey ed25519.PrivateKey
	// CheckpointEvery (audit.checkpoint.every; 0 = DefaultCheckpointEvery,
	// 1000): a checkpoint after every that many events. Negative: only the
	// interval's and Close's.
	CheckpointEvery int
	// CheckpointInterval (audit.checkpoint.interval; 0 =
	// DefaultCheckpointInterval, 1m): a checkpoint at most this long after
	// an event that no checkpoint covers yet.
	CheckpointInterval time.Duration

	// Logger (nil = discard).
	Logger *slog.Logger
	// Registerer for the metrics (nil = no metrics).
	Registerer prometheus.Registerer
}

func (c *Config) applyDefaults() {
	if c.Mode == "" {
		c.Mode = ModeAsync
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
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
	if c.BatchLinger == 0 {
		c.BatchLinger = DefaultBatchLinger
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
}

// Validate reports the first setting that New cannot use, naming its YAML
// key, or its Config field for the fields that have none. New calls it
// after applying the defaults; it is the sink's own check of what it
// relies on, whether or not the configuration file was checked before.
func (c *Config) Validate() error {
	switch c.Mode {
	case ModeAsync, ModeSync:
	default:
		return fmt.Errorf("audit.mode: %q is not valid: use %q or %q", c.Mode, ModeAsync, ModeSync)
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
	if c.QueueSize < 1 {
		return fmt.Errorf("audit.queue_size: %d must be at least 1", c.QueueSize)
	}
	if c.MaxPending < 1 {
		return fmt.Errorf("auditsink: Config.MaxPending: %d must be at least 1", c.MaxPending)
	}
	if c.AckTimeout < 0 {
		return fmt.Errorf("auditsink: Config.AckTimeout: %s must not be negative", c.AckTimeout)
	}
	if c.CheckpointInterval < 0 {
		return fmt.Errorf("audit.checkpoint.interval: %s must be positive", c.CheckpointInterval)
	}
	if c.SigningKey != nil && len(c.SigningKey) != ed25519.PrivateKeySize {
		return fmt.Errorf("audit.checkpoint.signing_key: not an Ed25519 private key (%d bytes)", len(c.SigningKey))
	}
	if c.SpoolDir == "" {
		return errors.New("audit.spool_dir: must be set (the PDP's default is <data_dir>/spool)")
	}
	return nil
}
