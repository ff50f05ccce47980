// Package xl is the translator contract. Every layer of a gluon graph, from
// the FUSE bridge's child down to the posix store, implements Xlator. Names
// follow the syscalls; errors are syscall.Errno, 0 meaning success. Unknown
// GFIDs get ESTALE, an unreachable child ENOTCONN.
//
// A translator embeds Base to forward what it does not override, or
// Unsupported when it has several children and must handle every op. The op
// table in ops.go is the single source of truth for the generic form (Fop)
// used by the protocol codec, the journal and tracing.
package xl

import (
	"context"
	"syscall"
)

// Xlator is implemented by every translator. All methods are safe for
// concurrent use.
type Xlator interface {
	Lookup(ctx context.Context, parent GFID, name string) (Attr, syscall.Errno)
	Getattr(ctx context.Context, ino GFID) (Attr, syscall.Errno)
	Setattr(ctx context.Context, ino GFID, in SetattrIn) (Attr, syscall.Errno)
	Access(ctx context.Context, ino GFID, mask uint32) syscall.Errno
	Readlink(ctx context.Context, ino GFID) (string, syscall.Errno)
	Mknod(ctx context.Context, parent GFID, name string, gfid GFID, mode uint32, rdev uint64) (Attr, syscall.Errno)
	Mkdir(ctx context.Context, parent GFID, name string, gfid GFID, mode uint32) (Attr, syscall.Errno)
	Symlink(ctx context.Context, parent GFID, name string, gfid GFID, target string) (Attr, syscall.Errno)
	Link(ctx context.Context, ino GFID, newParent GFID, newName string) (Attr, syscall.Errno)
	Unlink(ctx context.Context, parent GFID, name string) syscall.Errno
	Rmdir(ctx context.Context, parent GFID, name string) syscall.Errno
	Rename(ctx context.Context, oldParent GFID, oldName string, newParent GFID, newName string, flags uint32) syscall.Errno
	Create(ctx context.Context, parent GFID, name string, gfid GFID, flags, mode uint32) (Fd, Attr, syscall.Errno)
	Open(ctx context.Context, ino GFID, flags uint32) (Fd, syscall.Errno)
	// Read fills dst from off and returns the count; short only at EOF.
	Read(ctx context.Context, fd Fd, dst []byte, off int64) (int, syscall.Errno)
	Write(ctx context.Context, fd Fd, data []byte, off int64) (int, syscall.Errno)
	Truncate(ctx context.Context, ino GFID, size uint64) (Attr, syscall.Errno)
	// Fallocate takes fallocate(2) modes, including FALLOC_FL_PUNCH_HOLE.
	Fallocate(ctx context.Context, fd Fd, mode uint32, off, length int64) syscall.Errno
	// Lseek answers SEEK_DATA and SEEK_HOLE.
	Lseek(ctx context.Context, fd Fd, off int64, whence uint32) (int64, syscall.Errno)
	Flush(ctx context.Context, fd Fd) syscall.Errno
	Fsync(ctx context.Context, fd Fd, datasync bool) syscall.Errno
	Release(ctx context.Context, fd Fd) syscall.Errno
	Opendir(ctx context.Context, ino GFID) (Fd, syscall.Errno)
	// Readdir returns up to max entries after cookie off (0 = start), with
	// attributes; an empty result means the end.
	Readdir(ctx context.Context, fd Fd, off uint64, max int) ([]Dirent, syscall.Errno)
	Releasedir(ctx context.Context, fd Fd) syscall.Errno
	Statfs(ctx context.Context, ino GFID) (Statfs, syscall.Errno)
	Getxattr(ctx context.Context, ino GFID, name string) ([]byte, syscall.Errno)
	Setxattr(ctx context.Context, ino GFID, name string, value []byte, flags uint32) syscall.Errno
	Listxattr(ctx context.Context, ino GFID) ([]string, syscall.Errno)
	Removexattr(ctx context.Context, ino GFID, name string) syscall.Errno
	// Ipc is a translator-private call (journal reads, reconciliation,
	// heal). A translator answers its own ops and forwards the rest.
	Ipc(ctx context.Context, op IpcOp, in Xdata) (Xdata, syscall.Errno)
}

// Lifecycle is implemented by translators that own goroutines or files.
// Close releases them; it is called top-down when a graph is torn down.
type Lifecycle interface {
	Close() error
}
