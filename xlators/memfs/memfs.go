// Package memfs is an in-memory store: the fake that ships beside
// xlators/posix, for tests and experiments. It is a leaf translator that
// keeps a whole volume in memory and answers every op as the posix store
// does, with the same errors, so a translator tested above memfs behaves
// the same above a brick.
//
// Like the posix store, memfs checks no permissions (stack xlators/access
// above it for that) and gives a new object the caller's uid and gid from
// the request's xl.Call, or the directory's group in a setgid directory.
// File data lives in 4 KiB pages, so a sparse file costs only what was
// written. Readdir cookies are stable: an entry keeps its cookie while it
// keeps its name, so a listing survives changes made during it. An object
// unlinked while open lives on, reachable by its GFID, until its last
// release. Nothing is persisted, and Ipc answers ENOTSUP.
package memfs

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Limits, as Linux has them.
const (
	nameMax      = 255      // NAME_MAX
	pathMax      = 4096     // PATH_MAX, the longest symlink target plus one
	xattrNameMax = 255      // XATTR_NAME_MAX
	xattrSizeMax = 64 << 10 // XATTR_SIZE_MAX
)

// Capacity: writes beyond it fail with ENOSPC rather than exhaust the
// process's memory. Sparse files count only their written pages.
const (
	capacityPages = 1 << 30 / pageSize // 1 GiB
	maxFiles      = 1 << 32
)

// Options configures an FS.
type Options struct {
	// Now is the clock for timestamps; nil means time.Now. A fixed clock
	// lets two stores given the same calls answer identically.
	Now func() time.Time
}

// FS is the in-memory store. It is safe for concurrent use. The zero
// value is not usable; call New.
type FS struct {
	now func() time.Time

	mu     sync.Mutex
	nodes  map[xl.GFID]*node // objects with a name or an open fd
	fds    map[uint64]*openFd
	nextFd uint64
	pages  int64 // allocated file pages, for Statfs
}

type node struct {
	attr   xl.Attr
	data   map[int64]*page // regular files: pages by index
	target string          // symlinks
	dir    *dir            // directories
	xattrs map[string][]byte
	opens  int // fds open on it
}

type dir struct {
	parent  xl.GFID // for the rename-into-itself check
	entries map[string]*entry
	cookie  uint64 // the last cookie given out
}

type entry struct {
	gfid   xl.GFID
	cookie uint64
}

type openFd struct {
	n     *node
	flags uint32
}

var _ xl.Xlator = (*FS)(nil)

// New returns an empty store: a root directory, mode 0755, owned by root.
func New(opts Options) *FS {
	fs := &FS{now: opts.Now, nodes: map[xl.GFID]*node{}, fds: map[uint64]*openFd{}}
	if fs.now == nil {
		fs.now = time.Now
	}
	t := fs.stamp()
	fs.nodes[xl.RootGFID] = &node{
		attr: xl.Attr{GFID: xl.RootGFID, Mode: syscall.S_IFDIR | 0o755, Nlink: 2, Size: pageSize, Blocks: pageSize / 512,
			Blksize: pageSize, Atime: t, Mtime: t, Ctime: t},
		dir:    &dir{parent: xl.RootGFID, entries: map[string]*entry{}},
		xattrs: map[string][]byte{},
	}
	return fs
}

func (fs *FS) stamp() xl.Timespec { return xl.TimespecOf(fs.now()) }

// changed stamps a's ctime, and its mtime too when the content changed.
func (fs *FS) changed(a *xl.Attr, content bool) {
	t := fs.stamp()
	a.Ctime = t
	if content {
		a.Mtime = t
	}
}

// The helpers below run with mu held.

func (fs *FS) obj(g xl.GFID) (*node, syscall.Errno) {
	n, ok := fs.nodes[g]
	if !ok {
		return nil, syscall.ESTALE
	}
	return n, 0
}

// liveDir returns the directory g for a name op. A directory removed
// while open is still reachable by its GFID, but holds no names.
func (fs *FS) liveDir(g xl.GFID) (*node, syscall.Errno) {
	n, e := fs.obj(g)
	switch {
	case e != 0:
		return nil, e
	case n.dir == nil:
		return nil, syscall.ENOTDIR
	case n.attr.Nlink == 0:
		return nil, syscall.ENOENT
	}
	return n, 0
}

// child returns the object name in d.
func (fs *FS) child(d *node, name string) (*node, syscall.Errno) {
	ent, ok := d.dir.entries[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	return fs.nodes[ent.gfid], 0
}

// checkName validates a name as the posix store does.
func checkName(name string) syscall.Errno {
	switch {
	case len(name) > nameMax:
		return syscall.ENAMETOOLONG
	case name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00"):
		return syscall.EINVAL
	}
	return 0
}

// checkNew validates the name and the client-chosen GFID of a new object.
func checkNew(name string, g xl.GFID) syscall.Errno {
	if e := checkName(name); e != 0 {
		return e
	}
	if g.IsZero() || g == xl.RootGFID {
		return syscall.EINVAL
	}
	return 0
}

// link enters n in d as name.
func (fs *FS) link(d *node, name string, n *node) {
	d.dir.cookie++
	d.dir.entries[name] = &entry{gfid: n.attr.GFID, cookie: d.dir.cookie}
	if n.dir != nil {
		n.dir.parent = d.attr.GFID
		d.attr.Nlink++
	}
	fs.changed(&d.attr, true)
}

// make creates name in d as a new object g of the given mode, owned by the
// caller, or with d's group (and, for a directory, its S_ISGID) when d is
// setgid. The caller has validated name and g.
func (fs *FS) make(ctx context.Context, d *node, name string, g xl.GFID, mode uint32) (*node, syscall.Errno) {
	if _, ok := d.dir.entries[name]; ok {
		return nil, syscall.EEXIST
	}
	if _, ok := fs.nodes[g]; ok {
		return nil, syscall.EEXIST // the GFID is another object's
	}
	c := xl.CallFrom(ctx)
	t := fs.stamp()
	n := &node{
		attr: xl.Attr{GFID: g, Mode: mode, Nlink: 1, Uid: c.Uid, Gid: c.Gid, Blksize: pageSize,
			Atime: t, Mtime: t, Ctime: t},
		xattrs: map[string][]byte{},
	}
	if d.attr.Mode&syscall.S_ISGID != 0 {
		n.attr.Gid = d.attr.Gid
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			n.attr.Mode |= syscall.S_ISGID
		}
	}
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		n.data = map[int64]*page{}
	case syscall.S_IFDIR:
		n.dir = &dir{entries: map[string]*entry{}}
		n.attr.Nlink = 2
		n.attr.Size, n.attr.Blocks = pageSize, pageSize/512
	}
	fs.nodes[g] = n
	fs.link(d, name, n)
	return n, 0
}

// forget drops n once it has neither a name nor an open fd.
func (fs *FS) forget(n *node) {
	if n.attr.Nlink > 0 || n.opens > 0 {
		return
	}
	delete(fs.nodes, n.attr.GFID)
	fs.pages -= int64(len(n.data))
	n.data = nil
}

func (fs *FS) Lookup(_ context.Context, parent xl.GFID, name string) (xl.Attr, syscall.Errno) {
	if e := checkName(name); e != 0 {
		return xl.Attr{}, e
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, e := fs.liveDir(parent)
	if e != 0 {
		return xl.Attr{}, e
	}
	n, e := fs.child(d, name)
	if e != 0 {
		return xl.Attr{}, e
	}
	return n.attr, 0
}

func (fs *FS) Getattr(_ context.Context, ino xl.GFID) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	return n.attr, 0
}

// Setattr applies the owner first, then the mode, as the posix store
// does: chown clears the set-id bits of a non-directory, as Linux does
// even for root, and a mode in the same call sets them again.
func (fs *FS) Setattr(_ context.Context, ino xl.GFID, in xl.SetattrIn) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	a := &n.attr
	kind := a.Mode & syscall.S_IFMT
	if in.Valid&xl.SetMode != 0 && kind == syscall.S_IFLNK {
		return xl.Attr{}, syscall.EOPNOTSUPP // as lchmod(3)
	}
	if in.Valid&xl.SetSize != 0 {
		if e := truncatable(n, in.Size); e != 0 {
			return xl.Attr{}, e
		}
	}
	if in.Valid == 0 {
		return *a, 0
	}
	if in.Valid&(xl.SetUid|xl.SetGid) != 0 {
		if in.Valid&xl.SetUid != 0 {
			a.Uid = in.Uid
		}
		if in.Valid&xl.SetGid != 0 {
			a.Gid = in.Gid
		}
		if kind != syscall.S_IFDIR {
			a.Mode &^= syscall.S_ISUID
			if a.Mode&0o010 != 0 {
				a.Mode &^= syscall.S_ISGID
			}
		}
	}
	if in.Valid&xl.SetMode != 0 {
		a.Mode = kind | in.Mode&0o7777
	}
	fs.changed(a, false)
	if in.Valid&xl.SetSize != 0 {
		fs.resize(n, in.Size)
		fs.changed(a, true)
	}
	switch {
	case in.Valid&xl.SetAtimeNow != 0:
		a.Atime = a.Ctime
	case in.Valid&xl.SetAtime != 0:
		a.Atime = in.Atime
	}
	switch {
	case in.Valid&xl.SetMtimeNow != 0:
		a.Mtime = a.Ctime
	case in.Valid&xl.SetMtime != 0:
		a.Mtime = in.Mtime
	}
	return *a, 0
}

// Access checks only that the object exists and the mask is valid: the
// permission checks are xlators/access's.
func (fs *FS) Access(_ context.Context, ino xl.GFID, mask uint32) syscall.Errno {
	if mask&^7 != 0 {
		return syscall.EINVAL
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, e := fs.obj(ino)
	return e
}

func (fs *FS) Readlink(_ context.Context, ino xl.GFID) (string, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	if e != 0 {
		return "", e
	}
	if n.attr.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return "", syscall.EINVAL
	}
	return n.target, 0
}

// Mknod makes a regular file, fifo, socket or device; a mode without a
// type makes a regular file.
func (fs *FS) Mknod(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32, rdev uint64) (xl.Attr, syscall.Errno) {
	if e := checkNew(name, gfid); e != 0 {
		return xl.Attr{}, e
	}
	kind := mode & syscall.S_IFMT
	switch kind {
	case 0:
		kind = syscall.S_IFREG
	case syscall.S_IFREG, syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK:
	default:
		return xl.Attr{}, syscall.EINVAL
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, e := fs.liveDir(parent)
	if e != 0 {
		return xl.Attr{}, e
	}
	n, e := fs.make(ctx, d, name, gfid, kind|mode&0o7777)
	if e != 0 {
		return xl.Attr{}, e
	}
	if kind == syscall.S_IFCHR || kind == syscall.S_IFBLK {
		n.attr.Rdev = rdev
	}
	return n.attr, 0
}

func (fs *FS) Mkdir(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32) (xl.Attr, syscall.Errno) {
	if e := checkNew(name, gfid); e != 0 {
		return xl.Attr{}, e
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, e := fs.liveDir(parent)
	if e != 0 {
		return xl.Attr{}, e
	}
	n, e := fs.make(ctx, d, name, gfid, syscall.S_IFDIR|mode&0o7777)
	if e != 0 {
		return xl.Attr{}, e
	}
	return n.attr, 0
}

// Symlink makes name a symlink to target, which is data: memfs never
// follows it.
func (fs *FS) Symlink(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, target string) (xl.Attr, syscall.Errno) {
	if e := checkNew(name, gfid); e != 0 {
		return xl.Attr{}, e
	}
	switch {
	case target == "":
		return xl.Attr{}, syscall.ENOENT
	case len(target) >= pathMax:
		return xl.Attr{}, syscall.ENAMETOOLONG
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, e := fs.liveDir(parent)
	if e != 0 {
		return xl.Attr{}, e
	}
	n, e := fs.make(ctx, d, name, gfid, syscall.S_IFLNK|0o777)
	if e != 0 {
		return xl.Attr{}, e
	}
	n.target = target
	n.attr.Size = uint64(len(target))
	return n.attr, 0
}

// Link adds newName in newParent for the non-directory ino.
func (fs *FS) Link(_ context.Context, ino xl.GFID, newParent xl.GFID, newName string) (xl.Attr, syscall.Errno) {
	if e := checkName(newName); e != 0 {
		return xl.Attr{}, e
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	switch {
	case e != 0:
		return xl.Attr{}, e
	case n.dir != nil:
		return xl.Attr{}, syscall.EPERM
	case n.attr.Nlink == 0:
		return xl.Attr{}, syscall.ENOENT // as linkat(2) of an unlinked open file
	}
	d, e := fs.liveDir(newParent)
	if e != 0 {
		return xl.Attr{}, e
	}
	if _, ok := d.dir.entries[newName]; ok {
		return xl.Attr{}, syscall.EEXIST
	}
	fs.link(d, newName, n)
	n.attr.Nlink++
	fs.changed(&n.attr, false)
	return n.attr, 0
}

// unlinkEntry removes name, naming n, from d.
func (fs *FS) unlinkEntry(d *node, name string, n *node) {
	delete(d.dir.entries, name)
	fs.changed(&d.attr, true)
	if n.dir != nil {
		d.attr.Nlink--
		n.attr.Nlink = 0
	} else {
		n.attr.Nlink--
		fs.changed(&n.attr, false)
	}
	fs.forget(n)
}

func (fs *FS) remove(parent xl.GFID, name string, wantDir bool) syscall.Errno {
	if e := checkName(name); e != 0 {
		return e
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, e := fs.liveDir(parent)
	if e != 0 {
		return e
	}
	n, e := fs.child(d, name)
	switch {
	case e != 0:
		return e
	case wantDir && n.dir == nil:
		return syscall.ENOTDIR
	case !wantDir && n.dir != nil:
		return syscall.EISDIR
	case wantDir && len(n.dir.entries) > 0:
		return syscall.ENOTEMPTY
	}
	fs.unlinkEntry(d, name, n)
	return 0
}

// Unlink removes a non-directory's name.
func (fs *FS) Unlink(_ context.Context, parent xl.GFID, name string) syscall.Errno {
	return fs.remove(parent, name, false)
}

// Rmdir removes an empty directory.
func (fs *FS) Rmdir(_ context.Context, parent xl.GFID, name string) syscall.Errno {
	return fs.remove(parent, name, true)
}

// Rename is renameat2(2); flags are xl.RenameNoreplace or
// xl.RenameExchange.
func (fs *FS) Rename(_ context.Context, oldParent xl.GFID, oldName string, newParent xl.GFID, newName string, flags uint32) syscall.Errno {
	if e := checkName(oldName); e != 0 {
		return e
	}
	if e := checkName(newName); e != 0 {
		return e
	}
	if flags&^(xl.RenameNoreplace|xl.RenameExchange) != 0 || flags == xl.RenameNoreplace|xl.RenameExchange {
		return syscall.EINVAL
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	od, e := fs.liveDir(oldParent)
	if e != 0 {
		return e
	}
	nd, e := fs.liveDir(newParent)
	if e != 0 {
		return e
	}
	src, e := fs.child(od, oldName)
	if e != 0 {
		return e
	}
	dst, _ := fs.child(nd, newName)
	switch {
	case dst == src:
		return 0 // one name onto itself, or two links of one file: nothing to do
	case dst != nil && flags&xl.RenameNoreplace != 0:
		return syscall.EEXIST
	case dst == nil && flags&xl.RenameExchange != 0:
		return syscall.ENOENT
	case fs.within(nd, src) || flags&xl.RenameExchange != 0 && fs.within(od, dst):
		return syscall.EINVAL // a directory into its own subtree
	}
	if flags&xl.RenameExchange != 0 {
		od.dir.entries[oldName].gfid, nd.dir.entries[newName].gfid = dst.attr.GFID, src.attr.GFID
		fs.moved(src, od, nd)
		fs.moved(dst, nd, od)
		return 0
	}
	if dst != nil {
		switch {
		case src.dir != nil && dst.dir == nil:
			return syscall.ENOTDIR
		case src.dir == nil && dst.dir != nil:
			return syscall.EISDIR
		case dst.dir != nil && len(dst.dir.entries) > 0:
			return syscall.ENOTEMPTY
		}
		fs.unlinkEntry(nd, newName, dst)
	}
	delete(od.dir.entries, oldName)
	if src.dir != nil {
		od.attr.Nlink-- // link enters it again in nd
	}
	fs.changed(&od.attr, true)
	fs.link(nd, newName, src)
	fs.changed(&src.attr, false)
	return 0
}

// within reports whether d is the directory n or lies below it.
func (fs *FS) within(d, n *node) bool {
	if n == nil || n.dir == nil {
		return false
	}
	for g := d.attr.GFID; ; {
		if g == n.attr.GFID {
			return true
		}
		if g == xl.RootGFID {
			return false
		}
		g = fs.nodes[g].dir.parent
	}
}

// moved accounts for n, which an exchange moved from directory from to to.
func (fs *FS) moved(n, from, to *node) {
	fs.changed(&n.attr, false)
	fs.changed(&from.attr, true)
	fs.changed(&to.attr, true)
	if n.dir != nil && from != to {
		n.dir.parent = to.attr.GFID
		from.attr.Nlink--
		to.attr.Nlink++
	}
}

// regular refuses what only a regular file can do; special is the answer
// for a device, fifo or socket.
func regular(n *node, special syscall.Errno) syscall.Errno {
	switch n.attr.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return 0
	case syscall.S_IFDIR:
		return syscall.EISDIR
	case syscall.S_IFLNK:
		return syscall.ELOOP
	}
	return special
}

// open enters an fd for n in the table.
func (fs *FS) open(n *node, flags uint32) uint64 {
	fs.nextFd++
	fs.fds[fs.nextFd] = &openFd{n: n, flags: flags}
	n.opens++
	return fs.nextFd
}

// openFile opens the regular file n; O_TRUNC empties it.
func (fs *FS) openFile(n *node, flags uint32) xl.Fd {
	if flags&syscall.O_TRUNC != 0 {
		fs.resize(n, 0)
		fs.changed(&n.attr, true)
	}
	return xl.Fd{GFID: n.attr.GFID, H: fs.open(n, flags), Flags: flags}
}

// Create makes and opens a regular file. Without O_EXCL an existing file
// is opened instead, and its GFID wins over the caller's.
func (fs *FS) Create(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, flags, mode uint32) (xl.Fd, xl.Attr, syscall.Errno) {
	if e := checkNew(name, gfid); e != 0 {
		return xl.Fd{}, xl.Attr{}, e
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, e := fs.liveDir(parent)
	if e != 0 {
		return xl.Fd{}, xl.Attr{}, e
	}
	n, e := fs.child(d, name)
	switch {
	case e == 0 && flags&syscall.O_EXCL != 0:
		return xl.Fd{}, xl.Attr{}, syscall.EEXIST
	case e == 0:
		if e := regular(n, syscall.EEXIST); e != 0 {
			return xl.Fd{}, xl.Attr{}, e
		}
	default:
		if n, e = fs.make(ctx, d, name, gfid, syscall.S_IFREG|mode&0o7777); e != 0 {
			return xl.Fd{}, xl.Attr{}, e
		}
	}
	fd := fs.openFile(n, flags)
	return fd, n.attr, 0
}

// Open opens a regular file; O_TRUNC and O_APPEND are honoured.
func (fs *FS) Open(_ context.Context, ino xl.GFID, flags uint32) (xl.Fd, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	if e != 0 {
		return xl.Fd{}, e
	}
	if e := regular(n, syscall.EPERM); e != 0 {
		return xl.Fd{}, e
	}
	return fs.openFile(n, flags), 0
}

// Opendir opens a directory for Readdir. Until its Releasedir, the
// directory stays reachable by its GFID even if it is removed.
func (fs *FS) Opendir(_ context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	if e != 0 {
		return xl.Fd{}, e
	}
	if n.dir == nil {
		return xl.Fd{}, syscall.ENOTDIR
	}
	return xl.Fd{GFID: ino, H: fs.open(n, syscall.O_RDONLY|syscall.O_DIRECTORY)}, 0
}

// fdObj returns the object fd names: its entry in the table, or for a
// handle memfs does not know (an anonymous fd) the object with its GFID,
// with the fd's own flags.
func (fs *FS) fdObj(fd xl.Fd) (*node, uint32, syscall.Errno) {
	if o := fs.fds[fd.H]; o != nil && o.n.attr.GFID == fd.GFID {
		return o.n, o.flags, 0
	}
	n, e := fs.obj(fd.GFID)
	return n, fd.Flags, e
}

// fdFile is fdObj for ops on a regular file's data.
func (fs *FS) fdFile(fd xl.Fd) (*node, uint32, syscall.Errno) {
	n, flags, e := fs.fdObj(fd)
	if e == 0 {
		e = regular(n, syscall.EPERM)
	}
	return n, flags, e
}

func (fs *FS) Flush(_ context.Context, fd xl.Fd) syscall.Errno { return fs.sync(fd) }

// Fsync succeeds for any open object: memory is as durable as memfs gets.
func (fs *FS) Fsync(_ context.Context, fd xl.Fd, _ bool) syscall.Errno { return fs.sync(fd) }

func (fs *FS) sync(fd xl.Fd) syscall.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, _, e := fs.fdObj(fd)
	return e
}

// Release closes an fd. An unknown handle is not an error.
func (fs *FS) Release(_ context.Context, fd xl.Fd) syscall.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if o := fs.fds[fd.H]; o != nil && o.n.attr.GFID == fd.GFID {
		delete(fs.fds, fd.H)
		o.n.opens--
		fs.forget(o.n)
	}
	return 0
}

func (fs *FS) Releasedir(ctx context.Context, fd xl.Fd) syscall.Errno { return fs.Release(ctx, fd) }

// Readdir returns up to max entries after cookie off, without "." and
// "..", each with its attributes, in the order they were named.
func (fs *FS) Readdir(_ context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	if max <= 0 {
		return nil, syscall.EINVAL
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, _, e := fs.fdObj(fd)
	switch {
	case e != 0:
		return nil, e
	case d.dir == nil:
		return nil, syscall.ENOTDIR
	case d.attr.Nlink == 0:
		return nil, syscall.ENOENT // as getdents(2) on a removed directory
	}
	var out []xl.Dirent
	for name, ent := range d.dir.entries {
		if ent.cookie > off {
			out = append(out, xl.Dirent{Name: name, Off: ent.cookie})
		}
	}
	slices.SortFunc(out, func(a, b xl.Dirent) int { return cmp.Compare(a.Off, b.Off) })
	out = out[:min(len(out), max)]
	for i := range out {
		out[i].Attr = fs.nodes[d.dir.entries[out[i].Name].gfid].attr
	}
	return out, 0
}

// Statfs reports a 1 GiB volume, less the pages allocated.
func (fs *FS) Statfs(_ context.Context, ino xl.GFID) (xl.Statfs, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if _, e := fs.obj(ino); e != 0 {
		return xl.Statfs{}, e
	}
	free := uint64(max(capacityPages-fs.pages, 0))
	return xl.Statfs{
		Blocks: capacityPages, Bfree: free, Bavail: free,
		Files: maxFiles, Ffree: maxFiles - uint64(len(fs.nodes)),
		Bsize: pageSize, Frsize: pageSize, NameLen: nameMax,
	}, 0
}

// Ipc answers ENOTSUP: memfs has no private ops.
func (fs *FS) Ipc(context.Context, xl.IpcOp, xl.Xdata) (xl.Xdata, syscall.Errno) {
	return nil, syscall.ENOTSUP
}
