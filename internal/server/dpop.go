package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/dpop"
	"github.com/mcp-pdp/pdp/internal/stepup"
)

// Where DPoP state lives across replicas, in the audit's NATS.
const (
	// dpopReplayBucket holds the proofs accepted (their jti, per key)
	// until they expire, so that a proof replayed to another replica is
	// refused.
	dpopReplayBucket = "PDP_DPOP_REPLAY"
	// dpopKeyBucket holds the key that authenticates DPoP nonces, the same
	// on every replica.
	dpopKeyBucket = "PDP_DPOP_KEYS"
	dpopNonceKey  = "nonce-key"
	// dpopNonceLifetime is how long a DPoP nonce is current (a nonce is
	// accepted for one more lifetime after, so at most twice this).
	dpopNonceLifetime = time.Minute
)

// wireDPoP gives every resource whose dpop is not off its proof verifier:
// one replay cache for all (memory, then NATS KV when the audit's NATS is
// connected, so that replicas share it) and, for the resources with
// dpop_nonce, nonces authenticated by a key shared through NATS KV (a
// random key of this process without NATS). resources are in the order of
// the configuration.
func (s *Server) wireDPoP(ctx context.Context, resources []*core.Resource) error {
	var window time.Duration
	var nonces bool
	for _, r := range s.cfg.Resources {
		if r.DPoP == string(stepup.DPoPOff) {
			continue
		}
		window = max(window, r.DPoPWindow.D(), dpop.DefaultWindow)
		nonces = nonces || r.DPoPNonce
	}
	if window == 0 {
		return nil // DPoP off everywhere
	}
	local := dpop.NewMemoryReplay(dpop.DefaultMemoryReplayEntries)
	var replay dpop.ReplayCache = local
	var js jetstream.JetStream
	if s.nc != nil {
		var err error
		if js, err = jetstream.New(s.nc); err != nil {
			return fmt.Errorf("dpop: JetStream: %w", err)
		}
		kv := &lazyKV{js: js, bucket: dpopReplayBucket, ttl: 2 * window}
		if replay, err = dpop.NewLayeredReplay(local, kv); err != nil {
			return fmt.Errorf("dpop: %w", err)
		}
	} else {
		s.log.Warn("DPoP proofs are remembered by this replica only (no NATS): run one replica, or turn the audit on")
	}
	var ns *dpop.Nonces
	if nonces {
		key, err := s.nonceKey(ctx, js)
		if err != nil {
			return err
		}
		if ns, err = dpop.NewNonces(key, dpopNonceLifetime, nil); err != nil {
			return fmt.Errorf("dpop: nonces: %w", err)
		}
	}
	for i, r := range s.cfg.Resources {
		if r.DPoP == string(stepup.DPoPOff) {
			continue
		}
		o := dpop.Options{Algorithms: r.DPoPAlgorithms, Window: r.DPoPWindow.D(), Replay: replay}
		if r.DPoPNonce {
			o.Nonces = ns
		}
		v, err := dpop.New(o)
		if err != nil {
			return fmt.Errorf("resources[%d] (%s): %w", i, r.URI, err)
		}
		res := resources[i]
		res.DPoP, res.DPoPRequired = v, r.DPoP == string(stepup.DPoPRequired)
		res.Challenge.DPoP, res.Challenge.DPoPAlgs = stepup.DPoPAllowed, v.Algorithms()
		if res.DPoPRequired {
			res.Challenge.DPoP = stepup.DPoPRequired
		}
	}
	return nil
}

// lazyKV is the replay bucket, bound on first use: NATS may be away when
// the PDP starts (the audit spools meanwhile), and a PDP must start all
// the same. Until the bucket is bound, DPoP proofs cannot be checked and
// are refused as unavailable (fail closed); a failed bind is retried at
// most once a second.
type lazyKV struct {
	js     jetstream.JetStream
	bucket string
	ttl    time.Duration

	mu   sync.Mutex
	kv   *dpop.KVReplay
	last time.Time // of the last failed bind
	err  error
}

func (l *lazyKV) Claim(ctx context.Context, key [32]byte, owner string, until time.Time) (bool, error) {
	kv, err := l.bind(ctx)
	if err != nil {
		return false, err
	}
	return kv.Claim(ctx, key, owner, until)
}

func (l *lazyKV) bind(ctx context.Context) (*dpop.KVReplay, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kv != nil {
		return l.kv, nil
	}
	if l.err != nil && time.Since(l.last) < time.Second {
		return nil, l.err
	}
	kv, err := dpop.NewKVReplay(ctx, l.js, l.bucket, l.ttl)
	if err != nil {
		l.err, l.last = fmt.Errorf("dpop: replay bucket %s: %w", l.bucket, err), time.Now()
		return nil, l.err
	}
	l.kv = kv
	return kv, nil
}

// nonceKey is the key of the DPoP nonces: shared by the replicas through
// NATS KV (the first to start creates it), or this process's own.
func (s *Server) nonceKey(ctx context.Context, js jetstream.JetStream) ([]byte, error) {
	key := make([]byte, dpop.MinNonceKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("dpop: nonce key: %w", err)
	}
	if js == nil {
		s.log.Warn("DPoP nonces are issued by this replica only (no NATS): run one replica, or turn the audit on")
		return key, nil
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: dpopKeyBucket, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("dpop: key bucket %s: %w", dpopKeyBucket, err)
	}
	if _, err := kv.Create(ctx, dpopNonceKey, key); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("dpop: storing the nonce key: %w", err)
	}
	e, err := kv.Get(ctx, dpopNonceKey)
	if err != nil {
		return nil, fmt.Errorf("dpop: reading the nonce key: %w", err)
	}
	if len(e.Value()) < dpop.MinNonceKeyBytes {
		return nil, fmt.Errorf("dpop: the nonce key in %s is %d bytes; at least %d", dpopKeyBucket, len(e.Value()), dpop.MinNonceKeyBytes)
	}
	return e.Value(), nil
}
