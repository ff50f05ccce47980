package posix

import (
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// A client's posix_fadvise stops at its FUSE mount, and a client's reads
// reach the brick as small reads whenever its kernel reads no further
// ahead than asked (fadvise RANDOM, or a random pattern). What then
// serves sequential and clustered reads from memory is the brick's own
// kernel readahead on the store file, which works only if the reads of
// an object go through one kernel file, keeping its readahead state, and
// through the page cache: no O_DIRECT, no FADV_RANDOM, no fd per read.
// Two adjacent 4 KiB reads must make the kernel read ahead, as they do
// on a plain fd of the same file.
func TestReadsLetKernelReadAhead(t *testing.T) {
	b := newBrick(t)
	page := int64(os.Getpagesize())
	const pages = 256
	g := b.file(xl.RootGFID, "f", strings.Repeat("x", int(pages*page)))
	cache := openPageCache(t, b.handlePath(g), pages)

	// Pages 64 and 65, one after the other: the second is sequential only
	// to a file that remembers the first, and then the kernel reads ahead
	// from page 66 on.
	const first = 64
	readTwo := func(read func(off int64)) (ahead bool) {
		t.Helper()
		cache.evict()
		read(first * page)
		read((first + 1) * page)
		return cache.resident(first + 2)
	}

	plain, err := os.Open(b.handlePath(g))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if !readTwo(func(off int64) {
		if _, err := plain.ReadAt(make([]byte, page), off); err != nil {
			t.Fatal(err)
		}
	}) {
		t.Skip("the kernel reads ahead on no fd of this file system (no readahead on its device?)")
	}

	fd, e := b.Open(bg, g, uint32(os.O_RDONLY))
	ok(t, e)
	defer func() { ok(t, b.Release(bg, fd)) }()
	for _, c := range []struct {
		name string
		fd   xl.Fd
	}{
		{"open handle", fd},
		{"anonymous fd", anon(g)},
	} {
		if !readTwo(func(off int64) {
			if got := b.read(c.fd, off, int(page)); len(got) != int(page) {
				t.Fatalf("%s: read %d bytes at %d, want %d", c.name, len(got), off, page)
			}
		}) {
			t.Errorf("%s: two adjacent reads left page %d out of the page cache: the brick defeats the kernel's readahead", c.name, first+2)
		}
	}
}

// pageCache shows which pages of a file are in the page cache.
type pageCache struct {
	t   *testing.T
	fd  int
	mem []byte
}

// openPageCache maps the first pages of path (mapping faults nothing in)
// and checks that the file's pages can be evicted, which a tmpfs file's
// cannot: the test would then prove nothing, and is skipped.
func openPageCache(t *testing.T, path string, pages int) *pageCache {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	mem, err := unix.Mmap(fd, 0, pages*os.Getpagesize(), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	c := &pageCache{t: t, fd: fd, mem: mem}
	if err := unix.Fdatasync(fd); err != nil {
		t.Fatal(err)
	}
	c.evict()
	for i := range pages {
		if c.resident(i) {
			t.Skipf("page %d stays in the page cache after FADV_DONTNEED (tmpfs?)", i)
		}
	}
	return c
}

func (c *pageCache) evict() {
	c.t.Helper()
	if err := unix.Fadvise(c.fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		c.t.Fatal(err)
	}
}

func (c *pageCache) resident(page int) bool {
	c.t.Helper()
	vec := make([]byte, len(c.mem)/os.Getpagesize())
	// x/sys/unix has no Mincore.
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&c.mem[0])), uintptr(len(c.mem)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		c.t.Fatal(errno)
	}
	return vec[page]&1 != 0
}
