package fuse

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// makeFiles creates n empty files named prefix%05d in dir through x.
func makeFiles(t *testing.T, x xl.Xlator, dir xl.GFID, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		fd, _, e := x.Create(ctx, dir, fmt.Sprintf("%s%05d", prefix, i), xl.NewGFID(), syscall.O_WRONLY, 0o644)
		if e != 0 {
			t.Fatal(e)
		}
		x.Release(ctx, fd)
	}
}

// A listing of 10,000 entries while other names come and go lists every
// name that stayed exactly once and nothing that never existed, though
// its batches are read ahead of the kernel.
func TestReaddirConcurrentCreates(t *testing.T) {
	c := &counter{Base: xl.Base{Xlator: newLeaf(t)}}
	dir, _ := mount(t, c)
	ctx := context.Background()
	d, e := c.Mkdir(ctx, xl.RootGFID, "big", xl.NewGFID(), 0o755)
	if e != 0 {
		t.Fatal(e)
	}
	const n = 10000
	makeFiles(t, c, d.GFID, "f", n)
	big := filepath.Join(dir, "big")
	if _, err := os.Stat(big); err != nil {
		t.Fatal(err)
	}
	c.readdirs.Store(0)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var churned atomic.Int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("new%05d", i)
			fd, _, e := c.Create(ctx, d.GFID, name, xl.NewGFID(), syscall.O_WRONLY, 0o644)
			if e != 0 {
				t.Errorf("create %s: %v", name, e)
				return
			}
			c.Release(ctx, fd)
			if i%2 == 1 {
				if e := c.Unlink(ctx, d.GFID, name); e != 0 {
					t.Errorf("unlink %s: %v", name, e)
					return
				}
			}
			churned.Add(1)
		}
	})
	f, err := os.Open(big)
	if err != nil {
		t.Fatal(err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	seen := listedOnce(t, names, n)
	made := int(churned.Load()) + 1 // the one in flight may have been made
	for nm, k := range seen {
		var i int
		if _, err := fmt.Sscanf(nm, "new%05d", &i); err != nil || i > made {
			t.Errorf("listed %q, which never existed", nm)
		} else if k != 1 {
			t.Errorf("%s listed %d times", nm, k)
		}
	}
	// One batch, then the ones read ahead, then the empty one that ends
	// the listing; the names created meanwhile may take one more.
	if got, max := c.readdirs.Load(), int64(1+(n-readdirBatch+readaheadBatch-1)/readaheadBatch+2); got > max {
		t.Errorf("%d translator readdirs, want at most %d", got, max)
	}
}

// stallAhead answers a directory's first Readdir and stalls every later
// one until it is cancelled, counting Releasedirs that came while one was
// still running.
type stallAhead struct {
	xl.Base
	started  chan struct{} // gets a value when a later Readdir starts
	released chan bool     // gets whether one was running, per Releasedir
	running  atomic.Int32
}

func (s *stallAhead) Readdir(ctx context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	if off == 0 {
		return s.Base.Readdir(ctx, fd, off, max)
	}
	s.running.Add(1)
	defer s.running.Add(-1)
	select {
	case s.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, syscall.ECANCELED
}

func (s *stallAhead) Releasedir(ctx context.Context, fd xl.Fd) syscall.Errno {
	s.released <- s.running.Load() != 0
	return s.Base.Releasedir(ctx, fd)
}

// Closing a directory with a batch still being read ahead ends that read
// before the handle is released below, and leaves no goroutine behind.
func TestReaddirCloseStopsReadahead(t *testing.T) {
	s := &stallAhead{Base: xl.Base{Xlator: newLeaf(t)}, started: make(chan struct{}, 1), released: make(chan bool, 1)}
	dir, _ := mount(t, s)
	ctx := context.Background()
	d, e := s.Mkdir(ctx, xl.RootGFID, "d", xl.NewGFID(), 0o755)
	if e != 0 {
		t.Fatal(e)
	}
	makeFiles(t, s, d.GFID, "f", readdirBatch+10)
	fd, err := unix.Open(filepath.Join(dir, "d"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A small buffer takes a few entries of the first batch; the read
	// ahead of the second stalls.
	buf := make([]byte, 1024)
	if n, err := unix.Getdents(fd, buf); err != nil || n == 0 {
		unix.Close(fd)
		t.Fatalf("getdents: %d, %v", n, err)
	}
	<-s.started
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	// RELEASEDIR follows close(2) asynchronously.
	if early := <-s.released; early {
		t.Errorf("released below while its read ahead was running")
	}
}
