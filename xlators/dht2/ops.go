package dht2

import (
	"context"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Inode ops go to the home of the GFID's token; fd ops to the home of the
// fd's GFID, where an fd opened before a migration is served anonymously.

func (d *DHT2) Getattr(ctx context.Context, ino xl.GFID) (a xl.Attr, e syscall.Errno) {
	e = d.at(ctx, ino, func(x xl.Xlator) (e syscall.Errno) { a, e = x.Getattr(ctx, ino); return })
	return
}

func (d *DHT2) Setattr(ctx context.Context, ino xl.GFID, in xl.SetattrIn) (a xl.Attr, e syscall.Errno) {
	e = d.at(ctx, ino, func(x xl.Xlator) (e syscall.Errno) { a, e = x.Setattr(ctx, ino, in); return })
	return
}

func (d *DHT2) Access(ctx context.Context, ino xl.GFID, mask uint32) syscall.Errno {
	return d.at(ctx, ino, func(x xl.Xlator) syscall.Errno { return x.Access(ctx, ino, mask) })
}

func (d *DHT2) Readlink(ctx context.Context, ino xl.GFID) (s string, e syscall.Errno) {
	e = d.at(ctx, ino, func(x xl.Xlator) (e syscall.Errno) { s, e = x.Readlink(ctx, ino); return })
	return
}

func (d *DHT2) Truncate(ctx context.Context, ino xl.GFID, size uint64) (a xl.Attr, e syscall.Errno) {
	e = d.at(ctx, ino, func(x xl.Xlator) (e syscall.Errno) { a, e = x.Truncate(ctx, ino, size); return })
	return
}

func (d *DHT2) Getxattr(ctx context.Context, ino xl.GFID, name string) (v []byte, e syscall.Errno) {
	if strings.HasPrefix(name, xattrPrefix) {
		return nil, syscall.ENODATA
	}
	e = d.at(ctx, ino, func(x xl.Xlator) (e syscall.Errno) { v, e = x.Getxattr(ctx, ino, name); return })
	return
}

func (d *DHT2) Setxattr(ctx context.Context, ino xl.GFID, name string, value []byte, flags uint32) syscall.Errno {
	if strings.HasPrefix(name, xattrPrefix) {
		return syscall.EPERM
	}
	return d.at(ctx, ino, func(x xl.Xlator) syscall.Errno { return x.Setxattr(ctx, ino, name, value, flags) })
}

func (d *DHT2) Listxattr(ctx context.Context, ino xl.GFID) (n []string, e syscall.Errno) {
	e = d.at(ctx, ino, func(x xl.Xlator) (e syscall.Errno) { n, e = x.Listxattr(ctx, ino); return })
	return slices.DeleteFunc(n, func(s string) bool { return strings.HasPrefix(s, xattrPrefix) }), e
}

func (d *DHT2) Removexattr(ctx context.Context, ino xl.GFID, name string) syscall.Errno {
	if strings.HasPrefix(name, xattrPrefix) {
		return syscall.EPERM
	}
	return d.at(ctx, ino, func(x xl.Xlator) syscall.Errno { return x.Removexattr(ctx, ino, name) })
}

func (d *DHT2) Open(ctx context.Context, ino xl.GFID, flags uint32) (fd xl.Fd, e syscall.Errno) {
	e = d.on(ctx, TokenOf(ino), func(i int, x xl.Xlator) (e syscall.Errno) {
		if fd, e = x.Open(ctx, ino, flags); e == 0 {
			d.fds.Store(fdKey{fd.GFID, fd.H}, i)
		}
		return
	})
	return
}

func (d *DHT2) Opendir(ctx context.Context, ino xl.GFID) (fd xl.Fd, e syscall.Errno) {
	e = d.on(ctx, TokenOf(ino), func(i int, x xl.Xlator) (e syscall.Errno) {
		if fd, e = x.Opendir(ctx, ino); e == 0 {
			d.fds.Store(fdKey{fd.GFID, fd.H}, i)
		}
		return
	})
	return
}

func (d *DHT2) Read(ctx context.Context, fd xl.Fd, dst []byte, off int64) (n int, e syscall.Errno) {
	e = d.at(ctx, fd.GFID, func(x xl.Xlator) (e syscall.Errno) { n, e = x.Read(ctx, fd, dst, off); return })
	return
}

func (d *DHT2) Write(ctx context.Context, fd xl.Fd, data []byte, off int64) (n int, e syscall.Errno) {
	e = d.at(ctx, fd.GFID, func(x xl.Xlator) (e syscall.Errno) { n, e = x.Write(ctx, fd, data, off); return })
	return
}

func (d *DHT2) Fallocate(ctx context.Context, fd xl.Fd, mode uint32, off, length int64) syscall.Errno {
	return d.at(ctx, fd.GFID, func(x xl.Xlator) syscall.Errno { return x.Fallocate(ctx, fd, mode, off, length) })
}

func (d *DHT2) Lseek(ctx context.Context, fd xl.Fd, off int64, whence uint32) (o int64, e syscall.Errno) {
	e = d.at(ctx, fd.GFID, func(x xl.Xlator) (e syscall.Errno) { o, e = x.Lseek(ctx, fd, off, whence); return })
	return
}

func (d *DHT2) Flush(ctx context.Context, fd xl.Fd) syscall.Errno {
	return d.at(ctx, fd.GFID, func(x xl.Xlator) syscall.Errno { return x.Flush(ctx, fd) })
}

func (d *DHT2) Fsync(ctx context.Context, fd xl.Fd, datasync bool) syscall.Errno {
	return d.at(ctx, fd.GFID, func(x xl.Xlator) syscall.Errno { return x.Fsync(ctx, fd, datasync) })
}

// Release closes fd where it was opened, and also at the token's current
// home if it moved since (which served it anonymously).
func (d *DHT2) Release(ctx context.Context, fd xl.Fd) syscall.Errno {
	return d.release(ctx, fd, xl.Xlator.Release)
}

func (d *DHT2) Releasedir(ctx context.Context, fd xl.Fd) syscall.Errno {
	return d.release(ctx, fd, xl.Xlator.Releasedir)
}

func (d *DHT2) release(ctx context.Context, fd xl.Fd, rel func(xl.Xlator, context.Context, xl.Fd) syscall.Errno) syscall.Errno {
	v, ok := d.fds.LoadAndDelete(fdKey{fd.GFID, fd.H})
	e := d.on(ctx, TokenOf(fd.GFID), func(i int, x xl.Xlator) syscall.Errno {
		if ok && v.(int) != i {
			rel(d.subs[v.(int)], ctx, fd)
		}
		return rel(x, ctx, fd)
	})
	return e
}

// Readdir lists the directory's home only. An entry whose inode lives on
// another set (a stub) takes its attributes from there, one request per
// such set for the whole batch (see resolveRemote); a stub whose inode is
// gone (a dangling name) is left out.
func (d *DHT2) Readdir(ctx context.Context, fd xl.Fd, off uint64, max int) (ents []xl.Dirent, e syscall.Errno) {
	e = d.at(ctx, fd.GFID, func(x xl.Xlator) (e syscall.Errno) { ents, e = x.Readdir(ctx, fd, off, max); return })
	if e != 0 {
		return nil, e
	}
	tok := TokenOf(fd.GFID)
	var remote []int
	out := ents[:0]
	for _, de := range ents {
		if fd.GFID == xl.RootGFID && de.Name == AnchorName {
			continue
		}
		if TokenOf(de.Attr.GFID) != tok {
			remote = append(remote, len(out))
			de.NoXattrs = false // the stub's: its inode's are unknown
		}
		out = append(out, de)
	}
	if len(remote) == 0 {
		return out, 0
	}
	errs := d.resolveRemote(ctx, fd.GFID, out, remote)
	keep := out[:0]
	for k, de := range out {
		switch errs[k] {
		case 0:
			keep = append(keep, de)
		case syscall.ENOENT, syscall.ESTALE: // dangling: the scrubber's
		default:
			return nil, errs[k]
		}
	}
	if len(keep) == 0 && len(out) > 0 {
		// Every entry of this batch dangled; an empty batch would read
		// as the end of the directory.
		return d.Readdir(ctx, fd, out[len(out)-1].Off, max)
	}
	return keep, 0
}

// Statfs adds up every set, in the first set's fragment size.
func (d *DHT2) Statfs(ctx context.Context, ino xl.GFID) (xl.Statfs, syscall.Errno) {
	st := make([]xl.Statfs, len(d.subs))
	errs := make([]syscall.Errno, len(d.subs))
	var g errgroup.Group
	for i, x := range d.subs {
		g.Go(func() error {
			st[i], errs[i] = x.Statfs(ctx, xl.RootGFID)
			return nil
		})
	}
	g.Wait()
	var sum xl.Statfs
	for i, s := range st {
		if errs[i] != 0 {
			return xl.Statfs{}, errs[i]
		}
		if i == 0 {
			sum = s
			continue
		}
		scale := func(n uint64) uint64 {
			if sum.Frsize == 0 || s.Frsize == sum.Frsize {
				return n
			}
			return n * uint64(s.Frsize) / uint64(sum.Frsize)
		}
		sum.Blocks += scale(s.Blocks)
		sum.Bfree += scale(s.Bfree)
		sum.Bavail += scale(s.Bavail)
		sum.Files += s.Files
		sum.Ffree += s.Ffree
		sum.NameLen = min(sum.NameLen, s.NameLen)
	}
	return sum, 0
}

// Ipc: DHT2 has no private ops of its own.
func (d *DHT2) Ipc(ctx context.Context, op xl.IpcOp, in xl.Xdata) (xl.Xdata, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

// Lookup asks the parent's home; a stub costs one more round trip, to
// the home of the inode it names.
func (d *DHT2) Lookup(ctx context.Context, parent xl.GFID, name string) (a xl.Attr, e syscall.Errno) {
	if parent == xl.RootGFID && name == AnchorName {
		return xl.Attr{}, syscall.ENOENT
	}
	e = d.at(ctx, parent, func(x xl.Xlator) (e syscall.Errno) { a, e = x.Lookup(ctx, parent, name); return })
	if e != 0 || TokenOf(a.GFID) == TokenOf(parent) {
		return a, e
	}
	a, e = d.remoteAttr(ctx, parent, name, stubTarget(a.GFID, parent, name))
	if e == syscall.ESTALE {
		e = syscall.ENOENT // a dangling name
	}
	return a, e
}

// Create, Mknod and Symlink make the inode in the parent's token: one
// round trip to the parent's home.
func (d *DHT2) Create(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, flags, mode uint32) (fd xl.Fd, a xl.Attr, e syscall.Errno) {
	if e = reserved(parent, name); e != 0 {
		return
	}
	g := withToken(gfid, TokenOf(parent))
	for retried := false; ; retried = true {
		e = d.on(ctx, TokenOf(parent), func(i int, x xl.Xlator) (e syscall.Errno) {
			if fd, a, e = x.Create(ctx, parent, name, g, flags, mode); e == 0 {
				d.fds.Store(fdKey{fd.GFID, fd.H}, i)
			}
			return
		})
		switch {
		case e == 0 && TokenOf(a.GFID) != TokenOf(parent):
			// Without O_EXCL the home opened an existing stub: open
			// what it names instead.
			d.Release(ctx, fd)
			en, e := d.resolve(ctx, parent, name)
			if e == syscall.ENOENT && !retried {
				continue // a dangling stub, now removed
			}
			if e != 0 {
				return xl.Fd{}, xl.Attr{}, e
			}
			if en.attr.IsDir() {
				return xl.Fd{}, xl.Attr{}, syscall.EISDIR
			}
			if fd, e = d.Open(ctx, en.attr.GFID, flags&^(syscall.O_CREAT|syscall.O_EXCL)); e != 0 {
				return xl.Fd{}, xl.Attr{}, e
			}
			return fd, en.attr, 0
		case e == syscall.EEXIST && !retried && d.dangling(ctx, parent, name):
			continue
		}
		return
	}
}

// dangling reports whether name in parent was a dangling stub, which it
// removes: the name is free.
func (d *DHT2) dangling(ctx context.Context, parent xl.GFID, name string) bool {
	en, e := d.resolve(ctx, parent, name)
	return e == syscall.ENOENT && en.remote
}

func (d *DHT2) Mknod(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32, rdev uint64) (a xl.Attr, e syscall.Errno) {
	if e = reserved(parent, name); e != 0 {
		return
	}
	g := withToken(gfid, TokenOf(parent))
	mk := func(x xl.Xlator) (e syscall.Errno) { a, e = x.Mknod(ctx, parent, name, g, mode, rdev); return }
	if e = d.at(ctx, parent, mk); e == syscall.EEXIST && d.dangling(ctx, parent, name) {
		e = d.at(ctx, parent, mk)
	}
	return
}

func (d *DHT2) Symlink(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, target string) (a xl.Attr, e syscall.Errno) {
	if e = reserved(parent, name); e != 0 {
		return
	}
	g := withToken(gfid, TokenOf(parent))
	mk := func(x xl.Xlator) (e syscall.Errno) { a, e = x.Symlink(ctx, parent, name, g, target); return }
	if e = d.at(ctx, parent, mk); e == syscall.EEXIST && d.dangling(ctx, parent, name) {
		e = d.at(ctx, parent, mk)
	}
	return
}

// reserved refuses to make the anchor's name in the root.
func reserved(parent xl.GFID, name string) syscall.Errno {
	if parent == xl.RootGFID && name == AnchorName {
		return syscall.EPERM
	}
	return 0
}
