package fuse

import (
	"context"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// memFS is a small in-memory leaf translator, enough for POSIX tests of
// the bridge without a brick. Objects live by GFID and are never freed, so
// unlinked files stay reachable through open fds (nlink 0).
type memFS struct {
	mu     sync.Mutex
	nodes  map[xl.GFID]*memNode
	nextH  uint64
	dirFds map[uint64][]xl.Dirent // listing snapshot per open directory
}

type memNode struct {
	attr     xl.Attr
	data     []byte
	target   string
	xattrs   map[string][]byte
	children map[string]xl.GFID
}

var _ xl.Xlator = (*memFS)(nil)

func newMemFS() *memFS {
	m := &memFS{nodes: map[xl.GFID]*memNode{}, dirFds: map[uint64][]xl.Dirent{}}
	m.nodes[xl.RootGFID] = m.newNode(context.Background(), xl.RootGFID, syscall.S_IFDIR|0o777)
	m.nodes[xl.RootGFID].attr.Nlink = 2
	return m
}

func now() xl.Timespec { return xl.TimespecOf(time.Now()) }

func (m *memFS) newNode(ctx context.Context, g xl.GFID, mode uint32) *memNode {
	c := xl.CallFrom(ctx)
	t := now()
	n := &memNode{
		attr: xl.Attr{GFID: g, Mode: mode, Nlink: 1, Uid: c.Uid, Gid: c.Gid,
			Blksize: 4096, Atime: t, Mtime: t, Ctime: t},
		xattrs: map[string][]byte{},
	}
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		n.children = map[string]xl.GFID{}
		n.attr.Nlink = 2
	}
	return n
}

func (n *memNode) isDir() bool { return n.attr.IsDir() }

func (n *memNode) setSize(sz uint64) {
	if sz < uint64(len(n.data)) {
		n.data = n.data[:sz]
	} else {
		n.data = append(n.data, make([]byte, sz-uint64(len(n.data)))...)
	}
	n.attr.Size = sz
	n.attr.Blocks = (sz + 511) / 512
}

func (m *memFS) get(g xl.GFID) (*memNode, syscall.Errno) {
	n, ok := m.nodes[g]
	if !ok {
		return nil, syscall.ESTALE
	}
	return n, 0
}

func (m *memFS) dir(g xl.GFID) (*memNode, syscall.Errno) {
	n, e := m.get(g)
	if e == 0 && !n.isDir() {
		e = syscall.ENOTDIR
	}
	return n, e
}

func (m *memFS) Lookup(_ context.Context, parent xl.GFID, name string) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, e := m.dir(parent)
	if e != 0 {
		return xl.Attr{}, e
	}
	g, ok := p.children[name]
	if !ok {
		return xl.Attr{}, syscall.ENOENT
	}
	return m.nodes[g].attr, 0
}

func (m *memFS) Getattr(_ context.Context, ino xl.GFID) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	return n.attr, 0
}

func (m *memFS) Setattr(_ context.Context, ino xl.GFID, in xl.SetattrIn) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	t := now()
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
		if n.isDir() {
			return xl.Attr{}, syscall.EISDIR
		}
		n.setSize(in.Size)
		n.attr.Mtime = t
	}
	switch {
	case in.Valid&xl.SetAtimeNow != 0:
		n.attr.Atime = t
	case in.Valid&xl.SetAtime != 0:
		n.attr.Atime = in.Atime
	}
	switch {
	case in.Valid&xl.SetMtimeNow != 0:
		n.attr.Mtime = t
	case in.Valid&xl.SetMtime != 0:
		n.attr.Mtime = in.Mtime
	}
	n.attr.Ctime = t
	return n.attr, 0
}

func (m *memFS) Access(context.Context, xl.GFID, uint32) syscall.Errno { return 0 }

func (m *memFS) Readlink(_ context.Context, ino xl.GFID) (string, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(ino)
	if e != 0 {
		return "", e
	}
	if n.attr.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return "", syscall.EINVAL
	}
	return n.target, 0
}

// add creates name in parent; the caller holds mu.
func (m *memFS) add(ctx context.Context, parent xl.GFID, name string, g xl.GFID, mode uint32) (*memNode, syscall.Errno) {
	p, e := m.dir(parent)
	if e != 0 {
		return nil, e
	}
	if _, ok := p.children[name]; ok {
		return nil, syscall.EEXIST
	}
	if _, ok := m.nodes[g]; ok || g.IsZero() {
		return nil, syscall.EINVAL
	}
	n := m.newNode(ctx, g, mode)
	m.nodes[g] = n
	p.children[name] = g
	if n.isDir() {
		p.attr.Nlink++
	}
	p.attr.Mtime, p.attr.Ctime = n.attr.Mtime, n.attr.Mtime
	return n, 0
}

func (m *memFS) Mknod(ctx context.Context, parent xl.GFID, name string, g xl.GFID, mode uint32, rdev uint64) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.add(ctx, parent, name, g, mode)
	if e != 0 {
		return xl.Attr{}, e
	}
	n.attr.Rdev = rdev
	return n.attr, 0
}

func (m *memFS) Mkdir(ctx context.Context, parent xl.GFID, name string, g xl.GFID, mode uint32) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.add(ctx, parent, name, g, syscall.S_IFDIR|mode&0o7777)
	if e != 0 {
		return xl.Attr{}, e
	}
	return n.attr, 0
}

func (m *memFS) Symlink(ctx context.Context, parent xl.GFID, name string, g xl.GFID, target string) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.add(ctx, parent, name, g, syscall.S_IFLNK|0o777)
	if e != 0 {
		return xl.Attr{}, e
	}
	n.target = target
	n.setSize(0)
	n.attr.Size = uint64(len(target))
	return n.attr, 0
}

func (m *memFS) Link(_ context.Context, ino, newParent xl.GFID, newName string) (xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	if n.isDir() {
		return xl.Attr{}, syscall.EPERM
	}
	p, e := m.dir(newParent)
	if e != 0 {
		return xl.Attr{}, e
	}
	if _, ok := p.children[newName]; ok {
		return xl.Attr{}, syscall.EEXIST
	}
	p.children[newName] = ino
	n.attr.Nlink++
	n.attr.Ctime = now()
	return n.attr, 0
}

// remove drops name from parent; the caller holds mu.
func (m *memFS) remove(parent xl.GFID, name string, wantDir bool) syscall.Errno {
	p, e := m.dir(parent)
	if e != 0 {
		return e
	}
	g, ok := p.children[name]
	if !ok {
		return syscall.ENOENT
	}
	n := m.nodes[g]
	switch {
	case wantDir && !n.isDir():
		return syscall.ENOTDIR
	case !wantDir && n.isDir():
		return syscall.EISDIR
	case wantDir && len(n.children) > 0:
		return syscall.ENOTEMPTY
	}
	delete(p.children, name)
	t := now()
	if n.isDir() {
		p.attr.Nlink--
		n.attr.Nlink = 0
	} else {
		n.attr.Nlink--
	}
	n.attr.Ctime = t
	p.attr.Mtime, p.attr.Ctime = t, t
	return 0
}

func (m *memFS) Unlink(_ context.Context, parent xl.GFID, name string) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.remove(parent, name, false)
}

func (m *memFS) Rmdir(_ context.Context, parent xl.GFID, name string) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.remove(parent, name, true)
}

func (m *memFS) Rename(_ context.Context, oldParent xl.GFID, oldName string, newParent xl.GFID, newName string, flags uint32) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	op, e := m.dir(oldParent)
	if e != 0 {
		return e
	}
	np, e := m.dir(newParent)
	if e != 0 {
		return e
	}
	src, ok := op.children[oldName]
	if !ok {
		return syscall.ENOENT
	}
	dst, exists := np.children[newName]
	switch {
	case flags&xl.RenameExchange != 0:
		if !exists {
			return syscall.ENOENT
		}
		op.children[oldName], np.children[newName] = dst, src
		return 0
	case exists && flags&xl.RenameNoreplace != 0:
		return syscall.EEXIST
	case exists && dst == src:
		return 0
	case exists:
		sn, dn := m.nodes[src], m.nodes[dst]
		if sn.isDir() != dn.isDir() {
			if dn.isDir() {
				return syscall.EISDIR
			}
			return syscall.ENOTDIR
		}
		if e := m.remove(newParent, newName, dn.isDir()); e != 0 {
			return e
		}
	}
	delete(op.children, oldName)
	np.children[newName] = src
	if n := m.nodes[src]; n.isDir() {
		op.attr.Nlink--
		np.attr.Nlink++
	}
	t := now()
	m.nodes[src].attr.Ctime = t
	op.attr.Mtime, op.attr.Ctime, np.attr.Mtime, np.attr.Ctime = t, t, t, t
	return 0
}

func (m *memFS) openLocked(n *memNode, flags uint32) xl.Fd {
	if flags&syscall.O_TRUNC != 0 {
		n.setSize(0)
	}
	m.nextH++
	return xl.Fd{GFID: n.attr.GFID, H: m.nextH, Flags: flags}
}

func (m *memFS) Create(ctx context.Context, parent xl.GFID, name string, g xl.GFID, flags, mode uint32) (xl.Fd, xl.Attr, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.add(ctx, parent, name, g, syscall.S_IFREG|mode&0o7777)
	if e == syscall.EEXIST && flags&syscall.O_EXCL == 0 {
		n, e = m.nodes[m.nodes[parent].children[name]], 0
	}
	if e != 0 {
		return xl.Fd{}, xl.Attr{}, e
	}
	return m.openLocked(n, flags), n.attr, 0
}

func (m *memFS) Open(_ context.Context, ino xl.GFID, flags uint32) (xl.Fd, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(ino)
	if e != 0 {
		return xl.Fd{}, e
	}
	return m.openLocked(n, flags), 0
}

func (m *memFS) Read(_ context.Context, fd xl.Fd, dst []byte, off int64) (int, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(fd.GFID)
	if e != 0 {
		return 0, e
	}
	if off >= int64(len(n.data)) {
		return 0, 0
	}
	return copy(dst, n.data[off:]), 0
}

func (m *memFS) Write(_ context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(fd.GFID)
	if e != 0 {
		return 0, e
	}
	if fd.Flags&syscall.O_APPEND != 0 {
		off = int64(len(n.data))
	}
	if end := uint64(off) + uint64(len(data)); end > n.attr.Size {
		n.setSize(end)
	}
	copy(n.data[off:], data)
	n.attr.Mtime = now()
	n.attr.Ctime = n.attr.Mtime
	return len(data), 0
}

func (m *memFS) Truncate(_ context.Context, ino xl.GFID, size uint64) (xl.Attr, syscall.Errno) {
	return m.Setattr(context.Background(), ino, xl.SetattrIn{Valid: xl.SetSize, Size: size})
}

func (m *memFS) Fallocate(_ context.Context, fd xl.Fd, mode uint32, off, length int64) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(fd.GFID)
	if e != 0 {
		return e
	}
	end := uint64(off + length)
	switch mode {
	case 0:
		if end > n.attr.Size {
			n.setSize(end)
		}
	case unix.FALLOC_FL_KEEP_SIZE:
	case unix.FALLOC_FL_KEEP_SIZE | unix.FALLOC_FL_PUNCH_HOLE:
		end = min(end, n.attr.Size)
		if uint64(off) < end {
			clear(n.data[off:end])
		}
	default:
		return syscall.EOPNOTSUPP
	}
	return 0
}

func (m *memFS) Lseek(_ context.Context, fd xl.Fd, off int64, whence uint32) (int64, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(fd.GFID)
	if e != 0 {
		return 0, e
	}
	size := int64(n.attr.Size)
	switch whence {
	case unix.SEEK_DATA:
		if off >= size {
			return 0, syscall.ENXIO
		}
		return off, 0
	case unix.SEEK_HOLE:
		if off > size {
			return 0, syscall.ENXIO
		}
		return size, 0
	}
	return 0, syscall.EINVAL
}

func (m *memFS) Flush(context.Context, xl.Fd) syscall.Errno       { return 0 }
func (m *memFS) Fsync(context.Context, xl.Fd, bool) syscall.Errno { return 0 }
func (m *memFS) Release(context.Context, xl.Fd) syscall.Errno     { return 0 }

func (m *memFS) Opendir(_ context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, e := m.dir(ino)
	if e != 0 {
		return xl.Fd{}, e
	}
	names := make([]string, 0, len(d.children))
	for nm := range d.children {
		names = append(names, nm)
	}
	sort.Strings(names)
	list := make([]xl.Dirent, len(names))
	for i, nm := range names {
		list[i] = xl.Dirent{Name: nm, Off: uint64(i + 1), Attr: m.nodes[d.children[nm]].attr}
	}
	m.nextH++
	m.dirFds[m.nextH] = list
	return xl.Fd{GFID: ino, H: m.nextH}, 0
}

func (m *memFS) Readdir(_ context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	list, ok := m.dirFds[fd.H]
	if !ok {
		return nil, syscall.EBADF
	}
	if off >= uint64(len(list)) {
		return nil, 0
	}
	list = list[off:]
	return list[:min(max, len(list))], 0
}

func (m *memFS) Releasedir(_ context.Context, fd xl.Fd) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.dirFds, fd.H)
	return 0
}

func (m *memFS) Statfs(context.Context, xl.GFID) (xl.Statfs, syscall.Errno) {
	return xl.Statfs{Blocks: 1 << 20, Bfree: 1 << 19, Bavail: 1 << 19, Files: 1 << 20, Ffree: 1 << 19,
		Bsize: 4096, Frsize: 4096, NameLen: 255}, 0
}

func (m *memFS) Getxattr(_ context.Context, ino xl.GFID, name string) ([]byte, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(ino)
	if e != 0 {
		return nil, e
	}
	v, ok := n.xattrs[name]
	if !ok {
		return nil, syscall.ENODATA
	}
	return append([]byte(nil), v...), 0
}

func (m *memFS) Setxattr(_ context.Context, ino xl.GFID, name string, value []byte, flags uint32) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(ino)
	if e != 0 {
		return e
	}
	_, ok := n.xattrs[name]
	switch {
	case ok && flags&unix.XATTR_CREATE != 0:
		return syscall.EEXIST
	case !ok && flags&unix.XATTR_REPLACE != 0:
		return syscall.ENODATA
	}
	n.xattrs[name] = append([]byte(nil), value...)
	return 0
}

func (m *memFS) Listxattr(_ context.Context, ino xl.GFID) ([]string, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(ino)
	if e != 0 {
		return nil, e
	}
	var names []string
	for k := range n.xattrs {
		names = append(names, k)
	}
	sort.Strings(names)
	return names, 0
}

func (m *memFS) Removexattr(_ context.Context, ino xl.GFID, name string) syscall.Errno {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, e := m.get(ino)
	if e != 0 {
		return e
	}
	if _, ok := n.xattrs[name]; !ok {
		return syscall.ENODATA
	}
	delete(n.xattrs, name)
	return 0
}

func (m *memFS) Ipc(context.Context, xl.IpcOp, xl.Xdata) (xl.Xdata, syscall.Errno) {
	return nil, syscall.ENOTSUP
}
