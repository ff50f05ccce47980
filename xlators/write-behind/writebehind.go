// Package writebehind is the client's performance/write-behind translator,
// as in GlusterFS: a write is copied, acknowledged at once and sent to the
// translator below in the background, so that a writer at queue depth one
// keeps several writes in flight instead of waiting a round trip for each.
//
// # What is sent, and in which order
//
// Each file (inode) holds at most a window of acknowledged, unfinished
// bytes (Options.WindowSize, default 1 MiB; GlusterFS's per-file
// window). A write that would overflow it waits until earlier ones
// finish. Up to maxInFlight writes of a file are out at once. Writes that
// overlap are sent in the order they were issued, never two at once;
// independent ones go in parallel. A write that continues or overlaps the
// file's last unsent one, through the same fd and by the same user, is
// merged into it (up to maxAggregate bytes).
//
// Writes through an fd opened with O_SYNC, O_DSYNC or O_DIRECT, and
// O_APPEND writes, are not written behind (nor those through a read-only
// fd, which fail at once): they are sent once the writes
// they conflict with have finished (all of them, for O_APPEND), and the
// caller waits for their result.
//
// Operations that must see the data wait for the file's unfinished writes
// first: Fsync, Flush, Release, Getattr, Setattr, Truncate, Fallocate,
// Lseek, Link and a truncating Open wait for all of them, Read for those
// overlapping its range (and for all beyond what it got, before it
// reports a short read). Lookup and Readdir never report a size that
// unfinished writes are about to change: an entry with unfinished writes
// is looked up again once they are done. Operations on other files never
// wait.
//
// # Errors and durability
//
// A write that fails in the background cannot report its error to the
// write(2) that was already acknowledged. As in GlusterFS, the errno
// (ENOSPC, EDQUOT, EIO, ...) is kept on the fd that wrote it and the next
// Write, Fsync or Flush on that fd returns it, once; close(2), whose
// Flush waits for the fd's file first, therefore reports it. A Write that
// reports it is not performed. An error an fd never reported is logged
// when it is released.
//
// Write-behind changes when a write reaches the bricks, not what is
// durable: as without it, only a successful fsync (or close, for what the
// bricks acknowledged) says data is safe, and a write acknowledged by
// fsync is never lost. Another client reads the data once it has reached
// the bricks (close-to-open consistency), not as soon as write(2)
// returns. Close sends every pending write before it returns.
package writebehind

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluon-fs/gluon/internal/bufpool"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// DefaultWindowSize is a file's default window of unfinished written bytes.
const DefaultWindowSize = 1 << 20

const (
	// maxInFlight bounds a file's writes out at once. The brick pipeline
	// gains little past a handful of concurrent writes per file, and the
	// writes left waiting can be merged.
	maxInFlight = 16
	// maxAggregate bounds a write made of merged ones.
	maxAggregate = 128 << 10
)

// Options configure a WriteBehind.
type Options struct {
	// WindowSize is how many acknowledged bytes a file may have unfinished;
	// 0 means DefaultWindowSize.
	WindowSize int64
	Logger     *slog.Logger // default slog.Default()
	// Metrics, if set, receives the translator's metrics.
	Metrics prometheus.Registerer
}

// WriteBehind is the translator. Its xl.Xlator methods are safe for
// concurrent use.
type WriteBehind struct {
	xl.Base
	window int64
	log    *slog.Logger
	met    *metrics

	wg sync.WaitGroup // background writes

	mu     sync.Mutex
	closed bool
	inodes map[xl.GFID]*inode
}

// inode is a file's unfinished writes and unreported errors.
type inode struct {
	reqs     []*req // unfinished, in issue order
	bytes    int64  // acknowledged bytes of reqs
	inflight int
	// space is closed when bytes drop; nil while nobody waits.
	space chan struct{}
	errs  map[uint64]syscall.Errno // unreported failures, by fd handle
}

// req is one write, pending or in flight.
type req struct {
	ctx    context.Context
	fd     xl.Fd
	off    int64
	data   []byte
	pooled *[]byte // data's buffer, from bufpool, for a written-behind request
	behind bool    // acknowledged already; else the caller waits
	append bool    // O_APPEND: conflicts with every other write
	sent   bool
	done   chan struct{} // closed once finished
	n      int
	err    syscall.Errno
}

// overlaps reports whether r and the range [off, end) touch the same bytes.
func (r *req) overlaps(off, end int64) bool {
	return r.append || (r.off < end && off < r.off+int64(len(r.data)))
}

func (r *req) conflicts(s *req) bool {
	return s.append || r.overlaps(s.off, s.off+int64(len(s.data)))
}

// New returns a write-behind translator over child.
func New(child xl.Xlator, opts Options) (*WriteBehind, error) {
	if child == nil {
		return nil, errors.New("write-behind: nil child")
	}
	if opts.WindowSize < 0 {
		return nil, errors.New("write-behind: negative window size")
	}
	if opts.WindowSize == 0 {
		opts.WindowSize = DefaultWindowSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &WriteBehind{
		Base:   xl.Base{Xlator: child},
		window: opts.WindowSize,
		log:    opts.Logger,
		met:    newMetrics(opts.Metrics, opts.Logger),
		inodes: make(map[xl.GFID]*inode),
	}, nil
}

// Close sends every pending write, waits for them and stops; later writes
// are sent synchronously. The translator below must still be open.
func (x *WriteBehind) Close() error {
	x.mu.Lock()
	x.closed = true
	x.mu.Unlock()
	x.wg.Wait()
	x.met.group.Unregister()
	return nil
}

// syncFlags are the open flags whose writes are not written behind.
const syncFlags = syscall.O_SYNC | syscall.O_DSYNC | syscall.O_DIRECT | syscall.O_APPEND

func (x *WriteBehind) Write(ctx context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	// Writes that will fail anyway fail now, from below.
	if len(data) == 0 || len(data) > xl.MaxIO || fd.Flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		return x.Xlator.Write(ctx, fd, data, off)
	}
	end := off + int64(len(data))
	x.mu.Lock()
	if e := x.takeErrLocked(fd); e != 0 {
		x.mu.Unlock()
		return 0, e
	}
	if x.closed {
		// Close waits for what is pending; nothing is left behind now.
		x.mu.Unlock()
		if e := x.settle(ctx, fd.GFID); e != 0 {
			return 0, e
		}
		return x.Xlator.Write(ctx, fd, data, off)
	}
	in := x.inode(fd.GFID)
	if fd.Flags&syncFlags != 0 {
		r := &req{ctx: ctx, fd: fd, off: off, data: data, append: fd.Flags&syscall.O_APPEND != 0, done: make(chan struct{})}
		in.reqs = append(in.reqs, r)
		x.dispatch(in)
		x.mu.Unlock()
		<-r.done
		return r.n, r.err
	}
	for in.bytes > 0 && in.bytes+int64(len(data)) > x.window {
		if in.space == nil {
			in.space = make(chan struct{})
		}
		space := in.space
		x.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return 0, syscall.EINTR
		}
		x.mu.Lock()
		in = x.inode(fd.GFID)
	}
	grew, merged := x.merge(ctx, in, fd, data, off, end)
	if !merged {
		buf := bufpool.Get(len(data))
		copy(*buf, data)
		in.reqs = append(in.reqs, &req{
			ctx: context.WithoutCancel(ctx), fd: fd, off: off, data: *buf, pooled: buf,
			behind: true, done: make(chan struct{}),
		})
		grew = int64(len(data))
	}
	in.bytes += grew
	x.met.behind.Inc()
	x.met.pending.Add(float64(grew))
	x.dispatch(in)
	x.mu.Unlock()
	return len(data), 0
}

// merge folds the write [off, end) into the file's last request if that
// one is unsent, written behind through the same fd by the same user,
// and the two cover one contiguous range of at most maxAggregate bytes.
// It returns by how much the request grew.
func (x *WriteBehind) merge(ctx context.Context, in *inode, fd xl.Fd, data []byte, off, end int64) (int64, bool) {
	if len(in.reqs) == 0 {
		return 0, false
	}
	r := in.reqs[len(in.reqs)-1]
	rend := r.off + int64(len(r.data))
	if r.sent || !r.behind || r.fd != fd || off > rend || end < r.off {
		return 0, false
	}
	lo, hi := min(r.off, off), max(rend, end)
	if hi-lo > maxAggregate {
		return 0, false
	}
	a, b := xl.CallFrom(r.ctx), xl.CallFrom(ctx)
	if a.Uid != b.Uid || a.Gid != b.Gid {
		return 0, false
	}
	grew := (hi - lo) - int64(len(r.data))
	switch {
	case grew > 0 && lo == r.off && int64(cap(r.data)) >= hi-lo:
		r.data = r.data[:hi-lo]
	case grew > 0:
		buf := bufpool.Get(maxAggregate)
		grown := (*buf)[:hi-lo]
		copy(grown[r.off-lo:], r.data)
		bufpool.Put(r.pooled) // unsent: nobody else has it
		r.data, r.pooled, r.off = grown, buf, lo
	}
	copy(r.data[off-lo:], data)
	return grew, true
}

// inode returns g's state, creating it. x.mu is held.
func (x *WriteBehind) inode(g xl.GFID) *inode {
	in := x.inodes[g]
	if in == nil {
		in = &inode{}
		x.inodes[g] = in
	}
	return in
}

// forget drops in once it holds nothing. x.mu is held.
func (x *WriteBehind) forget(g xl.GFID, in *inode) {
	if len(in.reqs) == 0 && len(in.errs) == 0 && in.space == nil && x.inodes[g] == in {
		delete(x.inodes, g)
	}
}

// dispatch sends the file's requests that conflict with no earlier
// unfinished one, up to maxInFlight. x.mu is held.
func (x *WriteBehind) dispatch(in *inode) {
	for i, r := range in.reqs {
		if in.inflight >= maxInFlight {
			return
		}
		if r.sent || conflictsEarlier(in.reqs[:i], r) {
			continue
		}
		r.sent = true
		in.inflight++
		x.wg.Add(1)
		go x.send(in, r)
	}
}

func conflictsEarlier(earlier []*req, r *req) bool {
	for _, q := range earlier {
		if q.conflicts(r) {
			return true
		}
	}
	return false
}

// send performs r below and finishes it. A written-behind request's
// buffer (from bufpool: copying every write into a fresh slice made
// nearly all of a client's allocations) is recycled once r has left
// in.reqs: the translators below are done with a write's data when Write
// returns (protocol/client waits for the socket write even when it gives
// up on a call), and only the caller of a synchronous write looks at r
// after that, for n and err.
func (x *WriteBehind) send(in *inode, r *req) {
	defer x.wg.Done()
	if r.behind {
		defer bufpool.Put(r.pooled)
	}
	n, e := x.Xlator.Write(r.ctx, r.fd, r.data, r.off)
	if r.behind && e == 0 && n != len(r.data) {
		x.log.Warn("write-behind: short write", "gfid", r.fd.GFID, "off", r.off, "len", len(r.data), "wrote", n)
		e = syscall.EIO
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if i := slices.Index(in.reqs, r); i >= 0 {
		in.reqs = slices.Delete(in.reqs, i, i+1)
	}
	in.inflight--
	r.n, r.err = n, e
	if r.behind {
		in.bytes -= int64(len(r.data))
		x.met.pending.Sub(float64(len(r.data)))
		if e != 0 {
			x.met.errors.Inc()
			x.log.Warn("write-behind: a background write failed; the fd's next write, fsync or close reports it",
				"gfid", r.fd.GFID, "off", r.off, "len", len(r.data), "err", e)
			if in.errs == nil {
				in.errs = make(map[uint64]syscall.Errno)
			}
			in.errs[r.fd.H] = e
		}
		if in.space != nil {
			close(in.space)
			in.space = nil
		}
	}
	close(r.done)
	x.dispatch(in)
	x.forget(r.fd.GFID, in)
}

// wait returns once every request of g unfinished now for which match
// holds has finished, reporting whether there were any; EINTR if ctx
// ends first.
func (x *WriteBehind) wait(ctx context.Context, g xl.GFID, match func(*req) bool) (bool, syscall.Errno) {
	x.mu.Lock()
	in := x.inodes[g]
	if in == nil {
		x.mu.Unlock()
		return false, 0
	}
	var dones []chan struct{}
	for _, r := range in.reqs {
		if match(r) {
			dones = append(dones, r.done)
		}
	}
	x.mu.Unlock()
	for _, d := range dones {
		select {
		case <-d:
		case <-ctx.Done():
			return true, syscall.EINTR
		}
	}
	return len(dones) > 0, 0
}

func all(*req) bool { return true }

// settle waits for all of g's unfinished writes.
func (x *WriteBehind) settle(ctx context.Context, g xl.GFID) syscall.Errno {
	_, e := x.wait(ctx, g, all)
	return e
}

// takeErr returns and forgets fd's unreported error.
func (x *WriteBehind) takeErr(fd xl.Fd) syscall.Errno {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.takeErrLocked(fd)
}

// takeErrLocked is takeErr with x.mu held.
func (x *WriteBehind) takeErrLocked(fd xl.Fd) syscall.Errno {
	in := x.inodes[fd.GFID]
	if in == nil {
		return 0
	}
	e := in.errs[fd.H]
	if e != 0 {
		delete(in.errs, fd.H)
		x.forget(fd.GFID, in)
	}
	return e
}

// busy returns the indexes of the entries of ents whose objects have
// unfinished writes.
func (x *WriteBehind) busy(ents []xl.Dirent) []int {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []int
	for i := range ents {
		if in := x.inodes[ents[i].Attr.GFID]; in != nil && len(in.reqs) > 0 {
			out = append(out, i)
		}
	}
	return out
}

func (x *WriteBehind) Read(ctx context.Context, fd xl.Fd, dst []byte, off int64) (int, syscall.Errno) {
	end := off + int64(len(dst))
	if _, e := x.wait(ctx, fd.GFID, func(r *req) bool { return r.overlaps(off, end) }); e != 0 {
		return 0, e
	}
	n, e := x.Xlator.Read(ctx, fd, dst, off)
	if e != 0 || n >= len(dst) {
		return n, e
	}
	// Short: writes past what was read may extend the file.
	got := off + int64(n)
	waited, e := x.wait(ctx, fd.GFID, func(r *req) bool { return r.append || r.off+int64(len(r.data)) > got })
	if e != 0 || !waited {
		return n, e
	}
	return x.Xlator.Read(ctx, fd, dst, off)
}

func (x *WriteBehind) Fsync(ctx context.Context, fd xl.Fd, datasync bool) syscall.Errno {
	if e := x.settle(ctx, fd.GFID); e != 0 {
		return e
	}
	if e := x.takeErr(fd); e != 0 {
		return e
	}
	return x.Xlator.Fsync(ctx, fd, datasync)
}

func (x *WriteBehind) Flush(ctx context.Context, fd xl.Fd) syscall.Errno {
	if e := x.settle(ctx, fd.GFID); e != 0 {
		return e
	}
	e := x.Xlator.Flush(ctx, fd)
	if we := x.takeErr(fd); we != 0 {
		return we
	}
	return e
}

func (x *WriteBehind) Release(ctx context.Context, fd xl.Fd) syscall.Errno {
	// Not cut short by ctx: the fd must outlive its writes.
	x.settle(context.WithoutCancel(ctx), fd.GFID)
	if e := x.takeErr(fd); e != 0 {
		x.log.Warn("write-behind: a background write's error was never reported: the fd was released without a flush",
			"gfid", fd.GFID, "err", e)
	}
	return x.Xlator.Release(ctx, fd)
}

func (x *WriteBehind) Getattr(ctx context.Context, ino xl.GFID) (xl.Attr, syscall.Errno) {
	if e := x.settle(ctx, ino); e != 0 {
		return xl.Attr{}, e
	}
	return x.Xlator.Getattr(ctx, ino)
}

func (x *WriteBehind) Setattr(ctx context.Context, ino xl.GFID, in xl.SetattrIn) (xl.Attr, syscall.Errno) {
	if e := x.settle(ctx, ino); e != 0 {
		return xl.Attr{}, e
	}
	return x.Xlator.Setattr(ctx, ino, in)
}

func (x *WriteBehind) Truncate(ctx context.Context, ino xl.GFID, size uint64) (xl.Attr, syscall.Errno) {
	if e := x.settle(ctx, ino); e != 0 {
		return xl.Attr{}, e
	}
	return x.Xlator.Truncate(ctx, ino, size)
}

func (x *WriteBehind) Fallocate(ctx context.Context, fd xl.Fd, mode uint32, off, length int64) syscall.Errno {
	if e := x.settle(ctx, fd.GFID); e != 0 {
		return e
	}
	return x.Xlator.Fallocate(ctx, fd, mode, off, length)
}

func (x *WriteBehind) Lseek(ctx context.Context, fd xl.Fd, off int64, whence uint32) (int64, syscall.Errno) {
	if e := x.settle(ctx, fd.GFID); e != 0 {
		return 0, e
	}
	return x.Xlator.Lseek(ctx, fd, off, whence)
}

func (x *WriteBehind) Link(ctx context.Context, ino xl.GFID, newParent xl.GFID, newName string) (xl.Attr, syscall.Errno) {
	if e := x.settle(ctx, ino); e != 0 {
		return xl.Attr{}, e
	}
	return x.Xlator.Link(ctx, ino, newParent, newName)
}

func (x *WriteBehind) Open(ctx context.Context, ino xl.GFID, flags uint32) (xl.Fd, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		if e := x.settle(ctx, ino); e != 0 {
			return xl.Fd{}, e
		}
	}
	return x.Xlator.Open(ctx, ino, flags)
}

// Lookup answers again once the object's unfinished writes are done, so
// that the size it reports is not about to change.
func (x *WriteBehind) Lookup(ctx context.Context, parent xl.GFID, name string) (xl.Attr, syscall.Errno) {
	a, e := x.Xlator.Lookup(ctx, parent, name)
	if e != 0 {
		return a, e
	}
	waited, e := x.wait(ctx, a.GFID, all)
	if e != 0 {
		return xl.Attr{}, e
	}
	if !waited {
		return a, 0
	}
	return x.Xlator.Lookup(ctx, parent, name)
}

// Readdir refreshes the attributes of entries with unfinished writes.
func (x *WriteBehind) Readdir(ctx context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	ents, e := x.Xlator.Readdir(ctx, fd, off, max)
	if e != 0 {
		return ents, e
	}
	for _, i := range x.busy(ents) {
		g := ents[i].Attr.GFID
		if e := x.settle(ctx, g); e != 0 {
			return nil, e
		}
		if a, e := x.Xlator.Getattr(ctx, g); e == 0 {
			ents[i].Attr = a
		} else {
			ents[i].Attr = xl.Attr{} // the caller looks it up
		}
	}
	return ents, 0
}

var (
	_ xl.Xlator    = (*WriteBehind)(nil)
	_ xl.Lifecycle = (*WriteBehind)(nil)
)
