package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBucket is the key-value bucket of the revocations.
const DefaultBucket = "pdp_revocations"

// maxValueBytes bounds a stored entry: the longest id, reason and by, every
// byte escaped by JSON (\u003c: 6 bytes), fit within it.
const maxValueBytes = 32 << 10

// BucketConfig is the configuration of a new revocation bucket
// (DefaultBucket; set Bucket for another): file storage, one value per
// key, replicas as the audit stream's (0 = 1). It has no TTL: a
// revocation ends when it is removed or when its own Expires passes,
// never because the bucket forgot it.
func BucketConfig(replicas int) jetstream.KeyValueConfig {
	if replicas <= 0 {
		replicas = 1
	}
	return jetstream.KeyValueConfig{
		Bucket:       DefaultBucket,
		Description:  "mcp-pdp: revoked clients, subjects and tokens (pdp revoke)",
		History:      1,
		MaxValueSize: maxValueBytes,
		Storage:      jetstream.FileStorage,
		Replicas:     replicas,
	}
}

// OpenBucket binds to the revocation bucket, creating it (BucketConfig
// with replicas) when it does not exist and create is set. A bucket with
// a TTL is refused: it would drop revocations on its own.
func OpenBucket(ctx context.Context, js jetstream.JetStream, bucket string, create bool, replicas int) (jetstream.KeyValue, error) {
	if js == nil {
		return nil, fmt.Errorf("revocation bucket %s: no JetStream context", bucket)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		if !create {
			return nil, fmt.Errorf("revocation bucket %s does not exist (the first `pdp revoke` creates it): %w", bucket, err)
		}
		cfg := BucketConfig(replicas)
		cfg.Bucket = bucket
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) { // created meanwhile by another replica
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("revocation bucket %s: %w", bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("revocation bucket %s: status: %w", bucket, err)
	}
	if ttl := st.TTL(); ttl > 0 {
		return nil, fmt.Errorf("revocation bucket %s has a TTL of %s: it would forget revocations; recreate it without one (an entry expires by its own --for)", bucket, ttl)
	}
	return kv, nil
}

// decodeEntry reads the value stored under key: a JSON Entry whose kind
// and id are the key's, valid.
func decodeEntry(key string, value []byte) (*Entry, error) {
	kind, id, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(value, &e); err != nil {
		return nil, fmt.Errorf("revocation %s: value is not a revocation: %w", key, err)
	}
	if e.Kind != kind || e.ID != id {
		return nil, fmt.Errorf("revocation %s: the value is the revocation of %s %s, not of the key's %s %s", key, e.Kind, quoteID(e.ID), kind, quoteID(id))
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("revocation %s: %w", key, err)
	}
	return &e, nil
}

// Put stores e (validated first) under its key, replacing the revocation
// of the same kind and id. Created and Expires are the caller's to set.
func Put(ctx context.Context, kv jetstream.KeyValue, e *Entry) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("revoke %s %s: %w", e.Kind, quoteID(e.ID), err)
	}
	if _, err := kv.Put(ctx, e.Key(), data); err != nil {
		return fmt.Errorf("revoke %s %s: bucket %s, key %s: %w", e.Kind, quoteID(e.ID), kv.Bucket(), e.Key(), err)
	}
	return nil
}

// Remove deletes the revocation of kind and id (as stored: a token's
// fingerprint normalized, see NormalizeID). A revocation the bucket does
// not hold is an error wrapping ErrNotFound.
func Remove(ctx context.Context, kv jetstream.KeyValue, kind Kind, id string) error {
	if _, err := ParseKind(string(kind)); err != nil {
		return fmt.Errorf("revoke: remove: %w", err)
	}
	if id == "" {
		return fmt.Errorf("revoke: remove %s: no id", kind)
	}
	key := Key(kind, id)
	if _, err := kv.Get(ctx, key); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("revoke: remove %s %s: %w in bucket %s", kind, quoteID(id), ErrNotFound, kv.Bucket())
		}
		return fmt.Errorf("revoke: remove %s %s: bucket %s, key %s: %w", kind, quoteID(id), kv.Bucket(), key, err)
	}
	if err := kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("revoke: remove %s %s: bucket %s, key %s: %w", kind, quoteID(id), kv.Bucket(), key, err)
	}
	return nil
}

// List returns the revocations the bucket holds, sorted by kind and id,
// expired ones included (Entry.Active tells). Values that are not valid
// revocations are left out and reported in the error (one per key,
// joined), returned with the valid entries.
func List(ctx context.Context, kv jetstream.KeyValue) ([]*Entry, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("revoke: list bucket %s: %w", kv.Bucket(), err)
	}
	defer stopWatch(w)
	var (
		out  []*Entry
		errs []error
	)
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("revoke: list bucket %s: %w", kv.Bucket(), ctx.Err())
		case kve, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("revoke: list bucket %s: the watch ended", kv.Bucket())
			}
			if kve == nil { // all values read
				SortEntries(out)
				return out, errors.Join(errs...)
			}
			e, err := decodeEntry(kve.Key(), kve.Value())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, e)
		}
	}
}
