package fdl

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// gated passes everything to the store, except that a write to a blocked
// object waits until it is unblocked, and writes and size changes of a
// failing object fail without reaching the store. It records the writes it applies, in order.
type gated struct {
	xl.Xlator
	entered chan xl.GFID // a write to a blocked object arrived

	mu      sync.Mutex
	blocked map[xl.GFID]chan struct{}
	fail    map[xl.GFID]syscall.Errno
	applied []applied
}

type applied struct {
	gfid xl.GFID
	off  int64
	data []byte
}

func newGated(child xl.Xlator) *gated {
	return &gated{Xlator: child, entered: make(chan xl.GFID, 16), blocked: map[xl.GFID]chan struct{}{}, fail: map[xl.GFID]syscall.Errno{}}
}

func (g *gated) Write(ctx context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	g.mu.Lock()
	ch := g.blocked[fd.GFID]
	g.mu.Unlock()
	if ch != nil {
		g.entered <- fd.GFID
		<-ch
	}
	g.mu.Lock()
	e := g.fail[fd.GFID]
	if e == 0 {
		g.applied = append(g.applied, applied{fd.GFID, off, bytes.Clone(data)})
	}
	g.mu.Unlock()
	if e != 0 {
		return 0, e
	}
	return g.Xlator.Write(ctx, fd, data, off)
}

func (g *gated) Truncate(ctx context.Context, ino xl.GFID, size uint64) (xl.Attr, syscall.Errno) {
	if e := g.failing(ino); e != 0 {
		return xl.Attr{}, e
	}
	return g.Xlator.Truncate(ctx, ino, size)
}

func (g *gated) Setattr(ctx context.Context, ino xl.GFID, in xl.SetattrIn) (xl.Attr, syscall.Errno) {
	if e := g.failing(ino); e != 0 {
		return xl.Attr{}, e
	}
	return g.Xlator.Setattr(ctx, ino, in)
}

func (g *gated) failing(o xl.GFID) syscall.Errno {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fail[o]
}

func (g *gated) block(o xl.GFID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.blocked[o] = make(chan struct{})
}

func (g *gated) unblock(o xl.GFID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.blocked[o])
	delete(g.blocked, o)
}

func (g *gated) failWith(o xl.GFID, e syscall.Errno) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail[o] = e
}

func (g *gated) writesTo(o xl.GFID) []applied {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []applied
	for _, a := range g.applied {
		if a.gfid == o {
			out = append(out, a)
		}
	}
	return out
}

// openDeferred stacks a deferred fdl over a gated posix store.
func openDeferred(t *testing.T, dir, jdir string, opts Options) (*brick, *gated) {
	t.Helper()
	b := &brick{dir: dir, jdir: jdir, log: &logBuf{}}
	var err error
	if b.store, err = posix.New(dir, posix.Options{Logger: testLogger(&logBuf{})}); err != nil {
		t.Fatal(err)
	}
	b.j = openJournal(t, jdir)
	g := newGated(b.store)
	opts.Logger = testLogger(b.log)
	opts.Destage = DestageDeferred
	opts.Sync = SyncDir(dir)
	if b.f, err = New(g, b.j, opts); err != nil {
		t.Fatal(err)
	}
	return b, g
}

func create(t *testing.T, x xl.Xlator, name string) xl.Fd {
	t.Helper()
	fd, _, e := x.Create(bg, xl.RootGFID, name, xl.NewGFID(), syscall.O_RDWR|syscall.O_EXCL, 0o644)
	noErr(t, e)
	return fd
}

func write(t *testing.T, x xl.Xlator, fd xl.Fd, s string, off int64) {
	t.Helper()
	if n := must(x.Write(bg, fd, []byte(s), off)); n != len(s) {
		t.Fatalf("wrote %d of %d bytes", n, len(s))
	}
}

// readFd reads the whole file through an open fd, which it keeps open:
// releasing it would wait for destage.
func readFd(t *testing.T, x xl.Xlator, fd xl.Fd) string {
	t.Helper()
	buf := make([]byte, 1<<16)
	n := must(x.Read(bg, fd, buf, 0))
	return string(buf[:n])
}

// occupy makes the only destage worker wait inside the store on a write
// to a file of its own, so what is journaled next stays pending.
func occupy(t *testing.T, b *brick, g *gated) xl.GFID {
	t.Helper()
	fd := create(t, b.f, "blocker")
	g.block(fd.GFID)
	write(t, b.f, fd, "x", 0)
	if got := <-g.entered; got != fd.GFID {
		t.Fatalf("the worker entered a write to %v", got)
	}
	return fd.GFID
}

// A read right after a deferred write sees the new bytes, and attributes
// the new size, while the store still holds the old ones.
func TestDeferredReadSeesPendingWrite(t *testing.T) {
	b, g := openDeferred(t, t.TempDir(), t.TempDir(), Options{DestageWorkers: 1})
	defer b.close(t)
	f := b.f
	fd := create(t, f, "f")
	write(t, f, fd, "hello world", 0)
	noErr(t, f.Fsync(bg, fd, false))
	blocker := occupy(t, b, g)

	write(t, f, fd, "HELLO", 0)
	write(t, f, fd, "!!", 11)
	if got := readFd(t, f, fd); got != "HELLO world!!" {
		t.Fatalf("read through fdl = %q, want the pending writes", got)
	}
	if got := readAll(t, b.store, fd.GFID); got != "hello world" {
		t.Fatalf("store holds %q: the writes were applied, the test proves nothing", got)
	}
	// A read inside the file and one past the store's end.
	buf := make([]byte, 4)
	if n := must(f.Read(bg, fd, buf, 9)); string(buf[:n]) != "ld!!" {
		t.Fatalf("read at 9 = %q", buf[:n])
	}
	if a := must(f.Getattr(bg, fd.GFID)); a.Size != 13 {
		t.Fatalf("getattr size %d, want 13", a.Size)
	}
	if a := must(f.Lookup(bg, xl.RootGFID, "f")); a.Size != 13 {
		t.Fatalf("lookup size %d, want 13", a.Size)
	}
	dfd := must(f.Opendir(bg, xl.RootGFID))
	defer f.Releasedir(bg, dfd)
	found := false
	for _, de := range must(f.Readdir(bg, dfd, 0, 100)) {
		if de.Name == "f" {
			found = true
			if de.Attr.Size != 13 {
				t.Fatalf("readdir size %d, want 13", de.Attr.Size)
			}
		}
	}
	if !found {
		t.Fatal("readdir lost the file")
	}
	if st := f.DestageStat(); st.Entries != 3 || st.Objects != 2 || st.Bytes == 0 {
		t.Fatalf("DestageStat = %+v, want the blocker's and f's 2 entries pending", st)
	}

	g.unblock(blocker)
	noErr(t, f.Fsync(bg, fd, false))
	if got := readAll(t, b.store, fd.GFID); got != "HELLO world!!" {
		t.Fatalf("after fsync the store holds %q", got)
	}
	noErr(t, f.Release(bg, fd))
}

// Truncation and size-only setattr behind pending writes are deferred
// too; reads see the file cut and zero-filled where it grew again.
func TestDeferredTruncateThenRead(t *testing.T) {
	b, g := openDeferred(t, t.TempDir(), t.TempDir(), Options{DestageWorkers: 1})
	defer b.close(t)
	f := b.f
	fd := create(t, f, "f")
	write(t, f, fd, "hello world", 0)
	noErr(t, f.Fsync(bg, fd, false))
	blocker := occupy(t, b, g)

	write(t, f, fd, "HELLO", 0)
	if a := must(f.Truncate(bg, fd.GFID, 3)); a.Size != 3 {
		t.Fatalf("truncate returned size %d", a.Size)
	}
	if got := readFd(t, f, fd); got != "HEL" {
		t.Fatalf("after truncate read %q", got)
	}
	write(t, f, fd, "xy", 6)
	if got := readFd(t, f, fd); got != "HEL\x00\x00\x00xy" {
		t.Fatalf("after truncate and write read %q", got)
	}
	// What FUSE sends for ftruncate(2).
	if a := must(f.Setattr(bg, fd.GFID, xl.SetattrIn{Valid: xl.SetSize | xl.SetMtimeNow, Size: 7})); a.Size != 7 {
		t.Fatalf("setattr returned size %d", a.Size)
	}
	if got := readFd(t, f, fd); got != "HEL\x00\x00\x00x" {
		t.Fatalf("after setattr read %q", got)
	}
	if got := readAll(t, b.store, fd.GFID); got != "hello world" {
		t.Fatalf("store holds %q: something was applied early", got)
	}
	if st := b.j.Stat(); st.Applied >= st.LastIndex-4 {
		t.Fatalf("journal %+v: the truncations were applied in line", st)
	}

	g.unblock(blocker)
	noErr(t, f.Fsync(bg, fd, false))
	if got := readAll(t, b.store, fd.GFID); got != "HEL\x00\x00\x00x" {
		t.Fatalf("after fsync the store holds %q", got)
	}
	noErr(t, f.Release(bg, fd))
}

// Two objects are applied at the same time by two workers.
func TestDeferredObjectsDestageInParallel(t *testing.T) {
	b, g := openDeferred(t, t.TempDir(), t.TempDir(), Options{DestageWorkers: 2})
	defer b.close(t)
	f := b.f
	a, c := create(t, f, "a"), create(t, f, "c")
	g.block(a.GFID)
	g.block(c.GFID)
	write(t, f, a, "to a", 0)
	write(t, f, c, "to c", 0)
	// Both writes are inside the store at once: neither waits for the other.
	inside := map[xl.GFID]bool{<-g.entered: true, <-g.entered: true}
	if !inside[a.GFID] || !inside[c.GFID] {
		t.Fatalf("inside the store: %v", inside)
	}
	g.unblock(a.GFID)
	g.unblock(c.GFID)
	noErr(t, f.Release(bg, a))
	noErr(t, f.Release(bg, c))
	for fd, want := range map[xl.Fd]string{a: "to a", c: "to c"} {
		if got := readAll(t, b.store, fd.GFID); got != want {
			t.Fatalf("store holds %q, want %q", got, want)
		}
	}
}

// Concurrent overlapping writes to one file are applied in journal order,
// so the store ends as a replay of the journal would leave it.
func TestDeferredSameObjectInOrder(t *testing.T) {
	b, g := openDeferred(t, t.TempDir(), t.TempDir(), Options{DestageWorkers: 4})
	defer b.close(t)
	f := b.f
	fd := create(t, f, "f")
	const writers, each = 4, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				data := bytes.Repeat([]byte{byte(w*each + i)}, 1000)
				if _, e := f.Write(bg, fd, data, int64((i%5)*300)); e != 0 {
					t.Error(e)
					return
				}
			}
		})
	}
	wg.Wait()
	noErr(t, f.Fsync(bg, fd, false))

	var journaled []applied
	if err := b.j.Iterate(0, 0, func(r *journal.Record) error {
		if r.Fop.Op == xl.OpWrite && r.Fop.Fd.GFID == fd.GFID {
			journaled = append(journaled, applied{fd.GFID, r.Fop.Off, r.Fop.Data})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := g.writesTo(fd.GFID)
	if len(got) != writers*each || len(journaled) != writers*each {
		t.Fatalf("%d writes applied, %d journaled, want %d", len(got), len(journaled), writers*each)
	}
	want := make([]byte, 2200)
	for i := range journaled {
		if got[i].off != journaled[i].off || !bytes.Equal(got[i].data, journaled[i].data) {
			t.Fatalf("write %d applied out of journal order", i)
		}
		copy(want[journaled[i].off:], journaled[i].data)
	}
	if s := readAll(t, b.store, fd.GFID); s != string(want) {
		t.Fatal("store differs from a replay of the journal")
	}
	if s := readFd(t, f, fd); s != string(want) {
		t.Fatal("read through fdl differs from a replay of the journal")
	}
	noErr(t, f.Release(bg, fd))
}

// Past MaxPendingBytes a writer waits, before it is journaled, until
// destage frees room.
func TestDeferredBackpressure(t *testing.T) {
	const cost = 4096 + entryOverhead
	b, g := openDeferred(t, t.TempDir(), t.TempDir(), Options{DestageWorkers: 1, MaxPendingBytes: 3 * cost})
	defer b.close(t)
	f := b.f
	fd := create(t, f, "f")
	page := bytes.Repeat([]byte("p"), 4096)
	blk := create(t, f, "blocker")
	g.block(blk.GFID)
	must(f.Write(bg, blk, page, 0)) // 1 of 3
	<-g.entered
	must(f.Write(bg, fd, page, 0))    // 2 of 3
	must(f.Write(bg, fd, page, 4096)) // 3 of 3
	last := b.j.Stat().LastIndex

	done := make(chan syscall.Errno)
	go func() {
		_, e := f.Write(bg, fd, page, 8192)
		done <- e
	}()
	for f.DestageStat().Waiting != 1 {
		time.Sleep(time.Millisecond)
	}
	select {
	case e := <-done:
		t.Fatalf("a write over the cap returned (%v) while destage was stuck", e)
	default:
	}
	if st := b.j.Stat(); st.LastIndex != last {
		t.Fatalf("the waiting write was journaled: last index %d, was %d", st.LastIndex, last)
	}
	if st := f.DestageStat(); st.Bytes != 3*cost || st.Entries != 3 {
		t.Fatalf("DestageStat = %+v, want 3 entries holding the cap", st)
	}
	g.unblock(blk.GFID)
	noErr(t, <-done)
	noErr(t, f.Fsync(bg, fd, false))
	if got := readAll(t, b.store, fd.GFID); got != strings.Repeat("p", 3*4096) {
		t.Fatalf("store holds %d bytes", len(got))
	}
	noErr(t, f.Release(bg, fd))
	noErr(t, f.Release(bg, blk))
}

// A waiting writer gives up when its caller does, journaling nothing.
func TestDeferredBackpressureCancel(t *testing.T) {
	b, g := openDeferred(t, t.TempDir(), t.TempDir(), Options{DestageWorkers: 1, MaxPendingBytes: 1})
	defer b.close(t)
	blocker := occupy(t, b, g)
	fd := create(t, b.f, "f")
	last := b.j.Stat().LastIndex
	ctx, cancel := context.WithCancel(bg)
	done := make(chan syscall.Errno)
	go func() {
		_, e := b.f.Write(ctx, fd, []byte("late"), 0)
		done <- e
	}()
	for b.f.DestageStat().Waiting != 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if e := <-done; e != syscall.EINTR {
		t.Fatalf("cancelled waiting write = %v, want EINTR", e)
	}
	if got := b.j.Stat().LastIndex; got != last {
		t.Fatalf("cancelled write was journaled: %d, was %d", got, last)
	}
	g.unblock(blocker)
	noErr(t, b.f.Release(bg, fd))
}

// Entries acknowledged but not applied when the brick dies are applied
// when it comes back.
func TestDeferredCrashReplaysPending(t *testing.T) {
	dir, jdir := t.TempDir(), t.TempDir()
	b, g := openDeferred(t, dir, jdir, Options{DestageWorkers: 1})
	f := b.f
	fd := create(t, f, "f")
	write(t, f, fd, "base", 0)
	noErr(t, f.Fsync(bg, fd, false))
	blocker := occupy(t, b, g)
	write(t, f, fd, "one", 0)
	write(t, f, fd, "two", 8)
	must(f.Truncate(bg, fd.GFID, 10))

	// The crash: the journal stops where it is, and nothing more reaches
	// the store.
	if err := b.j.Close(); err != nil {
		t.Fatal(err)
	}
	g.failWith(fd.GFID, syscall.EIO)
	g.failWith(blocker, syscall.EIO)
	g.unblock(blocker)
	f.Close() // its last checkpoint fails: the journal is gone
	if got := readAll(t, b.store, fd.GFID); got != "base" {
		t.Fatalf("the store got the pending entries before the crash: %q", got)
	}
	if err := b.store.Close(); err != nil {
		t.Fatal(err)
	}

	b, _ = openDeferred(t, dir, jdir, Options{})
	defer b.close(t)
	// The blocker's write and f's three entries.
	if !strings.Contains(b.log.String(), "entries=4 failed=0") {
		t.Errorf("replay summary missing or failures:\n%s", b.log)
	}
	if got := readAll(t, b.store, fd.GFID); got != "onee\x00\x00\x00\x00tw" {
		t.Fatalf("after replay the store holds %q", got)
	}
}

// A metadata op waits for the object's pending writes: a time set after a
// write is not overwritten when the write is applied.
func TestDeferredSetattrAfterPendingWrite(t *testing.T) {
	b, g := openDeferred(t, t.TempDir(), t.TempDir(), Options{DestageWorkers: 2})
	defer b.close(t)
	f := b.f
	fd := create(t, f, "f")
	g.block(fd.GFID)
	write(t, f, fd, "data", 0)
	<-g.entered
	when := xl.Timespec{Sec: 1_000_000_000, Nsec: 5}
	done := make(chan xl.Attr)
	go func() {
		done <- must(f.Setattr(bg, fd.GFID, xl.SetattrIn{Valid: xl.SetMtime | xl.SetMode, Mtime: when, Mode: 0o600}))
	}()
	g.unblock(fd.GFID)
	if a := <-done; a.Mtime != when || a.Size != 4 {
		t.Fatalf("setattr returned mtime %v size %d", a.Mtime, a.Size)
	}
	noErr(t, f.Release(bg, fd))
	if a := must(b.store.Getattr(bg, fd.GFID)); a.Mtime != when || a.Mode&0o777 != 0o600 || a.Size != 4 {
		t.Fatalf("store: mtime %v mode %o size %d; the write was applied after the setattr", a.Mtime, a.Mode, a.Size)
	}
}

// An O_APPEND write lands after the pending writes, not under them.
func TestDeferredAppendAfterPendingWrites(t *testing.T) {
	b, g := openDeferred(t, t.TempDir(), t.TempDir(), Options{DestageWorkers: 2})
	defer b.close(t)
	f := b.f
	fd := create(t, f, "f")
	g.block(fd.GFID)
	write(t, f, fd, "0123456789", 0)
	<-g.entered
	afd := must(f.Open(bg, fd.GFID, syscall.O_WRONLY|syscall.O_APPEND))
	done := make(chan syscall.Errno)
	go func() {
		_, e := f.Write(bg, afd, []byte("Z"), 0)
		done <- e
	}()
	g.unblock(fd.GFID)
	noErr(t, <-done)
	noErr(t, f.Release(bg, afd))
	noErr(t, f.Release(bg, fd))
	if got := readAll(t, f, fd.GFID); got != "0123456789Z" {
		t.Fatalf("file holds %q", got)
	}
}

// A write the store refuses after it was acknowledged is reported by the
// file's next fsync or flush, once.
func TestDeferredDestageErrorReported(t *testing.T) {
	b, g := openDeferred(t, t.TempDir(), t.TempDir(), Options{})
	defer b.close(t)
	f := b.f
	fd := create(t, f, "f")
	g.failWith(fd.GFID, syscall.ENOSPC)
	write(t, f, fd, "lost", 0)
	if e := f.Fsync(bg, fd, false); e != syscall.ENOSPC {
		t.Fatalf("fsync after a failed destage = %v, want ENOSPC", e)
	}
	noErr(t, f.Fsync(bg, fd, false))
	write(t, f, fd, "lost again", 0)
	must(f.Lseek(bg, fd, 0, unix.SEEK_SET)) // waits for destage
	if e := f.Flush(bg, fd); e != syscall.ENOSPC {
		t.Fatalf("flush after a failed destage = %v, want ENOSPC", e)
	}
	noErr(t, f.Flush(bg, fd))
	g.failWith(fd.GFID, 0)
	write(t, f, fd, "kept", 0)
	noErr(t, f.Fsync(bg, fd, false))
	if !strings.Contains(b.log.String(), "destage failed") {
		t.Errorf("destage failure not logged:\n%s", b.log)
	}
	noErr(t, f.Release(bg, fd))
}

// Close applies everything pending and leaves nothing to replay.
func TestDeferredCloseDrains(t *testing.T) {
	dir, jdir := t.TempDir(), t.TempDir()
	b, _ := openDeferred(t, dir, jdir, Options{})
	fd := create(t, b.f, "f")
	for i := range 100 {
		write(t, b.f, fd, "abcdefgh", int64(i*8))
	}
	noErr(t, b.f.Release(bg, fd))
	b.close(t)
	j := openJournal(t, jdir)
	defer j.Close()
	if st := j.Stat(); st.Applied != st.LastIndex || st.Synced != st.LastIndex {
		t.Fatalf("after Close %+v: want everything applied and synced", st)
	}
	s, err := posix.New(dir, posix.Options{Logger: testLogger(&logBuf{})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := readAll(t, s, fd.GFID); got != strings.Repeat("abcdefgh", 100) {
		t.Fatalf("store holds %d bytes after Close", len(got))
	}
}

func TestOptionsValidated(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	for _, o := range []Options{
		{Destage: "later"},
		{MaxBytes: 1 << 20},
		{MaxBytes: -1, Sync: func(context.Context) error { return nil }},
	} {
		o.Logger = testLogger(&logBuf{})
		if f, err := New(xl.Unsupported{}, j, o); err == nil {
			f.Close()
			t.Errorf("New accepted %+v", o)
		}
	}
}

// overlay on its own: every combination of store bytes, writes and size
// changes against a byte-by-byte model.
func TestOverlayModel(t *testing.T) {
	store := []byte("0123456789abcdef") // 16 bytes
	ents := []*entry{
		{fop: xl.Fop{Op: xl.OpWrite, Off: 14, Data: []byte("WXYZ")}},
		{fop: xl.Fop{Op: xl.OpTruncate, Len: 6}},
		{fop: xl.Fop{Op: xl.OpWrite, Off: 9, Data: []byte("q")}},
		{fop: xl.Fop{Op: xl.OpSetattr, Setattr: xl.SetattrIn{Valid: xl.SetSize, Size: 12}}},
		{fop: xl.Fop{Op: xl.OpWrite, Off: 2, Data: []byte("ab")}},
	}
	for k := range len(ents) + 1 {
		model := bytes.Clone(store)
		for _, e := range ents[:k] {
			if sz, ok := e.resizes(); ok {
				if int(sz) < len(model) {
					model = model[:sz]
				} else {
					model = append(model, make([]byte, int(sz)-len(model))...)
				}
				continue
			}
			if end := int(e.fop.Off) + len(e.fop.Data); end > len(model) {
				model = append(model, make([]byte, end-len(model))...)
			}
			copy(model[e.fop.Off:], e.fop.Data)
		}
		for off := range 22 {
			for size := range 10 {
				dst := bytes.Repeat([]byte{'?'}, size)
				n := 0
				if off < len(store) {
					n = copy(dst, store[off:])
				}
				n = overlay(dst, int64(off), n, ents[:k])
				want := []byte{}
				if off < len(model) {
					want = model[off:min(off+size, len(model))]
				}
				if !bytes.Equal(dst[:n], want) {
					t.Fatalf("%d entries, read %d at %d: %q, want %q", k, size, off, dst[:n], want)
				}
			}
		}
		a := xl.Attr{Size: uint64(len(store))}
		foldAttr(&a, ents[:k])
		if a.Size != uint64(len(model)) {
			t.Fatalf("%d entries: size %d, want %d", k, a.Size, len(model))
		}
	}
}

// Past MaxBytes the FDL ends its term and prunes older ones, unless the
// reconciliation guard keeps them; the data survives a restart either way.
func TestMaxBytesPrunesOldTerms(t *testing.T) {
	for _, mode := range []string{DestageSync, DestageDeferred} {
		t.Run(mode, func(t *testing.T) {
			const maxBytes = 256 << 10
			dir, jdir := t.TempDir(), t.TempDir()
			open := func() *brick {
				b := &brick{dir: dir, jdir: jdir, log: &logBuf{}}
				var err error
				if b.store, err = posix.New(dir, posix.Options{Logger: testLogger(&logBuf{})}); err != nil {
					t.Fatal(err)
				}
				if b.j, err = journal.Open(jdir, journal.Options{SegmentSize: 64 << 10, Logger: testLogger(&logBuf{})}); err != nil {
					t.Fatal(err)
				}
				b.f, err = New(b.store, b.j, Options{Logger: testLogger(b.log), Sync: SyncDir(dir), Destage: mode,
					MaxBytes: maxBytes, CheckpointInterval: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			b := open()
			b.j.Retain(func(uint64) bool { return true })
			fd := create(t, b.f, "f")
			want := make([]byte, 0, 200*4096)
			for i := range 200 {
				page := bytes.Repeat([]byte{byte(i)}, 4096)
				must(b.f.Write(bg, fd, page, int64(i*4096)))
				want = append(want, page...)
			}
			noErr(t, b.f.Fsync(bg, fd, false))
			if err := b.f.checkpoint(bg); err != nil {
				t.Fatal(err)
			}
			st := b.j.Stat()
			if st.Bytes <= maxBytes || st.FirstIndex != 1 || len(st.Terms) < 2 {
				t.Fatalf("with every term retained: %d bytes in terms %v from index %d; want over the bound, several terms, nothing pruned",
					st.Bytes, st.Terms, st.FirstIndex)
			}
			if !strings.Contains(b.log.String(), "stays over MaxBytes") {
				t.Errorf("no warning that the bound cannot be kept:\n%s", b.log)
			}

			b.j.Retain(nil)
			if err := b.f.checkpoint(bg); err != nil {
				t.Fatal(err)
			}
			if st := b.j.Stat(); st.Bytes > maxBytes || st.FirstIndex == 1 {
				t.Fatalf("after pruning: %d bytes from index %d, want at most %d and old terms gone", st.Bytes, st.FirstIndex, maxBytes)
			}
			noErr(t, b.f.Release(bg, fd))
			b.close(t)

			b = open()
			defer b.close(t)
			if got := readAll(t, b.f, fd.GFID); got != string(want[:min(len(want), 1<<16)]) {
				t.Fatal("file changed across pruning and restart")
			}
			if a := must(b.f.Getattr(bg, fd.GFID)); a.Size != uint64(len(want)) {
				t.Fatalf("size %d after restart, want %d", a.Size, len(want))
			}
		})
	}
}

// Opening with O_TRUNC waits for the pending writes: they are not
// applied over the truncated file afterwards.
func TestDeferredOpenTruncAfterPendingWrite(t *testing.T) {
	b, g := openDeferred(t, t.TempDir(), t.TempDir(), Options{DestageWorkers: 2})
	defer b.close(t)
	f := b.f
	fd := create(t, f, "f")
	g.block(fd.GFID)
	write(t, f, fd, "stale data", 0)
	<-g.entered
	done := make(chan xl.Fd)
	go func() { done <- must(f.Open(bg, fd.GFID, syscall.O_RDWR|syscall.O_TRUNC)) }()
	g.unblock(fd.GFID)
	tfd := <-done
	noErr(t, f.Release(bg, tfd))
	noErr(t, f.Release(bg, fd))
	if a := must(b.store.Getattr(bg, fd.GFID)); a.Size != 0 {
		t.Fatalf("store size %d after O_TRUNC: a pending write was applied after it", a.Size)
	}
}
