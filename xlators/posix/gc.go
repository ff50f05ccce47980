package posix

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// gc removes what a crash can leave in the handle store: handles of
// non-directories that no name links to any more (files unlinked while
// open, half-finished creates) and temporary handles of an interrupted
// rename. Directory handles are left alone: resolution verifies them.
// Handles of the older two-level layout (ab/cd/<gfid>) move up to ab/; a
// crash while they move leaves each in one place or the other, and the
// next start carries on.
func (s *Store) gc() error {
	removed, moved := 0, 0
	// collect removes name in dfd if it is an orphan, and reports whether
	// it was.
	collect := func(dfd int, name string) (bool, error) {
		if !s.orphan(dfd, name) {
			return false, nil
		}
		if err := unix.Unlinkat(dfd, name, 0); err != nil && err != unix.ENOENT {
			return true, err
		}
		removed++
		return true, nil
	}
	err := eachEntry(s.hfd, ".", func(hfd int, ab string) error {
		return eachEntry(hfd, ab, func(abfd int, name string) error {
			if len(name) != 2 {
				_, err := collect(abfd, name)
				return err
			}
			// A bucket of the two-level layout.
			err := eachEntry(abfd, name, func(cdfd int, h string) error {
				if gone, err := collect(cdfd, h); gone || err != nil {
					return err
				}
				if err := unix.Renameat2(cdfd, h, abfd, h, unix.RENAME_NOREPLACE); err != nil {
					return &os.PathError{Op: "move handle", Path: ab + "/" + name + "/" + h, Err: err}
				}
				moved++
				return nil
			})
			if err != nil {
				return err
			}
			if err := unix.Unlinkat(abfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOTDIR {
				return &os.PathError{Op: "remove handle directory", Path: ab + "/" + name, Err: err}
			}
			return nil
		})
	})
	if removed > 0 {
		s.log.Info("posix: removed orphaned handles", "count", removed)
	}
	if moved > 0 {
		s.log.Info("posix: moved handles to the one-level layout", "count", moved)
	}
	return err
}

func (s *Store) orphan(dfd int, name string) bool {
	if strings.HasSuffix(name, ".tmp") {
		return true
	}
	var st unix.Stat_t
	if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Nlink != 1 {
		return false
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return true
	}
	// A lone symlink is a directory's handle, or an unlinked symlink's.
	var buf [36 + 1 + 256]byte
	n, err := unix.Readlinkat(dfd, name, buf[:])
	if err != nil {
		return false
	}
	_, _, ok := parseDirHandle(buf[:n])
	return !ok
}

// walk3 calls fn for every entry of every ab/cd directory in dfd: the
// objects with spilled xattrs.
func walk3(dfd int, fn func(dfd int, name string) error) error {
	return eachEntry(dfd, ".", func(hfd int, ab string) error {
		return eachEntry(hfd, ab, func(abfd int, cd string) error {
			return eachEntry(abfd, cd, fn)
		})
	})
}

// eachEntry opens directory name in dfd and calls fn for its entries.
func eachEntry(dfd int, name string, fn func(dfd int, name string) error) error {
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch err {
	case nil:
	case unix.ENOTDIR, unix.ELOOP: // not ours; leave it
		return nil
	default:
		return &os.PathError{Op: "open handle directory", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := fn(fd, n); err != nil {
			return err
		}
	}
	return nil
}
