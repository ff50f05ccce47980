package fuse

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// node is one object of the volume, named by its GFID. Every operation is
// a call on the volume's top translator.
type node struct {
	fs.Inode
	vol  *volume
	gfid xl.GFID

	// cached is set once file data went through the kernel's page cache
	// (a read or write), so that a later open may find pages to keep.
	// pages is the version the file had when the last read-only open
	// looked: the pages read since are of that version or newer. seen
	// is the version in the attributes a translator last returned.
	cached  atomic.Bool
	pagesMu sync.Mutex
	pages   dataVersion
	seen    dataVersion
}

// dataVersion tells whether a file's data may have changed: any write
// or truncate moves ctime, which, unlike mtime, nobody can set back.
type dataVersion struct {
	mtime, ctime xl.Timespec
	size         uint64
}

func versionOf(a *xl.Attr) dataVersion {
	return dataVersion{mtime: a.Mtime, ctime: a.Ctime, size: a.Size}
}

// keepPages records v as the file's version and reports whether the
// kernel's pages, read at the version recorded before, are still good.
func (n *node) keepPages(v dataVersion) bool {
	n.pagesMu.Lock()
	defer n.pagesMu.Unlock()
	keep := n.pages == v && v != dataVersion{}
	n.pages, n.seen = v, v
	return keep
}

// saw notes the attributes a translator returned for the object.
func (n *node) saw(a *xl.Attr) {
	if a.Mode&syscall.S_IFMT == syscall.S_IFREG {
		n.pagesMu.Lock()
		n.seen = versionOf(a)
		n.pagesMu.Unlock()
	}
}

// pagesFromSeen records, for an open that finds no pages, the version
// last seen: what it reads is of that version or newer.
func (n *node) pagesFromSeen() {
	n.pagesMu.Lock()
	n.pages = n.seen
	n.pagesMu.Unlock()
}

// capsXattr holds file capabilities. The kernel reads it before the
// first write to each file, to clear it (file_remove_privs).
const capsXattr = "security.capability"

// selinuxXattr holds SELinux labels.
const selinuxXattr = "security.selinux"

// refused reports whether the mount answers the attribute EOPNOTSUPP
// without a round trip, as GlusterFS does for ACLs without -o acl (for
// security.selinux without --selinux it answers ENODATA, so ls -l keeps
// asking every file).
// POSIX ACLs: gluon does not enforce them (the kernel checks the mode
// bits, default_permissions, and the bricks do the same), and storing an
// ACL nobody honours would mislead. SELinux labels, unless
// Options.SELinux: a host whose policy labels FUSE mounts does so in the
// kernel without asking, and ls -l asks every file for its label but
// stops asking a file system that answers EOPNOTSUPP once.
func (v *volume) refused(name string) bool {
	return name == "system.posix_acl_access" || name == "system.posix_acl_default" ||
		(name == selinuxXattr && !v.selinux)
}

// markCached notes that file data went through the page cache. It is
// called on every read and write; a load first keeps them from writing
// the shared flag each time.
func (n *node) markCached() {
	if !n.cached.Load() {
		n.cached.Store(true)
	}
}

// OnForget drops what the mount knows of the object's extended
// attributes once the kernel has forgotten it.
func (n *node) OnForget() { n.vol.xattrs.forget(n.gfid) }

// changed drops what the mount knows of the extended attributes of the
// object ch, if the kernel knows it.
func (n *node) changed(ch *fs.Inode) {
	if ch == nil {
		return
	}
	if c, ok := ch.Operations().(*node); ok {
		n.vol.xattrs.invalidate(c.gfid)
	}
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeAccesser       = (*node)(nil)
	_ fs.NodeReadlinker     = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeGetxattrer     = (*node)(nil)
	_ fs.NodeSetxattrer     = (*node)(nil)
	_ fs.NodeListxattrer    = (*node)(nil)
	_ fs.NodeRemovexattrer  = (*node)(nil)
	_ fs.NodeOnForgetter    = (*node)(nil)
)

// child returns the node for a (new or known) object the translator
// described, and fills out. go-fuse resolves a StableAttr it already knows
// to the existing node, so a GFID keeps one node however it is reached.
func (n *node) child(ctx context.Context, a *xl.Attr, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	id := stableAttr(a)
	if a.GFID.IsZero() || id.Reserved() {
		n.vol.log.Error("translator returned an unusable gfid", "parent", n.gfid, "gfid", a.GFID)
		return nil, syscall.EIO
	}
	fillAttr(&out.Attr, a)
	ch := n.NewInode(ctx, &node{vol: n.vol, gfid: a.GFID}, id)
	if c, ok := ch.Operations().(*node); ok {
		c.saw(a)
	}
	return ch, 0
}

// entry finishes an op that produced an object of type want.
func (n *node) entry(ctx context.Context, a *xl.Attr, want uint32, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if a.Mode&syscall.S_IFMT != want {
		n.vol.log.Error("translator returned the wrong file type", "gfid", a.GFID, "mode", a.Mode, "want", want)
		return nil, syscall.EIO
	}
	return n.child(ctx, a, out)
}

func (n *node) Lookup(ctx context.Context, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, done := n.vol.call(ctx)
	defer done()
	a, e := n.vol.top.Lookup(ctx, n.gfid, name)
	if e != 0 {
		return nil, errno(ctx, e)
	}
	return n.child(ctx, &a, out)
}

func (n *node) Getattr(ctx context.Context, _ fs.FileHandle, out *gofuse.AttrOut) syscall.Errno {
	ctx, done := n.vol.call(ctx)
	defer done()
	a, e := n.vol.top.Getattr(ctx, n.gfid)
	if e != 0 {
		return errno(ctx, e)
	}
	n.saw(&a)
	fillAttr(&out.Attr, &a)
	return 0
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *gofuse.SetAttrIn, out *gofuse.AttrOut) syscall.Errno {
	ctx, done := n.vol.mutation(ctx)
	defer done()
	s := setattrIn(in)
	if f, ok := fh.(*file); ok && s.Valid != 0 {
		f.wrote.Store(true) // ftruncate: its close reports like a write's
	}
	var a xl.Attr
	var e syscall.Errno
	if s.Valid == 0 {
		// Only bits we do not act on (ctime, lock owner): report attributes.
		a, e = n.vol.top.Getattr(ctx, n.gfid)
	} else {
		// A chmod rewrites the ACL's mask, a chown clears capabilities.
		a, e = n.vol.top.Setattr(ctx, n.gfid, s)
		n.vol.xattrs.invalidate(n.gfid)
	}
	if e != 0 {
		return errno(ctx, e)
	}
	fillAttr(&out.Attr, &a)
	return 0
}

func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	ctx, done := n.vol.call(ctx)
	defer done()
	return errno(ctx, n.vol.top.Access(ctx, n.gfid, mask))
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	ctx, done := n.vol.call(ctx)
	defer done()
	target, e := n.vol.top.Readlink(ctx, n.gfid)
	if e != 0 {
		return nil, errno(ctx, e)
	}
	return []byte(target), 0
}

func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, done := n.vol.mutation(ctx)
	defer done()
	a, e := n.vol.top.Mknod(ctx, n.gfid, name, xl.NewGFID(), mode, userDev(dev))
	if e != 0 {
		return nil, errno(ctx, e)
	}
	typ := mode & syscall.S_IFMT
	if typ == 0 {
		typ = syscall.S_IFREG // mknod(2): type 0 means a regular file
	}
	return n.entry(ctx, &a, typ, out)
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, done := n.vol.mutation(ctx)
	defer done()
	a, e := n.vol.top.Mkdir(ctx, n.gfid, name, xl.NewGFID(), mode)
	if e != 0 {
		return nil, errno(ctx, e)
	}
	return n.entry(ctx, &a, syscall.S_IFDIR, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, done := n.vol.mutation(ctx)
	defer done()
	a, e := n.vol.top.Symlink(ctx, n.gfid, name, xl.NewGFID(), target)
	if e != 0 {
		return nil, errno(ctx, e)
	}
	return n.entry(ctx, &a, syscall.S_IFLNK, out)
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	ctx, done := n.vol.mutation(ctx)
	defer done()
	a, e := n.vol.top.Link(ctx, t.gfid, n.gfid, name)
	if e != 0 {
		return nil, errno(ctx, e)
	}
	if a.GFID != t.gfid {
		n.vol.log.Error("link returned another object", "target", t.gfid, "gfid", a.GFID)
		return nil, syscall.EIO
	}
	return n.child(ctx, &a, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	ctx, done := n.vol.mutation(ctx)
	defer done()
	e := n.vol.top.Unlink(ctx, n.gfid, name)
	n.changed(n.GetChild(name))
	return errno(ctx, e)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	ctx, done := n.vol.mutation(ctx)
	defer done()
	return errno(ctx, n.vol.top.Rmdir(ctx, n.gfid, name))
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	// RENAME_WHITEOUT (overlayfs) has no translator equivalent.
	if flags&^(xl.RenameNoreplace|xl.RenameExchange) != 0 {
		return syscall.EINVAL
	}
	ctx, done := n.vol.mutation(ctx)
	defer done()
	return errno(ctx, n.vol.top.Rename(ctx, n.gfid, name, np.gfid, newName, flags))
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *gofuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	ctx, done := n.vol.mutation(ctx)
	defer done()
	fd, a, e := n.vol.top.Create(ctx, n.gfid, name, xl.NewGFID(), openFlags(flags), mode)
	if e != 0 {
		return nil, nil, 0, errno(ctx, e)
	}
	ch, e := n.entry(ctx, &a, syscall.S_IFREG, out)
	if e != 0 {
		n.vol.top.Release(context.WithoutCancel(ctx), fd)
		return nil, nil, 0, e
	}
	c := ch.Operations().(*node)
	if flags&syscall.O_EXCL != 0 {
		// A new file: the kernel's capabilities probe before its first
		// write needs no round trip.
		n.vol.xattrs.knownAbsent(c.gfid, capsXattr)
	} else {
		// Perhaps an existing file, truncated: the bricks clear its
		// capabilities.
		n.vol.xattrs.invalidate(c.gfid)
	}
	return ch, &file{vol: n.vol, node: c, fd: fd}, noFlush(flags), 0
}

// Open keeps the kernel's cached pages of the file for a read-only open
// if the file has not changed since they were read, and drops them
// otherwise (close-to-open consistency, as NFS checks on open): a
// getattr, sent beside the open, tells. A file with no pages yet pays
// no getattr: the attributes of its lookup date what it reads.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	hold := n.vol.holding
	if flags&syscall.O_TRUNC != 0 {
		hold = n.vol.mutation
	}
	ctx, done := hold(ctx)
	defer done()
	readOnly := flags&(syscall.O_ACCMODE|syscall.O_TRUNC|syscall.O_DIRECT) == syscall.O_RDONLY
	check := readOnly && n.cached.Load()
	if readOnly && !check {
		n.pagesFromSeen()
	}
	var (
		a    xl.Attr
		ae   syscall.Errno
		seen chan struct{}
	)
	if check {
		seen = make(chan struct{})
		go func() {
			defer close(seen)
			a, ae = n.vol.top.Getattr(ctx, n.gfid)
		}()
	}
	fd, e := n.vol.top.Open(ctx, n.gfid, openFlags(flags))
	fl := noFlush(flags)
	if check {
		<-seen
		if e == 0 && ae == 0 && n.keepPages(versionOf(&a)) {
			fl |= gofuse.FOPEN_KEEP_CACHE
		}
	}
	if e != 0 {
		return nil, 0, errno(ctx, e)
	}
	return &file{vol: n.vol, node: n, fd: fd}, fl, 0
}

// noFlush spares a descriptor opened read-only the FLUSH on each close:
// Flush reports what writing left pending, and such a descriptor wrote
// nothing (NFS does the same). It saves a round trip on every close of a
// file that was only read.
func noFlush(flags uint32) uint32 {
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		return gofuse.FOPEN_NOFLUSH
	}
	return 0
}

// openFlags drops what concerns only the client side: FMODE_EXEC is a
// kernel marker, and O_DIRECT asks the kernel to bypass the client's page
// cache, which it does; whether a brick bypasses its own is the brick's
// policy (GlusterFS's posix "o-direct" option).
func openFlags(flags uint32) uint32 {
	return flags &^ (gofuse.FMODE_EXEC | syscall.O_DIRECT)
}

// OpendirHandle answers at once: the Opendir below runs beside the
// handle's first read (see dirOpen), which a listing read ahead of the
// kernel may already have done (see earlyListings). So a brick's opendir
// error (ENOENT, ESTALE, EIO) shows at the end of getdents(2), not at
// open(2), and a handle used only for fchdir(2) or fstat(2) never
// reports it.
func (n *node) OpendirHandle(ctx context.Context, _ uint32) (fs.FileHandle, uint32, syscall.Errno) {
	v := n.vol
	ctx, done := v.holding(ctx)
	defer done()
	c := xl.CallFrom(ctx)
	d := &dir{node: n}
	walk := v.walkOf(n)
	d.ahead, d.open = v.early.take(v, n.gfid, c, v.changes.Load(), v.xattrs.now())
	if d.open == nil {
		o := newDirOpen()
		if !v.prefetch.goOn(func() { o.run(v, n.gfid, c) }) {
			return nil, 0, syscall.ENOTCONN // the mount is going away
		}
		d.open = o
	}
	if walk != nil {
		v.listAhead(walk, n, c)
	}
	return d, 0, 0
}

func (n *node) Statfs(ctx context.Context, out *gofuse.StatfsOut) syscall.Errno {
	ctx, done := n.vol.call(ctx)
	defer done()
	s, e := n.vol.top.Statfs(ctx, n.gfid)
	if e != 0 {
		return errno(ctx, e)
	}
	fillStatfs(out, &s)
	return 0
}

// Getxattr copies the value into dest. A too-small dest gets ERANGE with
// the size; go-fuse answers a size probe (empty dest) with that size.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.vol.refused(attr) {
		return 0, syscall.EOPNOTSUPP
	}
	absent, token := n.vol.xattrs.lookup(n.gfid, attr)
	if absent {
		return 0, syscall.ENODATA
	}
	ctx, done := n.vol.call(ctx)
	defer done()
	if token != nil {
		n.vol.prefetchXattr(n, attr, xl.CallFrom(ctx))
	}
	v, e := n.vol.top.Getxattr(ctx, n.gfid, attr)
	if e == syscall.ENODATA {
		n.vol.xattrs.noteAbsent(n.gfid, attr, token)
	}
	if e != 0 {
		return 0, errno(ctx, e)
	}
	if len(v) > len(dest) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Setxattr and Removexattr drop what is known of the object after the
// change, so that an answer read before it is not kept.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if n.vol.refused(attr) {
		return syscall.EOPNOTSUPP
	}
	ctx, done := n.vol.mutation(ctx)
	defer done()
	e := n.vol.top.Setxattr(ctx, n.gfid, attr, data, flags)
	n.vol.xattrs.invalidate(n.gfid)
	return errno(ctx, e)
}

// Listxattr writes the names NUL-terminated, with Getxattr's size rules.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	ctx, done := n.vol.call(ctx)
	defer done()
	names, e := n.vol.top.Listxattr(ctx, n.gfid)
	if e != 0 {
		return 0, errno(ctx, e)
	}
	size := 0
	for _, nm := range names {
		size += len(nm) + 1
	}
	if size > len(dest) {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, nm := range names {
		off += copy(dest[off:], nm)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.vol.refused(attr) {
		return syscall.EOPNOTSUPP
	}
	ctx, done := n.vol.mutation(ctx)
	defer done()
	e := n.vol.top.Removexattr(ctx, n.gfid, attr)
	n.vol.xattrs.invalidate(n.gfid)
	return errno(ctx, e)
}
