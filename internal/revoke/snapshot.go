package revoke

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// snapshotFormat names the snapshot file's format (and its version).
const snapshotFormat = "mcp-pdp revocations 1"

// maxSnapshotBytes bounds the snapshot file read at start.
const maxSnapshotBytes = 256 << 20

// snapshot is the snapshot file: the set as the watcher last saw it.
type snapshot struct {
	Format  string    `json:"format"`
	Written time.Time `json:"written"`
	Entries []*Entry  `json:"entries"`
}

// WriteSnapshot writes entries to path atomically: a temporary file in
// the same directory (mode 0600), fsynced, renamed over path, and the
// directory fsynced, so that path holds the old set or the new one,
// whole, even after a crash.
func WriteSnapshot(path string, entries []*Entry) (err error) {
	if entries == nil {
		entries = []*Entry{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(snapshot{Format: snapshotFormat, Written: time.Now().UTC(), Entries: entries}); err != nil {
		return fmt.Errorf("revocation snapshot %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("revocation snapshot %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("revocation snapshot %s: %w", path, err)
	}
	if _, err = f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("revocation snapshot %s: write %s: %w", path, tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("revocation snapshot %s: fsync %s: %w", path, tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("revocation snapshot %s: close %s: %w", path, tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("revocation snapshot %s: %w", path, err)
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("revocation snapshot %s: fsync directory: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// LoadSnapshot reads the entries of the snapshot at path, to fill the Set
// (Set.Replace) before NATS is reachable. A file that does not exist is
// no error: no entries (a first start). A file that is not a snapshot, or
// holds an invalid entry, is an error naming the file: the caller decides
// whether to start without it.
func LoadSnapshot(path string) ([]*Entry, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("revocation snapshot %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("revocation snapshot %s: %w", path, err)
	}
	if st.Size() > maxSnapshotBytes {
		return nil, fmt.Errorf("revocation snapshot %s: %d bytes, more than the %d a snapshot may hold", path, st.Size(), maxSnapshotBytes)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("revocation snapshot %s: %w", path, err)
	}
	var s snapshot
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("revocation snapshot %s is corrupt: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("revocation snapshot %s is corrupt: data after the snapshot", path)
	}
	if s.Format != snapshotFormat {
		return nil, fmt.Errorf("revocation snapshot %s: format %q, want %q", path, s.Format, snapshotFormat)
	}
	for i, e := range s.Entries {
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("revocation snapshot %s is corrupt: entry %d: %w", path, i, err)
		}
	}
	return s.Entries, nil
}
