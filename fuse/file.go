package fuse

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// fsyncDatasync is FUSE_FSYNC_FDATASYNC: sync data, not metadata.
const fsyncDatasync = 1

// file is an open regular file.
type file struct {
	vol  *volume
	node *node
	fd   xl.Fd
	// wrote is set once data or size changed through this handle: only
	// then has Flush anything to report.
	wrote atomic.Bool
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileAllocater = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
)

// Read fills the kernel's reply buffer directly.
func (f *file) Read(ctx context.Context, dest []byte, off int64) (gofuse.ReadResult, syscall.Errno) {
	f.node.markCached()
	ctx, done := f.vol.call(ctx)
	defer done()
	n, e := f.vol.top.Read(ctx, f.fd, dest, off)
	if e != 0 {
		return nil, errno(ctx, e)
	}
	if n < 0 || n > len(dest) {
		f.vol.log.Error("read returned a bad count", "gfid", f.fd.GFID, "n", n, "size", len(dest))
		return nil, syscall.EIO
	}
	return gofuse.ReadResultData(dest[:n]), 0
}

// Write hands the kernel's request buffer down as is: one FUSE write, one
// translator write, no copy here. The buffer is the kernel's again once
// Write returns: write-behind, which answers before the bricks do, keeps
// a copy.
func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	ctx, done := f.vol.mutation(ctx)
	defer done()
	f.wrote.Store(true)
	f.node.markCached()
	n, e := f.vol.top.Write(ctx, f.fd, data, off)
	if e != 0 {
		return 0, errno(ctx, e)
	}
	if n < 0 || n > len(data) {
		f.vol.log.Error("write returned a bad count", "gfid", f.fd.GFID, "n", n, "size", len(data))
		return 0, syscall.EIO
	}
	return uint32(n), 0
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	ctx, done := f.vol.mutation(ctx)
	defer done()
	f.wrote.Store(true)
	return errno(ctx, f.vol.top.Fallocate(ctx, f.fd, mode, int64(off), int64(size)))
}

// Lseek answers SEEK_DATA and SEEK_HOLE; the kernel handles the others.
func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	ctx, done := f.vol.call(ctx)
	defer done()
	n, e := f.vol.top.Lseek(ctx, f.fd, int64(off), whence)
	if e != 0 {
		return 0, errno(ctx, e)
	}
	return uint64(n), 0
}

// Flush runs on every close(2) of a descriptor of this handle, unless it
// was opened read-only (noFlush). It reports what went wrong with the
// handle's written-behind writes, which close(2) returns. A handle that never wrote has nothing
// to report either, as with noFlush, and is answered here: creating an
// empty file (touch, O_CREAT then close) costs a round trip less.
func (f *file) Flush(ctx context.Context) syscall.Errno {
	if !f.wrote.Load() {
		return 0
	}
	ctx, done := f.pushing(ctx)
	defer done()
	return errno(ctx, f.vol.top.Flush(ctx, f.fd))
}

// pushing is the call of an op that pushes what the handle wrote behind,
// if it wrote: that changes the file as listings show it (its size), so
// it counts as a mutation then.
func (f *file) pushing(ctx context.Context) (context.Context, func()) {
	if f.wrote.Load() {
		return f.vol.mutation(ctx)
	}
	return f.vol.holding(ctx)
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	ctx, done := f.pushing(ctx)
	defer done()
	return errno(ctx, f.vol.top.Fsync(ctx, f.fd, flags&fsyncDatasync != 0))
}

// Release runs once the kernel has dropped its last reference. The kernel
// ignores the result, so a failure, which leaks an fd below, is logged.
func (f *file) Release(ctx context.Context) syscall.Errno {
	ctx, done := f.pushing(ctx)
	defer done()
	if e := f.vol.top.Release(ctx, f.fd); e != 0 {
		f.vol.log.Warn("release failed", "gfid", f.fd.GFID, "err", e)
		return e
	}
	return 0
}

// dir is an open directory. It reads entries from the translator in
// batches, each with its attributes, and answers READDIRPLUS's per-entry
// lookups from them, so a listing costs one call per batch. While the
// kernel takes in one batch, the next is read ahead, so the bricks work
// while the kernel does. go-fuse serializes Readdirent, Lookup, Seekdir
// and Releasedir on a handle (it holds the handle's lock through each
// READDIR), so dir needs no lock of its own.
type dir struct {
	node  *node
	open  *dirOpen
	batch []xl.Dirent
	next  int    // index in batch of the entry Readdirent returns next
	off   uint64 // cookie to continue after batch
	eof   bool
	dots  int        // how many of "." and ".." this pass returned
	last  *xl.Dirent // the entry Readdirent returned last
	list  *listing   // the listing in progress, for xattr readahead
	ahead *readahead // the batch after this one, being read; nil if none
	// read is when batch was read, if it was read ahead; zero if it was
	// read for the kernel's request.
	read time.Time
}

// dirOpen is the Opendir below of a handle. The kernel does not wait for
// it: until it answers, the handle reads through an anonymous fd (H
// zero), which the bricks serve by GFID with the same cookies, so a
// directory's first batch costs one round trip, not two. The bricks
// check read permission on such reads as Opendir does, and a listing
// does not end before Opendir has answered: its error is the listing's.
// It still opens the directory on the bricks, which keep a directory
// removed while open reachable until its Releasedir.
//
// It runs under the prefetcher's context, so that unmounting cancels
// it. What it opens after the handle was released, or after the mount
// stopped, it releases itself.
type dirOpen struct {
	done chan struct{} // closed once fd and errno are set

	mu       sync.Mutex
	fd       xl.Fd
	errno    syscall.Errno // ECANCELED: nothing opened, the mount stopped
	released bool          // the handle was released
}

func newDirOpen() *dirOpen { return &dirOpen{done: make(chan struct{})} }

// run opens dir below as the caller c, with a Seq of its own.
func (o *dirOpen) run(v *volume, dir xl.GFID, c *xl.Call) {
	call := v.again(c)
	fd, e := v.top.Opendir(xl.WithCall(v.prefetch.ctx, call), dir)
	o.mu.Lock()
	orphan := e == 0 && (o.released || v.prefetch.ctx.Err() != nil)
	if orphan {
		o.fd, o.errno = xl.Fd{}, syscall.ECANCELED
	} else {
		o.fd, o.errno = fd, e
	}
	close(o.done) // under mu: close sees fd set or done open
	o.mu.Unlock()
	if !orphan {
		return
	}
	v.releasedir(xl.WithCall(v.prefetch.ctx, v.again(call)), fd)
}

// close marks the handle released. It returns the fd to release, if the
// Opendir opened one; if it has not answered yet, run releases it.
func (o *dirOpen) close() (xl.Fd, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.released = true
	select {
	case <-o.done:
		return o.fd, o.errno == 0
	default:
		return xl.Fd{}, false
	}
}

// releasedir releases fd below, logging a failure: nobody waits for it.
// It is not cancelled with ctx, but cut short once the mount has been
// stopping for releaseGrace.
func (v *volume) releasedir(ctx context.Context, fd xl.Fd) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(v.prefetch.release, cancel)()
	if e := v.top.Releasedir(ctx, fd); e != 0 {
		v.log.Warn("releasedir failed", "gfid", fd.GFID, "err", e)
	}
}

// readFd returns the fd to read through: the one opened if Opendir has
// answered, an anonymous one until then.
func (d *dir) readFd() (xl.Fd, syscall.Errno) {
	select {
	case <-d.open.done:
		return d.open.fd, d.open.errno
	default:
		return xl.Fd{GFID: d.node.gfid}, 0
	}
}

// opened waits for the Opendir below, or until ctx is done.
func (d *dir) opened(ctx context.Context) (xl.Fd, syscall.Errno) {
	select {
	case <-d.open.done:
		return d.open.fd, d.open.errno
	case <-ctx.Done():
		return xl.Fd{}, errno(ctx, syscall.ECANCELED)
	}
}

// readahead is a batch being read in the background. Its fields other
// than done, cancel and off are written by the reader and read after done
// is closed.
type readahead struct {
	off    uint64    // cookie it continues from
	at     time.Time // when the read started
	gen    uint64    // the xattr cache's generation before the read
	done   chan struct{}
	cancel context.CancelFunc
	batch  []xl.Dirent
	errno  syscall.Errno
	// next is the batch after this one, read by the same reader when
	// this one came short, or nil (see readAhead).
	next *readahead
}

// The translators list no "." or ".."; dir returns them first, as
// every local file system does, with cookies of their own. lseek(2)
// takes only positive cookies, and ext4, whose cookies the bricks pass
// on, hands out none between 0x7fffffff00000000 and its end of
// directory, math.MaxInt64.
const (
	dotCookie    = math.MaxInt64 - 2 // after "."
	dotdotCookie = math.MaxInt64 - 1 // after ".."
)

const (
	// readdirBatch is how many entries the first translator Readdir of a
	// pass asks for: what a small directory's listing waits for.
	readdirBatch = 256
	// readaheadBatch is how many entries each batch read ahead asks for:
	// no one waits for it unless the kernel is faster than the bricks,
	// and fewer, larger batches cost fewer round trips.
	readaheadBatch = 1024
)

var (
	_ fs.FileReaddirenter = (*dir)(nil)
	_ fs.FileLookuper     = (*dir)(nil)
	_ fs.FileSeekdirer    = (*dir)(nil)
	_ fs.FileFsyncdirer   = (*dir)(nil)
	_ fs.FileReleasedirer = (*dir)(nil)
)

func (d *dir) Readdirent(ctx context.Context) (*gofuse.DirEntry, syscall.Errno) {
	d.last = nil
	if d.dots < 2 {
		de := &xl.Dirent{Name: ".", Off: dotCookie}
		if d.dots == 1 {
			de = &xl.Dirent{Name: "..", Off: dotdotCookie}
		}
		d.dots++
		d.fill(ctx, de) // cannot fail for dots
		d.last = de
		return &gofuse.DirEntry{Name: de.Name, Mode: de.Attr.Mode, Ino: de.Attr.GFID.Ino(), Off: de.Off}, 0
	}
	if d.next == len(d.batch) {
		if d.eof {
			return nil, 0
		}
		if e := d.refill(ctx); e != 0 {
			return nil, e
		}
		if d.eof {
			return nil, 0
		}
	}
	de := &d.batch[d.next]
	d.next++
	if de.Attr.GFID.IsZero() {
		if e := d.fill(ctx, de); e != 0 {
			return nil, e
		}
	}
	d.list.add(&de.Attr)
	d.last = de
	return &gofuse.DirEntry{Name: de.Name, Mode: de.Attr.Mode, Ino: de.Attr.GFID.Ino(), Off: de.Off}, 0
}

// refill replaces the consumed batch with the next one, read ahead if it
// was, and starts reading the one after. An empty batch ends the pass.
func (d *dir) refill(ctx context.Context) syscall.Errno {
	v := d.node.vol
	cctx, done := v.call(ctx)
	defer done()
	if d.off == 0 || d.list == nil {
		d.list = v.listings.start(d.node.gfid, v.xattrs.now())
	}
	var (
		batch []xl.Dirent
		gen   uint64
	)
	fd, e := d.readFd()
	if e != 0 {
		return errno(cctx, e)
	}
	var (
		next  *readahead // the one after the batch taken, if read already
		taken bool
	)
	if r := d.ahead; r != nil && r.off == d.off {
		select {
		case <-r.done:
		case <-cctx.Done():
			// Interrupted: the read goes on, and a retry takes it.
			return errno(cctx, syscall.ECANCELED)
		}
		d.ahead = nil
		// A read ahead that failed is read again, as the caller that
		// needs it: the one that read ahead may have been another (a
		// walk reads ahead as the walker).
		if taken = r.errno == 0; taken {
			batch, gen, next, d.read = r.batch, r.gen, r.next, r.at
		}
	}
	if !taken {
		d.dropAhead()
		gen, d.read = v.xattrs.generation(), time.Time{}
		batch, e = v.top.Readdir(cctx, fd, d.off, readdirBatch)
	}
	if e != 0 {
		return errno(cctx, e)
	}
	if len(batch) == 0 {
		// A listing read through the anonymous fd ends only once the
		// Opendir below has answered: its failure is the listing's.
		if _, e := d.opened(cctx); e != 0 {
			return e
		}
		d.eof, d.batch, d.next = true, nil, 0
		return 0
	}
	for i := range batch {
		// Zero is "the start": continuing from it would list forever.
		if batch[i].Off == 0 {
			v.log.Error("readdir returned a zero cookie", "dir", d.node.gfid, "name", batch[i].Name)
			return syscall.EIO
		}
	}
	v.xattrs.listed(gen, batch)
	d.batch, d.next, d.off = batch, 0, batch[len(batch)-1].Off
	if next != nil && next.off == d.off {
		d.ahead = next
	} else {
		d.ahead = v.readAhead(xl.CallFrom(cctx), fd, d.off, readaheadBatch, false)
	}
	return 0
}

// readAhead starts reading max entries of fd after off as the caller c.
// It returns nil if the mount is going away. With onShort, a batch that
// comes short but not empty is followed by a read of the next one: a
// small directory's end, which the kernel asks for next.
func (v *volume) readAhead(c *xl.Call, fd xl.Fd, off uint64, max int, onShort bool) *readahead {
	ctx, cancel := context.WithCancel(v.prefetch.ctx)
	r := &readahead{off: off, at: v.xattrs.now(), gen: v.xattrs.generation(), done: make(chan struct{}), cancel: cancel}
	read := func(r *readahead, max int) {
		r.batch, r.errno = v.top.Readdir(xl.WithCall(ctx, v.again(c)), fd, r.off, max)
	}
	if !v.prefetch.goOn(func() {
		defer close(r.done)
		defer cancel()
		read(r, max)
		if !onShort || r.errno != 0 || len(r.batch) == 0 || len(r.batch) >= max {
			return
		}
		// Dated as r: the older of the two.
		n := &readahead{off: r.batch[len(r.batch)-1].Off, at: r.at, gen: v.xattrs.generation(), done: make(chan struct{}), cancel: func() {}}
		read(n, readaheadBatch)
		close(n.done)
		r.next = n
	}) {
		cancel()
		return nil
	}
	return r
}

// dropAhead abandons the batch being read ahead, if any.
func (d *dir) dropAhead() {
	if d.ahead != nil {
		d.ahead.cancel()
		d.ahead = nil
	}
}

// fill gives an entry that came without attributes the ones its dirent
// needs: the directory's own for "." and "..", a lookup otherwise.
func (d *dir) fill(ctx context.Context, de *xl.Dirent) syscall.Errno {
	switch de.Name {
	case ".":
		de.Attr = xl.Attr{GFID: d.node.gfid, Mode: syscall.S_IFDIR}
		return 0
	case "..":
		// The kernel ignores ".." in READDIRPLUS and stat(2) resolves it
		// by lookup; the number only shows in a bare readdir.
		de.Attr = xl.Attr{GFID: xl.RootGFID, Mode: syscall.S_IFDIR}
		if _, p := d.node.Parent(); p != nil {
			if pn, ok := p.Operations().(*node); ok {
				de.Attr.GFID = pn.gfid
			}
		}
		return 0
	}
	cctx, done := d.node.vol.call(ctx)
	defer done()
	a, e := d.node.vol.top.Lookup(cctx, d.node.gfid, de.Name)
	if e != 0 {
		return errno(cctx, e)
	}
	de.Attr = a
	return 0
}

// Lookup answers READDIRPLUS for the entry Readdirent just returned, from
// its attributes; any other name (go-fuse replaying an interrupted
// READDIRPLUS) costs a real lookup. An entry read ahead is cached by the
// kernel only for what is left of the timeouts since it was read.
func (d *dir) Lookup(ctx context.Context, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if d.last == nil || d.last.Name != name {
		return d.node.Lookup(ctx, name, out)
	}
	ch, e := d.node.child(ctx, &d.last.Attr, out)
	if e == 0 && !d.read.IsZero() && d.next > 0 && d.last == &d.batch[d.next-1] {
		v := d.node.vol
		age := v.xattrs.now().Sub(d.read)
		out.SetAttrTimeout(left(v.attrTimeout, age))
		out.SetEntryTimeout(left(v.entryTimeout, age))
	}
	return ch, e
}

// left is what remains of timeout after age. go-fuse takes a zero
// timeout for the default, so none left is the least it can say.
func left(timeout, age time.Duration) time.Duration {
	return max(timeout-age, time.Nanosecond)
}

// Seekdir restarts the listing after cookie off (0: the beginning).
func (d *dir) Seekdir(_ context.Context, off uint64) syscall.Errno {
	d.dropAhead()
	d.batch, d.next, d.off, d.eof, d.last, d.dots = nil, 0, off, false, nil, 2
	switch off {
	case 0:
		d.dots = 0
	case dotCookie:
		d.off, d.dots = 0, 1
	case dotdotCookie:
		d.off = 0
	}
	return 0
}

func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	ctx, done := d.node.vol.call(ctx)
	defer done()
	fd, e := d.opened(ctx)
	if e != 0 {
		return e
	}
	return errno(ctx, d.node.vol.top.Fsync(ctx, fd, flags&fsyncDatasync != 0))
}

// Releasedir releases what the Opendir below opened; if it has not
// answered yet, it releases it itself (dirOpen.run): the kernel's
// request does not wait, and an unmount neither.
func (d *dir) Releasedir(ctx context.Context, _ uint32) {
	// The read ahead must not outlive the handle it reads through.
	if r := d.ahead; r != nil {
		d.dropAhead()
		<-r.done
	}
	fd, ok := d.open.close()
	if !ok {
		return // nothing was opened below, or run releases it
	}
	ctx, done := d.node.vol.holding(ctx)
	defer done()
	d.node.vol.releasedir(ctx, fd)
}
