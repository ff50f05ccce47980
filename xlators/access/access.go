// Package access is the access-control translator (GlusterFS
// features/access-control). It sits above the posix store on every brick,
// which runs as root, and applies the permission checks the Linux VFS
// would apply to the caller named in the request's xl.Call: search and
// write permission on directories, sticky-bit deletion rules, open modes,
// ownership rules for setattr, and the xattr namespaces.
//
// Root (uid 0) bypasses read, write and search checks as CAP_DAC_OVERRIDE
// does, but still needs an execute bit to pass an execute check on a file.
// Errors are the ones Linux returns: EACCES when a mode bit is missing,
// EPERM when only the owner or root may act.
//
// Checks use the classic owner/group/other mode bits. POSIX ACLs are not
// enforced, so setting the system.posix_acl_* attributes fails with
// EOPNOTSUPP rather than storing an ACL that nobody honours.
package access

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Options configures the translator.
type Options struct {
	// Logger receives denials at debug level; nil means slog.Default().
	Logger *slog.Logger
}

// Access enforces POSIX permissions above its child.
type Access struct {
	xl.Base
	log *slog.Logger

	// privs holds the regular files last seen with set-id bits that a
	// write must clear (setuid, or setgid with group execute). A write or
	// fallocate by a caller other than root clears them first, as the
	// kernel's file_remove_privs does for callers without CAP_FSETID: the
	// store runs as root, so it would keep them, and the FUSE client
	// leaves this to the server (FUSE_HANDLE_KILLPRIV_V2). The set is
	// kept from the attributes every op returns, so that a write by root,
	// or to a file without such bits, costs no lookup; nprivs lets the
	// common case, no such file, skip the lock. Files removed while they
	// carried the bits stay in the set, so it is bounded by maxPrivs:
	// past that, overflow makes every write by a caller other than root
	// look at the attributes, slower but never wrong.
	privMu   sync.Mutex
	privs    map[xl.GFID]struct{}
	nprivs   atomic.Int64
	maxPrivs int
	overflow atomic.Bool
}

// maxPrivs is the default bound of Access.privs: 64 KiB of GFIDs.
const maxPrivs = 4096

var _ xl.Xlator = (*Access)(nil)

// New returns an access-control translator above child.
func New(child xl.Xlator, opts Options) (*Access, error) {
	if child == nil {
		return nil, errors.New("access: nil child")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Access{Base: xl.Base{Xlator: child}, log: log.With("xlator", "access"), privs: map[xl.GFID]struct{}{}, maxPrivs: maxPrivs}, nil
}

// Permission bits of a check, as in the mode's rwx triplets.
const (
	mayExec  = 1
	mayWrite = 2
	mayRead  = 4
)

func isRoot(c *xl.Call) bool { return c.Uid == 0 }

// permitted reports whether c may access an object with attributes a for
// every bit in want (the kernel's generic_permission without ACLs).
func permitted(c *xl.Call, a *xl.Attr, want uint32) bool {
	if isRoot(c) {
		// CAP_DAC_OVERRIDE: everything but executing a file that has no
		// execute bit at all.
		return want&mayExec == 0 || a.IsDir() || a.Mode&0o111 != 0
	}
	var bits uint32
	switch {
	case c.Uid == a.Uid:
		bits = a.Mode >> 6
	case c.InGroup(a.Gid):
		bits = a.Mode >> 3
	default:
		bits = a.Mode
	}
	return bits&7&want == want
}

// ownerOrRoot is inode_owner_or_capable.
func ownerOrRoot(c *xl.Call, a *xl.Attr) bool { return isRoot(c) || c.Uid == a.Uid }

// stickyDenies is check_sticky: in a sticky directory only the owner of
// the entry, the owner of the directory or root may remove or rename it.
func stickyDenies(c *xl.Call, dir, victim *xl.Attr) bool {
	return dir.Mode&syscall.S_ISVTX != 0 && !isRoot(c) && c.Uid != victim.Uid && c.Uid != dir.Uid
}

func isReg(a *xl.Attr) bool { return a.Mode&syscall.S_IFMT == syscall.S_IFREG }

// hasPriv reports whether a is a regular file with set-id bits that a
// write by a caller without CAP_FSETID clears (should_remove_suid).
func hasPriv(a *xl.Attr) bool {
	return isReg(a) && (a.Mode&syscall.S_ISUID != 0 || a.Mode&(syscall.S_ISGID|0o010) == syscall.S_ISGID|0o010)
}

// needsKillPriv reports whether a write by c must clear a's set-id bits.
func needsKillPriv(c *xl.Call, a *xl.Attr) bool { return !isRoot(c) && hasPriv(a) }

// withoutPriv is a's permission bits with the set-id bits a write clears.
func withoutPriv(a *xl.Attr) uint32 {
	m := a.Mode &^ syscall.S_IFMT &^ syscall.S_ISUID
	if m&0o010 != 0 {
		m &^= syscall.S_ISGID
	}
	return m
}

func (x *Access) deny(ctx context.Context, op string, ino xl.GFID, errno syscall.Errno) syscall.Errno {
	c := xl.CallFrom(ctx)
	x.log.DebugContext(ctx, "denied", "op", op, "gfid", ino, "uid", c.Uid, "gid", c.Gid, "errno", errno)
	return errno
}

// searchDir fetches a directory's attributes and checks that the caller
// may search it, the check every path walk makes on each parent.
func (x *Access) searchDir(ctx context.Context, op string, dir xl.GFID) (xl.Attr, syscall.Errno) {
	a, errno := x.Xlator.Getattr(ctx, dir)
	if errno != 0 {
		return a, errno
	}
	if !a.IsDir() {
		return a, syscall.ENOTDIR
	}
	if !permitted(xl.CallFrom(ctx), &a, mayExec) {
		return a, x.deny(ctx, op, dir, syscall.EACCES)
	}
	return a, 0
}

// mayCreate is may_create: search and write permission on the parent.
// It returns the parent's attributes.
func (x *Access) mayCreate(ctx context.Context, op string, parent xl.GFID, name string) (xl.Attr, syscall.Errno) {
	dir, errno := x.searchDir(ctx, op, parent)
	if errno != 0 {
		return dir, errno
	}
	if !permitted(xl.CallFrom(ctx), &dir, mayWrite) {
		return dir, x.refuseCreate(ctx, op, parent, name, syscall.EACCES)
	}
	return dir, 0
}

// refuseCreate returns errno, or EEXIST if name exists: Linux looks the
// name up before it checks whether the caller may create it.
func (x *Access) refuseCreate(ctx context.Context, op string, parent xl.GFID, name string, errno syscall.Errno) syscall.Errno {
	if _, e := x.Xlator.Lookup(ctx, parent, name); e == 0 {
		return syscall.EEXIST
	}
	return x.deny(ctx, op, parent, errno)
}

// mayDelete is may_delete for the entry name in parent: the entry must
// exist, the caller needs write and search on the directory, and the
// sticky bit protects other users' entries.
func (x *Access) mayDelete(ctx context.Context, op string, parent xl.GFID, name string) syscall.Errno {
	dir, errno := x.searchDir(ctx, op, parent)
	if errno != 0 {
		return errno
	}
	victim, errno := x.Xlator.Lookup(ctx, parent, name)
	if errno != 0 {
		return errno
	}
	return x.checkDelete(ctx, op, &dir, &victim)
}

func (x *Access) checkDelete(ctx context.Context, op string, dir, victim *xl.Attr) syscall.Errno {
	c := xl.CallFrom(ctx)
	if !permitted(c, dir, mayWrite) {
		return x.deny(ctx, op, dir.GFID, syscall.EACCES)
	}
	if stickyDenies(c, dir, victim) {
		return x.deny(ctx, op, dir.GFID, syscall.EPERM)
	}
	return 0
}

// Lookup needs search permission on the parent.
func (x *Access) Lookup(ctx context.Context, parent xl.GFID, name string) (xl.Attr, syscall.Errno) {
	if !isRoot(xl.CallFrom(ctx)) {
		if _, errno := x.searchDir(ctx, "Lookup", parent); errno != 0 {
			return xl.Attr{}, errno
		}
	}
	a, errno := x.Xlator.Lookup(ctx, parent, name)
	x.note(&a)
	return a, errno
}

// Getattr notes set-id bits.
func (x *Access) Getattr(ctx context.Context, ino xl.GFID) (xl.Attr, syscall.Errno) {
	a, errno := x.Xlator.Getattr(ctx, ino)
	x.note(&a)
	return a, errno
}

// Readdir notes set-id bits. Through an anonymous fd (H zero), which no
// Opendir checked, it needs read permission as Opendir does.
func (x *Access) Readdir(ctx context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	if fd.H == 0 {
		if errno := x.mayList(ctx, "Readdir", fd.GFID); errno != 0 {
			return nil, errno
		}
	}
	ents, errno := x.Xlator.Readdir(ctx, fd, off, max)
	for i := range ents {
		x.note(&ents[i].Attr)
	}
	return ents, errno
}

// Access answers access(2) from the mode bits.
func (x *Access) Access(ctx context.Context, ino xl.GFID, mask uint32) syscall.Errno {
	if mask&^7 != 0 {
		return syscall.EINVAL
	}
	a, errno := x.Xlator.Getattr(ctx, ino)
	if errno != 0 {
		return errno
	}
	if !permitted(xl.CallFrom(ctx), &a, mask) {
		return syscall.EACCES
	}
	return 0
}

// stripSetgid clears S_ISGID from a new file's mode when the caller is not
// in the group the file will get, which is the directory's group in a
// setgid directory (inode_init_owner / mode_strip_sgid).
func stripSetgid(c *xl.Call, dir *xl.Attr, mode uint32) uint32 {
	if isRoot(c) || mode&syscall.S_IFMT == syscall.S_IFDIR || mode&(syscall.S_ISGID|0o010) != syscall.S_ISGID|0o010 {
		return mode
	}
	if dir.Mode&syscall.S_ISGID != 0 && !c.InGroup(dir.Gid) {
		return mode &^ syscall.S_ISGID
	}
	return mode
}

// Mknod needs write and search on the parent; device nodes need root.
func (x *Access) Mknod(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32, rdev uint64) (xl.Attr, syscall.Errno) {
	a, errno := x.mknod(ctx, parent, name, gfid, mode, rdev)
	x.note(&a)
	return a, errno
}

func (x *Access) mknod(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32, rdev uint64) (xl.Attr, syscall.Errno) {
	c := xl.CallFrom(ctx)
	if !isRoot(c) {
		dir, errno := x.mayCreate(ctx, "Mknod", parent, name)
		if errno != 0 {
			return xl.Attr{}, errno
		}
		if t := mode & syscall.S_IFMT; t == syscall.S_IFCHR || t == syscall.S_IFBLK {
			return xl.Attr{}, x.refuseCreate(ctx, "Mknod", parent, name, syscall.EPERM)
		}
		mode = stripSetgid(c, &dir, mode)
	}
	return x.Xlator.Mknod(ctx, parent, name, gfid, mode, rdev)
}

// Mkdir needs write and search on the parent.
func (x *Access) Mkdir(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32) (xl.Attr, syscall.Errno) {
	if !isRoot(xl.CallFrom(ctx)) {
		if _, errno := x.mayCreate(ctx, "Mkdir", parent, name); errno != 0 {
			return xl.Attr{}, errno
		}
	}
	return x.Xlator.Mkdir(ctx, parent, name, gfid, mode)
}

// Symlink needs write and search on the parent.
func (x *Access) Symlink(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, target string) (xl.Attr, syscall.Errno) {
	if !isRoot(xl.CallFrom(ctx)) {
		if _, errno := x.mayCreate(ctx, "Symlink", parent, name); errno != 0 {
			return xl.Attr{}, errno
		}
	}
	return x.Xlator.Symlink(ctx, parent, name, gfid, target)
}

// Link needs write and search on the new parent. Like Linux with
// fs.protected_hardlinks=1 (the default of every major distribution), a
// caller may only link a file he owns, or a regular file he could open
// read-write that is not a set-id executable (may_linkat).
func (x *Access) Link(ctx context.Context, ino xl.GFID, newParent xl.GFID, newName string) (xl.Attr, syscall.Errno) {
	a, errno := x.link(ctx, ino, newParent, newName)
	x.note(&a)
	return a, errno
}

func (x *Access) link(ctx context.Context, ino xl.GFID, newParent xl.GFID, newName string) (xl.Attr, syscall.Errno) {
	c := xl.CallFrom(ctx)
	if isRoot(c) {
		return x.Xlator.Link(ctx, ino, newParent, newName)
	}
	dir, errno := x.searchDir(ctx, "Link", newParent)
	if errno != 0 {
		return xl.Attr{}, errno
	}
	a, errno := x.Xlator.Getattr(ctx, ino)
	if errno != 0 {
		return xl.Attr{}, errno
	}
	// Linux's order: the name exists (EEXIST), the source may not be
	// linked (EPERM), the directory is not writable (EACCES).
	safe := isReg(&a) && !needsKillPriv(c, &a) && permitted(c, &a, mayRead|mayWrite)
	if c.Uid != a.Uid && !safe {
		return xl.Attr{}, x.refuseCreate(ctx, "Link", newParent, newName, syscall.EPERM)
	}
	if !permitted(c, &dir, mayWrite) {
		return xl.Attr{}, x.refuseCreate(ctx, "Link", newParent, newName, syscall.EACCES)
	}
	return x.Xlator.Link(ctx, ino, newParent, newName)
}

// Unlink needs write and search on the parent and obeys the sticky bit.
func (x *Access) Unlink(ctx context.Context, parent xl.GFID, name string) syscall.Errno {
	if !isRoot(xl.CallFrom(ctx)) {
		if errno := x.mayDelete(ctx, "Unlink", parent, name); errno != 0 {
			return errno
		}
	}
	return x.Xlator.Unlink(ctx, parent, name)
}

// Rmdir needs write and search on the parent and obeys the sticky bit.
func (x *Access) Rmdir(ctx context.Context, parent xl.GFID, name string) syscall.Errno {
	if !isRoot(xl.CallFrom(ctx)) {
		if errno := x.mayDelete(ctx, "Rmdir", parent, name); errno != 0 {
			return errno
		}
	}
	return x.Xlator.Rmdir(ctx, parent, name)
}

// Rename checks as vfs_rename does: delete rights on the source, create
// or delete rights on the target, and write permission on a directory
// that moves to a new parent (its ".." changes).
func (x *Access) Rename(ctx context.Context, oldParent xl.GFID, oldName string, newParent xl.GFID, newName string, flags uint32) syscall.Errno {
	c := xl.CallFrom(ctx)
	if isRoot(c) {
		return x.Xlator.Rename(ctx, oldParent, oldName, newParent, newName, flags)
	}
	// Both lookups come first: a missing source is ENOENT and an existing
	// target under RENAME_NOREPLACE is EEXIST, whatever the permissions.
	odir, errno := x.searchDir(ctx, "Rename", oldParent)
	if errno != 0 {
		return errno
	}
	ndir, errno := x.searchDir(ctx, "Rename", newParent)
	if errno != 0 {
		return errno
	}
	src, errno := x.Xlator.Lookup(ctx, oldParent, oldName)
	if errno != 0 {
		return errno
	}
	dst, errno := x.Xlator.Lookup(ctx, newParent, newName)
	exists := errno == 0
	switch {
	case errno != 0 && errno != syscall.ENOENT:
		return errno
	case exists && flags&xl.RenameNoreplace != 0:
		return syscall.EEXIST
	case !exists && flags&xl.RenameExchange != 0:
		return syscall.ENOENT
	}
	if errno := x.checkDelete(ctx, "Rename", &odir, &src); errno != 0 {
		return errno
	}
	if exists {
		if errno := x.checkDelete(ctx, "Rename", &ndir, &dst); errno != 0 {
			return errno
		}
	} else if !permitted(c, &ndir, mayWrite) {
		return x.deny(ctx, "Rename", newParent, syscall.EACCES)
	}
	if oldParent != newParent {
		if src.IsDir() && !permitted(c, &src, mayWrite) {
			return x.deny(ctx, "Rename", src.GFID, syscall.EACCES)
		}
		if flags&xl.RenameExchange != 0 && dst.IsDir() && !permitted(c, &dst, mayWrite) {
			return x.deny(ctx, "Rename", dst.GFID, syscall.EACCES)
		}
	}
	return x.Xlator.Rename(ctx, oldParent, oldName, newParent, newName, flags)
}

// openMask is the permission an open needs (build_open_flags): the access
// mode, plus write for O_TRUNC.
func openMask(flags uint32) uint32 {
	var m uint32
	switch flags & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		m = mayRead
	case syscall.O_WRONLY:
		m = mayWrite
	default:
		m = mayRead | mayWrite
	}
	if flags&syscall.O_TRUNC != 0 {
		m |= mayWrite
	}
	return m
}

// Create needs write and search on the parent. When the name exists and
// O_EXCL is absent the call opens the existing file, so that file's
// permissions decide instead.
func (x *Access) Create(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, flags, mode uint32) (xl.Fd, xl.Attr, syscall.Errno) {
	c := xl.CallFrom(ctx)
	if isRoot(c) {
		fd, a, errno := x.Xlator.Create(ctx, parent, name, gfid, flags, mode)
		x.note(&a)
		return fd, a, errno
	}
	dir, errno := x.searchDir(ctx, "Create", parent)
	if errno != 0 {
		return xl.Fd{}, xl.Attr{}, errno
	}
	if existing, errno := x.Xlator.Lookup(ctx, parent, name); errno == 0 {
		if flags&syscall.O_EXCL != 0 {
			return xl.Fd{}, xl.Attr{}, syscall.EEXIST
		}
		if existing.IsDir() {
			return xl.Fd{}, xl.Attr{}, syscall.EISDIR
		}
		if errno := x.mayOpen(ctx, &existing, flags); errno != 0 {
			return xl.Fd{}, xl.Attr{}, errno
		}
	} else if !permitted(c, &dir, mayWrite) {
		return xl.Fd{}, xl.Attr{}, x.deny(ctx, "Create", parent, syscall.EACCES)
	}
	fd, a, errno := x.Xlator.Create(ctx, parent, name, gfid, flags, stripSetgid(c, &dir, mode))
	x.note(&a)
	return fd, a, errno
}

// mayOpen is may_open's permission part for an existing object.
func (x *Access) mayOpen(ctx context.Context, a *xl.Attr, flags uint32) syscall.Errno {
	c := xl.CallFrom(ctx)
	if a.IsDir() && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return syscall.EISDIR // before the permission check, as in Linux
	}
	if !permitted(c, a, openMask(flags)) {
		return x.deny(ctx, "Open", a.GFID, syscall.EACCES)
	}
	if flags&syscall.O_NOATIME != 0 && !ownerOrRoot(c, a) {
		return x.deny(ctx, "Open", a.GFID, syscall.EPERM)
	}
	return 0
}

// Open needs read and/or write permission for the access mode.
func (x *Access) Open(ctx context.Context, ino xl.GFID, flags uint32) (xl.Fd, syscall.Errno) {
	c := xl.CallFrom(ctx)
	if isRoot(c) {
		return x.Xlator.Open(ctx, ino, flags)
	}
	a, errno := x.Xlator.Getattr(ctx, ino)
	if errno != 0 {
		return xl.Fd{}, errno
	}
	x.note(&a)
	if errno := x.mayOpen(ctx, &a, flags); errno != 0 {
		return xl.Fd{}, errno
	}
	return x.Xlator.Open(ctx, ino, flags)
}

// note records whether a, attributes an op returned, carry set-id bits
// that a write must clear.
func (x *Access) note(a *xl.Attr) {
	switch {
	case hasPriv(a):
		x.privMu.Lock()
		if _, ok := x.privs[a.GFID]; ok || len(x.privs) < x.maxPrivs {
			x.privs[a.GFID] = struct{}{}
			x.nprivs.Store(int64(len(x.privs)))
		} else if !x.overflow.Swap(true) {
			x.log.Warn("more set-id files than the set of them holds: writes by users other than root now check attributes first", "max", x.maxPrivs)
		}
		x.privMu.Unlock()
	case x.nprivs.Load() > 0 && isReg(a):
		x.forget(a.GFID)
	}
}

func (x *Access) forget(g xl.GFID) {
	x.privMu.Lock()
	delete(x.privs, g)
	x.nprivs.Store(int64(len(x.privs)))
	x.privMu.Unlock()
}

// dropPriv clears the set-id bits of an fd's file before a caller
// without CAP_FSETID modifies it.
func (x *Access) dropPriv(ctx context.Context, fd xl.Fd) syscall.Errno {
	if isRoot(xl.CallFrom(ctx)) {
		return 0
	}
	if !x.overflow.Load() {
		if x.nprivs.Load() == 0 {
			return 0
		}
		x.privMu.Lock()
		_, ok := x.privs[fd.GFID]
		x.privMu.Unlock()
		if !ok {
			return 0
		}
	}
	a, errno := x.Xlator.Getattr(ctx, fd.GFID)
	if errno != 0 {
		return errno
	}
	if hasPriv(&a) {
		if _, errno := x.Xlator.Setattr(ctx, fd.GFID, xl.SetattrIn{Valid: xl.SetMode, Mode: withoutPriv(&a)}); errno != 0 {
			return errno
		}
	}
	x.forget(fd.GFID)
	return 0
}

// Write clears set-id bits first when the writer is not root.
func (x *Access) Write(ctx context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	if errno := x.dropPriv(ctx, fd); errno != 0 {
		return 0, errno
	}
	return x.Xlator.Write(ctx, fd, data, off)
}

// Fallocate clears set-id bits first when the caller is not root.
func (x *Access) Fallocate(ctx context.Context, fd xl.Fd, mode uint32, off, length int64) syscall.Errno {
	if errno := x.dropPriv(ctx, fd); errno != 0 {
		return errno
	}
	return x.Xlator.Fallocate(ctx, fd, mode, off, length)
}

// Opendir needs read permission.
func (x *Access) Opendir(ctx context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	if errno := x.mayList(ctx, "Opendir", ino); errno != 0 {
		return xl.Fd{}, errno
	}
	return x.Xlator.Opendir(ctx, ino)
}

// mayList checks that the caller may read the directory dir.
func (x *Access) mayList(ctx context.Context, op string, dir xl.GFID) syscall.Errno {
	c := xl.CallFrom(ctx)
	if isRoot(c) {
		return 0
	}
	a, errno := x.Xlator.Getattr(ctx, dir)
	if errno != 0 {
		return errno
	}
	if !a.IsDir() {
		return syscall.ENOTDIR
	}
	if !permitted(c, &a, mayRead) {
		return x.deny(ctx, op, dir, syscall.EACCES)
	}
	return 0
}

// mayTruncate is vfs_truncate's checks: directories are EISDIR, other
// non-regular files EINVAL, then write permission.
func (x *Access) mayTruncate(ctx context.Context, a *xl.Attr) syscall.Errno {
	if a.IsDir() {
		return syscall.EISDIR
	}
	if !isReg(a) {
		return syscall.EINVAL
	}
	if !permitted(xl.CallFrom(ctx), a, mayWrite) {
		return x.deny(ctx, "Truncate", a.GFID, syscall.EACCES)
	}
	return 0
}

// Setattr applies setattr_prepare's rules. A size change is checked as
// truncate(2), since the request does not say which fd it came through.
func (x *Access) Setattr(ctx context.Context, ino xl.GFID, in xl.SetattrIn) (xl.Attr, syscall.Errno) {
	a, errno := x.setattr(ctx, ino, in)
	x.note(&a)
	return a, errno
}

func (x *Access) setattr(ctx context.Context, ino xl.GFID, in xl.SetattrIn) (xl.Attr, syscall.Errno) {
	c := xl.CallFrom(ctx)
	if isRoot(c) {
		return x.Xlator.Setattr(ctx, ino, in)
	}
	a, errno := x.Xlator.Getattr(ctx, ino)
	if errno != 0 {
		return xl.Attr{}, errno
	}
	if in.Valid&xl.SetSize != 0 {
		if errno := x.mayTruncate(ctx, &a); errno != 0 {
			return xl.Attr{}, errno
		}
	}
	// chown: only root may give a file away; the owner may "change" the
	// uid to itself.
	if in.Valid&xl.SetUid != 0 && (c.Uid != a.Uid || in.Uid != a.Uid) {
		return xl.Attr{}, x.deny(ctx, "Setattr", ino, syscall.EPERM)
	}
	// chgrp: the owner may pick a group he belongs to.
	if in.Valid&xl.SetGid != 0 && (c.Uid != a.Uid || (in.Gid != a.Gid && !c.InGroup(in.Gid))) {
		return xl.Attr{}, x.deny(ctx, "Setattr", ino, syscall.EPERM)
	}
	if in.Valid&xl.SetMode != 0 {
		if c.Uid != a.Uid {
			return xl.Attr{}, x.deny(ctx, "Setattr", ino, syscall.EPERM)
		}
		gid := a.Gid
		if in.Valid&xl.SetGid != 0 {
			gid = in.Gid
		}
		if !c.InGroup(gid) {
			in.Mode &^= syscall.S_ISGID
		}
	}
	// Explicit times, or UTIME_NOW for only one of them, are the owner's;
	// touching both to now needs only write permission (vfs_utimes).
	times := in.Valid & (xl.SetAtime | xl.SetMtime | xl.SetAtimeNow | xl.SetMtimeNow)
	if times == xl.SetAtimeNow|xl.SetMtimeNow {
		if c.Uid != a.Uid && !permitted(c, &a, mayWrite) {
			return xl.Attr{}, x.deny(ctx, "Setattr", ino, syscall.EACCES)
		}
	} else if times != 0 && c.Uid != a.Uid {
		return xl.Attr{}, x.deny(ctx, "Setattr", ino, syscall.EPERM)
	}
	if in.Valid&xl.SetSize != 0 && needsKillPriv(c, &a) {
		if in.Valid&xl.SetMode == 0 {
			in.Valid |= xl.SetMode
			in.Mode = a.Mode &^ syscall.S_IFMT
		}
		in.Mode = withoutPriv(&xl.Attr{Mode: in.Mode})
	}
	return x.Xlator.Setattr(ctx, ino, in)
}

// Truncate is truncate(2): write permission on the file.
func (x *Access) Truncate(ctx context.Context, ino xl.GFID, size uint64) (xl.Attr, syscall.Errno) {
	a, errno := x.truncate(ctx, ino, size)
	x.note(&a)
	return a, errno
}

func (x *Access) truncate(ctx context.Context, ino xl.GFID, size uint64) (xl.Attr, syscall.Errno) {
	c := xl.CallFrom(ctx)
	if isRoot(c) {
		return x.Xlator.Truncate(ctx, ino, size)
	}
	a, errno := x.Xlator.Getattr(ctx, ino)
	if errno != 0 {
		return xl.Attr{}, errno
	}
	if errno := x.mayTruncate(ctx, &a); errno != 0 {
		return xl.Attr{}, errno
	}
	if needsKillPriv(c, &a) {
		if _, errno := x.Xlator.Setattr(ctx, ino, xl.SetattrIn{Valid: xl.SetMode, Mode: withoutPriv(&a)}); errno != 0 {
			return xl.Attr{}, errno
		}
	}
	return x.Xlator.Truncate(ctx, ino, size)
}

// Extended attribute namespaces.
const (
	userPrefix     = "user."
	trustedPrefix  = "trusted."
	securityPrefix = "security."
	systemPrefix   = "system."
)

// mayXattr is xattr_permission plus the capability checks of the
// security.* handler. want is mayRead or mayWrite.
func (x *Access) mayXattr(ctx context.Context, op string, ino xl.GFID, name string, want uint32) syscall.Errno {
	c := xl.CallFrom(ctx)
	if want == mayWrite && strings.HasPrefix(name, systemPrefix+"posix_acl_") {
		return syscall.EOPNOTSUPP // ACLs are not enforced; see the package doc
	}
	if isRoot(c) {
		return 0
	}
	switch {
	case strings.HasPrefix(name, trustedPrefix):
		// Invisible to unprivileged readers, unwritable by them.
		if want == mayWrite {
			return x.deny(ctx, op, ino, syscall.EPERM)
		}
		return syscall.ENODATA
	case strings.HasPrefix(name, securityPrefix):
		// Readable by anyone who reaches the object; only
		// CAP_SYS_ADMIN may write (cap_inode_setxattr).
		if want == mayWrite {
			return x.deny(ctx, op, ino, syscall.EPERM)
		}
		return 0
	case strings.HasPrefix(name, systemPrefix):
		return 0
	}
	a, errno := x.Xlator.Getattr(ctx, ino)
	if errno != 0 {
		return errno
	}
	if strings.HasPrefix(name, userPrefix) {
		// user.* lives only on regular files and directories, and a
		// sticky directory's belong to its owner.
		if !isReg(&a) && !a.IsDir() {
			if want == mayWrite {
				return x.deny(ctx, op, ino, syscall.EPERM)
			}
			return syscall.ENODATA
		}
		if want == mayWrite && a.IsDir() && a.Mode&syscall.S_ISVTX != 0 && c.Uid != a.Uid {
			return x.deny(ctx, op, ino, syscall.EPERM)
		}
	}
	if !permitted(c, &a, want) {
		return x.deny(ctx, op, ino, syscall.EACCES)
	}
	return 0
}

// Getxattr needs read permission for user.* names.
func (x *Access) Getxattr(ctx context.Context, ino xl.GFID, name string) ([]byte, syscall.Errno) {
	if errno := x.mayXattr(ctx, "Getxattr", ino, name, mayRead); errno != 0 {
		return nil, errno
	}
	return x.Xlator.Getxattr(ctx, ino, name)
}

// Setxattr needs write permission for user.* names and root for
// trusted.* and security.* names.
func (x *Access) Setxattr(ctx context.Context, ino xl.GFID, name string, value []byte, flags uint32) syscall.Errno {
	if errno := x.mayXattr(ctx, "Setxattr", ino, name, mayWrite); errno != 0 {
		return errno
	}
	return x.Xlator.Setxattr(ctx, ino, name, value, flags)
}

// Removexattr follows Setxattr's rules.
func (x *Access) Removexattr(ctx context.Context, ino xl.GFID, name string) syscall.Errno {
	if errno := x.mayXattr(ctx, "Removexattr", ino, name, mayWrite); errno != 0 {
		return errno
	}
	return x.Xlator.Removexattr(ctx, ino, name)
}

// Listxattr hides trusted.* names from callers other than root.
func (x *Access) Listxattr(ctx context.Context, ino xl.GFID) ([]string, syscall.Errno) {
	names, errno := x.Xlator.Listxattr(ctx, ino)
	if errno != 0 || isRoot(xl.CallFrom(ctx)) {
		return names, errno
	}
	kept := names[:0:0]
	for _, n := range names {
		if !strings.HasPrefix(n, trustedPrefix) {
			kept = append(kept, n)
		}
	}
	return kept, 0
}
