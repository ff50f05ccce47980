package posix

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/internal/sysmon"
	"github.com/gluon-fs/gluon/xlators/xl"
)

const direntBuf = 32 << 10

// dirStream is an open directory. Its cookies are the filesystem's own
// d_off values, which lseek(2) accepts, so they stay valid across calls,
// handles and brick restarts.
type dirStream struct {
	d  *dirRef // its own open file description, positioned by getdents
	mu sync.Mutex
	// buf[off:n] holds entries read but not yet returned; pos is the
	// cookie of the position after the last entry consumed.
	buf    []byte
	off, n int
	pos    uint64
}

// Opendir opens a directory for Readdir. Until its Releasedir, Getattr
// and the xattr ops reach the directory even if it is removed.
func (s *Store) Opendir(ctx context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	s.opening(ino)
	f, e := s.openDir(ino)
	if e != 0 {
		s.closing(ino)
		return xl.Fd{}, e
	}
	s.mu.Lock()
	if oc := s.opens[ino]; oc.dir == nil {
		oc.dir = f.dir.d.get()
	}
	s.mu.Unlock()
	return xl.Fd{GFID: ino, H: s.addFile(f)}, 0
}

// openDir opens a new stream on g, with a reference for the caller. A
// directory removed while open gets one too: a stream on it reads as
// one on a removed directory does (ENOENT).
func (s *Store) openDir(g xl.GFID) (*file, syscall.Errno) {
	d, e := s.dir(g)
	if e == syscall.ESTALE {
		if d = s.openedDir(g); d != nil {
			e = 0
		}
	}
	if e != 0 {
		return nil, e
	}
	defer d.put()
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errno(err)
	}
	f := &file{gfid: g, fd: -1, dir: &dirStream{d: newDirRef(fd)}}
	f.refs.Store(1)
	return f, 0
}

// Readdir returns up to max entries after cookie off, without "." and
// "..", each with its attributes and whether it has client xattrs.
func (s *Store) Readdir(ctx context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	if max <= 0 {
		return nil, syscall.EINVAL
	}
	f := s.lookupFd(fd, true)
	if f == nil { // unknown H: an anonymous stream
		var e syscall.Errno
		if f, e = s.openDir(fd.GFID); e != 0 {
			return nil, e
		}
	}
	defer f.put()
	ds := f.dir
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if off != ds.pos {
		if _, err := unix.Seek(ds.d.fd, int64(off), unix.SEEK_SET); err != nil {
			return nil, errno(err)
		}
		ds.off, ds.n, ds.pos = 0, 0, off
	}
	return s.readEntries(ds, fd.GFID, max)
}

func (s *Store) readEntries(ds *dirStream, g xl.GFID, max int) ([]xl.Dirent, syscall.Errno) {
	var out []xl.Dirent
	for len(out) < max {
		// Take the names first, then read their attributes together:
		// on a cold cache those reads can then overlap on the disk.
		start := len(out)
		var e syscall.Errno
		end := false
		for len(out) < max {
			var name string
			var doff uint64
			if name, doff, e = ds.next(); e != 0 || name == "" {
				end = true
				break
			}
			ds.pos = doff
			if name == "." || name == ".." || g == xl.RootGFID && name == metaName {
				continue
			}
			out = append(out, xl.Dirent{Name: name, Off: doff})
		}
		out = out[:start+s.fillEntries(ds.d, g, out[start:])]
		if e != 0 && len(out) == 0 {
			return nil, e
		}
		if end {
			break // an error is reported on the next call
		}
	}
	return out, 0
}

// Entries at least this many in a batch get their attributes read by
// readdirWorkers goroutines at once, on at least readdirProcs Ps: each
// read is mostly the kernel's lookup of a name not in its caches, which
// keeps a core busy, and now and then a disk read, which another
// worker's lookups can overlap. A brick runs on one P (see
// sysmon.Widen), where the workers would take turns and one blocked on
// the disk would hold the P until sysmon hands it on. Below
// parallelEntries the handoffs cost more than they save.
const (
	parallelEntries = 32
	readdirWorkers  = 4
	readdirProcs    = 2
	readdirChunk    = 8 // entries a worker claims at a time
)

// fillEntries sets the attributes of ents and packs those still there
// to the front, in order; it returns how many.
func (s *Store) fillEntries(p *dirRef, g xl.GFID, ents []xl.Dirent) int {
	errs := make([]syscall.Errno, len(ents))
	fill := func(i int) {
		a, f, e := s.entry(p, g, ents[i].Name)
		ents[i].Attr, errs[i] = a, e
		if e == 0 {
			ents[i].NoXattrs = s.entryNoXattrs(p, ents[i].Name, f)
		}
	}
	if len(ents) < parallelEntries {
		for i := range ents {
			fill(i)
		}
	} else {
		defer sysmon.Widen(readdirProcs)()
		var next atomic.Int64
		work := func() {
			for {
				i := int(next.Add(readdirChunk)) - readdirChunk
				if i >= len(ents) {
					return
				}
				for j := i; j < min(i+readdirChunk, len(ents)); j++ {
					fill(j)
				}
			}
		}
		var wg sync.WaitGroup
		for range min(readdirWorkers, len(ents)/readdirChunk) - 1 {
			wg.Go(work)
		}
		work()
		wg.Wait()
	}
	n := 0
	for i := range ents {
		switch errs[i] {
		case 0:
			ents[n] = ents[i]
			n++
		case syscall.ENOENT: // removed meanwhile
		default:
			s.log.Warn("posix: readdir: skipping an entry", "dir", g, "name", ents[i].Name, "err", errs[i])
		}
	}
	clear(ents[n:])
	return n
}

// next consumes the next raw entry; "" means the end.
func (ds *dirStream) next() (string, uint64, syscall.Errno) {
	if ds.off >= ds.n {
		if ds.buf == nil {
			ds.buf = make([]byte, direntBuf)
		}
		n, err := unix.Getdents(ds.d.fd, ds.buf)
		if err != nil {
			return "", 0, errno(err)
		}
		ds.off, ds.n = 0, n
		if n == 0 {
			return "", 0, 0
		}
	}
	// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
	rec := ds.buf[ds.off:ds.n]
	doff := binary.NativeEndian.Uint64(rec[8:])
	reclen := int(binary.NativeEndian.Uint16(rec[16:]))
	name := rec[19:reclen]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	ds.off += reclen
	return string(name), doff, 0
}

// Releasedir closes a directory stream. An unknown H is not an error.
func (s *Store) Releasedir(ctx context.Context, fd xl.Fd) syscall.Errno {
	return s.Release(ctx, fd)
}
