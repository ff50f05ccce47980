package posix

import (
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// validName reports whether name is a single path component.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\x00")
}

// checkName validates a name a client sent. Anything that could step
// out of the directory is logged: it is a bug or an attack.
func (s *Store) checkName(parent xl.GFID, name string) syscall.Errno {
	if len(name) > 255 {
		return syscall.ENAMETOOLONG
	}
	if !validName(name) {
		s.log.Warn("posix: rejected name", "parent", parent, "name", name)
		return syscall.EINVAL
	}
	return 0
}

// newName checks a name about to be created.
func (s *Store) newName(parent xl.GFID, name string) syscall.Errno {
	if e := s.checkName(parent, name); e != 0 {
		return e
	}
	if parent == xl.RootGFID && name == metaName {
		s.log.Warn("posix: refused to create the store's metadata name", "parent", parent, "name", name)
		return syscall.EPERM
	}
	return 0
}

// oldName checks the name of an existing entry; the metadata directory
// does not exist as far as clients know.
func (s *Store) oldName(parent xl.GFID, name string) syscall.Errno {
	if e := s.checkName(parent, name); e != 0 {
		return e
	}
	if parent == xl.RootGFID && name == metaName {
		return syscall.ENOENT
	}
	return 0
}

// checkGFID validates a gfid a client chose for a new object.
func checkGFID(g xl.GFID) syscall.Errno {
	if g.IsZero() || g == xl.RootGFID {
		return syscall.EINVAL
	}
	return 0
}

// attrOf converts a stat. Every non-directory has one extra link, its
// handle, and the root one extra subdirectory, .gluon: clients see
// neither.
func attrOf(g xl.GFID, st *unix.Stat_t) xl.Attr {
	nlink := uint32(st.Nlink)
	if (st.Mode&unix.S_IFMT != unix.S_IFDIR || g == xl.RootGFID) && nlink > 0 {
		nlink--
	}
	return xl.Attr{
		GFID:    g,
		Mode:    st.Mode,
		Nlink:   nlink,
		Uid:     st.Uid,
		Gid:     st.Gid,
		Rdev:    uint64(st.Rdev),
		Size:    uint64(st.Size),
		Blocks:  uint64(st.Blocks),
		Blksize: uint32(st.Blksize),
		Atime:   timespec(st.Atim),
		Mtime:   timespec(st.Mtim),
		Ctime:   timespec(st.Ctim),
	}
}

func timespec(t unix.Timespec) xl.Timespec {
	return xl.Timespec{Sec: int64(t.Sec), Nsec: uint32(t.Nsec)}
}

// access is access(2) for the caller c: root may do anything but execute
// a non-directory with no execute bit; others get the classic owner,
// group, other check.
func access(st *unix.Stat_t, mask uint32, c *xl.Call) syscall.Errno {
	mask &= unix.R_OK | unix.W_OK | unix.X_OK
	if c.Uid == 0 {
		if mask&unix.X_OK == 0 || st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Mode&0o111 != 0 {
			return 0
		}
		return syscall.EACCES
	}
	perm := st.Mode & 7
	switch {
	case c.Uid == st.Uid:
		perm = st.Mode >> 6 & 7
	case c.InGroup(st.Gid):
		perm = st.Mode >> 3 & 7
	}
	if perm&mask != mask {
		return syscall.EACCES
	}
	return 0
}
