package access

import (
	"context"
	"slices"
	"sync"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// memLeaf is a small in-memory store that, like the posix store, does no
// permission checks of its own and gives new objects the caller's
// identity. It holds what the access tests need, nothing more.
type memLeaf struct {
	xl.Unsupported
	mu     sync.Mutex
	nodes  map[xl.GFID]*memNode
	nextFd uint64
}

type memNode struct {
	attr   xl.Attr
	kids   map[string]xl.GFID
	xattrs map[string][]byte
	data   []byte
}

func newMemLeaf() *memLeaf {
	m := &memLeaf{nodes: map[xl.GFID]*memNode{}}
	m.nodes[xl.RootGFID] = &memNode{
		attr: xl.Attr{GFID: xl.RootGFID, Mode: syscall.S_IFDIR | 0o755, Nlink: 2},
		kids: map[string]xl.GFID{},
	}
	return m
}

func (m *memLeaf) node(g xl.GFID) (*memNode, syscall.Errno) {
	n, ok := m.nodes[g]
	if !ok {
		return nil, syscall.ESTALE
	}
	return n, 0
}

func (m *memLeaf) dir(g xl.GFID) (*memNode, syscall.Errno) {
	n, errno := m.node(g)
	if errno == 0 && n.kids == nil {
		errno = syscall.ENOTDIR
	}
	return n, errno
}

func (m *memLeaf) Lookup(_ context.Context, parent xl.GFID, name string) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, errno := m.dir(parent)
	if errno != 0 {
		return xl.Attr{}, errno
	}
	g, ok := d.kids[name]
	if !ok {
		return xl.Attr{}, syscall.ENOENT
	}
	return m.nodes[g].attr, 0
}

func (m *memLeaf) Getattr(_ context.Context, ino xl.GFID) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, errno := m.node(ino)
	if errno != 0 {
		return xl.Attr{}, errno
	}
	return n.attr, 0
}

func (m *memLeaf) Setattr(_ context.Context, ino xl.GFID, in xl.SetattrIn) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, errno := m.node(ino)
	if errno != 0 {
		return xl.Attr{}, errno
	}
	if in.Valid&xl.SetMode != 0 {
		n.attr.Mode = n.attr.Mode&syscall.S_IFMT | in.Mode&0o7777
	}
	if in.Valid&xl.SetUid != 0 {
		n.attr.Uid = in.Uid
	}
	if in.Valid&xl.SetGid != 0 {
		n.attr.Gid = in.Gid
	}
	if in.Valid&xl.SetSize != 0 {
		n.data = slices.Grow(n.data, int(in.Size))[:in.Size]
		n.attr.Size = in.Size
	}
	if in.Valid&xl.SetMtime != 0 {
		n.attr.Mtime = in.Mtime
	}
	if in.Valid&xl.SetAtime != 0 {
		n.attr.Atime = in.Atime
	}
	return n.attr, 0
}

func (m *memLeaf) add(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32) (*memNode, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, errno := m.dir(parent)
	if errno != 0 {
		return nil, errno
	}
	if _, ok := d.kids[name]; ok {
		return nil, syscall.EEXIST
	}
	c := xl.CallFrom(ctx)
	n := &memNode{attr: xl.Attr{GFID: gfid, Mode: mode, Nlink: 1, Uid: c.Uid, Gid: c.Gid}, xattrs: map[string][]byte{}}
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		n.kids = map[string]xl.GFID{}
	}
	m.nodes[gfid] = n
	d.kids[name] = gfid
	return n, 0
}

func (m *memLeaf) Mknod(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32, _ uint64) (xl.Attr, syscall.Errno) {
	n, errno := m.add(ctx, parent, name, gfid, mode)
	if errno != 0 {
		return xl.Attr{}, errno
	}
	return n.attr, 0
}

func (m *memLeaf) Mkdir(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32) (xl.Attr, syscall.Errno) {
	return m.Mknod(ctx, parent, name, gfid, syscall.S_IFDIR|mode, 0)
}

func (m *memLeaf) Symlink(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, _ string) (xl.Attr, syscall.Errno) {
	return m.Mknod(ctx, parent, name, gfid, syscall.S_IFLNK|0o777, 0)
}

func (m *memLeaf) Create(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, flags, mode uint32) (xl.Fd, xl.Attr, syscall.Errno) {
	if a, errno := m.Lookup(ctx, parent, name); errno == 0 && flags&syscall.O_EXCL == 0 {
		fd, errno := m.Open(ctx, a.GFID, flags)
		return fd, a, errno
	}
	a, errno := m.Mknod(ctx, parent, name, gfid, syscall.S_IFREG|mode, 0)
	if errno != 0 {
		return xl.Fd{}, xl.Attr{}, errno
	}
	fd, errno := m.Open(ctx, gfid, flags)
	return fd, a, errno
}

func (m *memLeaf) Link(_ context.Context, ino xl.GFID, newParent xl.GFID, newName string) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, errno := m.dir(newParent)
	if errno != 0 {
		return xl.Attr{}, errno
	}
	n, errno := m.node(ino)
	if errno != 0 {
		return xl.Attr{}, errno
	}
	if _, ok := d.kids[newName]; ok {
		return xl.Attr{}, syscall.EEXIST
	}
	d.kids[newName] = ino
	n.attr.Nlink++
	return n.attr, 0
}

func (m *memLeaf) remove(parent xl.GFID, name string, wantDir bool) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, errno := m.dir(parent)
	if errno != 0 {
		return errno
	}
	g, ok := d.kids[name]
	if !ok {
		return syscall.ENOENT
	}
	n := m.nodes[g]
	switch isDir := n.kids != nil; {
	case isDir && !wantDir:
		return syscall.EISDIR
	case !isDir && wantDir:
		return syscall.ENOTDIR
	case isDir && len(n.kids) > 0:
		return syscall.ENOTEMPTY
	}
	delete(d.kids, name)
	return 0
}

func (m *memLeaf) Unlink(_ context.Context, parent xl.GFID, name string) syscall.Errno {
	return m.remove(parent, name, false)
}

func (m *memLeaf) Rmdir(_ context.Context, parent xl.GFID, name string) syscall.Errno {
	return m.remove(parent, name, true)
}

func (m *memLeaf) Rename(_ context.Context, oldParent xl.GFID, oldName string, newParent xl.GFID, newName string, _ uint32) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	od, errno := m.dir(oldParent)
	if errno != 0 {
		return errno
	}
	nd, errno := m.dir(newParent)
	if errno != 0 {
		return errno
	}
	g, ok := od.kids[oldName]
	if !ok {
		return syscall.ENOENT
	}
	delete(od.kids, oldName)
	nd.kids[newName] = g
	return 0
}

func (m *memLeaf) Open(_ context.Context, ino xl.GFID, flags uint32) (xl.Fd, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, errno := m.node(ino); errno != 0 {
		return xl.Fd{}, errno
	}
	m.nextFd++
	return xl.Fd{GFID: ino, H: m.nextFd, Flags: flags}, 0
}

func (m *memLeaf) Opendir(ctx context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	return m.Open(ctx, ino, syscall.O_RDONLY)
}

func (m *memLeaf) Write(_ context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, errno := m.node(fd.GFID)
	if errno != 0 {
		return 0, errno
	}
	if end := int(off) + len(data); end > len(n.data) {
		n.data = slices.Grow(n.data, end-len(n.data))[:end]
	}
	copy(n.data[off:], data)
	n.attr.Size = uint64(len(n.data))
	return len(data), 0
}

func (m *memLeaf) Fallocate(context.Context, xl.Fd, uint32, int64, int64) syscall.Errno { return 0 }

func (m *memLeaf) Release(context.Context, xl.Fd) syscall.Errno { return 0 }

func (m *memLeaf) Truncate(ctx context.Context, ino xl.GFID, size uint64) (xl.Attr, syscall.Errno) {
	return m.Setattr(ctx, ino, xl.SetattrIn{Valid: xl.SetSize, Size: size})
}

func (m *memLeaf) Getxattr(_ context.Context, ino xl.GFID, name string) ([]byte, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, errno := m.node(ino)
	if errno != 0 {
		return nil, errno
	}
	v, ok := n.xattrs[name]
	if !ok {
		return nil, syscall.ENODATA
	}
	return v, 0
}

func (m *memLeaf) Setxattr(_ context.Context, ino xl.GFID, name string, value []byte, _ uint32) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, errno := m.node(ino)
	if errno != 0 {
		return errno
	}
	n.xattrs[name] = slices.Clone(value)
	return 0
}

func (m *memLeaf) Removexattr(_ context.Context, ino xl.GFID, name string) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, errno := m.node(ino)
	if errno != 0 {
		return errno
	}
	if _, ok := n.xattrs[name]; !ok {
		return syscall.ENODATA
	}
	delete(n.xattrs, name)
	return 0
}

func (m *memLeaf) Listxattr(_ context.Context, ino xl.GFID) ([]string, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, errno := m.node(ino)
	if errno != 0 {
		return nil, errno
	}
	var names []string
	for k := range n.xattrs {
		names = append(names, k)
	}
	slices.Sort(names)
	return names, 0
}
