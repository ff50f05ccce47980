package conformance

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
	"golang.org/x/sys/unix"
)

// XlFS drives a translator graph as a path-based filesystem, as the FUSE
// bridge would: it walks paths with Lookup from xl.RootGFID, gives every
// new object a fresh xl.NewGFID, and names the caller with xl.WithCall
// (root, or the AsUser identity).
func XlFS(x xl.Xlator) FS {
	return &xlFS{x: x, ctx: xl.WithCall(context.Background(), &xl.Call{})}
}

type xlFS struct {
	x   xl.Xlator
	ctx context.Context
}

// readdirBatch is small so that listing a large directory pages through
// many Readdir cookies.
const readdirBatch = 100

// maxSymlinks is the kernel's MAXSYMLINKS.
const maxSymlinks = 40

func (f *xlFS) AsUser(uid, gid uint32) FS {
	return &xlFS{x: f.x, ctx: xl.WithCall(context.Background(), &xl.Call{Uid: uid, Gid: gid})}
}

func pathErr(op, p string, errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return &fs.PathError{Op: op, Path: p, Err: errno}
}

// split turns a path into its names, dropping empty and "." ones.
func split(p string) []string {
	var names []string
	for _, n := range strings.Split(p, "/") {
		if n != "" && n != "." {
			names = append(names, n)
		}
	}
	return names
}

// resolve walks names from the root; with follow, a symlink in the last
// place is followed.
func (f *xlFS) resolve(names []string, follow bool, hops int) (xl.Attr, syscall.Errno) {
	if len(names) == 0 {
		return f.x.Getattr(f.ctx, xl.RootGFID)
	}
	dir := xl.RootGFID
	var a xl.Attr
	for i, n := range names {
		var errno syscall.Errno
		a, errno = f.x.Lookup(f.ctx, dir, n)
		if errno != 0 {
			return a, errno
		}
		dir = a.GFID
		if i < len(names)-1 || !follow || a.Mode&syscall.S_IFMT != syscall.S_IFLNK {
			continue
		}
		if hops == maxSymlinks {
			return a, syscall.ELOOP
		}
		target, errno := f.x.Readlink(f.ctx, a.GFID)
		if errno != 0 {
			return a, errno
		}
		base := path.Join(names[:i]...)
		if strings.HasPrefix(target, "/") {
			base = ""
		}
		return f.resolve(split(path.Join(base, target)), true, hops+1)
	}
	return a, 0
}

func (f *xlFS) walk(p string, follow bool) (xl.Attr, syscall.Errno) {
	return f.resolve(split(p), follow, 0)
}

// parent resolves all but the last name of p.
func (f *xlFS) parent(p string) (xl.GFID, string, syscall.Errno) {
	names := split(p)
	if len(names) == 0 {
		return xl.GFID{}, "", syscall.EINVAL
	}
	dir, errno := f.resolve(names[:len(names)-1], false, 0)
	return dir.GFID, names[len(names)-1], errno
}

func attrFromXl(a *xl.Attr) Attr {
	return Attr{
		Ino: a.GFID.Ino(), Mode: a.Mode, Nlink: a.Nlink,
		Uid: a.Uid, Gid: a.Gid, Rdev: a.Rdev,
		Size: int64(a.Size), Blocks: int64(a.Blocks),
		Atime: unixTime(a.Atime), Mtime: unixTime(a.Mtime), Ctime: unixTime(a.Ctime),
	}
}

func unixTime(t xl.Timespec) unix.Timespec {
	return unix.Timespec{Sec: t.Sec, Nsec: int64(t.Nsec)}
}

func (f *xlFS) Mkdir(p string, mode uint32) error {
	dir, name, errno := f.parent(p)
	if errno == 0 {
		_, errno = f.x.Mkdir(f.ctx, dir, name, xl.NewGFID(), mode)
	}
	return pathErr("mkdir", p, errno)
}

func (f *xlFS) Mknod(p string, mode uint32, dev uint64) error {
	dir, name, errno := f.parent(p)
	if errno == 0 {
		_, errno = f.x.Mknod(f.ctx, dir, name, xl.NewGFID(), mode, dev)
	}
	return pathErr("mknod", p, errno)
}

func (f *xlFS) OpenFile(p string, flags int, mode uint32) (File, error) {
	file, errno := f.open(p, uint32(flags), mode)
	return file, pathErr("open", p, errno)
}

func (f *xlFS) open(p string, flags, mode uint32) (File, syscall.Errno) {
	dir, name, errno := f.parent(p)
	if errno != 0 {
		return nil, errno
	}
	a, errno := f.x.Lookup(f.ctx, dir, name)
	if errno == syscall.ENOENT && flags&syscall.O_CREAT != 0 {
		fd, _, errno := f.x.Create(f.ctx, dir, name, xl.NewGFID(), flags, syscall.S_IFREG|mode&0o7777)
		if errno != 0 {
			return nil, errno
		}
		return &xlFile{fs: f, fd: fd, path: p, flags: flags}, 0
	}
	if errno != 0 {
		return nil, errno
	}
	if flags&(syscall.O_CREAT|syscall.O_EXCL) == syscall.O_CREAT|syscall.O_EXCL {
		return nil, syscall.EEXIST
	}
	if a.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		if flags&syscall.O_NOFOLLOW != 0 {
			return nil, syscall.ELOOP
		}
		if a, errno = f.walk(p, true); errno != 0 {
			return nil, errno
		}
	}
	fd, errno := f.x.Open(f.ctx, a.GFID, flags&^(syscall.O_CREAT|syscall.O_EXCL))
	if errno != 0 {
		return nil, errno
	}
	return &xlFile{fs: f, fd: fd, path: p, flags: flags}, 0
}

func (f *xlFS) Stat(p string) (Attr, error) {
	a, errno := f.walk(p, true)
	return attrFromXl(&a), pathErr("stat", p, errno)
}

func (f *xlFS) Lstat(p string) (Attr, error) {
	a, errno := f.walk(p, false)
	return attrFromXl(&a), pathErr("lstat", p, errno)
}

func (f *xlFS) setattr(op, p string, follow bool, in xl.SetattrIn) error {
	a, errno := f.walk(p, follow)
	if errno == 0 {
		_, errno = f.x.Setattr(f.ctx, a.GFID, in)
	}
	return pathErr(op, p, errno)
}

func (f *xlFS) Chmod(p string, mode uint32) error {
	return f.setattr("chmod", p, true, xl.SetattrIn{Valid: xl.SetMode, Mode: mode & 0o7777})
}

func (f *xlFS) Chown(p string, uid, gid int) error {
	var in xl.SetattrIn
	if uid >= 0 {
		in.Valid |= xl.SetUid
		in.Uid = uint32(uid)
	}
	if gid >= 0 {
		in.Valid |= xl.SetGid
		in.Gid = uint32(gid)
	}
	return f.setattr("chown", p, false, in)
}

func (f *xlFS) Utimes(p string, atime, mtime unix.Timespec) error {
	var in xl.SetattrIn
	for _, t := range []struct {
		ts       unix.Timespec
		set, now uint32
		dst      *xl.Timespec
	}{
		{atime, xl.SetAtime, xl.SetAtimeNow, &in.Atime},
		{mtime, xl.SetMtime, xl.SetMtimeNow, &in.Mtime},
	} {
		switch t.ts.Nsec {
		case unix.UTIME_OMIT:
		case unix.UTIME_NOW:
			in.Valid |= t.now
		default:
			if t.ts.Nsec < 0 || t.ts.Nsec >= 1e9 {
				return pathErr("utimes", p, syscall.EINVAL)
			}
			in.Valid |= t.set
			*t.dst = xl.Timespec{Sec: t.ts.Sec, Nsec: uint32(t.ts.Nsec)}
		}
	}
	if in.Valid == 0 {
		// Both omitted: Linux changes nothing, but the path must exist.
		_, errno := f.walk(p, false)
		return pathErr("utimes", p, errno)
	}
	return f.setattr("utimes", p, false, in)
}

func (f *xlFS) Truncate(p string, size int64) error {
	if size < 0 {
		return pathErr("truncate", p, syscall.EINVAL)
	}
	a, errno := f.walk(p, true)
	if errno == 0 {
		_, errno = f.x.Truncate(f.ctx, a.GFID, uint64(size))
	}
	return pathErr("truncate", p, errno)
}

func (f *xlFS) Symlink(target, p string) error {
	dir, name, errno := f.parent(p)
	if errno == 0 {
		_, errno = f.x.Symlink(f.ctx, dir, name, xl.NewGFID(), target)
	}
	return pathErr("symlink", p, errno)
}

func (f *xlFS) Readlink(p string) (string, error) {
	a, errno := f.walk(p, false)
	var target string
	if errno == 0 {
		target, errno = f.x.Readlink(f.ctx, a.GFID)
	}
	return target, pathErr("readlink", p, errno)
}

func (f *xlFS) Link(oldpath, newpath string) error {
	a, errno := f.walk(oldpath, false)
	if errno == 0 {
		var dir xl.GFID
		var name string
		if dir, name, errno = f.parent(newpath); errno == 0 {
			_, errno = f.x.Link(f.ctx, a.GFID, dir, name)
		}
	}
	return pathErr("link", oldpath+" -> "+newpath, errno)
}

func (f *xlFS) Unlink(p string) error {
	dir, name, errno := f.parent(p)
	if errno == 0 {
		errno = f.x.Unlink(f.ctx, dir, name)
	}
	return pathErr("unlink", p, errno)
}

func (f *xlFS) Rmdir(p string) error {
	dir, name, errno := f.parent(p)
	if errno == 0 {
		errno = f.x.Rmdir(f.ctx, dir, name)
	}
	return pathErr("rmdir", p, errno)
}

func (f *xlFS) Rename(oldpath, newpath string, flags uint) error {
	odir, oname, errno := f.parent(oldpath)
	if errno == 0 {
		var ndir xl.GFID
		var nname string
		if ndir, nname, errno = f.parent(newpath); errno == 0 {
			errno = f.x.Rename(f.ctx, odir, oname, ndir, nname, uint32(flags))
		}
	}
	return pathErr("rename", oldpath+" -> "+newpath, errno)
}

func (f *xlFS) ReadDir(p string) ([]DirEntry, error) {
	a, errno := f.walk(p, true)
	if errno != 0 {
		return nil, pathErr("readdir", p, errno)
	}
	fd, errno := f.x.Opendir(f.ctx, a.GFID)
	if errno != 0 {
		return nil, pathErr("opendir", p, errno)
	}
	defer f.x.Releasedir(f.ctx, fd)
	var ents []DirEntry
	var off uint64
	for {
		batch, errno := f.x.Readdir(f.ctx, fd, off, readdirBatch)
		if errno != 0 {
			return nil, pathErr("readdir", p, errno)
		}
		if len(batch) == 0 {
			return ents, nil
		}
		if len(batch) > readdirBatch {
			return nil, fmt.Errorf("readdir %s: %d entries for a batch of %d", p, len(batch), readdirBatch)
		}
		for i := range batch {
			if n := batch[i].Name; n != "." && n != ".." {
				ents = append(ents, DirEntry{Name: n, Attr: attrFromXl(&batch[i].Attr)})
			}
		}
		next := batch[len(batch)-1].Off
		if next == off {
			return nil, fmt.Errorf("readdir %s: cookie %d does not advance", p, off)
		}
		off = next
	}
}

func (f *xlFS) Statfs(p string) (Statfs, error) {
	a, errno := f.walk(p, true)
	var st xl.Statfs
	if errno == 0 {
		st, errno = f.x.Statfs(f.ctx, a.GFID)
	}
	return Statfs{
		Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail,
		Files: st.Files, Ffree: st.Ffree,
		Bsize: int64(st.Bsize), NameLen: int64(st.NameLen),
	}, pathErr("statfs", p, errno)
}

func (f *xlFS) Getxattr(p, name string) ([]byte, error) {
	a, errno := f.walk(p, false)
	var v []byte
	if errno == 0 {
		v, errno = f.x.Getxattr(f.ctx, a.GFID, name)
	}
	return v, pathErr("getxattr", p, errno)
}

func (f *xlFS) Setxattr(p, name string, value []byte, flags int) error {
	a, errno := f.walk(p, false)
	if errno == 0 {
		errno = f.x.Setxattr(f.ctx, a.GFID, name, value, uint32(flags))
	}
	return pathErr("setxattr", p, errno)
}

func (f *xlFS) Listxattr(p string) ([]string, error) {
	a, errno := f.walk(p, false)
	var names []string
	if errno == 0 {
		names, errno = f.x.Listxattr(f.ctx, a.GFID)
	}
	return names, pathErr("listxattr", p, errno)
}

func (f *xlFS) Removexattr(p, name string) error {
	a, errno := f.walk(p, false)
	if errno == 0 {
		errno = f.x.Removexattr(f.ctx, a.GFID, name)
	}
	return pathErr("removexattr", p, errno)
}

func (f *xlFS) Access(p string, mode uint32) error {
	a, errno := f.walk(p, true)
	if errno == 0 {
		errno = f.x.Access(f.ctx, a.GFID, mode)
	}
	return pathErr("access", p, errno)
}

// xlFile is an open xl.Fd with a file offset kept here, as the kernel
// keeps it for a FUSE file.
type xlFile struct {
	fs     *xlFS
	fd     xl.Fd
	path   string
	flags  uint32
	pos    int64
	closed bool
}

func (f *xlFile) err(op string, errno syscall.Errno) error { return pathErr(op, f.path, errno) }

func (f *xlFile) ReadAt(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, f.err("read", syscall.EBADF)
	}
	done := 0
	for done < len(p) {
		chunk := min(len(p)-done, xl.MaxIO)
		n, errno := f.fs.x.Read(f.fs.ctx, f.fd, p[done:done+chunk], off+int64(done))
		if errno != 0 {
			return done, f.err("read", errno)
		}
		done += n
		if n < chunk {
			break
		}
	}
	return done, nil
}

func (f *xlFile) WriteAt(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, f.err("write", syscall.EBADF)
	}
	done := 0
	for done < len(p) {
		chunk := min(len(p)-done, xl.MaxIO)
		n, errno := f.fs.x.Write(f.fs.ctx, f.fd, p[done:done+chunk], off+int64(done))
		if errno != 0 {
			return done, f.err("write", errno)
		}
		if n == 0 {
			return done, f.err("write", syscall.EIO)
		}
		done += n
	}
	return done, nil
}

// Write writes at the offset. With O_APPEND the store must append
// wherever the end is now; the offset then moves to the new end.
func (f *xlFile) Write(p []byte) (int, error) {
	n, err := f.WriteAt(p, f.pos)
	if f.flags&syscall.O_APPEND == 0 {
		f.pos += int64(n)
		return n, err
	}
	a, errno := f.fs.x.Getattr(f.fs.ctx, f.fd.GFID)
	if errno != 0 && err == nil {
		err = f.err("write", errno)
	}
	f.pos = int64(a.Size)
	return n, err
}

func (f *xlFile) Seek(off int64, whence int) (int64, error) {
	if f.closed {
		return 0, f.err("lseek", syscall.EBADF)
	}
	var pos int64
	switch whence {
	case unix.SEEK_SET:
		pos = off
	case unix.SEEK_CUR:
		pos = f.pos + off
	case unix.SEEK_END:
		a, errno := f.fs.x.Getattr(f.fs.ctx, f.fd.GFID)
		if errno != 0 {
			return 0, f.err("lseek", errno)
		}
		pos = int64(a.Size) + off
	case unix.SEEK_DATA, unix.SEEK_HOLE:
		n, errno := f.fs.x.Lseek(f.fs.ctx, f.fd, off, uint32(whence))
		if errno != 0 {
			return 0, f.err("lseek", errno)
		}
		pos = n
	default:
		return 0, f.err("lseek", syscall.EINVAL)
	}
	if pos < 0 {
		return 0, f.err("lseek", syscall.EINVAL)
	}
	f.pos = pos
	return pos, nil
}

func (f *xlFile) Truncate(size int64) error {
	if f.closed {
		return f.err("ftruncate", syscall.EBADF)
	}
	if size < 0 {
		return f.err("ftruncate", syscall.EINVAL)
	}
	_, errno := f.fs.x.Truncate(f.fs.ctx, f.fd.GFID, uint64(size))
	return f.err("ftruncate", errno)
}

func (f *xlFile) Fallocate(mode uint32, off, length int64) error {
	if f.closed {
		return f.err("fallocate", syscall.EBADF)
	}
	return f.err("fallocate", f.fs.x.Fallocate(f.fs.ctx, f.fd, mode, off, length))
}

func (f *xlFile) Stat() (Attr, error) {
	if f.closed {
		return Attr{}, f.err("fstat", syscall.EBADF)
	}
	a, errno := f.fs.x.Getattr(f.fs.ctx, f.fd.GFID)
	return attrFromXl(&a), f.err("fstat", errno)
}

func (f *xlFile) Sync() error {
	if f.closed {
		return f.err("fsync", syscall.EBADF)
	}
	return f.err("fsync", f.fs.x.Fsync(f.fs.ctx, f.fd, false))
}

// Close flushes and releases, as close(2) on a FUSE file does.
func (f *xlFile) Close() error {
	if f.closed {
		return f.err("close", syscall.EBADF)
	}
	f.closed = true
	errno := f.fs.x.Flush(f.fs.ctx, f.fd)
	if e := f.fs.x.Release(f.fs.ctx, f.fd); errno == 0 {
		errno = e
	}
	return f.err("close", errno)
}
