package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// openLoopbackR3 mounts loopback-np over base/data and keeps two more
// copies of every file written through it, at the same relative paths
// under base/copy1 and base/copy2 on the same disk. It is the ceiling for
// a three-way replicated FUSE file system here: a write reaches all three
// copies' page caches before it is answered, an fsync returns once the
// mount's own copy and one other are on disk (a quorum of two), and there
// is no network, journal or ordering between them to pay for. It is a
// benchmark target, not a file system: the mount starts empty, so every
// file is created through it, and links, symlinks, device nodes and
// extended attributes have no copies.
func openLoopbackR3(workDir string) (_ *target, err error) {
	base, err := os.MkdirTemp(workDir, "gluon-bench-loopback-r3-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(base)
		}
	}()
	rs := &replicas{dirs: []string{filepath.Join(base, "copy1"), filepath.Join(base, "copy2")}}
	for _, d := range rs.dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	node := func(r *fs.LoopbackRoot) fs.InodeEmbedder {
		return &replicaNode{LoopbackNode: fs.LoopbackNode{RootData: r}, rs: rs}
	}
	return mountLoopback(base, node, rs.syncs.Wait)
}

// replicas are the copy directories of a loopback-r3 target.
type replicas struct {
	dirs []string
	// syncs counts copies' fdatasyncs still running after their FSYNC
	// was answered; the target's close waits for them.
	syncs sync.WaitGroup
}

// path is rel's copy in copy directory i.
func (rs *replicas) path(i int, rel string) string { return filepath.Join(rs.dirs[i], rel) }

// open opens rel's copy in directory i for writing, creating it and its
// parent directories as needed; flags may add O_TRUNC.
func (rs *replicas) open(i int, rel string, flags int) (*os.File, error) {
	p := rs.path(i, rel)
	flags |= os.O_RDWR | os.O_CREATE
	f, err := os.OpenFile(p, flags, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(p, flags, 0o644)
	}
	return f, err
}

// openAll opens every copy of rel; on failure it closes what it opened.
func (rs *replicas) openAll(rel string, flags int) ([]*os.File, error) {
	files := make([]*os.File, 0, len(rs.dirs))
	for i := range rs.dirs {
		f, err := rs.open(i, rel, flags)
		if err != nil {
			closeAll(files)
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func closeAll(files []*os.File) error {
	var first error
	for _, f := range files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// each runs op on every copy of rel. A missing copy is no error: a file
// never opened for writing has none.
func (rs *replicas) each(rel string, op func(path string) error) syscall.Errno {
	for i := range rs.dirs {
		if err := op(rs.path(i, rel)); err != nil && !errors.Is(err, unix.ENOENT) {
			return fs.ToErrno(err)
		}
	}
	return 0
}

// replicaNode is a loopback-np node that keeps the copies of its files in
// step with the mount's backing directory.
type replicaNode struct {
	fs.LoopbackNode
	rs *replicas
}

// rel is the path of name in this directory (of the node itself, for
// ""), relative to the mount's root.
func (n *replicaNode) rel(name string) string {
	return filepath.Join(n.EmbeddedInode().Path(n.Root()), name)
}

// handle wraps a new loopback handle of rel: with copies if it may
// write, as loopback-np's otherwise.
func (n *replicaNode) handle(ctx context.Context, fh fs.FileHandle, rel string, flags uint32) (fs.FileHandle, syscall.Errno) {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok || flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		return daemonHandle(fh), 0
	}
	copies, err := n.rs.openAll(rel, int(flags&syscall.O_TRUNC))
	if err != nil {
		lf.Release(ctx)
		return nil, fs.ToErrno(err)
	}
	return &replicaFile{LoopbackFile: lf, rs: n.rs, copies: copies}, 0
}

func (n *replicaNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, e := n.LoopbackNode.Open(ctx, flags)
	if e != 0 {
		return nil, 0, e
	}
	fh, e = n.handle(ctx, fh, n.rel(""), flags)
	return fh, fl, e
}

func (n *replicaNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, e := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if e != 0 {
		return nil, nil, 0, e
	}
	fh, e = n.handle(ctx, fh, n.rel(name), flags)
	if e != 0 {
		return nil, nil, 0, e
	}
	return in, fh, fl, 0
}

// Setattr truncates the copies with the file.
func (n *replicaNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := n.LoopbackNode.Setattr(ctx, f, in, out); e != 0 {
		return e
	}
	size, ok := in.GetSize()
	if !ok {
		return 0
	}
	truncate := func(c *os.File) error { return c.Truncate(int64(size)) }
	if rf, ok := f.(*replicaFile); ok {
		return eachCopy(rf.copies, truncate)
	}
	copies, err := n.rs.openAll(n.rel(""), 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	e := eachCopy(copies, truncate)
	if err := closeAll(copies); err != nil && e == 0 {
		e = fs.ToErrno(err)
	}
	return e
}

func (n *replicaNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if e := n.LoopbackNode.Unlink(ctx, name); e != 0 {
		return e
	}
	return n.rs.each(n.rel(name), unix.Unlink)
}

func (n *replicaNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if e := n.LoopbackNode.Rmdir(ctx, name); e != 0 {
		return e
	}
	return n.rs.each(n.rel(name), unix.Rmdir)
}

func (n *replicaNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if e := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags); e != 0 {
		return e
	}
	np, ok := newParent.(*replicaNode)
	if !ok {
		return syscall.EXDEV
	}
	from, to := n.rel(name), np.rel(newName)
	for i := range n.rs.dirs {
		src, dst := n.rs.path(i, from), n.rs.path(i, to)
		err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, uint(flags))
		if errors.Is(err, unix.ENOENT) {
			if _, serr := os.Lstat(src); serr == nil {
				// The destination's directory has no copies yet.
				if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
					err = unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, uint(flags))
				}
			} else if flags&unix.RENAME_EXCHANGE == 0 {
				// The source has no copy, so neither may what it replaced.
				err = os.RemoveAll(dst)
			} else {
				err = nil
			}
		}
		if err != nil {
			return fs.ToErrno(err)
		}
	}
	return 0
}

// replicaFile is a file opened for writing on a loopback-r3 mount: the
// loopback handle, without passthrough, and its open copies.
type replicaFile struct {
	*fs.LoopbackFile
	rs     *replicas
	copies []*os.File
	// syncs counts this file's copies' fdatasyncs still running, so
	// that Release closes no fd one of them uses.
	syncs sync.WaitGroup
}

func (*replicaFile) PassthroughFd() (int, bool) { return -1, false }

// eachCopy runs op on every copy.
func eachCopy(copies []*os.File, op func(*os.File) error) syscall.Errno {
	for _, c := range copies {
		if err := op(c); err != nil {
			return fs.ToErrno(err)
		}
	}
	return 0
}

// Write writes the copies' page caches, then the file's.
func (f *replicaFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if e := eachCopy(f.copies, func(c *os.File) error { _, err := c.WriteAt(data, off); return err }); e != 0 {
		return 0, e
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

// Fsync syncs the file and its copies at once and answers when the file
// and one copy are on disk: a quorum of two of three. The other copy's
// sync finishes in the background.
func (f *replicaFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	fd, ok := f.LoopbackFile.PassthroughFd()
	if !ok {
		return syscall.EBADF
	}
	done := make(chan error, len(f.copies))
	f.syncs.Add(len(f.copies))
	f.rs.syncs.Add(len(f.copies))
	for _, c := range f.copies {
		go func() {
			defer f.rs.syncs.Done()
			defer f.syncs.Done()
			done <- unix.Fdatasync(int(c.Fd()))
		}()
	}
	if err := unix.Fdatasync(fd); err != nil {
		return fs.ToErrno(err)
	}
	var err error
	for range f.copies {
		if err = <-done; err == nil {
			break
		}
	}
	return fs.ToErrno(err)
}

// Allocate keeps the copies' sizes with the file's (fallocate without
// KEEP_SIZE extends it).
func (f *replicaFile) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if e := eachCopy(f.copies, func(c *os.File) error { return unix.Fallocate(int(c.Fd()), mode, int64(off), int64(size)) }); e != 0 {
		return e
	}
	return f.LoopbackFile.Allocate(ctx, off, size, mode)
}

// Release closes the copies once their syncs have finished.
func (f *replicaFile) Release(ctx context.Context) syscall.Errno {
	e := f.LoopbackFile.Release(ctx)
	f.syncs.Wait()
	if err := closeAll(f.copies); err != nil && e == 0 {
		e = fs.ToErrno(err)
	}
	return e
}
