package posix

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Client xattrs are stored on the object as they are, except values the
// filesystem refuses for lack of room. Linux takes values up to 64 KiB,
// but ext4 without ea_inode keeps all of an inode's xattrs in the inode
// and one block and answers ENOSPC beyond that; btrfs and tmpfs have
// limits of their own. Such a value is spilled: written to
//
//	<root>/.gluon/xattrs/ab/cd/<gfid>/<key>
//
// key being a hash of the name (a name does not always fit a file name),
// and announced by a marker xattr trusted.gluon.xs.<key> on the object,
// whose value is the name. So Listxattr finds spilled names among the
// object's own, and Getxattr and friends look for one spill without a
// directory scan. Hard links share their gfid's spills.
//
// The rule is the filesystem's refusal, not a size threshold: on XFS
// nothing ever spills and the brick keeps GlusterFS's layout, and on
// ext4 no threshold would do, since several values below it still fill
// the block.
//
// A name lives in one place, but a crash may leave it in both; then the
// object's own value wins. Every change is ordered so that a reader who
// finds the object's own value without locking reads a current one:
// spilling writes the file, sets the marker, then removes the object's
// value; unspilling sets the object's value, then removes the marker and
// the file. Replacing a spilled value renames a new file over it, which
// is as atomic as setxattr(2) and, like it, not synced. Changes hold the
// gfid's stripe of xmu, and so do reads once the brick has spilled
// anything; it is a leaf lock: nothing else is taken while holding it.

const (
	spillPrefix  = xattrPrefix + "xs." // + key: the marker of a spilled value
	xattrSizeMax = 64 << 10            // XATTR_SIZE_MAX
	xattrNameMax = 255                 // XATTR_NAME_MAX
)

// internalXattr reports whether name is the store's own: clients can
// neither see nor change it.
func internalXattr(name string) bool { return strings.HasPrefix(name, xattrPrefix) }

// spillKey names name's spill file and marker.
func spillKey(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:16])
}

// spillable reports whether a refused value may be spilled. system.*
// names are the kernel's (POSIX ACLs): a file would not be them.
func spillable(name string) bool { return !strings.HasPrefix(name, "system.") }

// refused reports whether a setxattr failed for lack of room.
func refused(err error) bool { return err == unix.ENOSPC || err == unix.E2BIG }

// xlock is the stripe of xmu that guards g's spills.
func (s *Store) xlock(g xl.GFID) *sync.RWMutex {
	return &s.xmu[int(g[7]^g[15])%len(s.xmu)]
}

// The object's own xattrs. A non-directory is reached through /proc, so
// a symlink is not followed.

func (s *Store) getx(o *obj, name string, dst []byte) (int, error) {
	if o.d != nil {
		return unix.Fgetxattr(o.d.fd, name, dst)
	}
	return unix.Lgetxattr(s.hproc+o.h, name, dst)
}

func (s *Store) setx(o *obj, name string, value []byte, flags int) error {
	if o.d != nil {
		return unix.Fsetxattr(o.d.fd, name, value, flags)
	}
	return unix.Lsetxattr(s.hproc+o.h, name, value, flags)
}

func (s *Store) removex(o *obj, name string) error {
	if o.d != nil {
		return unix.Fremovexattr(o.d.fd, name)
	}
	return unix.Lremovexattr(s.hproc+o.h, name)
}

func (s *Store) listx(o *obj, dst []byte) (int, error) {
	if o.d != nil {
		return unix.Flistxattr(o.d.fd, dst)
	}
	return unix.Llistxattr(s.hproc+o.h, dst)
}

// Getxattr reads a client xattr.
func (s *Store) Getxattr(ctx context.Context, ino xl.GFID, name string) ([]byte, syscall.Errno) {
	if internalXattr(name) {
		return nil, syscall.ENODATA
	}
	o, e := s.obj(ino)
	if e != 0 {
		return nil, e
	}
	defer o.put()
	get := func(dst []byte) (int, error) { return s.getx(&o, name, dst) }
	if !s.spilled.Load() {
		v, e := sized(get)
		if e != syscall.ENODATA || !s.spilled.Load() {
			return v, e
		}
		// A value was spilled meanwhile: look again, under the lock.
	}
	// Under the lock, so that a value moving back to the object is not
	// missed in both places.
	mu := s.xlock(ino)
	mu.RLock()
	defer mu.RUnlock()
	if v, e := sized(get); e != syscall.ENODATA {
		return v, e
	}
	key := spillKey(name)
	if e := s.marker(&o, ino, key, name); e != 0 {
		return nil, e
	}
	return s.readSpill(&o, ino, key)
}

// marker reports whether name is spilled under key: 0, ENODATA or an
// error.
func (s *Store) marker(o *obj, g xl.GFID, key, name string) syscall.Errno {
	var buf [xattrNameMax + 1]byte
	n, err := s.getx(o, spillPrefix+key, buf[:])
	if err != nil && err != unix.ERANGE {
		return errno(err)
	}
	if err != nil || string(buf[:n]) != name {
		s.log.Error("posix: spill marker names another xattr", "gfid", g, "name", name, "marker", string(buf[:n]))
		return syscall.EIO
	}
	return 0
}

// Setxattr writes a client xattr; flags are XATTR_CREATE or
// XATTR_REPLACE, which hold across spilled and unspilled values.
func (s *Store) Setxattr(ctx context.Context, ino xl.GFID, name string, value []byte, flags uint32) syscall.Errno {
	if internalXattr(name) {
		s.log.Warn("posix: refused to set an internal xattr", "gfid", ino, "name", name)
		return syscall.EPERM
	}
	if len(value) > xattrSizeMax {
		return syscall.E2BIG // as setxattr(2): a spill must not lift the limit
	}
	o, e := s.obj(ino)
	if e != 0 {
		return e
	}
	defer o.put()
	mu := s.xlock(ino)
	mu.Lock()
	defer mu.Unlock()
	var key string
	spilled := false
	if s.spilled.Load() {
		key = spillKey(name)
		switch e := s.marker(&o, ino, key, name); e {
		case 0:
			spilled = true
		case syscall.ENODATA:
		default:
			return e
		}
	}
	if spilled && flags&unix.XATTR_CREATE != 0 {
		return syscall.EEXIST
	}
	nflags := flags
	if spilled {
		nflags &^= unix.XATTR_REPLACE // it exists, spilled
	}
	flagged, e := s.flagXattrs(&o)
	if e != 0 {
		return e
	}
	err := s.setx(&o, name, value, int(nflags))
	switch {
	case err == nil:
		if spilled {
			s.unspill(&o, ino, key, name)
		}
		if strings.HasPrefix(name, "system.") {
			// The kernel may store nothing: a minimal access ACL only
			// sets the mode.
			s.unflagXattrs(&o)
		}
		return 0
	case refused(err) && spillable(name):
		if key == "" {
			key = spillKey(name)
		}
		e = s.spill(&o, ino, name, key, value, flags, spilled)
	default:
		e = errno(err)
	}
	if e != 0 && flagged {
		// As it was, as on the replicas, where it was perhaps never
		// tried; a crash before this leaves the flag set, in vain.
		s.unflagXattrs(&o)
	}
	return e
}

// spill stores a value the object refused. spilled tells whether name
// is already spilled; if not, flags still need checking against the
// object's own value.
func (s *Store) spill(o *obj, g xl.GFID, name, key string, value []byte, flags uint32, spilled bool) syscall.Errno {
	if !spilled && flags&(unix.XATTR_CREATE|unix.XATTR_REPLACE) != 0 {
		_, err := s.getx(o, name, nil)
		if err != nil && err != unix.ENODATA {
			return errno(err)
		}
		switch exists := err == nil; {
		case flags&unix.XATTR_CREATE != 0 && exists:
			return syscall.EEXIST
		case flags&unix.XATTR_REPLACE != 0 && !exists:
			return syscall.ENODATA
		}
	}
	// The object may have gone since it was resolved; its spills were
	// then dropped already, and new ones would be left behind. A
	// directory removed while open has no handle, but keeps its spills
	// until its last close, which drops them under g's stripe of xmu.
	if g != xl.RootGFID {
		var st unix.Stat_t
		if err := unix.Fstatat(s.hfd, hpath(g), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			d := s.openedDir(g)
			if d == nil {
				return staleIfMissing(err)
			}
			d.put()
		}
	}
	s.spilled.Store(true)
	if err := s.writeSpill(g, key, value); err != nil {
		if err != unix.ENOSPC && err != unix.EDQUOT {
			s.log.Error("posix: writing a spilled xattr", "gfid", g, "name", name, "err", err)
		}
		return errno(err)
	}
	if !spilled {
		if err := s.setx(o, spillPrefix+key, []byte(name), 0); err != nil {
			s.unlinkSpill(g, key)
			return errno(err)
		}
	}
	// Last: until now readers found the old value.
	if err := s.removex(o, name); err != nil && err != unix.ENODATA {
		s.log.Error("posix: spilled an xattr but cannot remove the old value", "gfid", g, "name", name, "err", err)
		return errno(err)
	}
	return 0
}

// unspill drops name's spill after its value was stored on the object.
// The object's value wins, so a failure only leaves garbage behind.
func (s *Store) unspill(o *obj, g xl.GFID, key, name string) {
	if err := s.removex(o, spillPrefix+key); err != nil && err != unix.ENODATA {
		s.log.Error("posix: removing a spill marker", "gfid", g, "name", name, "err", err)
		return
	}
	s.unlinkSpill(g, key)
}

// Listxattr lists client xattrs, spilled ones included.
func (s *Store) Listxattr(ctx context.Context, ino xl.GFID) ([]string, syscall.Errno) {
	o, e := s.obj(ino)
	if e != 0 {
		return nil, e
	}
	defer o.put()
	names, keys, e := s.listNative(&o)
	if e != 0 || len(keys) == 0 {
		return names, e
	}
	// Again under the lock, for a consistent view of both places.
	mu := s.xlock(ino)
	mu.RLock()
	defer mu.RUnlock()
	if names, keys, e = s.listNative(&o); e != 0 {
		return nil, e
	}
	var buf [xattrNameMax + 1]byte
	for _, key := range keys {
		n, err := s.getx(&o, spillPrefix+key, buf[:])
		switch {
		case err == unix.ENODATA:
		case err != nil:
			return nil, errno(err)
		case n == 0:
			s.log.Error("posix: empty spill marker", "gfid", ino, "key", key)
		default:
			// After a crash a name may be in both places.
			if name := string(buf[:n]); !containsString(names, name) {
				names = append(names, name)
			}
		}
	}
	return names, 0
}

// listNative lists the object's own client xattrs and the keys of its
// spill markers.
func (s *Store) listNative(o *obj) (names, keys []string, e syscall.Errno) {
	buf, e := sized(func(dst []byte) (int, error) { return s.listx(o, dst) })
	if e != 0 {
		return nil, nil, e
	}
	for _, b := range bytes.Split(buf, []byte{0}) {
		switch listedKind(b) {
		case spillMarker:
			keys = append(keys, string(b[len(spillPrefix):]))
		case clientXattr:
			names = append(names, string(b))
		}
	}
	return names, keys, 0
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Removexattr removes a client xattr, wherever it is.
func (s *Store) Removexattr(ctx context.Context, ino xl.GFID, name string) syscall.Errno {
	if internalXattr(name) {
		s.log.Warn("posix: refused to remove an internal xattr", "gfid", ino, "name", name)
		return syscall.EPERM
	}
	o, e := s.obj(ino)
	if e != 0 {
		return e
	}
	defer o.put()
	mu := s.xlock(ino)
	mu.Lock()
	defer mu.Unlock()
	e = s.removeXattr(&o, ino, name)
	if e == 0 || e == syscall.ENODATA {
		// ENODATA too: the flag may have been set in vain.
		s.unflagXattrs(&o)
	}
	return e
}

func (s *Store) removeXattr(o *obj, ino xl.GFID, name string) syscall.Errno {
	err := s.removex(o, name)
	if err != nil && err != unix.ENODATA || !s.spilled.Load() {
		return errno(err)
	}
	// Spilled, or after a crash in both places.
	key := spillKey(name)
	switch merr := s.removex(o, spillPrefix+key); merr {
	case nil:
		s.unlinkSpill(ino, key)
		return 0
	case unix.ENODATA:
		return errno(err)
	default:
		return errno(merr)
	}
}

// flagXattrs sets mayXattrs in o's gfid flags, before a client xattr is
// written (see gfidFlags), and reports whether it did. The caller holds
// the stripe of xmu of o's gfid. An object labelled without flags keeps
// none: Readdir lists its xattrs.
func (s *Store) flagXattrs(o *obj) (bool, syscall.Errno) {
	var v gfidValue
	n, err := s.getx(o, gfidXattr, v[:])
	g, f, err := v.parse(n, err)
	switch {
	case err == unix.ENODATA:
		return false, 0 // unlabelled: adopted, without flags, when next seen
	case err != nil:
		return false, errno(err)
	case f&(mayXattrs|unknownFlags) != 0:
		return false, 0
	}
	v = newGFIDValue(g, f|mayXattrs)
	if err := s.setx(o, gfidXattr, v[:], unix.XATTR_REPLACE); err != nil {
		return false, errno(err)
	}
	return true, 0
}

// unflagXattrs clears mayXattrs once o has no client xattr left, so that
// Readdir answers NoXattrs again. The caller holds the stripe of xmu of
// o's gfid. A failure leaves the flag set, which is safe.
func (s *Store) unflagXattrs(o *obj) {
	var v gfidValue
	n, err := s.getx(o, gfidXattr, v[:])
	g, f, err := v.parse(n, err)
	if err != nil || f&mayXattrs == 0 || f&unknownFlags != 0 {
		return
	}
	var buf [512]byte
	if n, err = s.listx(o, buf[:]); err != nil || clientXattrs(buf[:n]) {
		return
	}
	v = newGFIDValue(g, f&^mayXattrs)
	if err := s.setx(o, gfidXattr, v[:], unix.XATTR_REPLACE); err != nil {
		s.log.Warn("posix: cannot clear the client xattr flag", "gfid", g, "err", err)
	}
}

// sized calls an xattr read that fails with ERANGE when dst is too
// small, growing dst until the value fits.
func sized(read func(dst []byte) (int, error)) ([]byte, syscall.Errno) {
	var small [256]byte
	n, err := read(small[:])
	if err == nil {
		return bytes.Clone(small[:n]), 0
	}
	for err == unix.ERANGE {
		if n, err = read(nil); err != nil {
			break
		}
		buf := make([]byte, n)
		if n, err = read(buf); err == nil {
			return buf[:n], 0
		}
	}
	return nil, errno(err)
}
