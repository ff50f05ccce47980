package posix

import (
	"context"
	"hash/maphash"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Lookup finds name in parent.
func (s *Store) Lookup(ctx context.Context, parent xl.GFID, name string) (xl.Attr, syscall.Errno) {
	if e := s.oldName(parent, name); e != 0 {
		return xl.Attr{}, e
	}
	p, e := s.dir(parent)
	if e != 0 {
		return xl.Attr{}, e
	}
	defer p.put()
	a, _, e := s.entry(p, parent, name)
	return a, e
}

// entry stats name in p and reads its gfid and gfid flags. It adopts an
// unlabelled object, and relinks the handle of a non-directory that lost
// it to a crash.
func (s *Store) entry(p *dirRef, pg xl.GFID, name string) (xl.Attr, gfidFlags, syscall.Errno) {
	var st unix.Stat_t
	if err := unix.Fstatat(p.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return xl.Attr{}, 0, errno(err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	g, f, err := s.entryGFID(p, name)
	e := errno(err)
	if err == unix.ENODATA {
		// An entry op labels what it makes under the name's lock: wait
		// for one in flight rather than adopt its object.
		l := s.lockName(pg, name)
		g, f, err = s.entryGFID(p, name)
		e = errno(err)
		if err == nil { // labelled meanwhile: what it is now
			e = errno(unix.Fstatat(p.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW))
		}
		if err == unix.ENODATA {
			g, e = s.adopt(p, pg, name, &st, xl.NewGFID())
			f = unknownFlags
			if e == 0 && !isDir {
				st.Nlink++ // the new handle
			}
		}
		l.unlock()
	}
	switch {
	case err == nil && !isDir && st.Nlink == 1:
		// Not fatal: the object is there, only its gfid does not reach it.
		if he := s.linkName(p, name, g); he == 0 {
			st.Nlink++
		} else {
			s.log.Warn("posix: cannot restore a lost handle", "parent", pg, "name", name, "gfid", g, "err", he)
		}
	}
	if e != 0 {
		return xl.Attr{}, 0, e
	}
	return attrOf(g, &st), f, 0
}

// newObj is an object just made and about to be labelled: owner, mode,
// gfid.
type newObj struct {
	fd       int
	opath    bool // fd is O_PATH: reach the object through /proc
	dir      bool
	link     bool // a symlink, whose mode means nothing
	moded    bool // the kernel gave it perm already
	uid, gid int  // -1 keeps what the kernel gave
	perm     uint32
}

// newObj works out the owner and mode of an object about to be made in p.
// It belongs to the caller, except that in a setgid directory the kernel
// already gave it the directory's group, and a directory there inherits
// S_ISGID. No umask applies: the client's kernel applied it.
func (s *Store) newObj(ctx context.Context, p *dirRef, mode uint32, dir bool) (newObj, syscall.Errno) {
	c := xl.CallFrom(ctx)
	n := newObj{fd: -1, dir: dir, uid: -1, gid: -1, perm: mode & 0o7777}
	if c.Uid != s.uid {
		n.uid = int(c.Uid)
	}
	if c.Gid == s.gid && !dir {
		return n, 0 // the kernel gave our group, or the setgid parent's: right either way
	}
	var st unix.Stat_t
	if err := unix.Fstat(p.fd, &st); err != nil {
		return n, errno(err)
	}
	switch {
	case st.Mode&unix.S_ISGID == 0:
		if c.Gid != s.gid {
			n.gid = int(c.Gid)
		}
	case dir:
		n.perm |= unix.S_ISGID
	}
	return n, 0
}

// label sets the owner, mode and gfid. xflags is XATTR_CREATE for an
// object that already has a name, so that a concurrent adoption and this
// creation cannot both label it.
func (n *newObj) label(g xl.GFID, xflags int) error {
	if n.uid >= 0 || n.gid >= 0 {
		if err := unix.Fchownat(n.fd, "", n.uid, n.gid, unix.AT_EMPTY_PATH); err != nil {
			return err
		}
	}
	// After chown, which clears set-id bits.
	var err error
	switch {
	case n.link, n.moded:
	case n.opath:
		err = unix.Fchmodat(unix.AT_FDCWD, procPath(n.fd), n.perm, 0)
	default:
		err = unix.Fchmod(n.fd, n.perm)
	}
	if err != nil {
		return err
	}
	v := newGFIDValue(g, n.xattrFlags())
	if n.opath {
		return unix.Setxattr(procPath(n.fd), gfidXattr, v[:], xflags)
	}
	return unix.Fsetxattr(n.fd, gfidXattr, v[:], xflags)
}

// xattrFlags are the gfid flags of the new object, which may have been
// given xattrs as it was made: a parent's default ACL, a security
// module's label.
func (n *newObj) xattrFlags() gfidFlags {
	var buf [512]byte
	var k int
	var err error
	if n.opath {
		k, err = unix.Listxattr(procPath(n.fd), buf[:])
	} else {
		k, err = unix.Flistxattr(n.fd, buf[:])
	}
	if err != nil || clientXattrs(buf[:k]) {
		return mayXattrs
	}
	return 0
}

// made labels the object just made as name in p with g, links its handle
// and returns its attributes. A directory's handle comes first: after a
// crash in between, the directory is unlabelled and a lookup adopts it,
// whereas a labelled directory without a handle would be lost to its
// gfid. On failure the object is removed again, unless a concurrent
// adoption labelled it first.
func (s *Store) made(n *newObj, p *dirRef, pg xl.GFID, name string, g xl.GFID) (xl.Attr, syscall.Errno) {
	rmflags := 0
	if n.dir {
		rmflags = unix.AT_REMOVEDIR
		if e := s.writeDirHandle(g, pg, name, false); e != 0 {
			unix.Unlinkat(p.fd, name, rmflags)
			return xl.Attr{}, e
		}
	}
	e := errno(n.label(g, unix.XATTR_CREATE))
	if e == 0 && !n.dir {
		e = s.linkHandle(n.fd, g)
	}
	var st unix.Stat_t
	if e == 0 {
		e = errno(unix.Fstat(n.fd, &st))
	}
	if e == 0 {
		return attrOf(g, &st), 0
	}
	if n.dir {
		unix.Unlinkat(s.hfd, hpath(g), 0)
	}
	if e != syscall.EEXIST { // EEXIST: adopted meanwhile, and so in use
		unix.Unlinkat(p.fd, name, rmflags)
	}
	return xl.Attr{}, e
}

// madeNode labels a just-made non-directory through an O_PATH fd.
func (s *Store) madeNode(n *newObj, p *dirRef, pg xl.GFID, name string, g xl.GFID) (xl.Attr, syscall.Errno) {
	fd, err := unix.Openat(p.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return xl.Attr{}, errno(err)
	}
	defer unix.Close(fd)
	n.fd, n.opath = fd, true
	return s.made(n, p, pg, name, g)
}

// newEntry validates the name and gfid of an object about to be made.
func (s *Store) newEntry(parent xl.GFID, name string, g xl.GFID) syscall.Errno {
	if e := s.newName(parent, name); e != 0 {
		return e
	}
	return checkGFID(g)
}

// nameLocks are the stripes of entMu an op holds.
type nameLocks struct{ a, b *sync.Mutex }

// lockName locks name in parent against the store's other changes to it.
func (s *Store) lockName(parent xl.GFID, name string) nameLocks {
	return s.lockNames(parent, name, parent, name)
}

// lockNames locks two names, in stripe order.
func (s *Store) lockNames(p1 xl.GFID, n1 string, p2 xl.GFID, n2 string) nameLocks {
	i, j := s.nameStripe(p1, n1), s.nameStripe(p2, n2)
	if i > j {
		i, j = j, i
	}
	l := nameLocks{a: &s.entMu[i]}
	l.a.Lock()
	if j != i {
		l.b = &s.entMu[j]
		l.b.Lock()
	}
	return l
}

func (l nameLocks) unlock() {
	if l.b != nil {
		l.b.Unlock()
	}
	l.a.Unlock()
}

type entryKey struct {
	parent xl.GFID
	name   string
}

func (s *Store) nameStripe(parent xl.GFID, name string) int {
	return int(maphash.Comparable(s.entSeed, entryKey{parent, name}) % uint64(len(s.entMu)))
}

// Mknod makes a fifo, socket, device or regular file.
func (s *Store) Mknod(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32, rdev uint64) (xl.Attr, syscall.Errno) {
	if e := s.newEntry(parent, name, gfid); e != 0 {
		return xl.Attr{}, e
	}
	switch mode & unix.S_IFMT {
	case 0:
		mode |= unix.S_IFREG
	case unix.S_IFREG, unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
	default:
		return xl.Attr{}, syscall.EINVAL
	}
	p, e := s.dir(parent)
	if e != 0 {
		return xl.Attr{}, e
	}
	defer p.put()
	n, e := s.newObj(ctx, p, mode, false)
	if e != 0 {
		return xl.Attr{}, e
	}
	defer s.lockName(parent, name).unlock()
	if err := unix.Mknodat(p.fd, name, mode, int(rdev)); err != nil {
		return xl.Attr{}, errno(err)
	}
	return s.madeNode(&n, p, parent, name, gfid)
}

// Symlink makes name a symlink to target. The target is data: the store
// never follows it.
func (s *Store) Symlink(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, target string) (xl.Attr, syscall.Errno) {
	if e := s.newEntry(parent, name, gfid); e != 0 {
		return xl.Attr{}, e
	}
	switch {
	case target == "":
		return xl.Attr{}, syscall.ENOENT
	case len(target) >= unix.PathMax:
		return xl.Attr{}, syscall.ENAMETOOLONG
	}
	p, e := s.dir(parent)
	if e != 0 {
		return xl.Attr{}, e
	}
	defer p.put()
	n, e := s.newObj(ctx, p, 0o777, false)
	if e != 0 {
		return xl.Attr{}, e
	}
	defer s.lockName(parent, name).unlock()
	if err := unix.Symlinkat(target, p.fd, name); err != nil {
		return xl.Attr{}, errno(err)
	}
	n.link = true
	return s.madeNode(&n, p, parent, name, gfid)
}

// Mkdir makes a directory.
func (s *Store) Mkdir(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32) (xl.Attr, syscall.Errno) {
	if e := s.newEntry(parent, name, gfid); e != 0 {
		return xl.Attr{}, e
	}
	// A rename of the new directory must wait until its handle exists.
	s.nsMu.RLock()
	defer s.nsMu.RUnlock()
	p, e := s.dirLocked(parent)
	if e != 0 {
		return xl.Attr{}, e
	}
	defer p.put()
	n, e := s.newObj(ctx, p, mode, true)
	if e != 0 {
		return xl.Attr{}, e
	}
	defer s.lockName(parent, name).unlock()
	gen := s.dirs.gen.Load()
	if err := unix.Mkdirat(p.fd, name, mode&0o7777); err != nil {
		return xl.Attr{}, errno(err)
	}
	fd, err := unix.Openat(p.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return xl.Attr{}, errno(err)
	}
	n.fd = fd
	a, e := s.made(&n, p, parent, name, gfid)
	if e != 0 {
		unix.Close(fd)
		return xl.Attr{}, e
	}
	s.dirs.add(gfid, newDirRef(fd), gen).put()
	return a, 0
}

// Create makes and opens a regular file. Without O_EXCL an existing file
// is opened instead, and its gfid wins over the caller's.
func (s *Store) Create(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, flags, mode uint32) (xl.Fd, xl.Attr, syscall.Errno) {
	if e := s.newEntry(parent, name, gfid); e != 0 {
		return xl.Fd{}, xl.Attr{}, e
	}
	p, e := s.dir(parent)
	if e != 0 {
		return xl.Fd{}, xl.Attr{}, e
	}
	defer p.put()
	for {
		fd, g, retry, e := s.createOrOpen(ctx, p, parent, name, gfid, flags, mode)
		if e == 0 {
			return s.created(fd, g, flags)
		}
		if !retry {
			return xl.Fd{}, xl.Attr{}, e
		}
	}
}

// createOrOpen makes name, or opens it without O_EXCL if it exists, and
// counts the file open. retry says that the existing file lost its name
// meanwhile, behind the store's back: the name is free again.
func (s *Store) createOrOpen(ctx context.Context, p *dirRef, parent xl.GFID, name string, gfid xl.GFID, flags, mode uint32) (fd int, g xl.GFID, retry bool, e syscall.Errno) {
	defer s.lockName(parent, name).unlock()
	s.opening(gfid)
	if fd, e = s.createFile(ctx, p, name, gfid, flags, mode); e == 0 {
		return fd, gfid, false, 0
	}
	s.closing(gfid)
	if e != syscall.EEXIST || flags&syscall.O_EXCL != 0 {
		return -1, gfid, false, e
	}
	// EEXIST: the name is taken, or the gfid, which is fine if it is
	// the name's (a retried Create).
	fd, g, e = s.openExisting(p, parent, name, flags, gfid)
	if e != syscall.ENOENT {
		return fd, g, false, e
	}
	var st unix.Stat_t
	if unix.Fstatat(s.hfd, hpath(gfid), &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		return -1, gfid, false, syscall.EEXIST // the gfid is another object's
	}
	return -1, gfid, true, e
}

// created answers a Create that opened fd, counted open, as g.
func (s *Store) created(fd int, g xl.GFID, flags uint32) (xl.Fd, xl.Attr, syscall.Errno) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		s.closing(g)
		return xl.Fd{}, xl.Attr{}, errno(err)
	}
	h := s.addFile(&file{gfid: g, fd: fd})
	return xl.Fd{GFID: g, H: h, Flags: flags}, attrOf(g, &st), 0
}

// createFile makes the file as an O_TMPFILE, labels it and links its
// handle, and only then gives it its name: no one sees it half made.
func (s *Store) createFile(ctx context.Context, p *dirRef, name string, g xl.GFID, flags, mode uint32) (int, syscall.Errno) {
	n, e := s.newObj(ctx, p, mode, false)
	if e != 0 {
		return -1, e
	}
	fl := openFlags(flags) &^ unix.O_TRUNC
	if fl&unix.O_ACCMODE == unix.O_RDONLY { // O_TMPFILE needs write access
		fl |= unix.O_RDWR
	}
	fd, err := unix.Openat(p.fd, ".", fl|unix.O_TMPFILE, mode&0o7777)
	if err != nil {
		return -1, errno(err)
	}
	n.fd = fd
	// The brick's umask may have cut the mode; if not, and no chown
	// will clear set-id bits, there is nothing to change.
	var st unix.Stat_t
	if n.uid < 0 && n.gid < 0 && unix.Fstat(fd, &st) == nil && st.Mode&0o7777 == n.perm {
		n.moded = true
	}
	e = errno(n.label(g, 0))
	if e == 0 {
		e = s.linkHandle(fd, g)
	}
	if e == 0 {
		if e = errno(unix.Linkat(fd, "", p.fd, name, unix.AT_EMPTY_PATH)); e != 0 {
			unix.Unlinkat(s.hfd, hpath(g), 0)
			s.evictAnon(&g)
		}
	}
	if e != 0 {
		unix.Close(fd)
		return -1, e
	}
	return fd, 0
}

// openExisting opens name for a Create without O_EXCL that found it, and
// counts it open. g labels it only if it has no gfid. ENOENT means that
// the file lost its name meanwhile.
func (s *Store) openExisting(p *dirRef, pg xl.GFID, name string, flags uint32, g xl.GFID) (int, xl.GFID, syscall.Errno) {
	var st unix.Stat_t
	if err := unix.Fstatat(p.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, g, errno(err)
	}
	if e := regularOnly(&st, syscall.EEXIST); e != 0 {
		return -1, g, e
	}
	// O_NONBLOCK: should a fifo be swapped in meanwhile, do not hang on it.
	fd, err := unix.Openat(p.fd, name, openFlags(flags)|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, g, errno(err)
	}
	e := errno(unix.Fstat(fd, &st))
	if e == 0 {
		e = regularOnly(&st, syscall.EEXIST)
	}
	if e == 0 {
		g, e = s.fileGFID(fd, p, pg, name, &st, g)
	}
	if e == 0 {
		e = s.registerOpen(g, fd)
	}
	if e != 0 {
		unix.Close(fd)
		return -1, g, e
	}
	return fd, g, 0
}

// fileGFID reads the gfid of the regular file fd, found as name in p,
// adopting it with g if it has none.
func (s *Store) fileGFID(fd int, p *dirRef, pg xl.GFID, name string, st *unix.Stat_t, g xl.GFID) (xl.GFID, syscall.Errno) {
	got, err := fgetGFID(fd)
	if err == unix.ENODATA {
		return s.adopt(p, pg, name, st, g)
	}
	return got, errno(err)
}

// regularOnly refuses what the store does not open: directories,
// symlinks, and special files, whose I/O never reaches a brick.
func regularOnly(st *unix.Stat_t, special syscall.Errno) syscall.Errno {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return 0
	case unix.S_IFDIR:
		return syscall.EISDIR
	case unix.S_IFLNK:
		return syscall.ELOOP
	}
	return special
}

// Link adds newName in newParent for the non-directory ino.
func (s *Store) Link(ctx context.Context, ino xl.GFID, newParent xl.GFID, newName string) (xl.Attr, syscall.Errno) {
	if e := s.newName(newParent, newName); e != 0 {
		return xl.Attr{}, e
	}
	o, e := s.obj(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	defer o.put()
	if o.d != nil {
		return xl.Attr{}, syscall.EPERM
	}
	p, e := s.dir(newParent)
	if e != 0 {
		return xl.Attr{}, e
	}
	defer p.put()
	defer s.lockName(newParent, newName).unlock()
	s.mu.Lock()
	if oc := s.opens[ino]; oc != nil && oc.removed {
		e = syscall.ENOENT // as linkat(2) of an unlinked open file
	} else {
		e = staleIfMissing(unix.Linkat(s.hfd, o.h, p.fd, newName, 0))
	}
	s.mu.Unlock()
	if e == 0 {
		e = s.restat(&o)
	}
	if e != 0 {
		return xl.Attr{}, e
	}
	return attrOf(ino, &o.st), 0
}

// pinned holds an entry by an O_PATH fd, so that its link count can be
// checked once its name is gone.
type pinned struct {
	fd int
	st unix.Stat_t
	g  xl.GFID // zero if unlabelled
}

func pin(p *dirRef, name string) (*pinned, syscall.Errno) {
	fd, err := unix.Openat(p.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errno(err)
	}
	t := &pinned{fd: fd}
	if err = unix.Fstat(fd, &t.st); err == nil {
		t.g, err = pinnedGFID(fd)
	}
	if err != nil && err != unix.ENODATA {
		unix.Close(fd)
		return nil, errno(err)
	}
	return t, 0
}

func (t *pinned) close()      { unix.Close(t.fd) }
func (t *pinned) isDir() bool { return t.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// Unlink removes a non-directory's name.
func (s *Store) Unlink(ctx context.Context, parent xl.GFID, name string) syscall.Errno {
	if e := s.oldName(parent, name); e != 0 {
		return e
	}
	p, e := s.dir(parent)
	if e != 0 {
		return e
	}
	defer p.put()
	defer s.lockName(parent, name).unlock()
	t, e := pin(p, name)
	if e != 0 {
		return e
	}
	defer t.close()
	if t.isDir() {
		return syscall.EISDIR
	}
	if err := unix.Unlinkat(p.fd, name, 0); err != nil {
		return errno(err)
	}
	if !t.g.IsZero() {
		s.dropName(t.fd, t.g)
	}
	return 0
}

// Rmdir removes an empty directory.
func (s *Store) Rmdir(ctx context.Context, parent xl.GFID, name string) syscall.Errno {
	if e := s.oldName(parent, name); e != 0 {
		return e
	}
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	p, e := s.dirLocked(parent)
	if e != 0 {
		return e
	}
	defer p.put()
	defer s.lockName(parent, name).unlock()
	t, e := pin(p, name)
	if e != 0 {
		return e
	}
	defer t.close()
	if !t.isDir() {
		return syscall.ENOTDIR
	}
	if err := unix.Unlinkat(p.fd, name, unix.AT_REMOVEDIR); err != nil {
		return errno(err)
	}
	if !t.g.IsZero() {
		s.dropDir(t.g)
	}
	return 0
}

// Rename is renameat2(2); flags are xl.RenameNoreplace or
// xl.RenameExchange, whose values are the kernel's.
func (s *Store) Rename(ctx context.Context, oldParent xl.GFID, oldName string, newParent xl.GFID, newName string, flags uint32) syscall.Errno {
	if e := s.oldName(oldParent, oldName); e != 0 {
		return e
	}
	if e := s.newName(newParent, newName); e != 0 {
		return e
	}
	if flags&^(xl.RenameNoreplace|xl.RenameExchange) != 0 || flags == xl.RenameNoreplace|xl.RenameExchange {
		return syscall.EINVAL
	}
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	op, e := s.dirLocked(oldParent)
	if e != 0 {
		return e
	}
	defer op.put()
	np, e := s.dirLocked(newParent)
	if e != 0 {
		return e
	}
	defer np.put()
	defer s.lockNames(oldParent, oldName, newParent, newName).unlock()
	src, e := pin(op, oldName)
	if e != 0 {
		return e
	}
	defer src.close()
	dst, e := pin(np, newName)
	switch {
	case e == syscall.ENOENT:
	case e != 0:
		return e
	default:
		defer dst.close()
	}
	if err := unix.Renameat2(op.fd, oldName, np.fd, newName, uint(flags)); err != nil {
		return errno(err)
	}
	return s.renamed(src, dst, oldParent, oldName, newParent, newName, flags)
}

// renamed brings handles up to date: moved directories get new handle
// text, and a replaced victim loses its name.
func (s *Store) renamed(src, dst *pinned, op xl.GFID, on string, np xl.GFID, nn string, flags uint32) syscall.Errno {
	if dst != nil && dst.st.Dev == src.st.Dev && dst.st.Ino == src.st.Ino {
		return 0 // two links of one file: rename(2) did nothing
	}
	e := s.moved(src, np, nn)
	switch {
	case dst == nil:
	case flags&xl.RenameExchange != 0:
		if e2 := s.moved(dst, op, on); e == 0 {
			e = e2
		}
	case dst.g.IsZero():
	case dst.isDir():
		s.dropDir(dst.g)
	default:
		s.dropName(dst.fd, dst.g)
	}
	return e
}

// moved rewrites the handle of a directory now called name in pg.
func (s *Store) moved(t *pinned, pg xl.GFID, name string) syscall.Errno {
	if !t.isDir() || t.g.IsZero() {
		return 0
	}
	e := s.writeDirHandle(t.g, pg, name, true)
	if e != 0 {
		s.log.Error("posix: directory renamed but its handle not rewritten", "gfid", t.g, "err", e)
	}
	return e
}
