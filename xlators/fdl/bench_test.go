package fdl

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// BenchmarkDestage compares sync and deferred destage over a posix store
// and a journal on the test's temporary directory. Every case ends with an
// fsync of each file it wrote, inside the timer, so deferred destage is
// charged for applying what it deferred. Run it on the disk bricks use:
//
//	go test -run '^$' -bench Destage -benchtime 2000x ./xlators/fdl
func BenchmarkDestage(b *testing.B) {
	const fileSize = 64 << 20
	cases := []struct {
		name    string
		writers int
		size    int
		read    bool // read each write back at once
		random  bool
	}{
		{"4k-random", 1, 4096, false, true},
		{"4k-random-8way", 8, 4096, false, true},
		{"1m-sequential", 1, 1 << 20, false, false},
		{"4k-read-after-write", 1, 4096, true, true},
	}
	for _, c := range cases {
		for _, mode := range []string{DestageSync, DestageDeferred} {
			b.Run(c.name+"/"+mode, func(b *testing.B) {
				f, done := benchBrick(b, mode)
				defer done()
				fds := make([]xl.Fd, c.writers)
				for w := range fds {
					fd, _, e := f.Create(bg, xl.RootGFID, fmt.Sprintf("f%d", w), xl.NewGFID(), syscall.O_RDWR|syscall.O_EXCL, 0o644)
					if e != 0 {
						b.Fatal(e)
					}
					fds[w] = fd
				}
				var left atomic.Int64
				left.Store(int64(b.N))
				b.SetBytes(int64(c.size))
				b.ResetTimer()
				var wg sync.WaitGroup
				for w, fd := range fds {
					wg.Go(func() {
						rng := rand.New(rand.NewPCG(uint64(w), 7))
						data := make([]byte, c.size)
						back := make([]byte, c.size)
						var off int64
						for left.Add(-1) >= 0 {
							if c.random {
								off = rng.Int64N(fileSize/int64(c.size)) * int64(c.size)
							}
							data[0]++
							if _, e := f.Write(bg, fd, data, off); e != 0 {
								b.Error(e)
								return
							}
							if c.read {
								if n, e := f.Read(bg, fd, back, off); e != 0 || n != c.size || back[0] != data[0] {
									b.Errorf("read back %d bytes, %v", n, e)
									return
								}
							}
							if !c.random {
								off = (off + int64(c.size)) % fileSize
							}
						}
						if e := f.Fsync(bg, fd, true); e != 0 {
							b.Error(e)
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
				for _, fd := range fds {
					f.Release(bg, fd)
				}
			})
		}
	}
}

func benchBrick(b *testing.B, mode string) (*FDL, func()) {
	dir := b.TempDir()
	store, err := posix.New(dir, posix.Options{Logger: testLogger(&logBuf{})})
	if err != nil {
		b.Fatal(err)
	}
	j, err := journal.Open(b.TempDir(), journal.Options{Logger: testLogger(&logBuf{})})
	if err != nil {
		b.Fatal(err)
	}
	f, err := New(store, j, Options{Logger: testLogger(&logBuf{}), Sync: SyncDir(dir), Destage: mode})
	if err != nil {
		b.Fatal(err)
	}
	return f, func() {
		f.Close()
		j.Close()
		store.Close()
	}
}
