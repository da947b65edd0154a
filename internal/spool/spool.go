// Package spool is the audit sink's local store for events that NATS has
// not taken yet: an append-only sequence of segment files of
// length-prefixed, CRC-checked records, fsynced in small batches, read back
// in order and deleted once replayed. It survives a crash of the process
// (every record is written with one write(2)) and, after the next fsync, of
// the machine. A torn or damaged record is detected and skipped without
// losing the records around it.
//
// The on-disk format below is a compatibility boundary: a new binary must
// replay the spool an old one left.
package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Spool layout (all in one directory):
//
//	<16 hex digits>.seg   segment files, ascending IDs, replayed in order
//	cursor                first unreplayed position (segment ID + offset)
//
// A segment starts with the 8-byte magic segMagic, then frames:
//
//	u32 LE payload length | u32 LE CRC-32C(payload) | payload
//	payload = u8 version(1) | u16 LE len | subject | u16 LE len | id | data (the event JSON)
//
// Appends never go to a segment of a previous run: a new process starts a
// new segment, so a torn tail left by a crash stays at the end of a sealed
// segment, where the reader detects and skips it without losing the records
// before it.
const (
	segMagic       = "MCPAUD1\n"
	segSuffix      = ".seg"
	cursorName     = "cursor"
	frameHeaderLen = 8
	payloadVersion = 1
	// maxFrameLen bounds one record; anything larger is corruption.
	maxFrameLen = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	errSpoolClosed = errors.New("audit spool is closed")
	errTorn        = errors.New("torn record")
	errBadLength   = errors.New("corrupt record length")
	errBadCRC      = errors.New("record checksum mismatch")
)

// Defaults that Open applies to zero Options fields.
const (
	DefaultSyncEvery     = 64
	DefaultSyncInterval  = 50 * time.Millisecond
	DefaultProbeInterval = 5 * time.Second
	DefaultSegmentBytes  = 64 << 20
)

// Options tune a Spool. The zero value of each field means its default.
type Options struct {
	// SyncEvery fsyncs the active segment after this many appended
	// records (0 = DefaultSyncEvery).
	SyncEvery int
	// SyncInterval fsyncs at least this often while there are unsynced
	// records (0 = DefaultSyncInterval).
	SyncInterval time.Duration
	// ProbeInterval is how often a healthy spool checks that it can still
	// create, write and fsync a file in its directory (0 =
	// DefaultProbeInterval).
	ProbeInterval time.Duration
	// SegmentBytes rotates to a new segment file once the active one
	// reaches this size (0 = DefaultSegmentBytes).
	SegmentBytes int64
	// Logger receives corruption reports and health changes (nil =
	// discard).
	Logger *slog.Logger
}

func (o *Options) applyDefaults() {
	if o.SyncEvery == 0 {
		o.SyncEvery = DefaultSyncEvery
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.ProbeInterval == 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Pos is a position in the spool: a segment and an offset in it. Positions
// are comparable with ==; their order is the spool's.
type Pos struct {
	seg uint64
	off int64
}

type segment struct {
	id      uint64
	path    string
	size    int64 // readable bytes (records fully written)
	sealed  bool  // no more appends
	scanned bool  // problems were already reported by the start-up scan
}

// Record is one spooled message as ReadBatch returns it.
type Record struct {
	Subject string
	ID      string
	Data    []byte
	// Start is where the record's frame starts: committing up to Start
	// leaves this record and the ones after it to be replayed.
	Start Pos
}

// Batch is what one ReadBatch returns.
type Batch struct {
	Records []Record
	// End is the position after the last record or skipped junk: commit
	// it once every record of the batch is done.
	End Pos
}

// Spool is a directory of segment files. Append, AppendSync, Healthy,
// Stats, Cursor, Drained and Close are safe for concurrent use; ReadBatch
// and Commit belong to one replaying goroutine.
type Spool struct {
	dir string
	opt Options
	log *slog.Logger

	mu        sync.Mutex
	segs      []*segment // ascending IDs; the last one may be active
	active    *os.File
	activeSeg *segment
	nextID    uint64
	cursor    Pos
	pending   int64 // records not yet replayed (valid ones)
	dirty     int   // appended since the last fsync
	lastErr   error // last append/fsync failure; nil when healthy
	closed    bool

	syncKick chan struct{}
	corrupt  atomic.Uint64 // corrupt records and torn tails skipped

	// cursor persistence: written at most every cursorEvery, without fsync
	cursorMu      sync.Mutex
	cursorSaved   Pos
	cursorWritten time.Time

	// reader state: only the replayer goroutine uses it
	rf   *os.File
	rfID uint64
}

func segName(id uint64) string { return fmt.Sprintf("%016x%s", id, segSuffix) }

// Open opens (or creates) the spool directory dir, checks that it is
// writable, and scans the segments a previous run left there: their
// records are the first that ReadBatch returns. A process must not open a
// directory that another Spool has open.
func Open(dir string, opt Options) (*Spool, error) {
	if dir == "" {
		return nil, errors.New("audit spool: directory is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit spool: create %q: %w", dir, err)
	}
	opt.applyDefaults()
	s := &Spool{dir: dir, opt: opt, log: opt.Logger, nextID: 1, syncKick: make(chan struct{}, 1)}
	if err := s.probe(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit spool: list %q: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 16, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("audit spool: stat %s: %w", name, err)
		}
		s.segs = append(s.segs, &segment{id: id, path: filepath.Join(dir, name), size: info.Size(), sealed: true, scanned: true})
		if id >= s.nextID {
			s.nextID = id + 1
		}
	}
	slices.SortFunc(s.segs, func(a, b *segment) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	s.cursor = s.readCursor()
	// New segments must sort after the cursor's, or the next start would
	// take them for replayed ones.
	s.nextID = max(s.nextID, s.cursor.seg+1)
	// Segments before the cursor's segment were fully replayed (their
	// deletion did not reach the disk before a crash).
	for len(s.segs) > 0 && s.segs[0].id < s.cursor.seg {
		_ = os.Remove(s.segs[0].path)
		s.segs = s.segs[1:]
	}
	if len(s.segs) > 0 && s.segs[0].id != s.cursor.seg {
		s.cursor = Pos{seg: s.segs[0].id}
	}
	kept := s.segs[:0]
	for _, seg := range s.segs {
		from := int64(0)
		if seg.id == s.cursor.seg {
			from = s.cursor.off
		}
		n, err := s.scan(seg, from)
		if err != nil {
			return nil, err
		}
		if n < 0 { // not a segment: moved aside
			continue
		}
		s.pending += int64(n)
		kept = append(kept, seg)
	}
	s.segs = kept
	if len(s.segs) > 0 && s.segs[0].id != s.cursor.seg {
		s.cursor = Pos{seg: s.segs[0].id}
	}
	if s.pending > 0 {
		s.log.Info("audit spool has events from a previous run; they will be replayed",
			"dir", dir, "events", s.pending, "segments", len(s.segs))
	}
	return s, nil
}

// scan validates a leftover segment from offset from, reports problems once,
// and returns the number of valid records (-1 when the file is not a
// segment and was renamed to *.corrupt).
func (s *Spool) scan(seg *segment, from int64) (int, error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return 0, fmt.Errorf("audit spool: open %s: %w", seg.path, err)
	}
	defer f.Close()
	if seg.size < int64(len(segMagic)) {
		if seg.size > 0 {
			s.log.Warn("audit spool: segment shorter than its header (torn at creation); skipped", "segment", seg.path, "bytes", seg.size)
			s.corrupt.Add(1)
		}
		return 0, nil
	}
	magic := make([]byte, len(segMagic))
	if _, err := io.ReadFull(f, magic); err != nil {
		return 0, fmt.Errorf("audit spool: read %s: %w", seg.path, err)
	}
	if string(magic) != segMagic {
		bad := seg.path + ".corrupt"
		s.log.Error("audit spool: file is not a spool segment; moved aside, not replayed", "segment", seg.path, "moved_to", bad)
		s.corrupt.Add(1)
		if err := os.Rename(seg.path, bad); err != nil {
			return 0, fmt.Errorf("audit spool: move aside %s: %w", seg.path, err)
		}
		return -1, nil
	}
	if from < int64(len(segMagic)) {
		from = int64(len(segMagic))
	}
	fr := newFrameReader(f, from, seg.size)
	n := 0
	for {
		p, err := fr.next()
		switch {
		case err == nil:
			if _, derr := decodePayload(p); derr != nil {
				s.corrupt.Add(1)
				s.log.Error("audit spool: undecodable record skipped", "segment", seg.path, "offset", fr.recStart, "err", derr)
				continue
			}
			n++
		case errors.Is(err, io.EOF):
			return n, nil
		case errors.Is(err, errBadCRC):
			s.corrupt.Add(1)
			s.log.Error("audit spool: record with bad checksum skipped; the records around it are replayed", "segment", seg.path, "offset", fr.recStart)
		case errors.Is(err, errTorn):
			s.corrupt.Add(1)
			s.log.Warn("audit spool: torn record at the end of a segment (a write cut short by a crash); skipped, earlier records are replayed",
				"segment", seg.path, "offset", fr.recStart, "bytes_skipped", seg.size-fr.recStart, "records_before", n)
			return n, nil
		case errors.Is(err, errBadLength):
			s.corrupt.Add(1)
			s.log.Error("audit spool: corrupt record length; the rest of the segment cannot be read and is skipped",
				"segment", seg.path, "offset", fr.recStart, "bytes_skipped", seg.size-fr.recStart, "records_before", n)
			return n, nil
		default:
			return 0, fmt.Errorf("audit spool: read %s: %w", seg.path, err)
		}
	}
}

// probe checks that a file can be created, written and fsynced in the
// spool directory.
func (s *Spool) probe() error {
	f, err := os.CreateTemp(s.dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("audit spool: directory %q is not writable: %w", s.dir, err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("probe"))
	serr := f.Sync()
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, serr, cerr, rerr); err != nil {
		return fmt.Errorf("audit spool: directory %q is not writable: %w", s.dir, err)
	}
	return nil
}

// encodeFrame returns the frame of one record: header and payload.
func encodeFrame(subject, id string, data []byte) ([]byte, error) {
	if len(subject) > 0xffff || len(id) > 0xffff {
		return nil, errors.New("audit spool: subject or id too long")
	}
	n := 1 + 2 + len(subject) + 2 + len(id) + len(data)
	if n > maxFrameLen {
		return nil, fmt.Errorf("audit spool: record of %d bytes exceeds %d", n, maxFrameLen)
	}
	b := make([]byte, frameHeaderLen+n)
	p := b[frameHeaderLen:]
	p[0] = payloadVersion
	binary.LittleEndian.PutUint16(p[1:], uint16(len(subject)))
	i := 3 + copy(p[3:], subject)
	binary.LittleEndian.PutUint16(p[i:], uint16(len(id)))
	i += 2
	i += copy(p[i:], id)
	copy(p[i:], data)
	binary.LittleEndian.PutUint32(b[0:], uint32(n))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(p, castagnoli))
	return b, nil
}

// decodePayload reads a frame's payload back into a Record (without Start).
func decodePayload(p []byte) (Record, error) {
	if len(p) < 5 || p[0] != payloadVersion {
		return Record{}, errors.New("unknown record version")
	}
	sl := int(binary.LittleEndian.Uint16(p[1:]))
	if 3+sl+2 > len(p) {
		return Record{}, errors.New("record subject out of bounds")
	}
	subject := string(p[3 : 3+sl])
	i := 3 + sl
	il := int(binary.LittleEndian.Uint16(p[i:]))
	i += 2
	if i+il > len(p) {
		return Record{}, errors.New("record id out of bounds")
	}
	id := string(p[i : i+il])
	return Record{Subject: subject, ID: id, Data: p[i+il:]}, nil
}

// frameReader reads frames from [off, limit) of a file.
type frameReader struct {
	br       *bufio.Reader
	off      int64 // next frame
	recStart int64 // start of the frame last returned or failed
	limit    int64
	hdr      [frameHeaderLen]byte
}

func newFrameReader(f *os.File, off, limit int64) *frameReader {
	if limit < off {
		limit = off
	}
	return &frameReader{br: bufio.NewReaderSize(io.NewSectionReader(f, off, limit-off), 64<<10), off: off, limit: limit}
}

// next returns the next payload; io.EOF at a clean end; errBadCRC for a
// skippable bad record (the reader moved past it); errTorn or errBadLength
// when the rest of [off, limit) cannot be read as frames.
func (r *frameReader) next() ([]byte, error) {
	r.recStart = r.off
	if r.off >= r.limit {
		return nil, io.EOF
	}
	if r.limit-r.off < frameHeaderLen {
		return nil, errTorn
	}
	if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		return nil, fmt.Errorf("read record header: %w", err)
	}
	n := int64(binary.LittleEndian.Uint32(r.hdr[0:]))
	sum := binary.LittleEndian.Uint32(r.hdr[4:])
	if n == 0 || n > maxFrameLen {
		return nil, errBadLength
	}
	if r.off+frameHeaderLen+n > r.limit {
		return nil, errTorn
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.br, p); err != nil {
		return nil, fmt.Errorf("read record: %w", err)
	}
	r.off += frameHeaderLen + n
	if crc32.Checksum(p, castagnoli) != sum {
		return nil, errBadCRC
	}
	return p, nil
}

// Append writes one record to the active segment with a single write(2):
// once it returns nil, the record survives a crash of the process (it is in
// the OS page cache); it survives a crash of the machine after the next
// fsync (every SyncEvery records or SyncInterval). subject and id are at
// most 65535 bytes each. A non-nil error means the record is not stored.
func (s *Spool) Append(subject, id string, data []byte) error {
	frame, err := encodeFrame(subject, id, data)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendLocked(frame)
}

func (s *Spool) appendLocked(frame []byte) error {
	if s.closed {
		return errSpoolClosed
	}
	if s.active == nil {
		if err := s.openActiveLocked(); err != nil {
			s.lastErr = err
			return err
		}
	}
	n, err := s.active.Write(frame)
	if err != nil {
		// A partial write leaves a torn tail: seal the segment at the last
		// whole record so that later appends start a fresh segment.
		werr := fmt.Errorf("audit spool: append to %s: %w", s.activeSeg.path, err)
		s.log.Error("audit spool: write failed", "err", werr, "bytes_written", n)
		s.sealActiveLocked(false)
		s.lastErr = werr
		return werr
	}
	s.activeSeg.size += int64(n)
	s.pending++
	s.dirty++
	if s.dirty >= s.opt.SyncEvery {
		select {
		case s.syncKick <- struct{}{}:
		default:
		}
	}
	if s.activeSeg.size >= s.opt.SegmentBytes {
		s.sealActiveLocked(true)
	}
	return nil
}

// AppendSync is Append followed by an fsync of the segment: when it
// returns nil, the record survives a crash of the machine.
func (s *Spool) AppendSync(subject, id string, data []byte) error {
	if err := s.Append(subject, id, data); err != nil {
		return err
	}
	return s.syncFile(true)
}

func (s *Spool) openActiveLocked() error {
	seg := &segment{id: s.nextID, path: filepath.Join(s.dir, segName(s.nextID))}
	f, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit spool: create segment: %w", err)
	}
	if _, err := f.Write([]byte(segMagic)); err != nil {
		_ = f.Close()
		_ = os.Remove(seg.path)
		return fmt.Errorf("audit spool: write segment header %s: %w", seg.path, err)
	}
	if err := syncDir(s.dir); err != nil {
		_ = f.Close()
		_ = os.Remove(seg.path)
		return err
	}
	s.nextID++
	seg.size = int64(len(segMagic))
	s.segs = append(s.segs, seg)
	s.active, s.activeSeg = f, seg
	if len(s.segs) == 1 {
		s.cursor = Pos{seg: seg.id}
	}
	return nil
}

func (s *Spool) sealActiveLocked(doSync bool) {
	if s.active == nil {
		return
	}
	if doSync {
		if err := s.active.Sync(); err != nil {
			s.lastErr = fmt.Errorf("audit spool: fsync %s: %w", s.activeSeg.path, err)
			s.log.Error("audit spool: fsync failed", "err", s.lastErr)
		} else {
			s.dirty = 0
		}
	}
	_ = s.active.Close()
	s.activeSeg.sealed = true
	s.active, s.activeSeg = nil, nil
}

// sync fsyncs the active segment if records were appended since the last
// fsync. A successful fsync clears an earlier failure.
func (s *Spool) sync() error { return s.syncFile(false) }

// syncFile fsyncs the active segment; unless force, only when it has
// unsynced records. force is for a caller that must not return before its
// own record is on disk: a concurrent fsync that already reset the dirty
// count may not have finished yet.
func (s *Spool) syncFile(force bool) error {
	s.mu.Lock()
	f, seg, dirty := s.active, s.activeSeg, s.dirty
	if f == nil || (dirty == 0 && !force) {
		s.mu.Unlock()
		return nil
	}
	s.dirty = 0
	s.mu.Unlock()
	err := f.Sync()
	if errors.Is(err, os.ErrClosed) {
		// Rotated (sealing fsynced it) or fully replayed meanwhile.
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = fmt.Errorf("audit spool: fsync %s: %w", seg.path, err)
		s.dirty += dirty
		s.log.Error("audit spool: fsync failed", "err", s.lastErr)
		return s.lastErr
	}
	s.lastErr = nil
	return nil
}

// Run fsyncs in small batches until ctx ends: every SyncEvery records
// (kicked by Append) or every SyncInterval. It also probes the directory
// every ProbeInterval, so that a spool that could not take the next event
// is reported before an event needs it, and on every tick while unhealthy,
// so that recovery is noticed quickly. It persists the cursor as Commit
// moves it.
func (s *Spool) Run(ctx context.Context) {
	t := time.NewTicker(s.opt.SyncInterval)
	defer t.Stop()
	probe := time.NewTicker(s.opt.ProbeInterval)
	defer probe.Stop()
	for {
		doProbe := false
		select {
		case <-ctx.Done():
			return
		case <-s.syncKick:
		case <-t.C:
			doProbe = s.Healthy() != nil
		case <-probe.C:
			doProbe = true
		}
		_ = s.sync()
		if doProbe {
			s.checkWritable()
		}
		_ = s.maybeWriteCursor(false)
	}
}

func (s *Spool) checkWritable() {
	err := s.probe()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	switch {
	case err != nil && s.lastErr == nil:
		s.lastErr = err
		s.log.Error("audit spool cannot write: events that need it will be lost (readiness fails)", "err", err)
	case err == nil && s.lastErr != nil && (s.active == nil || s.dirty == 0):
		s.log.Info("audit spool: writable again")
		s.lastErr = nil
	}
}

// Healthy returns nil while the spool can write, or the last append,
// fsync or probe failure (cleared by the next success).
func (s *Spool) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSpoolClosed
	}
	return s.lastErr
}

// Stats are a spool's counters.
type Stats struct {
	// Pending records not yet committed (valid ones).
	Pending int64
	// Bytes of segments not yet committed.
	Bytes int64
	// Segments on disk, the active one included.
	Segments int
	// Corrupt records and torn tails skipped since Open.
	Corrupt uint64
}

// Stats returns the spool's counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Pending: s.pending, Segments: len(s.segs), Corrupt: s.corrupt.Load()}
	for _, seg := range s.segs {
		st.Bytes += seg.size
		if seg.id == s.cursor.seg {
			st.Bytes -= max(s.cursor.off, 0)
		}
	}
	return st
}

// ReadBatch reads up to maxRecs records (and about maxBytes) from the
// cursor, skipping (and reporting) damaged ones. It does not move the
// cursor: the replayer commits after the acks. A batch without records
// whose End differs from Cursor has skipped junk, and Commit(End, 0) moves
// past it.
func (s *Spool) ReadBatch(maxRecs int, maxBytes int) (Batch, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Batch{}, errSpoolClosed
	}
	pos := s.cursor
	segs := make([]segment, 0, len(s.segs))
	for _, seg := range s.segs {
		if seg.id >= pos.seg {
			segs = append(segs, *seg)
		}
	}
	s.mu.Unlock()

	b := Batch{End: pos}
	size := 0
	for _, seg := range segs {
		if seg.id != pos.seg {
			pos = Pos{seg: seg.id}
		}
		if pos.off < int64(len(segMagic)) {
			pos.off = int64(len(segMagic))
		}
		if seg.size <= pos.off {
			pos.off = max(pos.off, seg.size)
			b.End = pos
			if !seg.sealed {
				return b, nil
			}
			continue
		}
		f, err := s.readerFile(seg)
		if err != nil {
			return b, err
		}
		fr := newFrameReader(f, pos.off, seg.size)
	frames:
		for {
			p, err := fr.next()
			switch {
			case err == nil:
				pos.off = fr.off
				rec, derr := decodePayload(p)
				if derr != nil {
					s.skipped(seg, fr.recStart, derr)
					b.End = pos
					continue
				}
				rec.Start = Pos{seg: seg.id, off: fr.recStart}
				b.Records = append(b.Records, rec)
				b.End = pos
				size += len(rec.Data)
				if len(b.Records) >= maxRecs || size >= maxBytes {
					return b, nil
				}
			case errors.Is(err, io.EOF):
				break frames
			case errors.Is(err, errBadCRC):
				pos.off = fr.off
				b.End = pos
				s.skipped(seg, fr.recStart, err)
			case errors.Is(err, errTorn), errors.Is(err, errBadLength):
				s.skipped(seg, fr.recStart, err)
				pos.off = seg.size
				b.End = pos
				break frames
			default:
				return b, fmt.Errorf("audit spool: read %s: %w", seg.path, err)
			}
		}
		b.End = pos
		if !seg.sealed {
			return b, nil // the active segment: what is there is all there is
		}
	}
	return b, nil
}

func (s *Spool) skipped(seg segment, off int64, err error) {
	if seg.scanned {
		return // reported by the start-up scan
	}
	s.corrupt.Add(1)
	s.log.Error("audit spool: unreadable record skipped", "segment", seg.path, "offset", off, "err", err)
}

func (s *Spool) readerFile(seg segment) (*os.File, error) {
	if s.rf != nil && s.rfID == seg.id {
		return s.rf, nil
	}
	if s.rf != nil {
		_ = s.rf.Close()
		s.rf = nil
	}
	f, err := os.Open(seg.path)
	if err != nil {
		return nil, fmt.Errorf("audit spool: open %s: %w", seg.path, err)
	}
	s.rf, s.rfID = f, seg.id
	return f, nil
}

// Commit moves the cursor to end after n records were acked, deletes
// segments that are fully replayed, and persists the cursor.
func (s *Spool) Commit(end Pos, n int) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errSpoolClosed
	}
	s.pending -= int64(n)
	if s.pending < 0 {
		s.pending = 0
	}
	s.cursor = end
	var remove []string
	for len(s.segs) > 0 {
		seg := s.segs[0]
		done := seg.id < end.seg || (seg.id == end.seg && end.off >= seg.size && end.off > 0)
		if !done {
			break
		}
		if seg == s.activeSeg {
			// Fully replayed active segment: close it; the next append
			// starts a new one. Nothing is left unsynced that matters.
			_ = s.active.Close()
			s.active, s.activeSeg, s.dirty = nil, nil, 0
		}
		if s.rf != nil && s.rfID == seg.id {
			_ = s.rf.Close()
			s.rf = nil
		}
		remove = append(remove, seg.path)
		s.segs = s.segs[1:]
	}
	if len(s.segs) == 0 {
		s.cursor = Pos{seg: s.nextID}
	} else if s.segs[0].id != s.cursor.seg {
		s.cursor = Pos{seg: s.segs[0].id}
	}
	s.mu.Unlock()

	var errs []error
	// Cursor first: if we crash between the two, the segments are deleted
	// at the next start (they precede the cursor).
	if err := s.maybeWriteCursor(len(remove) > 0); err != nil {
		errs = append(errs, err)
	}
	for _, p := range remove {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("audit spool: remove %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// Cursor returns the position of the first record not yet committed.
func (s *Spool) Cursor() Pos {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursor
}

// Drained calls fn and returns true when everything appended was replayed;
// it holds the spool lock while calling fn, so no append can slip between
// the check and fn.
func (s *Spool) Drained(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) > 0 {
		return false
	}
	fn()
	return true
}

// cursorEvery bounds how often the cursor file is rewritten while
// replaying. A cursor that lags behind only makes the next start replay a
// few events again, which JetStream drops as duplicates inside the
// duplicate window.
const cursorEvery = 100 * time.Millisecond

// maybeWriteCursor persists the current cursor if it moved and (unless
// force) the last write is older than cursorEvery.
func (s *Spool) maybeWriteCursor(force bool) error {
	s.mu.Lock()
	cur := s.cursor
	s.mu.Unlock()
	s.cursorMu.Lock()
	defer s.cursorMu.Unlock()
	if cur == s.cursorSaved || (!force && time.Since(s.cursorWritten) < cursorEvery) {
		return nil
	}
	if err := s.writeCursor(cur); err != nil {
		return err
	}
	s.cursorSaved, s.cursorWritten = cur, time.Now()
	return nil
}

// writeCursor replaces the cursor file atomically (write + rename). It is
// not fsynced: see cursorEvery.
func (s *Spool) writeCursor(p Pos) error {
	var b [20]byte
	binary.LittleEndian.PutUint64(b[0:], p.seg)
	binary.LittleEndian.PutUint64(b[8:], uint64(p.off))
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	path := filepath.Join(s.dir, cursorName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("audit spool: write cursor: %w", err)
	}
	_, werr := f.Write(b[:])
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("audit spool: write cursor: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("audit spool: write cursor: %w", err)
	}
	return nil
}

// readCursor returns the persisted cursor, or the zero position (replay
// everything) when it is missing or damaged.
func (s *Spool) readCursor() Pos {
	b, err := os.ReadFile(filepath.Join(s.dir, cursorName))
	if err != nil {
		return Pos{}
	}
	if len(b) != 20 || crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
		s.log.Warn("audit spool: cursor file damaged; replaying all segments (duplicates are dropped by JetStream inside the duplicate window)")
		return Pos{}
	}
	return Pos{seg: binary.LittleEndian.Uint64(b[0:]), off: int64(binary.LittleEndian.Uint64(b[8:]))}
}

// Close closes the files; with doSync it first persists the cursor and
// fsyncs the active segment (a graceful stop), without it leaves the disk
// as a crash would. A closed spool rejects appends; Close is idempotent.
func (s *Spool) Close(doSync bool) error {
	var err error
	if doSync {
		err = s.maybeWriteCursor(true)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if s.active != nil {
		if doSync {
			if serr := s.active.Sync(); serr != nil {
				err = errors.Join(err, fmt.Errorf("audit spool: fsync %s: %w", s.activeSeg.path, serr))
			}
		}
		_ = s.active.Close()
		s.activeSeg.sealed = true
		s.active, s.activeSeg = nil, nil
	}
	if s.rf != nil {
		_ = s.rf.Close()
		s.rf = nil
	}
	s.closed = true
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit spool: open dir for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit spool: fsync dir %s: %w", dir, err)
	}
	return nil
}
