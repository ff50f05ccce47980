package posix

import (
	"context"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// file is an open regular file or directory stream. The fd table holds
// one reference and each op in flight another; the last put closes it.
type file struct {
	gfid xl.GFID
	fd   int        // regular files
	dir  *dirStream // directory streams
	refs atomic.Int32
}

// acquire takes a reference unless the file is already closing.
func (f *file) acquire() bool {
	for {
		n := f.refs.Load()
		if n == 0 {
			return false
		}
		if f.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (f *file) put() {
	if f.refs.Add(-1) != 0 {
		return
	}
	if f.dir != nil {
		f.dir.d.put()
	} else {
		unix.Close(f.fd)
	}
}

// openCount tracks the opens of one object, so that an object whose
// last name goes while it is open stays reachable by gfid until its last
// release, as an open file outlives its unlink: a regular file through
// its handle, a directory through dir. An open is counted before the
// open syscall (opening), so that no removal can slip in between.
type openCount struct {
	n       int
	removed bool    // the last name went: clean up on the last close
	dir     *dirRef // a directory: one of its streams' fds
}

// opening counts an open of g about to be made. Every opening is
// matched by a closing, on failure or on release.
func (s *Store) opening(g xl.GFID) {
	s.mu.Lock()
	s.countOpen(g)
	s.mu.Unlock()
}

// countOpen counts an open of g; s.mu is held.
func (s *Store) countOpen(g xl.GFID) *openCount {
	oc := s.opens[g]
	if oc == nil {
		oc = &openCount{}
		s.opens[g] = oc
	}
	oc.n++
	return oc
}

// registerOpen counts an open of g, the regular file fd, that could not
// be counted first because it was opened by name. If the file lost its
// last name meanwhile, its handle is gone, and ENOENT says so. A handle
// lost to a crash is restored.
func (s *Store) registerOpen(g xl.GFID, fd int) syscall.Errno {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isHandleOf(g, fd) {
		if e := s.linkHandle(fd, g); e != 0 {
			return e
		}
	}
	s.countOpen(g)
	return 0
}

// closing undoes an opening. On the last close of a removed object its
// handle, if still there, and its spilled xattrs go.
func (s *Store) closing(g xl.GFID) {
	s.mu.Lock()
	oc := s.opens[g]
	if oc.n--; oc.n > 0 {
		s.mu.Unlock()
		return
	}
	delete(s.opens, g)
	gone := false
	if oc.removed {
		// A directory's handle went with its name; a file's is its last
		// link, and Link refuses to add one back.
		var st unix.Stat_t
		switch err := unix.Fstatat(s.hfd, hpath(g), &st, unix.AT_SYMLINK_NOFOLLOW); {
		case err == unix.ENOENT:
			gone = true
		case err == nil && st.Nlink == 1:
			gone = s.removeHandle(g, &st)
		}
	}
	s.mu.Unlock()
	if oc.dir != nil {
		oc.dir.put()
	}
	if gone {
		s.dropSpills(g)
	}
}

// openedDir returns a referenced fd of the open directory g, or nil. It
// reaches a directory removed while open, which has no handle.
func (s *Store) openedDir(g xl.GFID) *dirRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	if oc := s.opens[g]; oc != nil && oc.dir != nil {
		return oc.dir.get()
	}
	return nil
}

// addFile enters f, counted open, in the fd table and returns its H.
func (s *Store) addFile(f *file) uint64 {
	f.refs.Store(1)
	h := s.nextH.Add(1)
	if h == 0 { // zero is never a valid H
		h = s.nextH.Add(1)
	}
	s.fdMu.Lock()
	s.fds[h] = f
	s.fdMu.Unlock()
	return h
}

// lookupFd returns a referenced entry of the fd table for fd, or nil.
func (s *Store) lookupFd(fd xl.Fd, dir bool) *file {
	s.fdMu.RLock()
	f := s.fds[fd.H]
	s.fdMu.RUnlock()
	if f == nil || f.gfid != fd.GFID || (f.dir != nil) != dir || !f.acquire() {
		return nil
	}
	return f
}

// file returns the open regular file for fd. A handle the store does not
// know, e.g. one from before a restart, is served by an anonymous fd
// opened by GFID with the same flags, as GlusterFS does. It is not
// counted open: the op needs the file but not its handle, and the fd is
// kept for the next op on the object (keepAnon) until its handle goes.
func (s *Store) file(fd xl.Fd) (*file, syscall.Errno) {
	if f := s.lookupFd(fd, false); f != nil {
		return f, 0
	}
	// No O_TRUNC: the file was truncated when it was first opened.
	k := anonKey{fd.GFID, openFlags(fd.Flags) &^ unix.O_TRUNC}
	f, gen := s.cachedAnon(k)
	if f != nil {
		return f, 0
	}
	n, e := s.openGFID(k.gfid, k.flags)
	if e != 0 {
		return nil, e
	}
	f = &file{gfid: k.gfid, fd: n}
	f.refs.Store(1)
	s.keepAnon(k, f, gen)
	return f, 0
}

// maxAnon bounds the anonymous fds kept open.
const maxAnon = 64

type anonKey struct {
	gfid  xl.GFID
	flags int
}

// cachedAnon returns a referenced anonymous fd for k, or nil and the
// eviction generation to hand keepAnon.
func (s *Store) cachedAnon(k anonKey) (*file, uint64) {
	s.anonMu.Lock()
	defer s.anonMu.Unlock()
	if f := s.anon[k]; f != nil && f.acquire() {
		return f, 0
	}
	return nil, s.anonGen
}

// keepAnon caches f for k unless an eviction happened since gen: the
// handle f was opened by may be gone, and the fd must not outlive it.
func (s *Store) keepAnon(k anonKey, f *file, gen uint64) {
	s.anonMu.Lock()
	defer s.anonMu.Unlock()
	if gen != s.anonGen || s.closed.Load() || s.anon[k] != nil {
		return
	}
	if s.anon == nil {
		s.anon = make(map[anonKey]*file)
	}
	if len(s.anon) >= maxAnon {
		for ok, of := range s.anon { // any one: map order is random
			delete(s.anon, ok)
			of.put()
			break
		}
	}
	f.refs.Add(1)
	s.anon[k] = f
}

// evictAnon closes the cached anonymous fds of g (of every object if g is
// nil), so that ops on a removed object find it gone, as they would
// opening it. Called after the handle is removed: an fd opened before
// then is not kept (keepAnon sees the new generation), and one opened
// after failed to open.
func (s *Store) evictAnon(g *xl.GFID) {
	s.anonMu.Lock()
	defer s.anonMu.Unlock()
	s.anonGen++
	for k, f := range s.anon {
		if g == nil || k.gfid == *g {
			delete(s.anon, k)
			f.put()
		}
	}
}

// openFlags keeps the open flags a brick honours. O_DIRECT is dropped:
// it needs aligned buffers that requests do not have.
func openFlags(flags uint32) int {
	const keep = unix.O_ACCMODE | unix.O_APPEND | unix.O_TRUNC | unix.O_SYNC | unix.O_DSYNC | unix.O_NOATIME
	return int(flags)&keep | unix.O_NOFOLLOW | unix.O_CLOEXEC
}

// openGFID opens the regular file g through its handle.
func (s *Store) openGFID(g xl.GFID, fl int) (int, syscall.Errno) {
	if s.closed.Load() {
		return -1, syscall.ENOTCONN
	}
	if g == xl.RootGFID {
		return -1, syscall.EISDIR
	}
	h := hpath(g)
	var st unix.Stat_t
	if err := unix.Fstatat(s.hfd, h, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, staleIfMissing(err)
	}
	if isDirHandle(&st) {
		return -1, syscall.EISDIR
	}
	if e := regularOnly(&st, syscall.EPERM); e != 0 {
		return -1, e
	}
	fd, err := unix.Openat(s.hfd, h, fl, 0)
	if err != nil {
		return -1, staleIfMissing(err)
	}
	return fd, 0
}

// Open opens a regular file; O_TRUNC and O_APPEND are honoured.
func (s *Store) Open(ctx context.Context, ino xl.GFID, flags uint32) (xl.Fd, syscall.Errno) {
	s.opening(ino)
	fd, e := s.openGFID(ino, openFlags(flags))
	if e != 0 {
		s.closing(ino)
		return xl.Fd{}, e
	}
	return xl.Fd{GFID: ino, H: s.addFile(&file{gfid: ino, fd: fd}), Flags: flags}, 0
}

// Read fills dst from off; it is short only at EOF. It reads through the
// handle's (or the cached anonymous) fd and the page cache: a client's
// fadvise stops at its mount, so the kernel's readahead on that one file
// is what serves a client's sequential and clustered small reads from
// memory (TestReadsLetKernelReadAhead).
func (s *Store) Read(ctx context.Context, fd xl.Fd, dst []byte, off int64) (int, syscall.Errno) {
	f, e := s.file(fd)
	if e != 0 {
		return 0, e
	}
	defer f.put()
	n := 0
	for n < len(dst) {
		m, err := unix.Pread(f.fd, dst[n:], off+int64(n))
		if err != nil {
			return partial(n, err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, 0
}

// writeChunk bounds one pwrite(2). The page cache sizes the folios a
// buffered write allocates by the write's length; a 1 MiB write asks for
// 1 MiB folios, which a brick whose memory is fragmented by a full page
// cache (or a VM whose free memory went back to the host) pays for
// dearly: on the benchmark VM, sequential 1 MiB writes ran at a third of
// the speed of the same bytes written 256 KiB at a time. An O_APPEND
// write stays whole: its data must land in one piece at the end.
const writeChunk = 256 << 10

// Write writes data at off, or at the end for an O_APPEND fd.
func (s *Store) Write(ctx context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	f, e := s.file(fd)
	if e != 0 {
		return 0, e
	}
	defer f.put()
	chunk := writeChunk
	if fd.Flags&unix.O_APPEND != 0 {
		chunk = len(data)
	}
	n := 0
	for n < len(data) {
		m, err := unix.Pwrite(f.fd, data[n:min(len(data), n+chunk)], off+int64(n))
		if err != nil {
			return partial(n, err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, 0
}

// partial reports an I/O error after n bytes: like read(2) and write(2),
// a partial transfer succeeds.
func partial(n int, err error) (int, syscall.Errno) {
	if n > 0 {
		return n, 0
	}
	return 0, errno(err)
}

// Fallocate is fallocate(2), punching holes included.
func (s *Store) Fallocate(ctx context.Context, fd xl.Fd, mode uint32, off, length int64) syscall.Errno {
	f, e := s.file(fd)
	if e != 0 {
		return e
	}
	defer f.put()
	return errno(unix.Fallocate(f.fd, mode, off, length))
}

// Lseek answers SEEK_DATA and SEEK_HOLE (ENXIO past the data).
func (s *Store) Lseek(ctx context.Context, fd xl.Fd, off int64, whence uint32) (int64, syscall.Errno) {
	f, e := s.file(fd)
	if e != 0 {
		return 0, e
	}
	defer f.put()
	n, err := unix.Seek(f.fd, off, int(whence))
	return n, errno(err)
}

// Flush has nothing to do: writes go straight to the file.
func (s *Store) Flush(ctx context.Context, fd xl.Fd) syscall.Errno {
	f, e := s.file(fd)
	if e != 0 {
		return e
	}
	f.put()
	return 0
}

// Fsync is fsync(2), or fdatasync(2) when datasync. An anonymous fd may
// name a directory (a replicated set syncing whatever its request
// changed), which is fsynced through its handle, as memfs syncs any
// object.
func (s *Store) Fsync(ctx context.Context, fd xl.Fd, datasync bool) syscall.Errno {
	f, e := s.file(fd)
	if e == syscall.EISDIR {
		d, e := s.dir(fd.GFID)
		if e != 0 {
			return e
		}
		defer d.put()
		return errno(unix.Fsync(d.fd))
	}
	if e != 0 {
		return e
	}
	defer f.put()
	if datasync {
		return errno(unix.Fdatasync(f.fd))
	}
	return errno(unix.Fsync(f.fd))
}

// Release closes an open file. An unknown H is not an error.
func (s *Store) Release(ctx context.Context, fd xl.Fd) syscall.Errno {
	s.fdMu.Lock()
	f := s.fds[fd.H]
	if f == nil || f.gfid != fd.GFID {
		s.fdMu.Unlock()
		return 0
	}
	delete(s.fds, fd.H)
	s.fdMu.Unlock()
	s.release(f)
	return 0
}

// release drops the table's reference to f and closes its open.
func (s *Store) release(f *file) {
	s.closing(f.gfid)
	f.put()
}
