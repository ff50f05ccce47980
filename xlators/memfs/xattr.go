package memfs

import (
	"context"
	"slices"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Setxattr flags, as Linux numbers them.
const (
	xattrCreate  = 1
	xattrReplace = 2
)

// checkXattrName validates an xattr name as setxattr(2) does. Which
// namespaces a caller may use is xlators/access's business.
func checkXattrName(name string) syscall.Errno {
	if name == "" || len(name) > xattrNameMax {
		return syscall.ERANGE
	}
	return 0
}

func (fs *FS) Getxattr(_ context.Context, ino xl.GFID, name string) ([]byte, syscall.Errno) {
	if e := checkXattrName(name); e != 0 {
		return nil, e
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	if e != 0 {
		return nil, e
	}
	v, ok := n.xattrs[name]
	if !ok {
		return nil, syscall.ENODATA
	}
	return slices.Clone(v), 0
}

// Setxattr stores a value of up to 64 KiB, as XATTR_SIZE_MAX allows.
func (fs *FS) Setxattr(_ context.Context, ino xl.GFID, name string, value []byte, flags uint32) syscall.Errno {
	if e := checkXattrName(name); e != 0 {
		return e
	}
	switch {
	case flags&^(xattrCreate|xattrReplace) != 0:
		return syscall.EINVAL
	case len(value) > xattrSizeMax:
		return syscall.E2BIG
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	if e != 0 {
		return e
	}
	_, exists := n.xattrs[name]
	switch {
	case flags&xattrCreate != 0 && exists:
		return syscall.EEXIST
	case flags&xattrReplace != 0 && !exists:
		return syscall.ENODATA
	}
	n.xattrs[name] = append([]byte{}, value...) // a copy, never nil: the caller may reuse value
	fs.changed(&n.attr, false)
	return 0
}

// Listxattr returns the names in order.
func (fs *FS) Listxattr(_ context.Context, ino xl.GFID) ([]string, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	if e != 0 {
		return nil, e
	}
	names := make([]string, 0, len(n.xattrs))
	for k := range n.xattrs {
		names = append(names, k)
	}
	slices.Sort(names)
	return names, 0
}

func (fs *FS) Removexattr(_ context.Context, ino xl.GFID, name string) syscall.Errno {
	if e := checkXattrName(name); e != 0 {
		return e
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	if e != 0 {
		return e
	}
	if _, ok := n.xattrs[name]; !ok {
		return syscall.ENODATA
	}
	delete(n.xattrs, name)
	fs.changed(&n.attr, false)
	return 0
}
