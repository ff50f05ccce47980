package journal

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/internal/bufpool"
)

// DefaultSegmentSize is the preallocated size of a segment file.
const DefaultSegmentSize = 64 << 20

// maxBatchBytes bounds how much one write+fdatasync carries, so a burst of
// large records does not hold small ones back for long.
const maxBatchBytes = 8 << 20

// zeroAhead is how far ahead of its records the active segment is kept
// written with zeros. fallocate leaves unwritten extents, and an
// fdatasync after writing into one must also commit the extent's
// conversion through the file system's own journal: on ext4 that
// doubles its cost. Over blocks already written it only flushes data.
// Zeros read back as the unused tail they stand for.
const zeroAhead = 1 << 20

// DefaultSyncInterval is how long records written but not fdatasynced
// wait for a sync nobody asked for.
const DefaultSyncInterval = 200 * time.Millisecond

// zeros is the source of those writes.
var zeros = make([]byte, zeroAhead)

// Options configure a Journal.
type Options struct {
	// SegmentSize is how much each segment file preallocates; a segment is
	// rotated when the next record does not fit. Default DefaultSegmentSize,
	// at least 4096.
	SegmentSize int64
	// SyncInterval bounds how long a written record waits for an
	// fdatasync when no caller asks for one (Append, Queue's wait, Sync,
	// RequestSync do); default DefaultSyncInterval.
	SyncInterval time.Duration
	// Logger receives recovery warnings and write failures; default
	// slog.Default().
	Logger *slog.Logger
}

var (
	// ErrClosed: the journal was closed.
	ErrClosed = errors.New("journal: closed")
	// ErrLocked: another Journal (in this or another process) has the directory open.
	ErrLocked = errors.New("journal: directory is in use by another process")
	// ErrNoTerm: Append before any term was started.
	ErrNoTerm = errors.New("journal: no term started")
	// ErrStaleTerm: StartTerm with a term not above every term used.
	ErrStaleTerm = errors.New("journal: term already used")
	// ErrTerm: a record's explicit term is not the current term.
	ErrTerm = errors.New("journal: record term is not the current term")
	// ErrIndex: a record's explicit index is not the next index.
	ErrIndex = errors.New("journal: record index is not the next index")
	// ErrTooLarge: a record would exceed MaxRecordSize.
	ErrTooLarge = errors.New("journal: record too large")
	// ErrCorrupt: damage Open will not repair by itself, or that
	// Iterate found after Open.
	ErrCorrupt = errors.New("journal: corrupt")
	// ErrNotSynced: Prune of a term with entries not yet synced.
	ErrNotSynced = errors.New("journal: entries not yet applied and synced")
	// ErrRetained: Prune of a term the Retain guard keeps.
	ErrRetained = errors.New("journal: term retained for reconciliation")
	// ErrNotApplied: MarkSynced beyond the applied watermark.
	ErrNotApplied = errors.New("journal: index not applied")
)

// Journal is an append-only, checksummed, term-segmented log of requests.
// All methods are safe for concurrent use.
type Journal struct {
	dir     string
	log     *slog.Logger
	segSize int64
	boot    uint64
	dirf    *os.File // fsynced after creating, renaming and removing files
	lockf   *os.File // holds the flock while open

	termMu  sync.Mutex   // serializes StartTerm
	syncMu  sync.Mutex   // serializes MarkSynced
	pruneMu sync.RWMutex // Iterate (shared) against Prune (exclusive)
	retain  atomic.Pointer[func(term uint64) bool]

	kick     chan struct{} // wakes the flusher
	done     chan struct{} // closed when the flusher exits
	syncKick chan struct{} // wakes the syncer
	syncDone chan struct{} // closed when the syncer exits
	syncIvl  time.Duration
	notify   atomic.Pointer[chan<- struct{}]

	// fileMu guards active against the syncer: the writer changes it
	// (rotation) under fileMu, the syncer fdatasyncs it under fileMu.
	fileMu sync.Mutex

	// wmu makes one goroutine at a time the writer of segment files: the
	// flusher, or an Enqueue caller writing its records itself. The
	// fields below are the writer's (Open's before the flusher starts,
	// Close's after it stops).
	wmu          sync.Mutex
	stopped      bool // the flusher exited: nothing is written any more
	active       *os.File
	activeSeg    *segment
	appf         *os.File
	appliedSaved uint64
	zeroed       int64 // bytes of the active segment written, with records or zeros

	mu           sync.Mutex
	term, salt   uint64 // current term; the salt its new segments get
	next         uint64 // index the next reservation gets
	written      uint64 // every index up to here is written (survives a process crash)
	durable      uint64 // every index up to here is fdatasynced (survives a power loss)
	want         uint64 // a caller wants every index up to here fdatasynced
	lazyArmed    bool   // the syncer's SyncInterval timer runs
	queue        []*pending
	waiters      []*pending // written, waiting to be durable
	segs         []*segment // ordered by term, then first index
	applied      uint64     // every index up to here is applied
	appliedAbove map[uint64]struct{}
	synced       uint64
	err          error // sticky write failure
	closed       bool
}

// pending is a record between Append and durability, or a Sync waiting.
type pending struct {
	buf               []byte
	term, salt, index uint64
	ready             atomic.Bool // buf is sealed
	done              chan error  // nil: the caller learns through Notify
	pooled            *[]byte     // buf's, to recycle once written
}

// Open opens or creates the journal in dir. It scans every segment:
// a torn tail left by a crash is cut at the last intact record (logged at
// Warn with file and offset); damage before intact acknowledged records is
// an ErrCorrupt error. Nothing valid is ever truncated.
//
// After Open the current term is the highest term ever started, and
// appends continue in it; StartTerm begins a new one.
func Open(dir string, opts Options) (*Journal, error) {
	if opts.SegmentSize == 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.SegmentSize < 4096 {
		return nil, fmt.Errorf("journal: segment size %d below 4096", opts.SegmentSize)
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := syncDir(filepath.Dir(filepath.Clean(dir))); err != nil { // the journal's own name
		return nil, err
	}
	j := &Journal{
		dir:          dir,
		log:          opts.Logger,
		segSize:      opts.SegmentSize,
		boot:         bootID(),
		kick:         make(chan struct{}, 1),
		done:         make(chan struct{}),
		syncKick:     make(chan struct{}, 1),
		syncDone:     make(chan struct{}),
		syncIvl:      opts.SyncInterval,
		appliedAbove: map[uint64]struct{}{},
	}
	if err := j.lock(); err != nil {
		return nil, err
	}
	if err := j.recover(); err != nil {
		j.closeFiles()
		return nil, err
	}
	go j.flusher()
	go j.syncer()
	return j, nil
}

func (j *Journal) lock() error {
	f, err := os.OpenFile(filepath.Join(j.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s", ErrLocked, j.dir)
		}
		return err
	}
	j.lockf = f
	return nil
}

func (j *Journal) closeFiles() {
	for _, f := range []*os.File{j.active, j.appf, j.dirf, j.lockf} {
		if f != nil {
			f.Close()
		}
	}
}

// recover rebuilds the in-memory state from the directory. Everything is
// scanned and checked before anything is changed, so a journal found
// damaged is left as it was for inspection.
func (j *Journal) recover() error {
	var err error
	if j.dirf, err = os.Open(j.dir); err != nil {
		return err
	}
	scans, stray, err := j.scanSegments()
	if err != nil {
		return err
	}
	term, termStart, haveTerm, err := readState(j.dir, termFile, termMagic)
	if err != nil {
		return err
	}
	if n := len(scans); n > 0 {
		if !haveTerm {
			return fmt.Errorf("%w: %s: segments exist but the term file is missing", ErrCorrupt, j.dir)
		}
		if top := scans[n-1].seg.term; term < top {
			return fmt.Errorf("%w: %s: term file says %d, segments reach term %d", ErrCorrupt, j.dir, term, top)
		}
	}

	synced, _, haveSynced, err := readState(j.dir, syncedFile, syncedMagic)
	if err != nil {
		return err
	}
	if stray != "" {
		// A segment's header is durable before its first record is
		// written, so a headerless segment held nothing acknowledged,
		// unless the synced watermark says otherwise.
		if _, first, _ := parseSegName(filepath.Base(stray)); haveSynced && first <= synced {
			return fmt.Errorf("%w: %s: segment header lost, but entries up to %d were synced", ErrCorrupt, stray, synced)
		}
		j.log.Warn("journal: removing segment whose creation was interrupted", "file", stray)
		if err := os.Remove(stray); err != nil {
			return err
		}
		if err := j.dirf.Sync(); err != nil {
			return err
		}
	}
	for i, res := range scans {
		seg := res.seg
		if res.garbage {
			j.log.Warn("journal: cutting torn tail", "file", seg.path, "offset", seg.size, "bytes", res.fileLen-seg.size)
		}
		if res.fileLen < seg.size {
			j.log.Warn("journal: segment ends inside its last record's padding; restoring it", "file", seg.path, "size", res.fileLen)
		}
		if res.garbage || res.fileLen < seg.size || (i < len(scans)-1 && res.fileLen > seg.size) {
			// Drop torn bytes, or the unused preallocation of a segment
			// sealed just before a crash, or give back the zeros that pad
			// an intact last record. Only bytes after the last intact
			// record change.
			if err := truncateSync(seg.path, seg.size); err != nil {
				return err
			}
		}
		j.segs = append(j.segs, seg)
	}
	j.term = term
	j.next = max(termStart, 1)
	if n := len(j.segs); n > 0 {
		// Indexes continue after the last intact record. The term file
		// can name a later first index when records reserved before
		// StartTerm never became durable (a crash, a torn tail); they
		// were never acknowledged, and skipping them would leave a gap
		// that the next Open refuses.
		last := j.segs[n-1].last
		if termStart > last+1 {
			j.log.Warn("journal: term's first index was never written; continuing after the last intact record",
				"dir", j.dir, "term", term, "first", termStart, "last", last)
		}
		j.next = last + 1
	}
	j.durable = j.next - 1
	j.written = j.durable

	switch {
	case !haveSynced && len(j.segs) > 0:
		j.log.Warn("journal: synced watermark file missing; every entry counts as unapplied", "dir", j.dir)
	case !haveSynced:
		// A new journal: from now on a missing file means damage.
		if err := writeStateDurable(j.dirf, syncedFile, syncedMagic, 0, 0); err != nil {
			return err
		}
	}
	if synced > j.durable {
		j.log.Warn("journal: synced watermark beyond the last intact record", "dir", j.dir, "synced", synced, "last", j.durable)
		synced = j.durable
	}
	if len(j.segs) > 0 {
		synced = max(synced, j.segs[0].first-1) // pruned entries were synced
	}
	j.synced, j.applied = synced, synced
	// Within the same boot the store's applied-but-unsynced changes are
	// still in the page cache, so the lazily saved applied mark holds.
	if a, boot, ok, _ := readState(j.dir, appliedFile, appliedMagic); ok && j.boot != 0 && boot == j.boot && a > synced && a <= j.durable {
		j.applied = a
	}
	if j.appf, err = os.OpenFile(filepath.Join(j.dir, appliedFile), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return err
	}
	j.appliedSaved = ^uint64(0)
	j.saveApplied(j.applied)

	j.salt = rand.Uint64()
	if n := len(j.segs); n > 0 {
		seg := j.segs[n-1]
		f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		// What was read may sit only in the page cache of a process that
		// died before its fdatasync; make it durable before building on it.
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			f.Close()
			return err
		}
		if seg.term == j.term {
			if err := preallocate(f, seg.size, j.segSize, j.log); err != nil {
				f.Close()
				return err
			}
			j.active, j.activeSeg, j.salt, j.zeroed = f, seg, seg.salt, seg.size
		} else {
			err := f.Truncate(seg.size) // sealed: its term is over
			f.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// scanSegments validates every segment in order. stray is a last segment
// whose creation was interrupted (no header, nothing written).
func (j *Journal) scanSegments() (scans []scanResult, stray string, err error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, "", err
	}
	type cand struct{ term, first uint64 }
	var cands []cand
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			os.Remove(filepath.Join(j.dir, name)) // an interrupted state write
		case strings.HasPrefix(name, "term-"):
			t, f, ok := parseSegName(name)
			if !ok {
				return nil, "", fmt.Errorf("%w: %s: unexpected file name", ErrCorrupt, filepath.Join(j.dir, name))
			}
			cands = append(cands, cand{t, f})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(cmp.Compare(a.term, b.term), cmp.Compare(a.first, b.first))
	})
	for i, c := range cands {
		path := filepath.Join(j.dir, segName(c.term, c.first))
		last := i == len(cands)-1
		res, err := scanSegment(path, c.term, c.first)
		if err != nil {
			return nil, "", err
		}
		switch {
		case res.seg == nil && !last:
			return nil, "", fmt.Errorf("%w: %s: segment without header before later segments", ErrCorrupt, path)
		case res.seg == nil:
			stray = path
			continue
		case res.garbage && !last:
			// Only the last segment can hold a batch that was being
			// written: a segment is created after its predecessor's
			// last batch was synced.
			return nil, "", fmt.Errorf("%w: %s: damaged data at offset %d of a sealed segment", ErrCorrupt, path, res.seg.size)
		}
		if n := len(scans); n > 0 && res.seg.first != scans[n-1].seg.last+1 {
			return nil, "", fmt.Errorf("%w: %s starts at index %d, but the previous segment ends at %d",
				ErrCorrupt, path, res.seg.first, scans[n-1].seg.last)
		}
		scans = append(scans, res)
	}
	return scans, stray, nil
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// StartTerm begins term, which must be higher than every term started
// before, across reopens: terms are never reused. Records already queued
// keep their term; later Appends get the new one.
func (j *Journal) StartTerm(term uint64) error {
	j.termMu.Lock()
	defer j.termMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	if j.err != nil {
		return j.err
	}
	if term <= j.term {
		return fmt.Errorf("%w: %d, highest started is %d", ErrStaleTerm, term, j.term)
	}
	// Written under mu so that no reservation slips between reading next
	// and switching terms: the file names the new term's first index,
	// which keeps indexes unique even if every older term is pruned.
	if err := writeStateDurable(j.dirf, termFile, termMagic, term, j.next); err != nil {
		return err
	}
	j.term, j.salt = term, rand.Uint64()
	return nil
}

// Term returns the current term: the highest ever started, 0 if none.
func (j *Journal) Term() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.term
}

// Append journals rec and returns its index once the record is durable
// (fdatasynced). Concurrent Appends share one fdatasync.
//
// Indexes are dense and increase across terms. rec.Term and rec.Index
// zero mean "current term" and "next index"; a caller that drives them
// (replication) passes them explicitly and gets ErrTerm or ErrIndex when
// they do not match. Once queued, a record is written even if ctx is
// cancelled: Append then still waits, so the caller always learns whether
// the record is durable.
func (j *Journal) Append(ctx context.Context, rec *Record) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	index, wait, err := j.Queue(rec)
	if err != nil {
		return 0, err
	}
	if err := wait(); err != nil {
		return 0, err
	}
	return index, nil
}

// Queue is Append in two steps, for a caller that must fix the order of
// its records without waiting for each one's fdatasync (replication): it
// gives rec its index and queues it before returning, so records queued
// one after another are written in that order, and returns wait, which
// blocks until the record is durable. Records queued together share
// fdatasyncs. A queued record is written whether or not wait is called.
func (j *Journal) Queue(rec *Record) (index uint64, wait func() error, err error) {
	p, err := j.push(rec, true)
	if err != nil {
		return 0, nil, err
	}
	j.wake()
	var once sync.Once
	wait = func() error {
		once.Do(func() { err = <-p.done })
		return err
	}
	return p.index, wait, nil
}

// Enqueue is Queue for a caller that learns of progress through Notify,
// Written and Durable instead of waiting for each record: it allocates
// nothing to wait on, and asks for no fdatasync. The record is written
// (write(2): it survives the process) before Enqueue returns, by the
// caller itself, when nobody else is writing and the record fits the
// active segment; else as soon as the flusher gets to it. It is made
// durable (fdatasync: it survives a power loss) once a caller asks
// (RequestSync, Sync, or another's Append or Queue) or after
// Options.SyncInterval. A failed write is reported through Notify and
// Written, as the flusher's are.
func (j *Journal) Enqueue(rec *Record) (index uint64, err error) {
	p, err := j.push(rec, false)
	if err != nil {
		return 0, err
	}
	j.writeInline()
	return p.index, nil
}

// writeInline writes the sealed records queued so far in the caller's
// goroutine. Handing them to the flusher and its news back to the
// caller cost two thread switches per record, the bulk of a replica's
// CPU on a small machine. It leaves them to the flusher when it is
// writing, or when they need a new segment: rotation fdatasyncs.
func (j *Journal) writeInline() {
	if !j.wmu.TryLock() {
		j.wake() // the writer may have taken its batch before our record
		return
	}
	if j.stopped {
		j.wmu.Unlock()
		return
	}
	j.mu.Lock()
	batch := j.take(j.fitsActive())
	broken, applied := j.err, j.applied
	j.mu.Unlock()
	if batch == nil {
		j.wmu.Unlock()
		j.wake()
		return
	}
	j.writeOut(batch, broken)
	j.saveApplied(applied)
	zero := j.zeroDue()
	j.wmu.Unlock()
	if zero {
		j.wake()
	}
}

// fitsActive returns the length of the sealed prefix of the queue if it
// goes into the active segment as it is, else 0. Called with wmu and mu
// held.
func (j *Journal) fitsActive() int {
	seg := j.activeSeg
	n, size := j.readyPrefix()
	if seg == nil || n == 0 || seg.size+int64(size) > j.segSize {
		return 0
	}
	for _, p := range j.queue[:n] {
		if p.term != seg.term || p.salt != seg.salt {
			return 0
		}
	}
	return n
}

// Notify makes the journal send on ch, without blocking, whenever
// records have been written or become durable and when a write fails,
// so ch wants a buffer of one. It replaces the channel registered before; nil stops
// the notifications.
func (j *Journal) Notify(ch chan<- struct{}) {
	if ch == nil {
		j.notify.Store(nil)
		return
	}
	j.notify.Store(&ch)
}

// Durable returns the index up to which every record is durable, and the
// sticky write failure after which the journal refuses appends.
func (j *Journal) Durable() (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.durable, j.err
}

// Written returns the index up to which every record is written to its
// segment file (it survives the process, not a power loss), and the
// sticky write failure.
func (j *Journal) Written() (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.written, j.err
}

// RequestSync asks for every record queued so far to be made durable,
// without waiting: Notify tells when Durable moves. Requests made while
// an fdatasync runs share the next one.
func (j *Journal) RequestSync() {
	j.mu.Lock()
	j.want = max(j.want, j.next-1)
	j.mu.Unlock()
	j.wakeSync()
}

// Sync makes every record queued so far durable, and returns once it is
// or the journal failed.
func (j *Journal) Sync() error {
	j.mu.Lock()
	switch {
	case j.closed:
		j.mu.Unlock()
		return ErrClosed
	case j.err != nil:
		j.mu.Unlock()
		return j.err
	case j.durable >= j.next-1:
		j.mu.Unlock()
		return nil
	}
	p := &pending{index: j.next - 1, done: make(chan error, 1)}
	j.want = max(j.want, p.index)
	j.waiters = append(j.waiters, p)
	j.mu.Unlock()
	j.wakeSync()
	return <-p.done
}

func (j *Journal) push(rec *Record, wait bool) (*pending, error) {
	if !rec.Fop.Op.Valid() {
		return nil, fmt.Errorf("journal: append of invalid op %d", rec.Fop.Op)
	}
	size := encodedSize(rec)
	if size > MaxRecordSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, MaxRecordSize)
	}
	// Record buffers are recycled once written: a write's record is as
	// large as its data, and a buffer per append was the largest source
	// of garbage on the write path.
	pooled := bufpool.Get(pad8(size))
	p := &pending{buf: encodeInto((*pooled)[:0], rec, size), pooled: pooled}
	if wait {
		p.done = make(chan error, 1)
	}
	var err error

	j.mu.Lock()
	switch {
	case j.closed:
		err = ErrClosed
	case j.err != nil:
		err = j.err
	case j.term == 0:
		err = ErrNoTerm
	case rec.Term != 0 && rec.Term != j.term:
		err = fmt.Errorf("%w: record term %d, current %d", ErrTerm, rec.Term, j.term)
	case rec.Index != 0 && rec.Index != j.next:
		err = fmt.Errorf("%w: record index %d, next %d", ErrIndex, rec.Index, j.next)
	}
	if err != nil {
		j.mu.Unlock()
		return nil, err
	}
	p.term, p.salt, p.index = j.term, j.salt, j.next
	j.next++
	durable := j.durable
	j.queue = append(j.queue, p)
	j.mu.Unlock()

	seal(p.buf, p.term, p.index, durable, p.salt) // outside the lock: appenders hash in parallel
	p.ready.Store(true)
	return p, nil
}

func (j *Journal) wake() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

func (j *Journal) wakeSync() {
	select {
	case j.syncKick <- struct{}{}:
	default:
	}
}

func (j *Journal) notifyCaller() {
	if ch := j.notify.Load(); ch != nil {
		select {
		case *ch <- struct{}{}:
		default:
		}
	}
}

// flusher writes what Enqueue callers leave to it and every Append and
// Queue. Each round it takes the sealed prefix of the queue and writes it
// with one pwritev per segment touched; the syncer makes it durable.
// Appends waiting for durability are handed to the syncer, which
// fdatasyncs once for all records written meanwhile: the more appenders
// wait, the more records share a sync.
func (j *Journal) flusher() {
	defer close(j.done)
	for {
		j.wmu.Lock()
		j.zeroAhead()
		j.mu.Lock()
		batch := j.takeReady()
		drained := j.closed && len(j.queue) == 0
		broken := j.err
		applied := j.applied
		j.mu.Unlock()
		if len(batch) > 0 {
			j.writeOut(batch, broken)
		}
		j.saveApplied(applied)
		// Set under wmu: a writer that took the last batch is done with
		// the files before Close closes them.
		j.stopped = drained && len(batch) == 0
		j.wmu.Unlock()
		switch {
		case len(batch) > 0:
		case drained:
			return
		default:
			<-j.kick
		}
	}
}

// writeOut writes batch (unless the journal is broken), hands its
// waiters to the syncer and tells the caller. Called with wmu held.
func (j *Journal) writeOut(batch []*pending, broken error) {
	n := 0
	err := broken
	if err == nil {
		n, err = j.writeBatch(batch)
	}
	j.mu.Lock()
	// The syncer has nothing to do for records that only wait for its
	// timer, which runs already: waking it per batch would cost a
	// thread switch per write.
	idle := j.lazyArmed && j.want <= j.durable && j.err == nil
	for i, p := range batch {
		bufpool.Put(p.pooled)
		p.buf, p.pooled = nil, nil
		switch {
		case p.done == nil:
		case i < n:
			j.want = max(j.want, p.index)
			j.waiters = append(j.waiters, p)
			idle = false
		default:
			p.done <- err
		}
	}
	idle = idle && err == nil
	j.mu.Unlock()
	j.notifyCaller()
	if !idle {
		j.wakeSync()
	}
}

// syncer fdatasyncs the active segment when a caller wants records
// durable, or when written records have waited Options.SyncInterval.
// After the flusher stops it makes everything written durable and
// releases the waiters left.
func (j *Journal) syncer() {
	defer close(j.syncDone)
	lazy := time.NewTimer(j.syncIvl)
	lazy.Stop()
	defer lazy.Stop()
	due := false
	stopping := false
	for {
		j.mu.Lock()
		broken := j.err != nil && len(j.waiters) > 0
		unsynced := j.written > j.durable && j.err == nil
		wanted := j.want > j.durable
		armed := j.lazyArmed
		j.mu.Unlock()
		switch {
		case broken:
			j.release(nil)
			continue
		case unsynced && (wanted || due || stopping):
			j.sync()
			due = false
			continue
		case stopping:
			j.release(ErrClosed)
			return
		case unsynced && !armed:
			lazy.Reset(j.syncIvl)
			j.setLazyArmed(true)
		}
		select {
		case <-j.syncKick:
		case <-lazy.C:
			j.setLazyArmed(false)
			due = true
		case <-j.done:
			stopping = true
		}
	}
}

func (j *Journal) setLazyArmed(on bool) {
	j.mu.Lock()
	j.lazyArmed = on
	j.mu.Unlock()
}

// sync makes every record written so far durable. Syncer only.
func (j *Journal) sync() {
	j.fileMu.Lock()
	j.mu.Lock()
	target := j.written
	j.mu.Unlock()
	var err error
	if j.active != nil {
		if err = unix.Fdatasync(int(j.active.Fd())); err != nil {
			err = j.fail(fmt.Errorf("fdatasync %s: %w", j.activeSeg.path, err))
		}
	}
	j.fileMu.Unlock()
	if err != nil {
		j.release(err)
		return
	}
	j.madeDurable(target)
}

// madeDurable moves the durable watermark to index and releases the
// waiters it covers.
func (j *Journal) madeDurable(index uint64) {
	j.mu.Lock()
	j.durable = max(j.durable, index)
	keep := j.waiters[:0]
	var done []*pending
	for _, p := range j.waiters {
		if p.index <= j.durable {
			done = append(done, p)
		} else {
			keep = append(keep, p)
		}
	}
	clear(j.waiters[len(keep):])
	j.waiters = keep
	j.mu.Unlock()
	for _, p := range done {
		p.done <- nil
	}
	j.notifyCaller()
}

// release fails every waiter: the journal broke or closed first.
func (j *Journal) release(cause error) {
	j.mu.Lock()
	ws := j.waiters
	j.waiters = nil
	if j.err != nil {
		cause = j.err
	}
	j.mu.Unlock()
	for _, p := range ws {
		p.done <- cause
	}
}

// readyPrefix returns how many records takeReady would take, and their
// size. Called with mu held.
func (j *Journal) readyPrefix() (n, size int) {
	q := j.queue
	for n < len(q) && q[n].ready.Load() && (n == 0 || size+len(q[n].buf) <= maxBatchBytes) {
		size += len(q[n].buf)
		n++
	}
	return n, size
}

// takeReady removes and returns the longest sealed prefix of the queue.
// Called with mu held.
func (j *Journal) takeReady() []*pending {
	n, _ := j.readyPrefix()
	return j.take(n)
}

// take removes and returns the first n records of the queue. Called with
// mu held.
func (j *Journal) take(n int) []*pending {
	q := j.queue
	if n == 0 {
		return nil
	}
	batch := slices.Clone(q[:n])
	clear(q[:n])
	if n == len(q) {
		j.queue = q[:0]
	} else {
		j.queue = q[n:]
	}
	return batch
}

// writeBatch writes batch, rotating segments as needed, and returns how
// many records (a prefix) were written. A failure is sticky: after a
// failed write or fdatasync the file's contents are unknown, so the
// journal refuses further appends until reopened.
func (j *Journal) writeBatch(batch []*pending) (int, error) {
	for i := 0; i < len(batch); {
		p := batch[i]
		seg := j.activeSeg
		if seg == nil || seg.term != p.term || seg.salt != p.salt ||
			(seg.last >= seg.first && seg.size+int64(len(p.buf)) > j.segSize) {
			if err := j.rotate(p); err != nil {
				return i, j.fail(err)
			}
			seg = j.activeSeg
		}
		n, end := i, seg.size
		for n < len(batch) && batch[n].term == seg.term && batch[n].salt == seg.salt &&
			(n == i || end+int64(len(batch[n].buf)) <= j.segSize) {
			end += int64(len(batch[n].buf))
			n++
		}
		bufs := make([][]byte, 0, n-i)
		for _, q := range batch[i:n] {
			bufs = append(bufs, q.buf)
		}
		fd := int(j.active.Fd())
		if err := pwritev(fd, bufs, seg.size); err != nil {
			return i, j.fail(fmt.Errorf("write %s: %w", seg.path, err))
		}
		j.mu.Lock()
		seg.size, seg.last = end, batch[n-1].index
		j.written = seg.last
		j.mu.Unlock()
		i = n
	}
	return len(batch), nil
}

func (j *Journal) fail(err error) error {
	err = fmt.Errorf("journal: %w (appends refused until reopened)", err)
	j.log.Error("journal: write failed", "dir", j.dir, "err", err)
	j.mu.Lock()
	j.err = err
	j.mu.Unlock()
	return err
}

// rotate seals the active segment and starts one whose first record is p.
func (j *Journal) rotate(p *pending) error {
	if j.active != nil {
		// Only the active segment is ever left unsynced.
		j.fileMu.Lock()
		err := unix.Fdatasync(int(j.active.Fd()))
		if err != nil {
			j.fileMu.Unlock()
			return fmt.Errorf("fdatasync %s: %w", j.activeSeg.path, err)
		}
		// Give back the unused preallocation; recovery copes if a crash
		// comes first.
		if err := j.active.Truncate(j.activeSeg.size); err != nil {
			j.log.Warn("journal: trimming sealed segment", "file", j.activeSeg.path, "err", err)
		}
		last := j.activeSeg.last
		j.active.Close()
		j.active, j.activeSeg = nil, nil
		j.fileMu.Unlock()
		j.madeDurable(last)
	}
	f, seg, err := createSegment(j.dir, p.term, p.index, p.salt, j.segSize, j.log)
	if err != nil {
		return err
	}
	if err := j.dirf.Sync(); err != nil {
		f.Close()
		return err
	}
	j.mu.Lock()
	j.segs = append(j.segs, seg)
	j.mu.Unlock()
	j.fileMu.Lock()
	j.active, j.activeSeg, j.zeroed = f, seg, seg.size
	j.fileMu.Unlock()
	j.zeroAhead()
	return nil
}

// zeroAhead writes zeros over the next stretch of the active segment once
// its records come within half of zeroAhead of the last zeros written.
// They are not synced here: the next batch's fdatasync carries them, and
// the extent conversion, once per stretch instead of once per batch. A
// failure only costs speed; the next write to the file reports real
// trouble. Writer only.
func (j *Journal) zeroAhead() {
	if !j.zeroDue() {
		return
	}
	seg := j.activeSeg
	from := max(j.zeroed, seg.size)
	to := min(seg.size+zeroAhead, j.segSize)
	if _, err := j.active.WriteAt(zeros[:to-from], from); err != nil {
		j.log.Warn("journal: writing zeros ahead of records", "file", seg.path, "err", err)
		to = j.segSize // give up on this segment
	}
	j.zeroed = to
}

// zeroDue reports whether zeroAhead has work. Writer only.
func (j *Journal) zeroDue() bool {
	seg := j.activeSeg
	return seg != nil && j.zeroed < j.segSize && j.zeroed-seg.size < zeroAhead/2
}

// pwritev writes bufs contiguously at off, resuming after short writes.
func pwritev(fd int, bufs [][]byte, off int64) error {
	const iovMax = 1024
	for len(bufs) > 0 {
		n, err := unix.Pwritev(fd, bufs[:min(len(bufs), iovMax)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		off += int64(n)
		for n > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
	}
	return nil
}

// saveApplied overwrites the applied file when the watermark moved. No
// fsync: the value is only trusted within this boot. Writer only.
func (j *Journal) saveApplied(a uint64) {
	if a == j.appliedSaved {
		return
	}
	if _, err := j.appf.WriteAt(encodeState(appliedMagic, a, j.boot), 0); err != nil {
		j.log.Warn("journal: saving applied watermark", "dir", j.dir, "err", err)
		return
	}
	j.appliedSaved = a
}

// MarkApplied records that the entry at index has been applied to the
// store. The applied watermark is the highest index up to which every
// entry is applied. It is saved at once, by the caller, when no writer is
// busy: a pwrite, where waking the flusher for it cost a thread switch per
// replicated request. A busy writer is woken to save it when done. The
// saved value is what gluon recon reads of a running brick, and what a
// restart replays from.
func (j *Journal) MarkApplied(index uint64) {
	j.mu.Lock()
	if index <= j.applied || index > j.written {
		j.mu.Unlock()
		return
	}
	if index == j.applied+1 {
		j.applied = index
		for {
			if _, ok := j.appliedAbove[j.applied+1]; !ok {
				break
			}
			delete(j.appliedAbove, j.applied+1)
			j.applied++
		}
	} else {
		j.appliedAbove[index] = struct{}{}
	}
	j.mu.Unlock()
	if !j.wmu.TryLock() {
		j.wake()
		return
	}
	// Read under wmu, so that a concurrent caller's older value is never
	// saved over a newer one.
	j.mu.Lock()
	applied := j.applied
	j.mu.Unlock()
	if !j.stopped {
		j.saveApplied(applied)
	}
	j.wmu.Unlock()
}

// Applied returns the applied watermark.
func (j *Journal) Applied() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.applied
}

// MarkSynced records durably that the store was synced after every entry
// up to index was applied: those entries are never replayed again and
// their terms may be pruned. The caller reads Applied, syncs the store,
// then passes what it read; index above the applied watermark is refused.
func (j *Journal) MarkSynced(index uint64) error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	closed, applied, synced := j.closed, j.applied, j.synced
	j.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case index > applied:
		return fmt.Errorf("%w: %d, applied watermark %d", ErrNotApplied, index, applied)
	case index <= synced:
		return nil
	}
	// Entries marked synced are never replayed: their records must
	// survive whatever the store's sync survives.
	if err := j.Sync(); err != nil {
		return err
	}
	if err := writeStateDurable(j.dirf, syncedFile, syncedMagic, index, 0); err != nil {
		return err
	}
	j.mu.Lock()
	j.synced = index
	j.mu.Unlock()
	return nil
}

// Synced returns the synced watermark.
func (j *Journal) Synced() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.synced
}

// Close waits for queued records to become durable, saves the applied
// watermark and releases the directory. It returns the sticky write
// error, if the journal had one.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	j.closed = true
	j.mu.Unlock()
	j.wake()
	<-j.done
	<-j.syncDone
	j.closeFiles()
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}
