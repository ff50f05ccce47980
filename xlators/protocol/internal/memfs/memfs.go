// Package memfs is an in-memory leaf xlator for the protocol's tests: a
// small but honest filesystem, plus Ipc ops that let a test see the
// caller's metadata and hold requests in flight.
package memfs

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Ipc ops answered by FS.
const (
	// IpcEcho returns its input.
	IpcEcho xl.IpcOp = "memfs.echo"
	// IpcWhoami returns the caller's xl.Call: uid, gid, pid, seq as
	// decimal, groups as comma-separated decimal, client raw, and the
	// call's xdata under "x.<key>".
	IpcWhoami xl.IpcOp = "memfs.whoami"
	// IpcBarrier blocks until in["n"] callers (decimal) wait at once, or
	// until the caller's ctx ends (EINTR).
	IpcBarrier xl.IpcOp = "memfs.barrier"
	// IpcBlock blocks until the caller's ctx ends, then answers EINTR.
	IpcBlock xl.IpcOp = "memfs.block"
)

type node struct {
	attr   xl.Attr
	data   []byte
	target string
	kids   map[string]xl.GFID
	xattrs map[string][]byte
}

// FS is the in-memory filesystem. The zero value is not usable; call New.
type FS struct {
	mu      sync.Mutex
	nodes   map[xl.GFID]*node
	nextFd  uint64
	waiting int
	arrived chan struct{} // closed and replaced whenever a barrier fills

	// Blocked gets a token for each request that parks in IpcBlock, so a
	// test knows when it is in flight; Unblocked gets one as each leaves.
	Blocked, Unblocked chan struct{}
}

var _ xl.Xlator = (*FS)(nil)

// New returns an empty filesystem with a root directory.
func New() *FS {
	fs := &FS{nodes: map[xl.GFID]*node{}, arrived: make(chan struct{}), Blocked: make(chan struct{}, 1024), Unblocked: make(chan struct{}, 1024)}
	fs.nodes[xl.RootGFID] = &node{
		attr: xl.Attr{GFID: xl.RootGFID, Mode: syscall.S_IFDIR | 0o755, Nlink: 2, Blksize: 4096},
		kids: map[string]xl.GFID{},
	}
	return fs
}

func (fs *FS) node(g xl.GFID) (*node, syscall.Errno) {
	n, ok := fs.nodes[g]
	if !ok {
		return nil, syscall.ESTALE
	}
	return n, 0
}

func (fs *FS) dir(g xl.GFID) (*node, syscall.Errno) {
	n, e := fs.node(g)
	if e == 0 && n.kids == nil {
		return nil, syscall.ENOTDIR
	}
	return n, e
}

func (fs *FS) Lookup(_ context.Context, parent xl.GFID, name string) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, e := fs.dir(parent)
	if e != 0 {
		return xl.Attr{}, e
	}
	g, ok := d.kids[name]
	if !ok {
		return xl.Attr{}, syscall.ENOENT
	}
	return fs.nodes[g].attr, 0
}

func (fs *FS) Getattr(_ context.Context, ino xl.GFID) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.node(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	return n.attr, 0
}

func (fs *FS) Setattr(_ context.Context, ino xl.GFID, in xl.SetattrIn) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.node(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	a := &n.attr
	if in.Valid&xl.SetMode != 0 {
		a.Mode = a.Mode&syscall.S_IFMT | in.Mode&^syscall.S_IFMT
	}
	if in.Valid&xl.SetUid != 0 {
		a.Uid = in.Uid
	}
	if in.Valid&xl.SetGid != 0 {
		a.Gid = in.Gid
	}
	if in.Valid&xl.SetSize != 0 {
		n.resize(in.Size)
	}
	if in.Valid&xl.SetAtime != 0 {
		a.Atime = in.Atime
	}
	if in.Valid&xl.SetMtime != 0 {
		a.Mtime = in.Mtime
	}
	return *a, 0
}

func (n *node) resize(size uint64) {
	if size <= uint64(len(n.data)) {
		n.data = n.data[:size]
	} else {
		n.data = append(n.data, make([]byte, size-uint64(len(n.data)))...)
	}
	n.attr.Size = size
	n.attr.Blocks = (size + 511) / 512
}

func (fs *FS) Access(_ context.Context, ino xl.GFID, _ uint32) syscall.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, e := fs.node(ino)
	return e
}

func (fs *FS) Readlink(_ context.Context, ino xl.GFID) (string, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.node(ino)
	if e != 0 {
		return "", e
	}
	if n.attr.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return "", syscall.EINVAL
	}
	return n.target, 0
}

// add creates a child; the caller holds mu.
func (fs *FS) add(parent xl.GFID, name string, gfid xl.GFID, mode uint32) (*node, syscall.Errno) {
	d, e := fs.dir(parent)
	if e != 0 {
		return nil, e
	}
	if _, ok := d.kids[name]; ok {
		return nil, syscall.EEXIST
	}
	if gfid.IsZero() {
		return nil, syscall.EINVAL
	}
	if _, ok := fs.nodes[gfid]; ok {
		return nil, syscall.EEXIST
	}
	n := &node{attr: xl.Attr{GFID: gfid, Mode: mode, Nlink: 1, Blksize: 4096}, xattrs: map[string][]byte{}}
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		n.kids = map[string]xl.GFID{}
		n.attr.Nlink = 2
		d.attr.Nlink++
	}
	fs.nodes[gfid] = n
	d.kids[name] = gfid
	return n, 0
}

func (fs *FS) Mknod(_ context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32, rdev uint64) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.add(parent, name, gfid, mode)
	if e != 0 {
		return xl.Attr{}, e
	}
	n.attr.Rdev = rdev
	return n.attr, 0
}

func (fs *FS) Mkdir(_ context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.add(parent, name, gfid, syscall.S_IFDIR|mode&0o7777)
	if e != 0 {
		return xl.Attr{}, e
	}
	return n.attr, 0
}

func (fs *FS) Symlink(_ context.Context, parent xl.GFID, name string, gfid xl.GFID, target string) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.add(parent, name, gfid, syscall.S_IFLNK|0o777)
	if e != 0 {
		return xl.Attr{}, e
	}
	n.target = target
	n.attr.Size = uint64(len(target))
	return n.attr, 0
}

func (fs *FS) Link(_ context.Context, ino xl.GFID, newParent xl.GFID, newName string) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.node(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	if n.kids != nil {
		return xl.Attr{}, syscall.EPERM
	}
	d, e := fs.dir(newParent)
	if e != 0 {
		return xl.Attr{}, e
	}
	if _, ok := d.kids[newName]; ok {
		return xl.Attr{}, syscall.EEXIST
	}
	d.kids[newName] = ino
	n.attr.Nlink++
	return n.attr, 0
}

func (fs *FS) remove(parent xl.GFID, name string, dir bool) syscall.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, e := fs.dir(parent)
	if e != 0 {
		return e
	}
	g, ok := d.kids[name]
	if !ok {
		return syscall.ENOENT
	}
	n := fs.nodes[g]
	switch {
	case dir && n.kids == nil:
		return syscall.ENOTDIR
	case !dir && n.kids != nil:
		return syscall.EISDIR
	case dir && len(n.kids) > 0:
		return syscall.ENOTEMPTY
	}
	delete(d.kids, name)
	if dir {
		d.attr.Nlink--
		delete(fs.nodes, g)
	} else if n.attr.Nlink--; n.attr.Nlink == 0 {
		delete(fs.nodes, g)
	}
	return 0
}

func (fs *FS) Unlink(_ context.Context, parent xl.GFID, name string) syscall.Errno {
	return fs.remove(parent, name, false)
}

func (fs *FS) Rmdir(_ context.Context, parent xl.GFID, name string) syscall.Errno {
	return fs.remove(parent, name, true)
}

func (fs *FS) Rename(_ context.Context, oldParent xl.GFID, oldName string, newParent xl.GFID, newName string, flags uint32) syscall.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	od, e := fs.dir(oldParent)
	if e != 0 {
		return e
	}
	nd, e := fs.dir(newParent)
	if e != 0 {
		return e
	}
	g, ok := od.kids[oldName]
	if !ok {
		return syscall.ENOENT
	}
	other, exists := nd.kids[newName]
	switch {
	case flags&xl.RenameExchange != 0:
		if !exists {
			return syscall.ENOENT
		}
		od.kids[oldName], nd.kids[newName] = other, g
		return 0
	case exists && flags&xl.RenameNoreplace != 0:
		return syscall.EEXIST
	case exists && fs.nodes[other].kids != nil:
		return syscall.EISDIR
	case exists:
		n := fs.nodes[other]
		if n.attr.Nlink--; n.attr.Nlink == 0 {
			delete(fs.nodes, other)
		}
	}
	delete(od.kids, oldName)
	nd.kids[newName] = g
	return 0
}

func (fs *FS) newFd(g xl.GFID, flags uint32) xl.Fd {
	fs.nextFd++
	return xl.Fd{GFID: g, H: fs.nextFd, Flags: flags}
}

func (fs *FS) Create(_ context.Context, parent xl.GFID, name string, gfid xl.GFID, flags, mode uint32) (xl.Fd, xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.add(parent, name, gfid, syscall.S_IFREG|mode&0o7777)
	if e != 0 {
		return xl.Fd{}, xl.Attr{}, e
	}
	return fs.newFd(gfid, flags), n.attr, 0
}

func (fs *FS) Open(_ context.Context, ino xl.GFID, flags uint32) (xl.Fd, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.node(ino)
	if e != 0 {
		return xl.Fd{}, e
	}
	if n.kids != nil && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return xl.Fd{}, syscall.EISDIR
	}
	if flags&syscall.O_TRUNC != 0 {
		n.resize(0)
	}
	return fs.newFd(ino, flags), 0
}

func (fs *FS) file(fd xl.Fd) (*node, syscall.Errno) {
	n, e := fs.node(fd.GFID)
	if e == 0 && n.kids != nil {
		return nil, syscall.EISDIR
	}
	return n, e
}

func (fs *FS) Read(_ context.Context, fd xl.Fd, dst []byte, off int64) (int, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.file(fd)
	if e != 0 {
		return 0, e
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if off >= int64(len(n.data)) {
		return 0, 0
	}
	return copy(dst, n.data[off:]), 0
}

func (fs *FS) Write(_ context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.file(fd)
	if e != 0 {
		return 0, e
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if end := uint64(off) + uint64(len(data)); end > uint64(len(n.data)) {
		n.resize(end)
	}
	return copy(n.data[off:], data), 0
}

func (fs *FS) Truncate(_ context.Context, ino xl.GFID, size uint64) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.node(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	if n.kids != nil {
		return xl.Attr{}, syscall.EISDIR
	}
	n.resize(size)
	return n.attr, 0
}

func (fs *FS) Fallocate(_ context.Context, fd xl.Fd, mode uint32, off, length int64) syscall.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.file(fd)
	if e != 0 {
		return e
	}
	if off < 0 || length <= 0 {
		return syscall.EINVAL
	}
	if mode != 0 {
		return syscall.EOPNOTSUPP
	}
	if end := uint64(off + length); end > uint64(len(n.data)) {
		n.resize(end)
	}
	return 0
}

// Lseek treats every file as one data extent.
func (fs *FS) Lseek(_ context.Context, fd xl.Fd, off int64, whence uint32) (int64, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.file(fd)
	if e != 0 {
		return 0, e
	}
	if off < 0 || off >= int64(len(n.data)) {
		return 0, syscall.ENXIO
	}
	const seekData, seekHole = 3, 4
	switch whence {
	case seekData:
		return off, 0
	case seekHole:
		return int64(len(n.data)), 0
	}
	return 0, syscall.EINVAL
}

func (fs *FS) fdOp(fd xl.Fd) syscall.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, e := fs.node(fd.GFID)
	return e
}

func (fs *FS) Flush(_ context.Context, fd xl.Fd) syscall.Errno         { return fs.fdOp(fd) }
func (fs *FS) Fsync(_ context.Context, fd xl.Fd, _ bool) syscall.Errno { return fs.fdOp(fd) }
func (fs *FS) Release(_ context.Context, fd xl.Fd) syscall.Errno       { return fs.fdOp(fd) }
func (fs *FS) Releasedir(_ context.Context, fd xl.Fd) syscall.Errno    { return fs.fdOp(fd) }
func (fs *FS) Statfs(_ context.Context, ino xl.GFID) (xl.Statfs, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if _, e := fs.node(ino); e != 0 {
		return xl.Statfs{}, e
	}
	return xl.Statfs{Blocks: 1 << 20, Bfree: 1 << 19, Bavail: 1 << 19, Files: 1 << 16, Ffree: 1<<16 - uint64(len(fs.nodes)), Bsize: 4096, Frsize: 4096, NameLen: 255}, 0
}

func (fs *FS) Opendir(_ context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if _, e := fs.dir(ino); e != 0 {
		return xl.Fd{}, e
	}
	return fs.newFd(ino, syscall.O_RDONLY|syscall.O_DIRECTORY), 0
}

// Readdir lists entries in name order; an entry's cookie is its position.
func (fs *FS) Readdir(_ context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, e := fs.dir(fd.GFID)
	if e != 0 {
		return nil, e
	}
	names := make([]string, 0, len(d.kids))
	for name := range d.kids {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []xl.Dirent
	for i := off; i < uint64(len(names)) && len(out) < max; i++ {
		out = append(out, xl.Dirent{Name: names[i], Off: i + 1, Attr: fs.nodes[d.kids[names[i]]].attr})
	}
	return out, 0
}

func (fs *FS) Getxattr(_ context.Context, ino xl.GFID, name string) ([]byte, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.node(ino)
	if e != 0 {
		return nil, e
	}
	v, ok := n.xattrs[name]
	if !ok {
		return nil, syscall.ENODATA
	}
	return slices.Clone(v), 0
}

func (fs *FS) Setxattr(_ context.Context, ino xl.GFID, name string, value []byte, flags uint32) syscall.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.node(ino)
	if e != 0 {
		return e
	}
	const xattrCreate, xattrReplace = 1, 2
	_, exists := n.xattrs[name]
	switch {
	case flags&xattrCreate != 0 && exists:
		return syscall.EEXIST
	case flags&xattrReplace != 0 && !exists:
		return syscall.ENODATA
	}
	if n.xattrs == nil {
		n.xattrs = map[string][]byte{}
	}
	n.xattrs[name] = append([]byte{}, value...) // the caller's buffer is reused
	return 0
}

func (fs *FS) Listxattr(_ context.Context, ino xl.GFID) ([]string, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.node(ino)
	if e != 0 {
		return nil, e
	}
	names := []string{}
	for k := range n.xattrs {
		names = append(names, k)
	}
	slices.Sort(names)
	return names, 0
}

func (fs *FS) Removexattr(_ context.Context, ino xl.GFID, name string) syscall.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.node(ino)
	if e != 0 {
		return e
	}
	if _, ok := n.xattrs[name]; !ok {
		return syscall.ENODATA
	}
	delete(n.xattrs, name)
	return 0
}

func (fs *FS) Ipc(ctx context.Context, op xl.IpcOp, in xl.Xdata) (xl.Xdata, syscall.Errno) {
	switch op {
	case IpcEcho:
		return in, 0
	case IpcWhoami:
		c := xl.CallFrom(ctx)
		out := xl.Xdata{
			"uid":    []byte(strconv.FormatUint(uint64(c.Uid), 10)),
			"gid":    []byte(strconv.FormatUint(uint64(c.Gid), 10)),
			"pid":    []byte(strconv.FormatUint(uint64(c.Pid), 10)),
			"seq":    []byte(strconv.FormatUint(c.Seq, 10)),
			"client": slices.Clone(c.Client[:]),
		}
		var groups []byte
		for i, g := range c.Groups {
			if i > 0 {
				groups = append(groups, ',')
			}
			groups = strconv.AppendUint(groups, uint64(g), 10)
		}
		out["groups"] = groups
		for k, v := range c.Xdata {
			out["x."+k] = v
		}
		return out, 0
	case IpcBarrier:
		n, err := strconv.Atoi(string(in["n"]))
		if err != nil || n <= 0 {
			return nil, syscall.EINVAL
		}
		return nil, fs.barrier(ctx, n)
	case IpcBlock:
		fs.Blocked <- struct{}{}
		<-ctx.Done()
		fs.Unblocked <- struct{}{}
		return nil, syscall.EINTR
	}
	return nil, syscall.ENOTSUP
}

func (fs *FS) barrier(ctx context.Context, n int) syscall.Errno {
	fs.mu.Lock()
	fs.waiting++
	ch := fs.arrived
	if fs.waiting >= n {
		fs.waiting = 0
		close(fs.arrived)
		fs.arrived = make(chan struct{})
	}
	fs.mu.Unlock()
	select {
	case <-ch:
		return 0
	case <-ctx.Done():
		fs.mu.Lock()
		if fs.arrived == ch {
			fs.waiting--
		}
		fs.mu.Unlock()
		return syscall.EINTR
	}
}
