package posix

import (
	"context"
	"math"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Getattr stats an object.
func (s *Store) Getattr(ctx context.Context, ino xl.GFID) (xl.Attr, syscall.Errno) {
	o, e := s.obj(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	o.put()
	return attrOf(ino, &o.st), 0
}

// Setattr changes the fields whose bit is in in.Valid, in the order
// chown, chmod, truncate, utimes: chown clears set-id bits, and explicit
// times must win over truncate's.
func (s *Store) Setattr(ctx context.Context, ino xl.GFID, in xl.SetattrIn) (xl.Attr, syscall.Errno) {
	o, e := s.obj(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	defer o.put()
	if e := s.setattr(&o, &in); e != 0 {
		return xl.Attr{}, e
	}
	if e := s.restat(&o); e != 0 {
		return xl.Attr{}, e
	}
	return attrOf(ino, &o.st), 0
}

func (s *Store) setattr(o *obj, in *xl.SetattrIn) syscall.Errno {
	fd, path, flags := s.at(o)
	if in.Valid&(xl.SetUid|xl.SetGid) != 0 {
		uid, gid := -1, -1
		if in.Valid&xl.SetUid != 0 {
			uid = int(in.Uid)
		}
		if in.Valid&xl.SetGid != 0 {
			gid = int(in.Gid)
		}
		if err := unix.Fchownat(fd, path, uid, gid, flags); err != nil {
			return errno(err)
		}
	}
	if in.Valid&xl.SetMode != 0 {
		if e := s.chmod(o, in.Mode&0o7777); e != 0 {
			return e
		}
	}
	if in.Valid&xl.SetSize != 0 {
		if e := s.truncate(o, in.Size); e != 0 {
			return e
		}
	}
	const times = xl.SetAtime | xl.SetMtime | xl.SetAtimeNow | xl.SetMtimeNow
	if in.Valid&times != 0 {
		ts := []unix.Timespec{
			utime(in.Valid, xl.SetAtime, xl.SetAtimeNow, in.Atime),
			utime(in.Valid, xl.SetMtime, xl.SetMtimeNow, in.Mtime),
		}
		if err := unix.UtimesNanoAt(fd, path, ts, flags); err != nil {
			return errno(err)
		}
	}
	return 0
}

func utime(valid, set, now uint32, t xl.Timespec) unix.Timespec {
	switch {
	case valid&now != 0:
		return unix.Timespec{Nsec: unix.UTIME_NOW}
	case valid&set != 0:
		return unix.Timespec{Sec: t.Sec, Nsec: int64(t.Nsec)}
	}
	return unix.Timespec{Nsec: unix.UTIME_OMIT}
}

// chmod changes o's mode; a symlink has none to change (as lchmod(3)).
func (s *Store) chmod(o *obj, mode uint32) syscall.Errno {
	switch {
	case o.d != nil:
		return errno(unix.Fchmod(o.d.fd, mode))
	case o.kind() == unix.S_IFLNK:
		return syscall.EOPNOTSUPP
	}
	// The handle itself is not a symlink, so following it is safe.
	return errno(unix.Fchmodat(s.hfd, o.h, mode, 0))
}

// truncate sets the size of a regular file.
func (s *Store) truncate(o *obj, size uint64) syscall.Errno {
	switch {
	case o.d != nil:
		return syscall.EISDIR
	case o.kind() != unix.S_IFREG:
		return syscall.EINVAL
	case size > math.MaxInt64:
		return syscall.EFBIG
	}
	fd, err := unix.Openat(s.hfd, o.h, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return staleIfMissing(err)
	}
	defer unix.Close(fd)
	return errno(unix.Ftruncate(fd, int64(size)))
}

// Truncate sets the size of a regular file.
func (s *Store) Truncate(ctx context.Context, ino xl.GFID, size uint64) (xl.Attr, syscall.Errno) {
	return s.Setattr(ctx, ino, xl.SetattrIn{Valid: xl.SetSize, Size: size})
}

// Access checks mask for the caller in ctx.
func (s *Store) Access(ctx context.Context, ino xl.GFID, mask uint32) syscall.Errno {
	o, e := s.obj(ino)
	if e != 0 {
		return e
	}
	o.put()
	return access(&o.st, mask, xl.CallFrom(ctx))
}

// Readlink returns a symlink's target.
func (s *Store) Readlink(ctx context.Context, ino xl.GFID) (string, syscall.Errno) {
	o, e := s.obj(ino)
	if e != 0 {
		return "", e
	}
	defer o.put()
	if o.kind() != unix.S_IFLNK {
		return "", syscall.EINVAL
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(s.hfd, o.h, buf)
	if err != nil {
		return "", staleIfMissing(err)
	}
	return string(buf[:n]), 0
}
