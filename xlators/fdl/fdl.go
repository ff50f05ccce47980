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
// requests share one fdatasync. It then applies the request to the child
// with xl.Dispatch and marks the entry applied. A request the journal
// refuses is not applied. Fsync is passed to the child: the journal was
// already durable when the write returned.
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
// # Deferred destage (later)
//
// Apply is synchronous today. A destager splits handle after the Append:
// the request is answered once durable, queued in index order, applied by
// a destage goroutine that calls MarkApplied; reads then consult an
// overlay of journaled-but-unapplied entries, and Fsync waits until the
// fd's entries are applied and the store synced. Nothing else in the
// package needs to change.
package fdl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// DefaultCheckpointInterval is how often applied entries are synced.
const DefaultCheckpointInterval = 5 * time.Second

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
}

// FDL journals mutating requests before passing them to its child.
type FDL struct {
	xl.Base
	j         *journal.Journal
	log       *slog.Logger
	sync      func(context.Context) error
	journaled xl.Funnel // typed mutating calls, in generic form, to handle

	ckMu      sync.Mutex // one checkpoint at a time
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
	f := &FDL{Base: xl.Base{Xlator: child}, j: j, log: opts.Logger, sync: opts.Sync}
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
		return f, nil
	}
	if err := f.checkpoint(ctx); err != nil {
		return nil, fmt.Errorf("fdl: checkpoint after replay: %w", err)
	}
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go f.checkpointer(opts.CheckpointInterval)
	return f, nil
}

// handle journals a mutating request and applies it; anything else goes
// straight to the child.
func (f *FDL) handle(ctx context.Context, fop *xl.Fop) *xl.Result {
	if !fop.Mutates() {
		return xl.Dispatch(ctx, f.Xlator, fop)
	}
	idx, err := f.j.Append(ctx, &journal.Record{Call: *xl.CallFrom(ctx), Fop: *fop})
	if err != nil {
		f.log.Debug("fdl: journal refused request", "op", fop.Op, "err", err)
		return &xl.Result{Errno: errnoOf(err)}
	}
	// The request is durable now. Apply it even if the caller has gone:
	// the store must not fall behind what the journal says happened.
	r := xl.Dispatch(context.WithoutCancel(ctx), f.Xlator, fop)
	f.j.MarkApplied(idx)
	return r
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
func (f *FDL) checkpoint(ctx context.Context) error {
	f.ckMu.Lock()
	defer f.ckMu.Unlock()
	applied := f.j.Applied()
	if applied <= f.j.Synced() {
		return nil
	}
	if err := f.sync(ctx); err != nil {
		return fmt.Errorf("syncing the store: %w", err)
	}
	return f.j.MarkSynced(applied)
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
			if err := f.checkpoint(context.Background()); err != nil {
				f.log.Warn("fdl: checkpoint failed", "err", err)
			}
		}
	}
}

// Close stops the checkpointer and takes a last checkpoint, so a clean
// shutdown leaves nothing to replay. It does not close the journal or the
// child.
func (f *FDL) Close() error {
	var err error
	f.closeOnce.Do(func() {
		if f.sync == nil {
			return
		}
		close(f.stop)
		<-f.done
		err = f.checkpoint(context.Background())
	})
	return err
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
