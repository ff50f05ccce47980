package posix

import (
	"path"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Spill files: <root>/.gluon/xattrs/ab/cd/<gfid>/<key>. See xattr.go.

// spillPath is the spill file of key for g, relative to the xattrs
// directory.
func spillPath(g xl.GFID, key string) string { return bucketPath(g) + "/" + key }

// writeSpill replaces g's spill file of key with value, atomically.
func (s *Store) writeSpill(g xl.GFID, key string, value []byte) error {
	p := spillPath(g, key)
	tmp := p + ".tmp" // one writer per gfid: the caller holds its stripe
	const fl = unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(s.xfd, tmp, fl, 0o600)
	if err == unix.ENOENT {
		if err = mkdirAll(s.xfd, bucketPath(g)); err == nil {
			fd, err = unix.Openat(s.xfd, tmp, fl, 0o600)
		}
	}
	if err != nil {
		return err
	}
	for b := value; len(b) > 0 && err == nil; {
		var n int
		if n, err = unix.Write(fd, b); err == nil {
			b = b[n:]
		}
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(s.xfd, tmp, s.xfd, p)
	}
	if err != nil {
		unix.Unlinkat(s.xfd, tmp, 0)
	}
	return err
}

// readSpill reads g's spilled value of key, whose marker was found on
// o.
func (s *Store) readSpill(o *obj, g xl.GFID, key string) ([]byte, syscall.Errno) {
	fd, err := unix.Openat(s.xfd, spillPath(g, key), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		if s.removed(o) {
			// A directory resolved before an Rmdir keeps its markers,
			// but its spills went with its name: it is gone, as it
			// would be had it been resolved after.
			return nil, syscall.ESTALE
		}
		s.log.Error("posix: a spilled xattr value is missing", "gfid", g, "key", key)
		return nil, syscall.EIO
	}
	if err != nil {
		return nil, errno(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, errno(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > xattrSizeMax {
		s.log.Error("posix: a spilled xattr value is corrupt", "gfid", g, "key", key, "mode", st.Mode, "size", st.Size)
		return nil, syscall.EIO
	}
	buf := make([]byte, st.Size)
	for n := 0; n < len(buf); {
		m, err := unix.Pread(fd, buf[n:], int64(n))
		if err != nil {
			return nil, errno(err)
		}
		if m == 0 {
			s.log.Error("posix: a spilled xattr value shrank while read", "gfid", g, "key", key)
			return nil, syscall.EIO
		}
		n += m
	}
	return buf, 0
}

// removed reports whether o lost its last name since it was resolved.
func (s *Store) removed(o *obj) bool {
	var st unix.Stat_t
	if o.d != nil {
		return unix.Fstat(o.d.fd, &st) == nil && st.Nlink == 0
	}
	return unix.Fstatat(s.hfd, o.h, &st, unix.AT_SYMLINK_NOFOLLOW) == unix.ENOENT
}

// unlinkSpill removes g's spill file of key once its marker is gone.
// Should that fail, the file is garbage, removed with the object.
func (s *Store) unlinkSpill(g xl.GFID, key string) {
	if err := unix.Unlinkat(s.xfd, spillPath(g, key), 0); err != nil && err != unix.ENOENT {
		s.log.Error("posix: removing a spilled xattr value", "gfid", g, "key", key, "err", err)
	}
}

// dropSpills removes the spills of g, which is gone: its handle was just
// removed. While no value was ever spilled it costs nothing.
func (s *Store) dropSpills(g xl.GFID) {
	if !s.spilled.Load() {
		return
	}
	mu := s.xlock(g)
	mu.Lock()
	defer mu.Unlock()
	if err := s.removeSpillDir(g); err != nil {
		s.log.Error("posix: removing spilled xattrs", "gfid", g, "err", err)
	}
}

// removeSpillDir removes g's spill directory and what it holds.
func (s *Store) removeSpillDir(g xl.GFID) error {
	dir := bucketPath(g)
	switch err := unix.Unlinkat(s.xfd, dir, unix.AT_REMOVEDIR); err {
	case nil, unix.ENOENT, unix.ENOTDIR: // ENOTDIR: not ours; leave it
		return nil
	case unix.ENOTEMPTY, unix.EEXIST:
	default:
		return err
	}
	err := eachEntry(s.xfd, dir, func(dfd int, name string) error {
		if err := unix.Unlinkat(dfd, name, 0); err != nil && err != unix.ENOENT {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return unix.Unlinkat(s.xfd, dir, unix.AT_REMOVEDIR)
}

// gcSpills removes the spills of objects whose handle is gone (a crash
// between the two removals) and notes whether any spill is left.
func (s *Store) gcSpills() error {
	removed := 0
	err := walk3(s.xfd, func(dfd int, name string) error {
		g, err := xl.ParseGFID(name)
		if err != nil {
			return nil // not ours; leave it
		}
		var st unix.Stat_t
		switch err := unix.Fstatat(s.hfd, hpath(g), &st, unix.AT_SYMLINK_NOFOLLOW); {
		case err == nil || g == xl.RootGFID:
			s.spilled.Store(true)
			return nil
		case err != unix.ENOENT:
			return err
		}
		removed++
		return s.removeSpillDir(g)
	})
	if removed > 0 {
		s.log.Info("posix: removed spilled xattrs of vanished objects", "count", removed)
	}
	return err
}

// mkdirAll makes directory p in dfd and any missing parents.
func mkdirAll(dfd int, p string) error {
	err := unix.Mkdirat(dfd, p, 0o700)
	if err == unix.ENOENT && path.Dir(p) != "." {
		if err = mkdirAll(dfd, path.Dir(p)); err == nil {
			err = unix.Mkdirat(dfd, p, 0o700)
		}
	}
	if err == unix.EEXIST {
		return nil
	}
	return err
}
