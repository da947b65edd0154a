package dpop

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KVReplay is a [ReplayCache] shared by every replica: a NATS JetStream
// key-value bucket whose entries expire after the bucket's TTL. A claim is
// kv.Create of the key in hex, which the server accepts once: "key exists"
// is a replay. Every other failure is returned, and the proof is refused
// (fail closed).
//
// A claim made while the connection is down waits in the NATS client's
// reconnect buffer until ctx ends; it may still be stored after the
// reconnect, so that the proof refused then counts as used (a client sends
// a new proof with its retry anyway). A connection made with
// nats.ReconnectBufSize(-1) does not buffer claims.
type KVReplay struct {
	kv     jetstream.KeyValue
	bucket string
	ttl    time.Duration
	now    func() time.Time
}

// NewKVReplay binds to bucket, creating it when absent with the given TTL
// (file storage, one value per key). The TTL must cover the longest a proof
// stays acceptable, 2 × the verifier's window ([New] checks): a proof with
// iat up to one window in the future stays acceptable until one window
// after iat. An existing bucket whose TTL is shorter (or none: it would
// never forget) is refused.
func NewKVReplay(ctx context.Context, js jetstream.JetStream, bucket string, ttl time.Duration) (*KVReplay, error) {
	if js == nil {
		return nil, errors.New("dpop: replay bucket: no JetStream context")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("dpop: replay bucket %s: TTL %s must be positive", bucket, ttl)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "mcp-pdp: DPoP proofs seen (RFC 9449 jti replay protection)",
			History:     1,
			TTL:         ttl,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another replica created it
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dpop: replay bucket %s: %w", bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("dpop: replay bucket %s: status: %w", bucket, err)
	}
	if got := st.TTL(); got <= 0 || got < ttl {
		return nil, fmt.Errorf("dpop: replay bucket %s exists with TTL %s; it needs a TTL of at least %s (recreate it or use another bucket)", bucket, got, ttl)
	}
	return &KVReplay{kv: kv, bucket: bucket, ttl: st.TTL(), now: time.Now}, nil
}

// Claim implements [ReplayCache]. until must be within the bucket's TTL
// from now, or the bucket would forget the key too early: that is refused
// with an error.
func (r *KVReplay) Claim(ctx context.Context, key [32]byte, owner string, until time.Time) (bool, error) {
	if until.Sub(r.now()) > r.ttl {
		return false, fmt.Errorf("dpop: replay bucket %s keeps keys %s, less than the %s requested", r.bucket, r.ttl, until.Sub(r.now()).Round(time.Second))
	}
	var name [64]byte
	hex.Encode(name[:], key[:])
	if _, err := r.kv.Create(ctx, string(name[:]), []byte(owner)); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return false, fmt.Errorf("dpop: replay bucket %s: %w", r.bucket, err)
		}
		if owner == "" {
			return false, nil
		}
		e, err := r.kv.Get(ctx, string(name[:]))
		if err != nil {
			return false, fmt.Errorf("dpop: replay bucket %s: %w", r.bucket, err)
		}
		return string(e.Value()) == owner, nil
	}
	return true, nil
}

// TTL is how long the bucket keeps a key.
func (r *KVReplay) TTL() time.Duration { return r.ttl }

func (r *KVReplay) maxHold() time.Duration { return r.ttl }
