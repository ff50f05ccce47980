package fuse

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// mountBench mounts a posix store on a fresh directory for a benchmark.
func mountBench(b *testing.B, opts Options) string {
	return mountBenchOn(b, opts, func(x xl.Xlator) xl.Xlator { return x })
}

// mountBenchOn mounts wrap(a posix store) on a fresh directory.
func mountBenchOn(b *testing.B, opts Options, wrap func(xl.Xlator) xl.Xlator) string {
	s, err := posix.New(b.TempDir(), posix.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	dir := b.TempDir()
	m, err := Mount(dir, wrap(s), opts)
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

// remoteReaddir makes each Readdir take a round trip and a per-entry cost
// first, as a brick's does.
type remoteReaddir struct {
	xl.Base
	rtt, perEntry time.Duration
}

func (r *remoteReaddir) Readdir(ctx context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	ents, e := r.Base.Readdir(ctx, fd, off, max)
	time.Sleep(r.rtt + time.Duration(len(ents))*r.perEntry)
	return ents, e
}

// BenchmarkReaddir measures listing a directory of 10,000 entries
// (open, getdents to the end, close), on a local store and on one whose
// Readdir costs what a brick's does (0.5 ms, 10 us per entry).
func BenchmarkReaddir(b *testing.B) {
	for _, c := range []struct {
		name          string
		rtt, perEntry time.Duration
	}{{"local", 0, 0}, {"remote", 500 * time.Microsecond, 10 * time.Microsecond}} {
		b.Run(c.name, func(b *testing.B) {
			var top xl.Xlator
			dir := mountBenchOn(b, Options{}, func(x xl.Xlator) xl.Xlator {
				top = x
				return &remoteReaddir{Base: xl.Base{Xlator: x}, rtt: c.rtt, perEntry: c.perEntry}
			})
			ctx := context.Background()
			d, e := top.Mkdir(ctx, xl.RootGFID, "big", xl.NewGFID(), 0o755)
			if e != 0 {
				b.Fatal(e)
			}
			const n = 10000
			for i := range n {
				fd, _, e := top.Create(ctx, d.GFID, fmt.Sprintf("f%05d", i), xl.NewGFID(), syscall.O_WRONLY, 0o644)
				if e != 0 {
					b.Fatal(e)
				}
				top.Release(ctx, fd)
			}
			buf := make([]byte, 32<<10)
			for b.Loop() {
				fd, err := unix.Open(filepath.Join(dir, "big"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
				if err != nil {
					b.Fatal(err)
				}
				for {
					k, err := unix.Getdents(fd, buf)
					if err != nil {
						b.Fatal(err)
					}
					if k == 0 {
						break
					}
				}
				unix.Close(fd)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "us/entry")
		})
	}
}

// remoteDirs makes each Opendir and Releasedir take a round trip, and
// each Readdir a round trip and a per-entry cost, as a brick's do.
type remoteDirs struct {
	remoteReaddir
}

func (r *remoteDirs) Opendir(ctx context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	time.Sleep(r.rtt)
	return r.Base.Opendir(ctx, ino)
}

func (r *remoteDirs) Releasedir(ctx context.Context, fd xl.Fd) syscall.Errno {
	time.Sleep(r.rtt)
	return r.Base.Releasedir(ctx, fd)
}

// BenchmarkWalk measures a walk (find) of 300 directories of 5 files
// each, where every directory op costs a brick's round trip (0.3 ms).
func BenchmarkWalk(b *testing.B) {
	var top xl.Xlator
	dir := mountBenchOn(b, Options{}, func(x xl.Xlator) xl.Xlator {
		top = x
		return &remoteDirs{remoteReaddir{Base: xl.Base{Xlator: x}, rtt: 300 * time.Microsecond, perEntry: 10 * time.Microsecond}}
	})
	ctx := context.Background()
	parent, e := top.Mkdir(ctx, xl.RootGFID, "top", xl.NewGFID(), 0o755)
	if e != 0 {
		b.Fatal(e)
	}
	const dirs, files = 300, 5
	for i := range dirs {
		d, e := top.Mkdir(ctx, parent.GFID, fmt.Sprintf("d%03d", i), xl.NewGFID(), 0o755)
		if e != 0 {
			b.Fatal(e)
		}
		for j := range files {
			fd, _, e := top.Create(ctx, d.GFID, fmt.Sprintf("f%d", j), xl.NewGFID(), syscall.O_WRONLY, 0o644)
			if e != 0 {
				b.Fatal(e)
			}
			top.Release(ctx, fd)
		}
	}
	for b.Loop() {
		n := 0
		err := filepath.WalkDir(filepath.Join(dir, "top"), func(_ string, _ fs.DirEntry, err error) error {
			n++
			return err
		})
		if err != nil || n != 1+dirs*(1+files) {
			b.Fatalf("walked %d, err %v", n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*dirs), "us/dir")
}
