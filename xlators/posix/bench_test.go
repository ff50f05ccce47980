package posix

import (
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

func BenchmarkCreate(b *testing.B) {
	br := newBrick(b)
	d := br.mkdir(xl.RootGFID, "d")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		fd, _, e := br.Create(bg, d, "f"+strconv.Itoa(i), xl.NewGFID(), uint32(os.O_RDWR|os.O_EXCL), 0o644)
		if e != 0 {
			b.Fatal(e)
		}
		br.Release(bg, fd)
		i++
	}
}

func benchmarkWrite(b *testing.B, size int) {
	br := newBrick(b)
	fd, _ := br.create(xl.RootGFID, "f")
	defer br.Release(bg, fd)
	buf := make([]byte, size)
	const span = 64 << 20 // rewrite the same region: measure the store, not the allocator
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var off int64
	for b.Loop() {
		if _, e := br.Write(bg, fd, buf, off); e != 0 {
			b.Fatal(e)
		}
		if off += int64(size); off >= span {
			off = 0
		}
	}
}

func BenchmarkWrite4k(b *testing.B) { benchmarkWrite(b, 4<<10) }
func BenchmarkWrite1M(b *testing.B) { benchmarkWrite(b, 1<<20) }

func BenchmarkLookup(b *testing.B) {
	br := newBrick(b)
	d := br.mkdir(xl.RootGFID, "d")
	const n = 100
	for i := range n {
		br.file(d, "f"+strconv.Itoa(i), "")
	}
	names := make([]string, n)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, e := br.Lookup(bg, d, names[i%n]); e != 0 {
			b.Fatal(e)
		}
		i++
	}
}

// BenchmarkGetxattr: a small value, a missing one (which costs one
// more syscall once the brick has spilled anything) and a spilled one.
func BenchmarkGetxattr(b *testing.B) {
	br := newBrick(b)
	g := br.file(xl.RootGFID, "f", "")
	if e := br.Setxattr(bg, g, "user.small", []byte("v"), 0); e != 0 {
		b.Fatal(e)
	}
	run := func(name string, want syscall.Errno) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, e := br.Getxattr(bg, g, name); e != want {
					b.Fatal(e)
				}
			}
		})
	}
	run("user.small", 0)
	run("user.missing", syscall.ENODATA)
	if e := br.Setxattr(bg, g, "user.big", make([]byte, 64<<10), 0); e != 0 {
		b.Fatal(e)
	}
	run("user.missing", syscall.ENODATA)
	run("user.big", 0)
}

func BenchmarkSetxattr64KiB(b *testing.B) {
	br := newBrick(b)
	g := br.file(xl.RootGFID, "f", "")
	v := make([]byte, 64<<10)
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		if e := br.Setxattr(bg, g, "user.big", v, 0); e != 0 {
			b.Fatal(e)
		}
	}
}

// BenchmarkReaddir10k lists a directory of 10,000 files in batches of
// 1,000, as a client's readdirplus does; ns/op is per listing.
func BenchmarkReaddir10k(b *testing.B) {
	br := newBrick(b)
	d := br.mkdir(xl.RootGFID, "d")
	const n = 10000
	for i := range n {
		br.file(d, "f"+strconv.Itoa(i), "")
	}
	fd, e := br.Opendir(bg, d)
	if e != 0 {
		b.Fatal(e)
	}
	defer br.Releasedir(bg, fd)
	b.ReportAllocs()
	for b.Loop() {
		got := 0
		var off uint64
		for {
			ents, e := br.Readdir(bg, fd, off, 1000)
			if e != 0 {
				b.Fatal(e)
			}
			if len(ents) == 0 {
				break
			}
			got += len(ents)
			off = ents[len(ents)-1].Off
		}
		if got != n {
			b.Fatalf("listed %d of %d", got, n)
		}
	}
}

// dropCaches empties the page, dentry and inode caches so that a listing
// reads its inodes and directory blocks from disk. It needs root.
func dropCaches(b *testing.B) {
	b.Helper()
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		b.Skipf("cannot drop caches: %v", err)
	}
}

// listAll opens d, lists it in batches of max and closes it.
func (br *brick) listAll(b *testing.B, d xl.GFID, max int) int {
	fd, e := br.Opendir(bg, d)
	if e != 0 {
		b.Fatal(e)
	}
	defer br.Releasedir(bg, fd)
	got := 0
	var off uint64
	for {
		ents, e := br.Readdir(bg, fd, off, max)
		if e != 0 {
			b.Fatal(e)
		}
		if len(ents) == 0 {
			return got
		}
		got += len(ents)
		off = ents[len(ents)-1].Off
	}
}

// BenchmarkReaddir10kCold is BenchmarkReaddir10k with the caches
// dropped before each listing, as ls -l of a large directory not read
// for a while.
func BenchmarkReaddir10kCold(b *testing.B) {
	br := newBrick(b)
	d := br.mkdir(xl.RootGFID, "d")
	const n = 10000
	for i := range n {
		br.file(d, "f"+strconv.Itoa(i), "")
	}
	for b.Loop() {
		b.StopTimer()
		dropCaches(b)
		b.StartTimer()
		if got := br.listAll(b, d, 1000); got != n {
			b.Fatalf("listed %d of %d", got, n)
		}
	}
}

// BenchmarkReaddirTreeCold lists 20 directories of 100 files each with
// the caches dropped first, as find over a tree does; ns/op is per tree.
func BenchmarkReaddirTreeCold(b *testing.B) {
	br := newBrick(b)
	const dirs, files = 20, 100
	var ds []xl.GFID
	for i := range dirs {
		d := br.mkdir(xl.RootGFID, "d"+strconv.Itoa(i))
		for j := range files {
			br.file(d, "f"+strconv.Itoa(j), "")
		}
		ds = append(ds, d)
	}
	for b.Loop() {
		b.StopTimer()
		dropCaches(b)
		b.StartTimer()
		for _, d := range ds {
			if got := br.listAll(b, d, 128); got != files {
				b.Fatalf("listed %d of %d", got, files)
			}
		}
	}
}
