// Package posix is the brick store, GlusterFS storage/posix style. The
// volume's namespace is a real directory tree under the brick root, so an
// admin can browse it. Every object carries its GFID in the
// trusted.gluon.gfid xattr, followed by a byte of flags that tells
// Readdir whether it may have client xattrs (objects labelled by a store
// from before have none and get their xattrs listed; a store from before
// takes a value with flags for a corrupt one, so a brick cannot go back
// to it). Every object can be reached by GFID through a handle
// under <root>/.gluon/handles/ab/<gfid>. For a non-directory the handle
// is a hard link. For a directory it is a symlink whose text,
// "<parent-gfid>/<name>", is data and is never followed by the kernel:
// resolution opens each step with openat(O_NOFOLLOW) and checks the gfid
// xattr of what it finds. So a symlink planted in the brick is never
// followed.
//
// Client xattr values the filesystem refuses for lack of room, as ext4
// without ea_inode does beyond about one block, are spilled to files
// under <root>/.gluon/xattrs; see xattr.go.
//
// Every path operation is an *at syscall relative to a verified directory
// fd, and every name is validated first. Objects that have no gfid, made
// behind the store's back or left half-made by a crash, are given one the
// first time they are seen (adopted).
package posix

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

const (
	metaName    = ".gluon" // in the root; hidden from clients
	xattrPrefix = "trusted.gluon."
	gfidXattr   = xattrPrefix + "gfid"
	dirCacheMax = 1024 // cached directory fds
)

// Options configures a Store.
type Options struct {
	// Logger receives rejected names, planted symlinks and adoptions.
	// Default slog.Default().
	Logger *slog.Logger
}

// Store is a brick store rooted at a local directory. It is safe for
// concurrent use; Close must not race with other calls.
type Store struct {
	log   *slog.Logger
	root  *dirRef // never evicted
	hfd   int     // .gluon/handles
	hproc string  // "/proc/self/fd/<hfd>/", to reach handles with l*xattr
	xfd   int     // .gluon/xattrs: spilled xattr values (xattr.go)
	uid   uint32  // the brick's own credentials, which the kernel gives new objects
	gid   uint32
	// xattrAt: the kernel has getxattrat(2).
	xattrAt bool

	// nsMu is held exclusively by Rename and Rmdir, which move or drop
	// directory handles, and shared by Mkdir and by a directory
	// resolution that lost a race with them.
	nsMu sync.RWMutex
	dirs dirCache

	// entMu serializes the store's changes to one name, striped by
	// parent and name, so that what an op pins under a name is what its
	// syscall then removes or replaces. Taken after nsMu, before mu.
	entMu   [64]sync.Mutex
	entSeed maphash.Seed

	// mu guards opens, and orders "is this the last name" checks against
	// Link, which could add a name back.
	mu    sync.Mutex
	opens map[xl.GFID]*openCount

	// xmu guards spilled xattrs, striped by gfid; spilled is set once
	// any value was spilled, and until then spills cost no syscalls.
	xmu     [64]sync.RWMutex
	spilled atomic.Bool

	fdMu  sync.RWMutex
	fds   map[uint64]*file
	nextH atomic.Uint64

	// anon keeps the anonymous fds of file (see there) for reuse: a
	// follower applies every replicated write through one, which would
	// otherwise cost a stat, an open and a close each. An entry holds a
	// reference and goes when its handle is removed (evictAnon).
	anonMu  sync.Mutex
	anon    map[anonKey]*file
	anonGen uint64 // bumped by every eviction

	closed atomic.Bool
}

var _ xl.Xlator = (*Store)(nil)
var _ xl.Lifecycle = (*Store)(nil)

// New opens (creating on first use) a brick store rooted at dir. It fails
// with a clear error if dir is missing, not a directory, not writable, or
// on a filesystem without xattr support (trusted.* xattrs; we run as root).
func New(dir string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("posix: brick directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("posix: brick %s is not a directory", dir)
	}
	rfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("posix: open brick %s: %w", dir, err)
	}
	s := &Store{
		log:     log,
		root:    newDirRef(rfd),
		hfd:     -1,
		xfd:     -1,
		uid:     uint32(unix.Geteuid()),
		gid:     uint32(unix.Getegid()),
		dirs:    dirCache{m: map[xl.GFID]*dirRef{}, max: dirCacheMax},
		entSeed: maphash.MakeSeed(),
		opens:   map[xl.GFID]*openCount{},
		fds:     map[uint64]*file{},
	}
	// Handles from a previous run must not alias new ones.
	s.nextH.Store(rand.Uint64())
	if err := s.init(dir); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init(dir string) error {
	rfd := s.root.fd
	if err := unix.Faccessat(rfd, ".", unix.W_OK, 0); err != nil {
		return fmt.Errorf("posix: brick %s is not writable: %w", dir, err)
	}
	if _, err := os.Stat(s.root.proc); err != nil {
		return fmt.Errorf("posix: /proc/self/fd is needed to reach objects without following symlinks: %w", err)
	}
	if err := s.initRootGFID(dir); err != nil {
		return err
	}
	s.xattrAt = probeXattrAt(rfd)
	mfd, err := mkdirOpen(rfd, metaName)
	if err != nil {
		return fmt.Errorf("posix: brick %s: %s: %w", dir, metaName, err)
	}
	defer unix.Close(mfd)
	// Create makes files with O_TMPFILE so that no name is ever seen
	// without its gfid.
	tfd, err := unix.Openat(mfd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("posix: brick %s: the filesystem lacks O_TMPFILE: %w", dir, err)
	}
	unix.Close(tfd)
	if s.hfd, err = mkdirOpen(mfd, "handles"); err != nil {
		return fmt.Errorf("posix: brick %s: handles: %w", dir, err)
	}
	if err := mkBuckets(s.hfd); err != nil {
		return fmt.Errorf("posix: brick %s: handles: %w", dir, err)
	}
	s.hproc = procPath(s.hfd) + "/"
	if s.xfd, err = mkdirOpen(mfd, "xattrs"); err != nil {
		return fmt.Errorf("posix: brick %s: xattrs: %w", dir, err)
	}
	if err := s.gc(); err != nil {
		return fmt.Errorf("posix: brick %s: collecting orphaned handles: %w", dir, err)
	}
	if err := s.gcSpills(); err != nil {
		return fmt.Errorf("posix: brick %s: collecting orphaned xattrs: %w", dir, err)
	}
	return nil
}

// initRootGFID labels the root, which also proves trusted.* xattrs work.
func (s *Store) initRootGFID(dir string) error {
	g, err := fgetGFID(s.root.fd)
	switch {
	case err == nil && g != xl.RootGFID:
		return fmt.Errorf("posix: brick %s: root carries gfid %s, not the volume root's", dir, g)
	case err == nil:
		return nil
	case !errors.Is(err, unix.ENODATA):
		return fmt.Errorf("posix: brick %s: reading trusted.* xattrs (is xattr support missing?): %w", dir, err)
	}
	if err := unix.Fsetxattr(s.root.fd, gfidXattr, xl.RootGFID[:], unix.XATTR_CREATE); err != nil {
		return fmt.Errorf("posix: brick %s: the filesystem must support trusted.* xattrs: %w", dir, err)
	}
	return nil
}

// mkdirOpen opens the directory name in dfd, creating it if needed.
func mkdirOpen(dfd int, name string) (int, error) {
	if err := unix.Mkdirat(dfd, name, 0o700); err != nil && err != unix.EEXIST {
		return -1, err
	}
	return unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// Close closes cached fds and open handles. Objects removed while open
// are cleaned up, as on their last release.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.fdMu.Lock()
	fds := s.fds
	s.fds = map[uint64]*file{}
	s.fdMu.Unlock()
	for _, f := range fds {
		s.release(f)
	}
	s.evictAnon(nil)
	s.dirs.clear()
	s.root.put()
	for _, fd := range []int{s.hfd, s.xfd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	return nil
}

// Statfs reports the brick filesystem.
func (s *Store) Statfs(ctx context.Context, ino xl.GFID) (xl.Statfs, syscall.Errno) {
	o, e := s.obj(ino)
	if e != 0 {
		return xl.Statfs{}, e
	}
	o.put()
	var st unix.Statfs_t
	if err := unix.Fstatfs(s.root.fd, &st); err != nil {
		return xl.Statfs{}, errno(err)
	}
	return xl.Statfs{
		Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail,
		Files: st.Files, Ffree: st.Ffree,
		Bsize: uint32(st.Bsize), Frsize: uint32(st.Frsize),
		NameLen: uint32(st.Namelen),
	}, 0
}

// Ipc answers ENOTSUP: the store has no private ops.
func (s *Store) Ipc(ctx context.Context, op xl.IpcOp, in xl.Xdata) (xl.Xdata, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

// procPath names fd through /proc, which reaches what fd refers to
// without following it further.
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// errno converts a syscall error to its Errno.
func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}
