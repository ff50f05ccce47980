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

// openCount tracks the open handles of one regular file, so that the
// handle of a file unlinked while open outlives its last name.
type openCount struct {
	n        int
	unlinked bool // no name is left: remove the handle on the last release
}

// addFile enters f in the fd table and returns its H.
func (s *Store) addFile(f *file) uint64 {
	f.refs.Store(1)
	if f.dir == nil {
		s.mu.Lock()
		oc := s.opens[f.gfid]
		if oc == nil {
			oc = &openCount{}
			s.opens[f.gfid] = oc
		}
		oc.n++
		s.mu.Unlock()
	}
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
// opened by GFID with the same flags, as GlusterFS does.
func (s *Store) file(fd xl.Fd) (*file, syscall.Errno) {
	if f := s.lookupFd(fd, false); f != nil {
		return f, 0
	}
	// No O_TRUNC: the file was truncated when it was first opened.
	n, e := s.openGFID(fd.GFID, openFlags(fd.Flags)&^unix.O_TRUNC)
	if e != 0 {
		return nil, e
	}
	f := &file{gfid: fd.GFID, fd: n}
	f.refs.Store(1)
	return f, 0
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
	fd, e := s.openGFID(ino, openFlags(flags))
	if e != 0 {
		return xl.Fd{}, e
	}
	return xl.Fd{GFID: ino, H: s.addFile(&file{gfid: ino, fd: fd}), Flags: flags}, 0
}

// Read fills dst from off; it is short only at EOF.
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

// Write writes data at off, or at the end for an O_APPEND fd.
func (s *Store) Write(ctx context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	f, e := s.file(fd)
	if e != 0 {
		return 0, e
	}
	defer f.put()
	n := 0
	for n < len(data) {
		m, err := unix.Pwrite(f.fd, data[n:], off+int64(n))
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

// Fsync is fsync(2), or fdatasync(2) when datasync.
func (s *Store) Fsync(ctx context.Context, fd xl.Fd, datasync bool) syscall.Errno {
	f, e := s.file(fd)
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

// release drops the table's reference to f. On the last release of a
// file unlinked while open, its handle and spilled xattrs go.
func (s *Store) release(f *file) {
	gone := false
	if f.dir == nil {
		s.mu.Lock()
		if oc := s.opens[f.gfid]; oc != nil {
			if oc.n--; oc.n == 0 {
				delete(s.opens, f.gfid)
				var st unix.Stat_t
				if oc.unlinked && unix.Fstat(f.fd, &st) == nil && st.Nlink == 1 {
					gone = s.removeHandle(f.gfid, &st)
				}
			}
		}
		s.mu.Unlock()
	}
	if gone {
		s.dropSpills(f.gfid)
	}
	f.put()
}
