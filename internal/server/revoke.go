package server

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/revoke"
)

// DefaultRevocationSnapshot is revocation.snapshot_file's default, under
// the data directory.
const DefaultRevocationSnapshot = "revocations.json"

// startRevocations fills the revocation set from the snapshot of the last
// run and watches the bucket over the audit's NATS connection: a change
// written by `pdp revoke` applies to the next decision, without a policy
// reload. A snapshot that cannot be read refuses the start (the PDP would
// otherwise forget revocations while NATS is unreachable).
func (s *Server) startRevocations(reg prometheus.Registerer) (*revoke.Set, error) {
	rc := s.cfg.Revocation
	snap := rc.SnapshotFile
	if snap == "" {
		snap = filepath.Join(s.cfg.DataDir, DefaultRevocationSnapshot)
	}
	set := revoke.NewSet()
	entries, err := revoke.LoadSnapshot(snap)
	if err != nil {
		return nil, fmt.Errorf("revocation.snapshot_file: %w (remove the file to start from the bucket alone)", err)
	}
	set.Replace(entries)
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	w := revoke.NewWatcher(set, revoke.WatcherConfig{
		Bucket: rc.Bucket, SnapshotFile: snap, Logger: s.log.With("component", "revocation"),
		Create: s.cfg.Audit.ManagesStream(), Replicas: s.cfg.Audit.Replicas,
	})
	if err := w.Register(reg); err != nil {
		return nil, fmt.Errorf("revocation: metrics: %w", err)
	}
	s.revocations = w
	ctx, cancel := context.WithCancel(s.bg)
	done := make(chan struct{})
	s.wg.Go(func() {
		defer close(done)
		if err := w.Run(ctx, js); err != nil && ctx.Err() == nil {
			s.log.Error("revocation watcher stopped", "component", "revocation", "err", err)
		}
	})
	// Stopped before the NATS connection closes (Close), so that its end
	// is not mistaken for an outage.
	s.stopRevocations = func() { cancel(); <-done }
	s.log.Info("revocations watched", "component", "revocation", "bucket", cmp.Or(rc.Bucket, revoke.DefaultBucket), "from_snapshot", len(entries))
	return set, nil
}

// revocationStatus is the revocation part of /readyz: a PDP that lost the
// bucket keeps deciding with the last revocations it saw and says so
// ("synced": false, the time of the last sync, why).
func (s *Server) revocationStatus() map[string]any {
	st := s.revocations.Status()
	out := map[string]any{"synced": st.Synced, "connected": st.Connected, "entries": st.Entries}
	if !st.LastSync.IsZero() {
		out["last_sync"] = st.LastSync.UTC().Format(time.RFC3339Nano)
	}
	if st.LastError != "" {
		out["last_error"] = st.LastError
	}
	if !st.Synced {
		out["detail"] = "not watching the revocation bucket: deciding with the last revocations seen (the snapshot, or the bucket before it was lost)"
	}
	if st.SnapshotError != "" {
		out["snapshot_error"] = st.SnapshotError
	}
	return out
}
