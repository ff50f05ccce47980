package posix

import (
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// maxDepth bounds directory resolution: a handle chain deeper than any
// real path means the handles are corrupt.
const maxDepth = 4096

// errRetry marks a resolution that may have raced with a Rename or Rmdir.
// It never leaves the package.
const errRetry = syscall.EAGAIN

const hexd = "0123456789abcdef"

// hpath is g's handle relative to the handles directory: ab/<gfid>, ab
// being g's first byte. The 256 ab directories are made when the store
// opens, so making a handle never makes a directory: a directory is a
// new inode, as costly as the file itself. (GlusterFS and stores before
// this layout have a second level, ab/cd/<gfid>; opening such a store
// moves its handles up, see gc.)
func hpath(g xl.GFID) string {
	var b [3 + 36]byte
	b[0], b[1], b[2] = hexd[g[0]>>4], hexd[g[0]&15], '/'
	copy(b[3:], g.String())
	return string(b[:])
}

// bucketPath is g's place in a two-level tree: ab/cd/<gfid>. Spilled
// xattrs are kept so (one directory per object).
func bucketPath(g xl.GFID) string {
	var b [6 + 36]byte
	b[0], b[1], b[2] = hexd[g[0]>>4], hexd[g[0]&15], '/'
	b[3], b[4], b[5] = hexd[g[1]>>4], hexd[g[1]&15], '/'
	copy(b[6:], g.String())
	return string(b[:])
}

// dirRef is an open directory. The cache and each user hold a reference;
// the last put closes it.
type dirRef struct {
	fd   int
	proc string // "/proc/self/fd/<fd>/", to reach entries with l*xattr
	refs atomic.Int32
}

func newDirRef(fd int) *dirRef {
	d := &dirRef{fd: fd, proc: procPath(fd) + "/"}
	d.refs.Store(1)
	return d
}

func (d *dirRef) get() *dirRef {
	d.refs.Add(1)
	return d
}

func (d *dirRef) put() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}

// dirCache holds resolved directories by GFID. A cached fd follows its
// directory through renames, so only Rmdir (and Rename over an empty
// directory) evicts.
type dirCache struct {
	mu  sync.Mutex
	m   map[xl.GFID]*dirRef
	max int
	// gen counts evictions. A resolution that started before one may
	// hold a directory removed since, which must not be cached: an op
	// that finds it cached would take it for a live one.
	gen atomic.Uint64
}

func (c *dirCache) get(g xl.GFID) *dirRef {
	c.mu.Lock()
	d := c.m[g]
	if d != nil {
		d.get()
	}
	c.mu.Unlock()
	return d
}

// add caches d, which the caller keeps, and returns the cached entry.
// gen is the cache's generation from before d was opened.
func (c *dirCache) add(g xl.GFID, d *dirRef, gen uint64) *dirRef {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[g]; old != nil { // a concurrent resolution won
		d.put()
		return old.get()
	}
	if c.m == nil || c.gen.Load() != gen { // closed, or d perhaps removed
		return d
	}
	if len(c.m) >= c.max {
		for k, v := range c.m { // map order is random: random eviction
			delete(c.m, k)
			v.put()
			break
		}
	}
	c.m[g] = d.get()
	return d
}

func (c *dirCache) evict(g xl.GFID) {
	c.mu.Lock()
	c.gen.Add(1)
	d := c.m[g]
	delete(c.m, g)
	c.mu.Unlock()
	if d != nil {
		d.put()
	}
}

func (c *dirCache) clear() {
	c.mu.Lock()
	m := c.m
	c.m = nil
	c.mu.Unlock()
	for _, d := range m {
		d.put()
	}
}

// cached returns the root or a cached directory, or nil.
func (s *Store) cached(g xl.GFID) *dirRef {
	if g == xl.RootGFID {
		return s.root.get()
	}
	return s.dirs.get(g)
}

// dir resolves g to its directory; the caller puts it.
func (s *Store) dir(g xl.GFID) (*dirRef, syscall.Errno) {
	if s.closed.Load() {
		return nil, syscall.ENOTCONN
	}
	d, e := s.dirAt(g, 0, false)
	if e == errRetry {
		s.nsMu.RLock()
		d, e = s.dirAt(g, 0, true)
		s.nsMu.RUnlock()
	}
	return d, e
}

// dirLocked resolves g for a caller that holds nsMu.
func (s *Store) dirLocked(g xl.GFID) (*dirRef, syscall.Errno) {
	if s.closed.Load() {
		return nil, syscall.ENOTCONN
	}
	return s.dirAt(g, 0, true)
}

// dirAt resolves g by resolving its parent and opening its name there.
// Unless final, an inconsistency that a concurrent rename could explain
// returns errRetry instead of ESTALE.
func (s *Store) dirAt(g xl.GFID, depth int, final bool) (*dirRef, syscall.Errno) {
	if d := s.cached(g); d != nil {
		return d, 0
	}
	if depth > maxDepth {
		s.log.Error("posix: directory handle chain too deep", "gfid", g)
		return nil, syscall.ESTALE
	}
	pg, name, e := s.readDirHandle(g)
	if e != 0 {
		return nil, e
	}
	p, e := s.dirAt(pg, depth+1, final)
	if e != 0 {
		return nil, e
	}
	defer p.put()
	gen := s.dirs.gen.Load()
	fd, err := unix.Openat(p.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	stale := syscall.ESTALE
	if !final {
		stale = errRetry
	}
	switch err {
	case nil:
	case unix.ENOENT:
		return nil, stale
	case unix.ELOOP, unix.ENOTDIR:
		if final {
			s.log.Warn("posix: refusing a non-directory where a directory is expected",
				"parent", pg, "name", name, "gfid", g, "err", err)
		}
		return nil, stale
	default:
		return nil, errno(err)
	}
	if got, err := fgetGFID(fd); err != nil || got != g {
		unix.Close(fd)
		return nil, stale
	}
	return s.dirs.add(g, newDirRef(fd), gen), 0
}

// readDirHandle reads a directory handle. A non-directory's handle gives
// ENOTDIR, a missing one ESTALE.
func (s *Store) readDirHandle(g xl.GFID) (xl.GFID, string, syscall.Errno) {
	var buf [36 + 1 + 256]byte
	n, err := unix.Readlinkat(s.hfd, hpath(g), buf[:])
	switch err {
	case nil:
	case unix.ENOENT:
		return xl.GFID{}, "", syscall.ESTALE
	case unix.EINVAL: // not a symlink
		return xl.GFID{}, "", syscall.ENOTDIR
	default:
		return xl.GFID{}, "", errno(err)
	}
	pg, name, ok := parseDirHandle(buf[:n])
	if !ok { // a symlink object's handle
		return xl.GFID{}, "", syscall.ENOTDIR
	}
	return pg, name, 0
}

func dirHandleText(pg xl.GFID, name string) string { return pg.String() + "/" + name }

func parseDirHandle(b []byte) (xl.GFID, string, bool) {
	if len(b) < 38 || b[36] != '/' {
		return xl.GFID{}, "", false
	}
	pg, err := xl.ParseGFID(string(b[:36]))
	name := string(b[37:])
	if err != nil || !validName(name) {
		return xl.GFID{}, "", false
	}
	return pg, name, true
}

// isDirHandle tells a directory's handle from a symlink object's, which
// is also a symlink but a hard link of a named object.
func isDirHandle(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFLNK && st.Nlink == 1
}

// obj is a resolved object: a directory (d set) or a non-directory reached
// through its handle h. st is its stat at resolution.
type obj struct {
	d  *dirRef
	h  string
	st unix.Stat_t
}

func (o *obj) put() {
	if o.d != nil {
		o.d.put()
	}
}

func (o *obj) kind() uint32 { return o.st.Mode & unix.S_IFMT }

// obj resolves g; the caller puts the result.
func (s *Store) obj(g xl.GFID) (obj, syscall.Errno) {
	var o obj
	if s.closed.Load() {
		return o, syscall.ENOTCONN
	}
	if o.d = s.cached(g); o.d == nil {
		o.h = hpath(g)
		err := unix.Fstatat(s.hfd, o.h, &o.st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && !isDirHandle(&o.st) {
			return o, 0
		}
		e := staleIfMissing(err)
		if e == 0 {
			if o.d, e = s.dir(g); e == syscall.ENOTDIR {
				e = syscall.ESTALE
			}
		}
		if e == syscall.ESTALE { // perhaps a directory removed while open
			o.d = s.openedDir(g)
		}
		if o.d == nil {
			return obj{}, e
		}
		o.h = ""
	}
	if err := unix.Fstat(o.d.fd, &o.st); err != nil {
		o.put()
		return obj{}, errno(err)
	}
	return o, 0
}

// restat refreshes o.st.
func (s *Store) restat(o *obj) syscall.Errno {
	if o.d != nil {
		return errno(unix.Fstat(o.d.fd, &o.st))
	}
	return errno(unix.Fstatat(s.hfd, o.h, &o.st, unix.AT_SYMLINK_NOFOLLOW))
}

// at names o for the *at syscalls that take AT_EMPTY_PATH and
// AT_SYMLINK_NOFOLLOW.
func (s *Store) at(o *obj) (int, string, int) {
	if o.d != nil {
		return o.d.fd, "", unix.AT_EMPTY_PATH
	}
	return s.hfd, o.h, unix.AT_SYMLINK_NOFOLLOW
}

func staleIfMissing(err error) syscall.Errno {
	if err == unix.ENOENT {
		return syscall.ESTALE
	}
	return errno(err)
}

func fgetGFID(fd int) (xl.GFID, error) {
	var v gfidValue
	n, err := unix.Fgetxattr(fd, gfidXattr, v[:])
	g, _, err := v.parse(n, err)
	return g, err
}

// pinnedGFID reads the gfid of the object an O_PATH fd refers to.
func pinnedGFID(fd int) (xl.GFID, error) {
	var v gfidValue
	n, err := unix.Getxattr(procPath(fd), gfidXattr, v[:])
	g, _, err := v.parse(n, err)
	return g, err
}

// A gfid xattr holds the gfid and, on objects labelled since readdir
// reads it there, a byte of gfidFlags after it. Objects labelled before
// (and the root, and adopted objects) have none, and their flags are
// unknownFlags.
type gfidValue [len(xl.GFID{}) + 1]byte

type gfidFlags byte

const (
	// mayXattrs: the object may have client xattrs (spilled ones
	// included). It is set before the first is written, so that a
	// crash may leave it set in vain but never missing; Removexattr
	// clears it when the last goes. It is this brick's hint, not
	// replicated state: a replica's may be set in vain where this one's
	// is not (a crash, a system.* value the kernel did not store,
	// repair copying only client xattrs), and replicas may differ in it.
	// Only the store's own writes set it: an xattr added behind its back
	// after labelling (setfattr on the brick, the kernel's IMA
	// security.ima) goes unseen by Readdir on an unflagged object.
	mayXattrs gfidFlags = 1 << 0
	// unknownFlags: the value has no flags. Never stored.
	unknownFlags gfidFlags = 1 << 7
)

func newGFIDValue(g xl.GFID, f gfidFlags) gfidValue {
	var v gfidValue
	copy(v[:], g[:])
	v[len(g)] = byte(f)
	return v
}

// parse decodes a read of n bytes into v.
func (v *gfidValue) parse(n int, err error) (xl.GFID, gfidFlags, error) {
	var g xl.GFID
	switch {
	case err == unix.ERANGE || err == nil && n != len(g) && n != len(v):
		return g, 0, unix.EIO // not ours: corrupt
	case err != nil:
		return g, 0, err
	}
	copy(g[:], v[:])
	if n == len(g) {
		return g, unknownFlags, nil
	}
	return g, gfidFlags(v[len(g)]), nil
}

// noXattrs reports whether f says the object has no client xattrs.
func (f gfidFlags) noXattrs() bool { return f&(mayXattrs|unknownFlags) == 0 }

// mkHandleDirs makes the ab directory of g's handle again, should it
// have gone behind the store's back.
func (s *Store) mkHandleDirs(g xl.GFID) error { return mkdirAll(s.hfd, hpath(g)[:2]) }

// mkBuckets makes the 256 directories that hold the handles.
func mkBuckets(hfd int) error {
	for i := range 256 {
		ab := string([]byte{hexd[i>>4], hexd[i&15]})
		if err := unix.Mkdirat(hfd, ab, 0o700); err != nil && err != unix.EEXIST {
			return err
		}
	}
	return nil
}

// linkHandle hard-links the object fd refers to (opened for real or
// O_PATH) as g's handle. An existing handle of the same object is fine:
// a concurrent adoption made it.
func (s *Store) linkHandle(fd int, g xl.GFID) syscall.Errno {
	h := hpath(g)
	err := unix.Linkat(fd, "", s.hfd, h, unix.AT_EMPTY_PATH)
	if err == unix.ENOENT {
		if err = s.mkHandleDirs(g); err == nil {
			err = unix.Linkat(fd, "", s.hfd, h, unix.AT_EMPTY_PATH)
		}
	}
	if err == unix.EEXIST && s.isHandleOf(g, fd) {
		return 0
	}
	return errno(err)
}

func (s *Store) isHandleOf(g xl.GFID, fd int) bool {
	var a, b unix.Stat_t
	return unix.Fstat(fd, &a) == nil &&
		unix.Fstatat(s.hfd, hpath(g), &b, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		a.Dev == b.Dev && a.Ino == b.Ino
}

// writeDirHandle records that directory g is name in pg. Replacing an
// existing handle (Rename, under nsMu) goes through a temporary symlink
// and rename(2), so a reader sees the old or the new text, never neither.
func (s *Store) writeDirHandle(g, pg xl.GFID, name string, replace bool) syscall.Errno {
	text, h := dirHandleText(pg, name), hpath(g)
	if !replace {
		return s.symlinkHandle(text, g, h)
	}
	tmp := h + ".tmp"
	unix.Unlinkat(s.hfd, tmp, 0) // a crash leftover, if any
	if e := s.symlinkHandle(text, g, tmp); e != 0 {
		return e
	}
	return errno(unix.Renameat(s.hfd, tmp, s.hfd, h))
}

func (s *Store) symlinkHandle(text string, g xl.GFID, path string) syscall.Errno {
	err := unix.Symlinkat(text, s.hfd, path)
	if err == unix.ENOENT {
		if err = s.mkHandleDirs(g); err == nil {
			err = unix.Symlinkat(text, s.hfd, path)
		}
	}
	return errno(err)
}

// dropDir forgets the handle of a removed directory, and its spilled
// xattrs unless it is open: then they go on its last Releasedir, and
// until then the directory is reached through its open streams. So no
// handle is left behind should the brick die meanwhile, only spills,
// which New collects.
//
// The cache entry goes under mu too: an Opendir counted after mu is
// released must not find the directory cached, or its stream would
// outlive the spills dropped here, and Getxattr through it would find
// a marker without its value.
func (s *Store) dropDir(g xl.GFID) {
	s.mu.Lock()
	if err := unix.Unlinkat(s.hfd, hpath(g), 0); err != nil && err != unix.ENOENT {
		s.log.Error("posix: removing directory handle", "gfid", g, "err", err)
	}
	s.dirs.evict(g)
	oc := s.opens[g]
	if oc != nil {
		oc.removed = true
	}
	s.mu.Unlock()
	if oc == nil {
		s.dropSpills(g)
	}
}

// dropName is called after a name of the non-directory pinned by fd was
// removed. If only the handle is left, the handle and the spilled xattrs
// go too, or on the last Release when the file is open.
func (s *Store) dropName(fd int, g xl.GFID) {
	if s.lastName(fd, g) {
		s.dropSpills(g)
	}
}

// lastName removes g's handle if no name is left and the file is not
// open, and reports whether it did.
func (s *Store) lastName(fd int, g xl.GFID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Nlink != 1 {
		return false
	}
	if oc := s.opens[g]; oc != nil {
		oc.removed = true
		return false
	}
	return s.removeHandle(g, &st)
}

// removeHandle unlinks g's handle if it is still the object st
// describes, and reports whether it did.
func (s *Store) removeHandle(g xl.GFID, st *unix.Stat_t) bool {
	h := hpath(g)
	var hs unix.Stat_t
	if unix.Fstatat(s.hfd, h, &hs, unix.AT_SYMLINK_NOFOLLOW) != nil || hs.Dev != st.Dev || hs.Ino != st.Ino {
		return false
	}
	err := unix.Unlinkat(s.hfd, h, 0)
	s.evictAnon(&g)
	if err != nil && err != unix.ENOENT {
		s.log.Error("posix: removing handle", "gfid", g, "err", err)
		return false
	}
	return true
}

// adopt gives g to the unlabelled object name in p (made behind the
// store's back, or left by a crash before it got its gfid) and makes its
// handle. If someone labels it first, their gfid wins.
func (s *Store) adopt(p *dirRef, pg xl.GFID, name string, st *unix.Stat_t, g xl.GFID) (xl.GFID, syscall.Errno) {
	err := unix.Lsetxattr(p.proc+name, gfidXattr, g[:], unix.XATTR_CREATE)
	if err == unix.EEXIST {
		got, _, err := s.entryGFID(p, name)
		return got, errno(err)
	}
	if err != nil {
		return xl.GFID{}, errno(err)
	}
	var e syscall.Errno
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		e = s.writeDirHandle(g, pg, name, false)
	} else {
		e = s.linkName(p, name, g)
	}
	if e != 0 {
		return xl.GFID{}, e
	}
	s.log.Info("posix: adopted an object without gfid", "parent", pg, "name", name, "gfid", g)
	return g, 0
}

// linkName makes name in p (a non-directory) g's handle.
func (s *Store) linkName(p *dirRef, name string, g xl.GFID) syscall.Errno {
	fd, err := unix.Openat(p.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return errno(err)
	}
	defer unix.Close(fd)
	return s.linkHandle(fd, g)
}
