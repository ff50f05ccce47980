// Package fdl is the full-data-logging translator. It sits on a brick
// above the store and journals every mutating request, payload included,
// before the store sees it (pre-op, as GlusterFS's FDL did), so that a
// crash loses nothing that was acknowledged and replicas can be compared
// and repaired term by term.
//
// # Every mutating op, by construction
//
// FDL overrides each mutating op with a one-line call into an xl.Funnel,
// so every one of them reaches handle in generic form (xl.Fop), and
// handle consults the op table ((*xl.Fop).Mutates) rather than a list of
// its own. A test walks xl.Ops and fails if a mutating op reaches the
// child without a journal record, so an op added to xl later cannot be
// forgotten here.
//
// # Write path
//
// handle appends the request (caller identity, request id, all arguments
// and data) to the journal and waits for it to be durable; concurrent
// requests share one fdatasync. In sync destage (the default) it then
// applies the request to the child with xl.Dispatch and marks the entry
// applied. A request the journal refuses is not applied. Fsync is passed
// to the child: the journal was already durable when the write returned.
//
// # Replay and checkpoints
//
// New replays entries that were logged but not applied (after a crash)
// against the child. Replay is idempotent where it can be: a create,
// mkdir, mknod or symlink that finds the same GFID already there, or a
// link that finds the same object, succeeds, and an unlink, rmdir or
// rename whose source is gone is taken as already done. Writes repeat
// harmlessly. A checkpointer goroutine periodically syncs the store
// (Options.Sync) and marks everything applied before the sync as synced,
// which bounds replay after a reboot and lets terms be pruned.
//
// # Deferred destage
//
// With Options.Destage DestageDeferred a write is answered as soon as its
// journal record is durable; destage workers (DestageWorkers) apply it to
// the child later, in journal order per object (GFID) and in parallel
// across objects, then mark it applied. A write holds its object's lock
// stripe from journal Queue to being listed, so each object's list is in
// journal order and the store ends as a replay of the journal would leave
// it. Memory is bounded: each pending entry costs its data plus a small
// overhead, and past MaxPendingBytes writers wait, before journaling,
// until destage frees room (a caller that gives up gets EINTR and nothing
// is journaled). Close applies everything pending; after a crash the
// unapplied entries are replayed by New like any others.
//
// What a request sees of pending entries:
//
//   - Write (not O_APPEND) is deferred. Truncate, and a Setattr that only
//     sets the size (and times to now, as FUSE's ftruncate does), are
//     deferred when the object already has pending writes, and drain
//     otherwise, so the store validates them.
//   - Read overlays: the store's bytes with the pending writes copied in
//     and the pending size changes applied, in order.
//   - Getattr, Lookup, Readdir and the attributes any op returns overlay
//     the pending size, and mtime and ctime taken when each entry was
//     journaled (the store's own times move on once it is applied;
//     Blocks follows the store).
//   - Fsync drains: it waits until the file's pending entries are applied,
//     then fsyncs the child. Release and Lseek (SEEK_DATA and SEEK_HOLE
//     need the data in place) drain too.
//   - Every other op that changes an object's data or attributes
//     (Setattr, Truncate, Setxattr, Removexattr, Open with O_TRUNC,
//     O_APPEND writes, Fallocate, Create with O_TRUNC of an existing name)
//     waits for that object's pending entries and runs holding its stripe,
//     so nothing of the object is journaled before it and applied after.
//   - Namespace ops (Mkdir, Mknod, Symlink, Link, Unlink, Rmdir, Rename)
//     and other reads do not wait: pending writes reach their object by
//     GFID, or through an fd that Release drains, wherever it is named.
//
// A write the store refuses after it was answered (ENOSPC, EIO) is logged
// and reported by the file's next Fsync, Flush or Release, as the kernel
// reports writeback errors. Flush does not wait for destage.
//
// # Sync or deferred: the numbers
//
// Deferring takes the child's write out of the answer's path, but over a
// posix store that write only reaches the page cache; what an answer
// waits for is the journal's fdatasync either way. Measured on a 2-core
// VM, journal and store on the same ext4 disk, medians of three runs of
//
//	go test -run '^$' -bench Destage -benchtime 2000x -count 3 ./xlators/fdl
//
// (each case ends with an fsync of its files, inside the timer):
//
//	                         sync              deferred
//	4k random writes         207 us  4835/s    233 us  4285/s
//	4k random, 8 writers      81 us 12357/s     81 us 12365/s
//	1 MiB sequential        1.38 ms  759 MB/s  1.66 ms  633 MB/s
//	4k write, read back      262 us  3822/s    254 us  3943/s
//
// Deferred is never faster beyond noise and is 11-17% slower for single
// writers and large writes (one more copy of the data, a second queue,
// overlay bookkeeping), so DefaultDestage is DestageSync. Deferred pays
// off when the child is slow next to the journal (a store on slower
// disks than the journal, or one that syncs every write).
//
// # Size bound
//
// With Options.MaxBytes, a checkpoint that finds the journal over the
// bound ends the current term (if it holds a quarter of the bound or
// more) and, after syncing, prunes the older terms with
// journal.PruneUpTo: only terms that are applied, synced and not kept by
// the journal's Retain guard, which replication and reconciliation use to
// keep terms replicas may still need. Every quarter of the bound written
// also wakes the checkpointer. If retained or unsynced terms keep the
// journal over the bound, that is logged once at Warn.
package fdl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// DefaultCheckpointInterval is how often applied entries are synced.
const DefaultCheckpointInterval = 5 * time.Second

// DefaultDestage is the destage mode chosen by the benchmarks in the
// package doc.
const DefaultDestage = DestageSync

// Options configure an FDL.
type Options struct {
	// Logger receives replay summaries and checkpoint failures; default
	// slog.Default().
	Logger *slog.Logger
	// Sync makes every change applied to the child so far durable. Over a
	// posix store use SyncDir(brick directory). Without it entries are
	// never marked synced: after a reboot the whole journal is replayed
	// and no term can be pruned.
	Sync func(ctx context.Context) error
	// CheckpointInterval is how often the store is synced; default
	// DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// Destage is DestageSync or DestageDeferred; default DefaultDestage.
	Destage string
	// DestageWorkers is how many objects deferred destage applies to at
	// once; default DefaultDestageWorkers.
	DestageWorkers int
	// MaxPendingBytes bounds the memory deferred destage holds for
	// journaled writes not yet applied; writers wait beyond it. Default
	// DefaultMaxPendingBytes.
	MaxPendingBytes int64
	// MaxBytes bounds the journal's size: past it, the FDL starts a new
	// term and prunes the older terms that are applied, synced and not
	// retained (journal.Retain). It needs Sync. 0 means unbounded.
	MaxBytes int64
}

// FDL journals mutating requests before passing them to its child.
type FDL struct {
	xl.Base
	j         *journal.Journal
	log       *slog.Logger
	sync      func(context.Context) error
	journaled xl.Funnel // typed mutating calls, in generic form, to handle
	d         *destager // nil in sync mode

	maxBytes  int64
	grown     atomic.Int64 // bytes journaled since the size was last checked
	overBound bool         // warned that pruning cannot keep MaxBytes; ckMu

	ckMu      sync.Mutex // one checkpoint at a time
	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var (
	_ xl.Xlator    = (*FDL)(nil)
	_ xl.Lifecycle = (*FDL)(nil)
)

// New stacks an FDL over child, journaling into j. It starts term 1 on a
// journal that has none, then replays the entries that were journaled but
// never applied and checkpoints, so the child is current when New
// returns. The caller keeps ownership of j and closes it after Close.
func New(child xl.Xlator, j *journal.Journal, opts Options) (*FDL, error) {
	if child == nil || j == nil {
		return nil, errors.New("fdl: child and journal are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.Destage == "" {
		opts.Destage = DefaultDestage
	}
	if opts.Destage != DestageSync && opts.Destage != DestageDeferred {
		return nil, fmt.Errorf("fdl: destage %q: want %q or %q", opts.Destage, DestageSync, DestageDeferred)
	}
	if opts.DestageWorkers <= 0 {
		opts.DestageWorkers = DefaultDestageWorkers
	}
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = DefaultMaxPendingBytes
	}
	switch {
	case opts.MaxBytes < 0:
		return nil, fmt.Errorf("fdl: MaxBytes %d is negative", opts.MaxBytes)
	case opts.MaxBytes > 0 && opts.Sync == nil:
		return nil, errors.New("fdl: MaxBytes needs Sync: only synced terms can be pruned")
	}
	f := &FDL{Base: xl.Base{Xlator: child}, j: j, log: opts.Logger, sync: opts.Sync, maxBytes: opts.MaxBytes}
	f.journaled = xl.Funnel{H: f.handle}
	if j.Term() == 0 {
		if err := j.StartTerm(1); err != nil {
			return nil, fmt.Errorf("fdl: %w", err)
		}
	}
	ctx := context.Background()
	if err := f.replay(ctx); err != nil {
		return nil, fmt.Errorf("fdl: replay: %w", err)
	}
	if f.sync == nil {
		f.log.Warn("fdl: no store sync configured; journal entries are never marked synced")
	} else if err := f.checkpoint(ctx); err != nil {
		return nil, fmt.Errorf("fdl: checkpoint after replay: %w", err)
	}
	if opts.Destage == DestageDeferred {
		f.d = newDestager(child, j, f.log, opts.DestageWorkers, opts.MaxPendingBytes, f.grew)
	}
	if f.sync != nil {
		f.kick, f.stop, f.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go f.checkpointer(opts.CheckpointInterval)
	}
	return f, nil
}

// handle journals a mutating request and applies it, or has it applied;
// anything else goes straight to the child.
func (f *FDL) handle(ctx context.Context, fop *xl.Fop) *xl.Result {
	if !fop.Mutates() {
		return xl.Dispatch(ctx, f.Xlator, fop)
	}
	if f.d != nil {
		return f.d.handle(ctx, fop, f.apply)
	}
	return f.apply(ctx, fop)
}

// apply journals a request, then applies it in line.
func (f *FDL) apply(ctx context.Context, fop *xl.Fop) *xl.Result {
	rec := &journal.Record{Call: *xl.CallFrom(ctx), Fop: *fop}
	idx, err := f.j.Append(ctx, rec)
	if err != nil {
		f.log.Debug("fdl: journal refused request", "op", fop.Op, "err", err)
		return &xl.Result{Errno: errnoOf(err)}
	}
	f.grew(int64(len(fop.Data)) + entryOverhead)
	// The request is durable now. Apply it even if the caller has gone:
	// the store must not fall behind what the journal says happened.
	r := xl.Dispatch(context.WithoutCancel(ctx), f.Xlator, fop)
	f.j.MarkApplied(idx)
	return r
}

// grew counts journaled bytes and, every quarter of MaxBytes, has the
// checkpointer look at the journal's size.
func (f *FDL) grew(n int64) {
	if f.maxBytes == 0 || f.grown.Add(n) < f.maxBytes/4 {
		return
	}
	f.grown.Store(0)
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func errnoOf(err error) syscall.Errno {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, journal.ErrTooLarge):
		return syscall.E2BIG
	case errors.Is(err, journal.ErrClosed):
		return syscall.ENOTCONN
	}
	return syscall.EIO
}

// replay applies every entry the journal holds as logged but not applied.
func (f *FDL) replay(ctx context.Context) error {
	var n, failed int
	err := f.j.Unapplied(func(rec *journal.Record) error {
		n++
		if e := f.reapply(ctx, rec); e != 0 {
			failed++
			// It may well have failed the first time too.
			f.log.Debug("fdl: replayed entry failed", "index", rec.Index, "op", rec.Fop.Op, "errno", e)
		}
		f.j.MarkApplied(rec.Index)
		return nil
	})
	if n > 0 {
		f.log.Info("fdl: replayed unapplied journal entries", "entries", n, "failed", failed)
	}
	return err
}

// reapply performs a journaled request again, as its original caller.
func (f *FDL) reapply(ctx context.Context, rec *journal.Record) syscall.Errno {
	return Reapply(ctx, f.Xlator, rec.Call, rec.Fop).Errno
}

// Reapply performs a journaled request (fop, made by call) again on x, for
// a translator that replays journal entries after a crash, when they may
// or may not have been applied before. It is idempotent where it can be:
// see "Replay and checkpoints" in the package doc. An fd the request
// opens is released at once.
func Reapply(ctx context.Context, x xl.Xlator, call xl.Call, fop xl.Fop) *xl.Result {
	if xl.Ops[fop.Op].FdBased {
		// The handle died with the process that opened it: the store
		// serves an unknown handle with an anonymous fd by GFID. Without
		// O_APPEND the data goes to its recorded offset again instead of
		// being appended twice.
		fop.Fd.H = 0
		fop.Fd.Flags &^= syscall.O_APPEND
	}
	ctx = xl.WithCall(ctx, &call)
	r := xl.Dispatch(ctx, x, &fop)
	if r.Errno == 0 && (fop.Op == xl.OpCreate || fop.Op == xl.OpOpen) {
		x.Release(ctx, r.Fd)
	}
	if r.Errno != 0 && alreadyDone(ctx, x, &fop, r.Errno) {
		r.Errno = 0
	}
	return r
}

// alreadyDone reports whether a replayed request failed only because its
// effect is already in the store.
func alreadyDone(ctx context.Context, x xl.Xlator, fop *xl.Fop, e syscall.Errno) bool {
	switch {
	case e == syscall.EEXIST && (fop.Op == xl.OpCreate || fop.Op == xl.OpMkdir || fop.Op == xl.OpMknod || fop.Op == xl.OpSymlink):
		a, le := x.Lookup(ctx, fop.GFID, fop.Name)
		return le == 0 && a.GFID == fop.GFID2
	case e == syscall.EEXIST && fop.Op == xl.OpLink:
		a, le := x.Lookup(ctx, fop.GFID2, fop.Name2)
		return le == 0 && a.GFID == fop.GFID
	case e == syscall.ENOENT && (fop.Op == xl.OpUnlink || fop.Op == xl.OpRmdir || fop.Op == xl.OpRename):
		return true
	}
	return false
}

// checkpoint syncs the store and marks what was applied before as synced.
// Over MaxBytes it also ends the current term and prunes older ones.
func (f *FDL) checkpoint(ctx context.Context) error {
	f.ckMu.Lock()
	defer f.ckMu.Unlock()
	over := f.maxBytes > 0 && f.j.Stat().Bytes > f.maxBytes
	if over {
		f.endTerm()
	}
	if applied := f.j.Applied(); applied > f.j.Synced() {
		if err := f.sync(ctx); err != nil {
			return fmt.Errorf("syncing the store: %w", err)
		}
		if err := f.j.MarkSynced(applied); err != nil {
			return err
		}
	}
	if over {
		return f.prune()
	}
	return nil
}

// endTerm starts a new term when the current one holds a good part of the
// bound, so that its records can be pruned once synced. Terms are whole
// units of pruning; a small current term is left to grow.
func (f *FDL) endTerm() {
	st := f.j.Stat()
	if n := len(st.Terms); n == 0 || st.Terms[n-1].Term != st.Term || st.Terms[n-1].Bytes < f.maxBytes/4 {
		return
	}
	if err := f.j.StartTerm(st.Term + 1); err != nil {
		f.log.Warn("fdl: starting a term to bound the journal", "err", err)
	}
}

// prune deletes the terms before the current one that the journal lets
// go: applied, synced and not retained.
func (f *FDL) prune() error {
	before := f.j.Stat().Bytes
	through, err := f.j.PruneUpTo(f.j.Term() - 1)
	if err != nil {
		return fmt.Errorf("pruning the journal: %w", err)
	}
	after := f.j.Stat().Bytes
	if through > 0 {
		f.log.Info("fdl: pruned journal", "through_term", through, "bytes_before", before, "bytes_after", after)
	}
	switch over := after > f.maxBytes; {
	case over && !f.overBound:
		f.log.Warn("fdl: journal stays over MaxBytes: its older terms are retained or not yet synced", "bytes", after, "max_bytes", f.maxBytes)
		f.overBound = true
	case !over:
		f.overBound = false
	}
	return nil
}

func (f *FDL) checkpointer(every time.Duration) {
	defer close(f.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		case <-f.kick:
		}
		if err := f.checkpoint(context.Background()); err != nil {
			f.log.Warn("fdl: checkpoint failed", "err", err)
		}
	}
}

// Close applies what deferred destage holds, stops the checkpointer and
// takes a last checkpoint, so a clean shutdown leaves nothing to replay.
// It does not close the journal or the child.
func (f *FDL) Close() error {
	var err error
	f.closeOnce.Do(func() {
		if f.d != nil {
			f.d.close()
		}
		if f.sync == nil {
			return
		}
		close(f.stop)
		<-f.done
		err = f.checkpoint(context.Background())
	})
	return err
}

// DestageStat describes deferred destage; zero in sync mode.
func (f *FDL) DestageStat() DestageStat {
	if f.d == nil {
		return DestageStat{}
	}
	return f.d.stat()
}

// SyncDir returns an Options.Sync that syncs the filesystem holding dir
// (syncfs(2)), e.g. a posix store's brick directory.
func SyncDir(dir string) func(context.Context) error {
	return func(context.Context) error {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", dir, err)
		}
		defer unix.Close(fd)
		if err := unix.Syncfs(fd); err != nil {
			return fmt.Errorf("syncfs %s: %w", dir, err)
		}
		return nil
	}
}

// The mutating ops. Each hands the call, in generic form, to handle.

func (f *FDL) Setattr(ctx context.Context, ino xl.GFID, in xl.SetattrIn) (xl.Attr, syscall.Errno) {
	return f.journaled.Setattr(ctx, ino, in)
}

func (f *FDL) Mknod(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32, rdev uint64) (xl.Attr, syscall.Errno) {
	return f.journaled.Mknod(ctx, parent, name, gfid, mode, rdev)
}

func (f *FDL) Mkdir(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32) (xl.Attr, syscall.Errno) {
	return f.journaled.Mkdir(ctx, parent, name, gfid, mode)
}

func (f *FDL) Symlink(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, target string) (xl.Attr, syscall.Errno) {
	return f.journaled.Symlink(ctx, parent, name, gfid, target)
}

func (f *FDL) Link(ctx context.Context, ino xl.GFID, newParent xl.GFID, newName string) (xl.Attr, syscall.Errno) {
	return f.journaled.Link(ctx, ino, newParent, newName)
}

func (f *FDL) Unlink(ctx context.Context, parent xl.GFID, name string) syscall.Errno {
	return f.journaled.Unlink(ctx, parent, name)
}

func (f *FDL) Rmdir(ctx context.Context, parent xl.GFID, name string) syscall.Errno {
	return f.journaled.Rmdir(ctx, parent, name)
}

func (f *FDL) Rename(ctx context.Context, oldParent xl.GFID, oldName string, newParent xl.GFID, newName string, flags uint32) syscall.Errno {
	return f.journaled.Rename(ctx, oldParent, oldName, newParent, newName, flags)
}

func (f *FDL) Create(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, flags, mode uint32) (xl.Fd, xl.Attr, syscall.Errno) {
	return f.journaled.Create(ctx, parent, name, gfid, flags, mode)
}

// Open is journaled when it truncates (O_TRUNC).
func (f *FDL) Open(ctx context.Context, ino xl.GFID, flags uint32) (xl.Fd, syscall.Errno) {
	return f.journaled.Open(ctx, ino, flags)
}

func (f *FDL) Write(ctx context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	return f.journaled.Write(ctx, fd, data, off)
}

func (f *FDL) Truncate(ctx context.Context, ino xl.GFID, size uint64) (xl.Attr, syscall.Errno) {
	return f.journaled.Truncate(ctx, ino, size)
}

func (f *FDL) Fallocate(ctx context.Context, fd xl.Fd, mode uint32, off, length int64) syscall.Errno {
	return f.journaled.Fallocate(ctx, fd, mode, off, length)
}

func (f *FDL) Setxattr(ctx context.Context, ino xl.GFID, name string, value []byte, flags uint32) syscall.Errno {
	return f.journaled.Setxattr(ctx, ino, name, value, flags)
}

func (f *FDL) Removexattr(ctx context.Context, ino xl.GFID, name string) syscall.Errno {
	return f.journaled.Removexattr(ctx, ino, name)
}

// The ops deferred destage must see. In sync mode they go to the child.

func (f *FDL) Lookup(ctx context.Context, parent xl.GFID, name string) (xl.Attr, syscall.Errno) {
	if f.d == nil {
		return f.Xlator.Lookup(ctx, parent, name)
	}
	return f.d.lookup(ctx, parent, name)
}

func (f *FDL) Getattr(ctx context.Context, ino xl.GFID) (xl.Attr, syscall.Errno) {
	if f.d == nil {
		return f.Xlator.Getattr(ctx, ino)
	}
	return f.d.getattr(ctx, ino)
}

func (f *FDL) Read(ctx context.Context, fd xl.Fd, dst []byte, off int64) (int, syscall.Errno) {
	if f.d == nil {
		return f.Xlator.Read(ctx, fd, dst, off)
	}
	return f.d.read(ctx, fd, dst, off)
}

func (f *FDL) Lseek(ctx context.Context, fd xl.Fd, off int64, whence uint32) (int64, syscall.Errno) {
	if f.d == nil {
		return f.Xlator.Lseek(ctx, fd, off, whence)
	}
	return f.d.lseek(ctx, fd, off, whence)
}

func (f *FDL) Flush(ctx context.Context, fd xl.Fd) syscall.Errno {
	if f.d == nil {
		return f.Xlator.Flush(ctx, fd)
	}
	return f.d.flush(ctx, fd)
}

// Fsync passes to the child: in sync mode the journal was durable when
// the write returned; deferred, the file's pending entries are applied
// first.
func (f *FDL) Fsync(ctx context.Context, fd xl.Fd, datasync bool) syscall.Errno {
	if f.d == nil {
		return f.Xlator.Fsync(ctx, fd, datasync)
	}
	return f.d.fsync(ctx, fd, datasync)
}

func (f *FDL) Release(ctx context.Context, fd xl.Fd) syscall.Errno {
	if f.d == nil {
		return f.Xlator.Release(ctx, fd)
	}
	return f.d.release(ctx, fd)
}

func (f *FDL) Readdir(ctx context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	if f.d == nil {
		return f.Xlator.Readdir(ctx, fd, off, max)
	}
	return f.d.readdir(ctx, fd, off, max)
}
