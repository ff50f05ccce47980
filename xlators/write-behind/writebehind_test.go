package writebehind

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// slowChild is the fake below write-behind: memfs whose writes can be
// held at a gate, made to fail, or slowed; it records whether two
// overlapping writes were ever in flight at once.
type slowChild struct {
	xl.Xlator
	fail   atomic.Int32 // errno for every write; 0 to succeed
	jitter bool         // yield a random number of times in each write
	// If verify is set, each write checks that its data did not change
	// while it was in flight, and sets changed if it did.
	verify  bool
	changed atomic.Bool
	started chan xl.Fd // if set, receives each write as it starts

	mu         sync.Mutex
	gate       chan struct{} // writes wait while it is open
	inflight   map[*span]bool
	overlapped bool
	writes     int
}

type span struct{ off, end int64 }

func newSlowChild() *slowChild {
	return &slowChild{Xlator: memfs.New(memfs.Options{}), inflight: map[*span]bool{}}
}

// hold makes later writes wait until the returned func is called.
func (c *slowChild) hold() (release func()) {
	g := make(chan struct{})
	c.mu.Lock()
	c.gate = g
	c.mu.Unlock()
	return sync.OnceFunc(func() {
		c.mu.Lock()
		c.gate = nil
		c.mu.Unlock()
		close(g)
	})
}

func (c *slowChild) Write(ctx context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	s := &span{off, off + int64(len(data))}
	c.mu.Lock()
	for o := range c.inflight {
		if o.off < s.end && s.off < o.end {
			c.overlapped = true
		}
	}
	c.inflight[s] = true
	c.writes++
	gate := c.gate
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.inflight, s)
		c.mu.Unlock()
	}()
	if c.started != nil {
		c.started <- fd
	}
	if gate != nil {
		<-gate
	}
	var was []byte
	if c.verify {
		was = bytes.Clone(data)
	}
	if c.jitter {
		for range rand.IntN(20) {
			time.Sleep(0) // a yield
		}
	}
	if e := syscall.Errno(c.fail.Load()); e != 0 {
		return 0, e
	}
	n, e := c.Xlator.Write(ctx, fd, data, off)
	if c.verify && !bytes.Equal(was, data) {
		c.changed.Store(true)
	}
	return n, e
}

var quiet = slog.New(slog.DiscardHandler)

func newWB(t *testing.T, child xl.Xlator, window int64) *WriteBehind {
	t.Helper()
	wb, err := New(child, Options{WindowSize: window, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wb.Close() })
	return wb
}

var bg = context.Background()

func create(t *testing.T, x xl.Xlator, name string, flags uint32) xl.Fd {
	t.Helper()
	fd, _, e := x.Create(bg, xl.RootGFID, name, xl.NewGFID(), flags, 0o644)
	if e != 0 {
		t.Fatalf("create %s: %v", name, e)
	}
	return fd
}

func write(t *testing.T, x xl.Xlator, fd xl.Fd, data []byte, off int64) {
	t.Helper()
	if n, e := x.Write(bg, fd, data, off); e != 0 || n != len(data) {
		t.Fatalf("write %d at %d: %d, %v", len(data), off, n, e)
	}
}

func readAll(t *testing.T, x xl.Xlator, fd xl.Fd) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 8<<10)
	for {
		n, e := x.Read(bg, fd, buf, int64(len(out)))
		if e != 0 {
			t.Fatalf("read at %d: %v", len(out), e)
		}
		out = append(out, buf[:n]...)
		if n < len(buf) {
			return out
		}
	}
}

// Reads, stat and lookups through the translator see what was written,
// while the writes are still on their way; the writer's buffer is its
// own again as soon as Write returns.
func TestReadAfterWrite(t *testing.T) {
	child := newSlowChild()
	child.jitter = true
	wb := newWB(t, child, 0)
	fd := create(t, wb, "f", syscall.O_RDWR)
	want := make([]byte, 300<<10)
	buf := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		off := int64(r.IntN(len(want) - len(buf)))
		for j := range buf {
			buf[j] = byte(i + j)
		}
		write(t, wb, fd, buf, off)
		copy(want[off:], buf)
		clear(buf) // Write copied it
		got := make([]byte, 4096)
		if n, e := wb.Read(bg, fd, got, off); e != 0 || n != len(got) || !bytes.Equal(got, want[off:off+4096]) {
			t.Fatalf("write %d: read back at %d: %d, %v", i, off, n, e)
		}
	}
	write(t, wb, fd, []byte("end"), int64(len(want)))
	want = append(want, "end"...)
	a, e := wb.Getattr(bg, fd.GFID)
	if e != 0 || a.Size != uint64(len(want)) {
		t.Fatalf("getattr: size %d, %v; want %d", a.Size, e, len(want))
	}
	write(t, wb, fd, []byte("more"), int64(len(want)))
	want = append(want, "more"...)
	if a, e := wb.Lookup(bg, xl.RootGFID, "f"); e != 0 || a.Size != uint64(len(want)) {
		t.Fatalf("lookup: size %d, %v; want %d", a.Size, e, len(want))
	}
	// A read that reaches the old end of file waits for the write past it.
	write(t, wb, fd, []byte("tail"), int64(len(want))+10)
	want = append(want, make([]byte, 10)...)
	want = append(want, "tail"...)
	if got := readAll(t, wb, fd); !bytes.Equal(got, want) {
		t.Fatalf("read all: %d bytes, want %d", len(got), len(want))
	}
	if e := wb.Flush(bg, fd); e != 0 {
		t.Fatal(e)
	}
	if got := readAll(t, child, fd); !bytes.Equal(got, want) {
		t.Fatal("after flush the store below differs")
	}
}

// Writes through two fds at random, overlapping offsets reach the store
// as if applied in issue order, and no two overlapping writes are ever in
// flight at once.
func TestOverlappingWritesKeepOrder(t *testing.T) {
	child := newSlowChild()
	child.jitter = true
	wb := newWB(t, child, 64<<10)
	fds := []xl.Fd{create(t, wb, "f", syscall.O_RDWR)}
	fd2, e := wb.Open(bg, fds[0].GFID, syscall.O_WRONLY)
	if e != 0 {
		t.Fatal(e)
	}
	fds = append(fds, fd2)
	want := make([]byte, 32<<10)
	r := rand.New(rand.NewPCG(3, 4))
	size := 0
	for i := range 2000 {
		n := 1 + r.IntN(3000)
		off := r.IntN(len(want) - n)
		data := bytes.Repeat([]byte{byte(i)}, n)
		write(t, wb, fds[r.IntN(2)], data, int64(off))
		copy(want[off:], data)
		size = max(size, off+n)
	}
	want = want[:size]
	for _, fd := range fds {
		if e := wb.Flush(bg, fd); e != 0 {
			t.Fatal(e)
		}
	}
	if got := readAll(t, child, fds[0]); !bytes.Equal(got, want) {
		for i := range got {
			if i >= len(want) || got[i] != want[i] {
				t.Fatalf("the store holds something else than the writes applied in order: %d bytes, want %d; byte %d is %d", len(got), len(want), i, got[i])
			}
		}
		t.Fatalf("the store holds %d bytes, want %d", len(got), len(want))
	}
	wb.mu.Lock()
	if n := len(wb.inodes); n != 0 {
		t.Errorf("%d files still tracked after every write finished", n)
	}
	wb.mu.Unlock()
	child.mu.Lock()
	defer child.mu.Unlock()
	if child.overlapped {
		t.Fatal("two overlapping writes were in flight at once")
	}
	t.Logf("2000 writes reached the store as %d", child.writes)
}

// Recycled buffers are never handed out while their write is in flight
// or waiting to be merged: files written at once, with sequential runs
// that merge, random overlapping writes and sizes of every buffer class,
// end up holding exactly what was written, and no write's data changes
// on its way down.
func TestBuffersNotReusedInFlight(t *testing.T) {
	child := newSlowChild()
	child.jitter, child.verify = true, true
	wb := newWB(t, child, 256<<10)
	const files = 4
	var wg sync.WaitGroup
	errs := make(chan error, files)
	fds := make([]xl.Fd, files)
	wants := make([][]byte, files)
	for f := range files {
		fd := create(t, wb, string(rune('a'+f)), syscall.O_RDWR)
		fds[f] = fd
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(f), 5))
			want := make([]byte, 2<<20)
			buf := make([]byte, 512<<10)
			size, next := 0, 0
			for i := range 1500 {
				var n, off int
				switch k := r.IntN(10); {
				case k < 6: // continues the last write: merged
					n = 1 + r.IntN(8<<10)
					off = next
				case k < 9:
					n = 1 + r.IntN(16<<10)
					off = r.IntN(len(want) - n)
				default: // a large class
					n = 64<<10 + r.IntN(len(buf)-64<<10)
					off = r.IntN(len(want) - n)
				}
				if off+n > len(want) {
					off = 0
				}
				data := buf[:n]
				for j := range data {
					data[j] = byte(f*31 + i + j)
				}
				if n, e := wb.Write(bg, fd, data, int64(off)); e != 0 || n != len(data) {
					errs <- fmt.Errorf("file %d: write %d at %d: %d, %v", f, len(data), off, n, e)
					return
				}
				copy(want[off:], data)
				clear(data) // Write copied it
				size, next = max(size, off+n), off+n
			}
			if e := wb.Flush(bg, fd); e != 0 {
				errs <- fmt.Errorf("file %d: flush: %v", f, e)
				return
			}
			wants[f] = want[:size]
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for f, fd := range fds {
		if got := readAll(t, child, fd); !bytes.Equal(got, wants[f]) {
			t.Errorf("file %d: the store holds something else than what was written (%d bytes, want %d)", f, len(got), len(wants[f]))
		}
	}
	if child.changed.Load() {
		t.Error("a write's data changed while it was in flight")
	}
}

// Independent writes go out together: a writer at queue depth one gets
// several of them in flight.
func TestIndependentWritesInParallel(t *testing.T) {
	child := newSlowChild()
	child.started = make(chan xl.Fd, maxInFlight)
	release := child.hold()
	defer release()
	wb := newWB(t, child, 0)
	fd := create(t, wb, "f", syscall.O_RDWR)
	for i := range maxInFlight {
		write(t, wb, fd, make([]byte, 4096), int64(i)*8192) // gaps: no merging
	}
	for range maxInFlight {
		<-child.started // all of them reach the store before any finishes
	}
	release()
	if e := wb.Fsync(bg, fd, false); e != 0 {
		t.Fatal(e)
	}
}

// A background write's error comes back on the fd's next Flush (close),
// once; a Write on that fd reports it too and is not performed.
func TestErrorReportedLater(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO} {
		t.Run(errno.Error(), func(t *testing.T) {
			child := newSlowChild()
			wb := newWB(t, child, 0)
			fd := create(t, wb, "f", syscall.O_RDWR)
			other := create(t, wb, "g", syscall.O_RDWR)
			child.fail.Store(int32(errno))
			write(t, wb, fd, []byte("lost"), 0) // acknowledged
			write(t, wb, other, []byte("lost too"), 0)
			if e := wb.Flush(bg, fd); e != errno {
				t.Fatalf("flush after a failed write: %v, want %v", e, errno)
			}
			if e := wb.Flush(bg, fd); e != 0 {
				t.Fatalf("second flush: %v; the error is reported once", e)
			}
			if e := wb.Fsync(bg, other, false); e != errno {
				t.Fatalf("fsync of the other file: %v, want %v", e, errno)
			}
			if e := wb.Fsync(bg, other, false); e != 0 {
				t.Fatalf("second fsync: %v", e)
			}
			write(t, wb, fd, []byte("x"), 100)
			if e := wb.Settle(fd); e != 0 {
				t.Fatal(e)
			}
			child.fail.Store(0)
			if n, e := wb.Write(bg, fd, []byte("y"), 200); e != errno || n != 0 {
				t.Fatalf("write after a failed write: %d, %v; want 0, %v", n, e, errno)
			}
			write(t, wb, fd, []byte("z"), 300)
			if e := wb.Flush(bg, fd); e != 0 {
				t.Fatalf("flush once reported: %v", e)
			}
			if a, e := wb.Getattr(bg, fd.GFID); e != 0 || a.Size != 301 {
				t.Fatalf("size %d, %v: want 301 (only the last write landed)", a.Size, e)
			}
			if e := wb.Release(bg, fd); e != 0 {
				t.Fatal(e)
			}
		})
	}
}

// Settle waits for fd's file's writes, for tests.
func (x *WriteBehind) Settle(fd xl.Fd) syscall.Errno { return x.settle(bg, fd.GFID) }

// Writes through O_DSYNC, O_DIRECT or O_APPEND fds are not written
// behind: their errors come back from Write itself.
func TestSyncWritesNotBehind(t *testing.T) {
	for _, flag := range []uint32{syscall.O_DSYNC, syscall.O_SYNC, syscall.O_DIRECT, syscall.O_APPEND} {
		child := newSlowChild()
		wb := newWB(t, child, 0)
		fd := create(t, wb, "f", syscall.O_RDWR|flag)
		write(t, wb, fd, []byte("hello"), 0)
		child.fail.Store(int32(syscall.ENOSPC))
		if _, e := wb.Write(bg, fd, []byte("x"), 5); e != syscall.ENOSPC {
			t.Fatalf("flags %#x: write: %v, want ENOSPC", flag, e)
		}
		child.fail.Store(0)
		if e := wb.Flush(bg, fd); e != 0 {
			t.Fatalf("flags %#x: flush: %v; the error was reported already", flag, e)
		}
	}
}

// A write through a read-only fd fails at once.
func TestReadOnlyFdFailsAtOnce(t *testing.T) {
	wb := newWB(t, newSlowChild(), 0)
	fd := create(t, wb, "f", syscall.O_RDWR)
	ro, e := wb.Open(bg, fd.GFID, syscall.O_RDONLY)
	if e != 0 {
		t.Fatal(e)
	}
	if _, e := wb.Write(bg, ro, []byte("x"), 0); e != syscall.EBADF {
		t.Fatalf("write through a read-only fd: %v, want EBADF", e)
	}
}

// A sync write waits for the written-behind writes it overlaps.
func TestSyncWriteAfterPending(t *testing.T) {
	child := newSlowChild()
	child.jitter = true
	wb := newWB(t, child, 0)
	fd := create(t, wb, "f", syscall.O_RDWR)
	sfd, e := wb.Open(bg, fd.GFID, syscall.O_WRONLY|syscall.O_DSYNC)
	if e != 0 {
		t.Fatal(e)
	}
	for i := range 50 {
		write(t, wb, fd, bytes.Repeat([]byte{'a'}, 4096), 0)
		write(t, wb, sfd, []byte{byte('0' + i%10)}, 0)
		if got := readAll(t, child, fd); got[0] != byte('0'+i%10) {
			t.Fatalf("round %d: the sync write was overtaken: %q", i, got[:1])
		}
	}
}

// At most a window of acknowledged bytes is unfinished: a writer past it
// waits for the store.
func TestWindowBound(t *testing.T) {
	child := newSlowChild()
	release := child.hold()
	defer release()
	const window = 64 << 10
	wb := newWB(t, child, window)
	fd := create(t, wb, "f", syscall.O_RDWR)
	var acked atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 64 {
			if n, e := wb.Write(bg, fd, make([]byte, 4096), int64(i)*8192); e != 0 || n != 4096 {
				t.Errorf("write %d: %d, %v", i, n, e)
				return
			}
			acked.Add(4096)
		}
	}()
	// Whatever the scheduling, the gate holds every write: no more than a
	// window may be acknowledged.
	time.Sleep(50 * time.Millisecond)
	if n := acked.Load(); n > window {
		t.Fatalf("%d bytes acknowledged with none written; the window is %d", n, window)
	}
	release()
	<-done
	if e := wb.Flush(bg, fd); e != 0 {
		t.Fatal(e)
	}
	if got := readAll(t, child, fd); len(got) != 63*8192+4096 {
		t.Fatalf("store holds %d bytes", len(got))
	}
}

// Close sends what is pending and waits for it; no goroutine outlives it
// (goleak).
func TestCloseSendsPending(t *testing.T) {
	child := newSlowChild()
	release := child.hold()
	wb, err := New(child, Options{WindowSize: 1 << 20, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	fd := create(t, wb, "f", syscall.O_RDWR)
	want := make([]byte, 0, 100*4096)
	for i := range 100 {
		b := bytes.Repeat([]byte{byte(i)}, 4096)
		write(t, wb, fd, b, int64(i)*4096)
		want = append(want, b...)
	}
	closed := make(chan error)
	go func() { closed <- wb.Close() }()
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, child, fd); !bytes.Equal(got, want) {
		t.Fatalf("after close the store holds %d bytes, want %d", len(got), len(want))
	}
	// Once closed, writes go straight through.
	child.fail.Store(int32(syscall.EIO))
	if _, e := wb.Write(bg, fd, []byte("x"), 0); e != syscall.EIO {
		t.Fatalf("write after close: %v, want EIO", e)
	}
}

// Ops on other files do not wait for a file's pending writes.
func TestOtherFilesDoNotWait(t *testing.T) {
	child := newSlowChild()
	wb := newWB(t, child, 0)
	a := create(t, wb, "a", syscall.O_RDWR)
	b := create(t, wb, "b", syscall.O_RDWR)
	write(t, wb, b, []byte("b"), 0)
	if e := wb.Flush(bg, b); e != 0 {
		t.Fatal(e)
	}
	release := child.hold()
	defer release()
	write(t, wb, a, []byte("held"), 0)
	if _, e := wb.Getattr(bg, b.GFID); e != 0 {
		t.Fatal(e)
	}
	if _, e := wb.Lookup(bg, xl.RootGFID, "b"); e != 0 {
		t.Fatal(e)
	}
	if n, e := wb.Read(bg, b, make([]byte, 1), 0); e != 0 || n != 1 {
		t.Fatal(n, e)
	}
	// Even a's own bytes elsewhere are readable.
	if _, e := wb.Read(bg, a, make([]byte, 4), 100); e != 0 {
		t.Fatal(e)
	}
	release()
}

// Readdir reports the size pending writes give a file.
func TestReaddirSeesPendingSize(t *testing.T) {
	child := newSlowChild()
	child.jitter = true
	wb := newWB(t, child, 0)
	fd := create(t, wb, "f", syscall.O_RDWR)
	for i := range 20 {
		write(t, wb, fd, make([]byte, 4096), int64(i)*8192)
	}
	dfd, e := wb.Opendir(bg, xl.RootGFID)
	if e != 0 {
		t.Fatal(e)
	}
	defer wb.Releasedir(bg, dfd)
	ents, e := wb.Readdir(bg, dfd, 0, 100)
	if e != 0 {
		t.Fatal(e)
	}
	for _, d := range ents {
		if d.Name == "f" && d.Attr.GFID == fd.GFID && d.Attr.Size != 19*8192+4096 {
			t.Fatalf("readdir: f has size %d", d.Attr.Size)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("nil child accepted")
	}
	if _, err := New(newSlowChild(), Options{WindowSize: -1}); err == nil {
		t.Error("negative window accepted")
	}
}
