package fuse

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/posix"
)

// mountBench mounts a posix store on a fresh directory for a benchmark.
func mountBench(b *testing.B, opts Options) string {
	s, err := posix.New(b.TempDir(), posix.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	dir := b.TempDir()
	m, err := Mount(dir, s, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			b.Error(err)
		}
		m.Wait()
	})
	return dir
}

// BenchmarkWrite measures 1 MiB write(2)s through the bridge.
func BenchmarkWrite(b *testing.B) {
	f, err := os.Create(filepath.Join(mountBench(b, Options{}), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		if _, err := f.WriteAt(buf, int64(i%64)*int64(len(buf))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadDirect measures 1 MiB O_DIRECT read(2)s, which bypass the
// page cache and so reach the translator every time.
func BenchmarkReadDirect(b *testing.B) {
	fn := filepath.Join(mountBench(b, Options{}), "f")
	buf := make([]byte, 1<<20)
	if err := os.WriteFile(fn, make([]byte, 64<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(fn, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		if _, err := f.ReadAt(buf, int64(i%64)*int64(len(buf))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatUncached measures a getattr round trip: fstat with the
// attribute cache off.
func BenchmarkStatUncached(b *testing.B) {
	dir := mountBench(b, Options{AttrTimeout: -1})
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	for b.Loop() {
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			b.Fatal(err)
		}
	}
}
