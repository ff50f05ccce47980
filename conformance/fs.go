// Package conformance is gluon's POSIX conformance suite. The same cases
// run against any filesystem that can be driven through FS: a translator
// graph called directly (XlFS), a graph behind the protocol client (also
// XlFS), and a real directory such as a FUSE mount (OSFS). TestOSFS runs
// the suite against the kernel's own filesystem, so every case states
// what Linux does.
//
// A runner looks like this:
//
//	func TestMain(m *testing.M) {
//		conformance.MaybeRunChild() // first: OSFS runs non-root cases in a child
//		os.Exit(m.Run())
//	}
//
//	func TestFUSE(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) conformance.FS {
//			mnt := mountSomething(t) // with allow_other, so uid 65534 may enter
//			return conformance.OSFS(mnt)
//		})
//	}
//
// Run makes the root of the FS mode 0755 so that the unprivileged user the
// permission cases act as can reach its case directories. For OSFS every
// ancestor of the directory must be searchable by that user too (a
// t.TempDir's parent is mode 0700; chmod it), and a FUSE mount must allow
// other users in.
package conformance

import (
	"golang.org/x/sys/unix"
)

// FS is a filesystem under test, addressed by slash-separated paths
// relative to its root ("." or "" is the root). Errors wrap syscall.Errno,
// so errors.Is(err, syscall.ENOENT) works.
//
// Only Stat and OpenFile follow a symbolic link in the last component;
// the other ops act on the link itself, except Chmod, which Linux cannot
// apply to a link (do not pass one). Links in other components are not
// followed. The cases use relative targets only, which resolve against the
// link's directory.
type FS interface {
	Mkdir(path string, mode uint32) error
	// Mknod creates a fifo, socket or device; mode carries the type bits.
	Mknod(path string, mode uint32, dev uint64) error
	// OpenFile opens a regular file; with O_CREAT it creates it.
	OpenFile(path string, flags int, mode uint32) (File, error)
	Stat(path string) (Attr, error)
	Lstat(path string) (Attr, error)
	Chmod(path string, mode uint32) error
	// Chown changes the owner; -1 leaves an id unchanged.
	Chown(path string, uid, gid int) error
	// Utimes sets atime and mtime. A Nsec of unix.UTIME_NOW means now,
	// unix.UTIME_OMIT leaves that time alone.
	Utimes(path string, atime, mtime unix.Timespec) error
	Truncate(path string, size int64) error
	Symlink(target, path string) error
	Readlink(path string) (string, error)
	Link(oldpath, newpath string) error
	Unlink(path string) error
	Rmdir(path string) error
	// Rename takes renameat2 flags (unix.RENAME_NOREPLACE, unix.RENAME_EXCHANGE).
	Rename(oldpath, newpath string, flags uint) error
	// ReadDir lists a directory completely, without "." and "..", in the
	// filesystem's order.
	ReadDir(path string) ([]DirEntry, error)
	Statfs(path string) (Statfs, error)
	Getxattr(path, name string) ([]byte, error)
	// Setxattr takes unix.XATTR_CREATE or unix.XATTR_REPLACE.
	Setxattr(path, name string, value []byte, flags int) error
	Listxattr(path string) ([]string, error)
	Removexattr(path, name string) error
	// Access is access(2) with unix.R_OK, W_OK, X_OK or F_OK.
	Access(path string, mode uint32) error
	// AsUser returns a view of the same filesystem that acts as the given
	// non-root user, with no supplementary groups.
	AsUser(uid, gid uint32) FS
}

// File is an open regular file.
type File interface {
	// ReadAt reads at off; the count is short only at end of file, which
	// is not an error.
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Write writes at the file offset, or at the end with O_APPEND.
	Write(p []byte) (int, error)
	// Seek is lseek(2), including unix.SEEK_DATA and unix.SEEK_HOLE.
	Seek(off int64, whence int) (int64, error)
	Truncate(size int64) error
	// Fallocate is fallocate(2), e.g. with unix.FALLOC_FL_PUNCH_HOLE.
	Fallocate(mode uint32, off, length int64) error
	Stat() (Attr, error)
	Sync() error
	Close() error
}

// Attr is what stat(2) reports, minus the device.
type Attr struct {
	Ino                 uint64
	Mode                uint32 // type and permission bits
	Nlink               uint32
	Uid, Gid            uint32
	Rdev                uint64
	Size                int64
	Blocks              int64 // 512-byte units
	Atime, Mtime, Ctime unix.Timespec
}

// Type is the file type bits of the mode (unix.S_IFREG and so on).
func (a Attr) Type() uint32 { return a.Mode & unix.S_IFMT }

// Perm is the mode without the type bits.
func (a Attr) Perm() uint32 { return a.Mode &^ unix.S_IFMT }

// DirEntry is one ReadDir entry with the entry's attributes.
type DirEntry struct {
	Name string
	Attr Attr
}

// Statfs is statfs(2).
type Statfs struct {
	Blocks, Bfree, Bavail uint64
	Files, Ffree          uint64
	Bsize                 int64
	NameLen               int64
}
