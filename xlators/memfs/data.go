package memfs

import (
	"context"
	"math"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// pageSize is the unit of allocation: a page is written or a hole.
const pageSize = 4096

type page [pageSize]byte

// Fallocate modes, as Linux numbers them.
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

// Lseek whences that the store answers.
const (
	seekData = 3
	seekHole = 4
)

// alloc returns the page idx of n, allocating a zeroed one if it is a hole.
func (fs *FS) alloc(n *node, idx int64) *page {
	p := n.data[idx]
	if p == nil {
		p = new(page)
		n.data[idx] = p
		fs.pages++
		n.attr.Blocks += pageSize / 512
	}
	return p
}

func (fs *FS) free(n *node, idx int64) {
	if _, ok := n.data[idx]; ok {
		delete(n.data, idx)
		fs.pages--
		n.attr.Blocks -= pageSize / 512
	}
}

// zero clears [off, end) of n. Whole pages become holes unless keep, so
// that a zeroed range stays allocated.
func (fs *FS) zero(n *node, off, end int64, keep bool) {
	for idx, p := range n.data {
		lo, hi := max(off-idx*pageSize, 0), min(end-idx*pageSize, pageSize)
		switch {
		case lo >= hi: // outside the range
		case lo == 0 && hi == pageSize && !keep:
			fs.free(n, idx)
		default:
			clear(p[lo:hi])
		}
	}
}

// resize sets n's size. A shrink frees what lies beyond, preallocated
// pages included, so that bytes cut off read back as zeros should the
// file grow again.
func (fs *FS) resize(n *node, size uint64) {
	if size < n.attr.Size {
		fs.zero(n, int64(size), math.MaxInt64, false)
	}
	n.attr.Size = size
}

// reserve checks that the pages first to last of n that are holes fit
// in the store's capacity.
func (fs *FS) reserve(n *node, first, last int64) syscall.Errno {
	holes := last - first + 1
	if holes <= int64(len(n.data)) {
		for idx := first; idx <= last; idx++ {
			if n.data[idx] != nil {
				holes--
			}
		}
	} else {
		for idx := range n.data {
			if idx >= first && idx <= last {
				holes--
			}
		}
	}
	if holes > capacityPages-fs.pages {
		return syscall.ENOSPC
	}
	return 0
}

// truncatable checks that n may be truncated to size.
func truncatable(n *node, size uint64) syscall.Errno {
	if e := regular(n, syscall.EINVAL); e != 0 {
		return e
	}
	if size > math.MaxInt64 {
		return syscall.EFBIG
	}
	return 0
}

// Read fills dst from off; it is short only at the end of the file.
func (fs *FS) Read(_ context.Context, fd xl.Fd, dst []byte, off int64) (int, syscall.Errno) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, flags, e := fs.fdFile(fd)
	if e != 0 {
		return 0, e
	}
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		return 0, syscall.EBADF
	}
	size := int64(n.attr.Size)
	if off >= size {
		return 0, 0
	}
	dst = dst[:min(int64(len(dst)), size-off)]
	for done := 0; done < len(dst); {
		pos := off + int64(done)
		idx, in := pos/pageSize, pos%pageSize
		var m int
		if p := n.data[idx]; p != nil {
			m = copy(dst[done:], p[in:])
		} else {
			m = int(min(int64(len(dst)-done), pageSize-in))
			clear(dst[done : done+m])
		}
		done += m
	}
	return len(dst), 0
}

// Write writes data at off, or at the end for an O_APPEND fd.
func (fs *FS) Write(_ context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, flags, e := fs.fdFile(fd)
	if e != 0 {
		return 0, e
	}
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		return 0, syscall.EBADF
	}
	if flags&syscall.O_APPEND != 0 {
		off = int64(n.attr.Size)
	}
	switch {
	case off < 0:
		return 0, syscall.EINVAL
	case int64(len(data)) > math.MaxInt64-off:
		return 0, syscall.EFBIG
	case len(data) == 0:
		return 0, 0
	}
	if e := fs.reserve(n, off/pageSize, (off+int64(len(data))-1)/pageSize); e != 0 {
		return 0, e
	}
	for done := 0; done < len(data); {
		pos := off + int64(done)
		done += copy(fs.alloc(n, pos/pageSize)[pos%pageSize:], data[done:])
	}
	if end := uint64(off) + uint64(len(data)); end > n.attr.Size {
		n.attr.Size = end
	}
	fs.changed(&n.attr, true)
	return len(data), 0
}

// Truncate sets the size of a regular file.
func (fs *FS) Truncate(_ context.Context, ino xl.GFID, size uint64) (xl.Attr, syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, e := fs.obj(ino)
	if e != 0 {
		return xl.Attr{}, e
	}
	if e := truncatable(n, size); e != 0 {
		return xl.Attr{}, e
	}
	fs.resize(n, size)
	fs.changed(&n.attr, true)
	return n.attr, 0
}

// Fallocate is fallocate(2) for the modes tmpfs knows: allocation, with
// or without FALLOC_FL_KEEP_SIZE, hole punching and range zeroing.
func (fs *FS) Fallocate(_ context.Context, fd xl.Fd, mode uint32, off, length int64) syscall.Errno {
	switch {
	case off < 0 || length <= 0:
		return syscall.EINVAL
	case mode&^(fallocKeepSize|fallocPunchHole|fallocZeroRange) != 0,
		mode&fallocPunchHole != 0 && mode != fallocPunchHole|fallocKeepSize,
		mode&fallocZeroRange != 0 && mode&fallocPunchHole != 0:
		return syscall.EOPNOTSUPP
	case length > math.MaxInt64-off:
		return syscall.EFBIG
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, flags, e := fs.fdFile(fd)
	if e != 0 {
		return e
	}
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		return syscall.EBADF
	}
	end := off + length
	if mode&fallocPunchHole == 0 {
		if e := fs.reserve(n, off/pageSize, (end-1)/pageSize); e != 0 {
			return e
		}
	}
	if mode&(fallocPunchHole|fallocZeroRange) != 0 {
		fs.zero(n, off, end, mode&fallocZeroRange != 0)
	}
	if mode&fallocPunchHole == 0 {
		for idx := off / pageSize; idx*pageSize < end; idx++ {
			fs.alloc(n, idx)
		}
	}
	grows := mode&fallocKeepSize == 0 && uint64(end) > n.attr.Size
	if grows {
		n.attr.Size = uint64(end)
	}
	fs.changed(&n.attr, grows || mode&(fallocPunchHole|fallocZeroRange) != 0)
	return 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE, ENXIO at or past the end of the
// file. Written and allocated pages are data. The other whences need the
// file position, which the caller keeps, and are EINVAL.
func (fs *FS) Lseek(_ context.Context, fd xl.Fd, off int64, whence uint32) (int64, syscall.Errno) {
	if whence != seekData && whence != seekHole {
		return 0, syscall.EINVAL
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, _, e := fs.fdFile(fd)
	if e != 0 {
		return 0, e
	}
	size := int64(n.attr.Size)
	if off < 0 || off >= size {
		return 0, syscall.ENXIO
	}
	if whence == seekHole {
		idx := off / pageSize
		for n.data[idx] != nil {
			idx++
		}
		return min(max(off, idx*pageSize), size), 0
	}
	next := int64(-1) // the first data page at or after off's
	for idx := range n.data {
		if idx >= off/pageSize && (next < 0 || idx < next) {
			next = idx
		}
	}
	if next < 0 || next*pageSize >= size {
		return 0, syscall.ENXIO
	}
	return max(off, next*pageSize), 0
}
