package posix

import (
	"bytes"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// xattrArgs is struct xattr_args of getxattrat(2).
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

// getxattrat reads an xattr of path in dfd without following it
// (getxattrat(2), Linux 6.13): a third of the cost of a walk through
// /proc, and Lookup and Readdir pay it for every entry.
func getxattrat(dfd int, path, name string, dst []byte) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return 0, err
	}
	n, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	a := xattrArgs{size: uint32(len(dst))}
	if len(dst) > 0 {
		a.value = uint64(uintptr(unsafe.Pointer(&dst[0])))
	}
	r, _, e := unix.Syscall6(unix.SYS_GETXATTRAT, uintptr(dfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(n)), uintptr(unsafe.Pointer(&a)), unsafe.Sizeof(a))
	runtime.KeepAlive(dst)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// probeXattrAt reports whether the kernel has getxattrat(2); dfd is the
// labelled root.
func probeXattrAt(dfd int) bool {
	var v gfidValue
	_, err := getxattrat(dfd, ".", gfidXattr, v[:])
	return err == nil
}

// entryGFID reads the gfid of name in p, and its flags, without
// following it.
func (s *Store) entryGFID(p *dirRef, name string) (xl.GFID, gfidFlags, error) {
	var v gfidValue
	var n int
	var err error
	if s.xattrAt {
		n, err = getxattrat(p.fd, name, gfidXattr, v[:])
	} else {
		n, err = unix.Lgetxattr(p.proc+name, gfidXattr, v[:])
	}
	return v.parse(n, err)
}

// listxattrat lists the xattr names of path in dfd without following it
// (listxattrat(2), which came with getxattrat(2)).
func listxattrat(dfd int, path string, dst []byte) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return 0, err
	}
	var list unsafe.Pointer
	if len(dst) > 0 {
		list = unsafe.Pointer(&dst[0])
	}
	r, _, e := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(list), uintptr(len(dst)), 0)
	runtime.KeepAlive(dst)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// entryNoXattrs reports whether name in p, whose gfid flags are f, has
// no client xattr. Readdir answers it so that clients need not ask each
// entry for the names ls asks about. The flags say it, but for objects
// labelled before they were kept: those have their names listed.
func (s *Store) entryNoXattrs(p *dirRef, name string, f gfidFlags) bool {
	if f&unknownFlags == 0 {
		return f.noXattrs()
	}
	var buf [512]byte
	var n int
	var err error
	if s.xattrAt {
		n, err = listxattrat(p.fd, name, buf[:])
	} else {
		n, err = unix.Llistxattr(p.proc+name, buf[:])
	}
	return err == nil && !clientXattrs(buf[:n])
}

// An xattr name as listed stands for a client's xattr on the object, a
// spilled one (its marker), or the store's own.
const (
	ownXattr = iota
	clientXattr
	spillMarker
)

func listedKind(name []byte) int {
	switch {
	case bytes.HasPrefix(name, []byte(spillPrefix)):
		return spillMarker
	case len(name) > 0 && !bytes.HasPrefix(name, []byte(xattrPrefix)):
		return clientXattr
	}
	return ownXattr
}

// clientXattrs reports whether a list of xattr names holds a client's
// or a spill marker, which stands for one.
func clientXattrs(list []byte) bool {
	for len(list) > 0 {
		i := bytes.IndexByte(list, 0)
		if i < 0 {
			i = len(list)
		}
		if listedKind(list[:i]) != ownXattr {
			return true
		}
		list = list[min(i+1, len(list)):]
	}
	return false
}
