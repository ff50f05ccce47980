package fdl

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bg = context.Background()

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger(b *logBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openJournal(t *testing.T, dir string) *journal.Journal {
	t.Helper()
	j, err := journal.Open(dir, journal.Options{Logger: testLogger(&logBuf{})})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func lastRecord(t *testing.T, j *journal.Journal) *journal.Record {
	t.Helper()
	var last *journal.Record
	if err := j.Iterate(0, j.Stat().LastIndex, func(r *journal.Record) error { last = r; return nil }); err != nil {
		t.Fatal(err)
	}
	return last
}

// sampleFop fills every field an op's typed method carries.
func sampleFop(o xl.Op) *xl.Fop {
	g1, g2 := xl.NewGFID(), xl.NewGFID()
	f := &xl.Fop{
		Op: o, GFID: g1, GFID2: g2, Name: "n1", Name2: "n2",
		Fd:    xl.Fd{GFID: g1, H: 77, Flags: syscall.O_RDWR},
		Flags: 1, Mode: 0o644, Rdev: 3, Off: 4096, Len: 10,
		Setattr: xl.SetattrIn{Valid: xl.SetMode | xl.SetSize, Mode: 0o600, Size: 99},
		Data:    []byte("payload"),
		Xdata:   xl.Xdata{"k": []byte("v")},
	}
	if o == xl.OpOpen {
		f.Flags = syscall.O_RDWR | syscall.O_TRUNC
	}
	return f
}

// Every op whose table row says it mutates must be journaled, in full and
// before the child sees it; no other op may be. Walking the table means
// an op added to xl later fails here until fdl handles it.
func TestEveryMutatingOpIsJournaled(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	var (
		mu       sync.Mutex
		seen     *xl.Fop
		loggedAt uint64
	)
	leaf := xl.Funnel{H: func(ctx context.Context, fop *xl.Fop) *xl.Result {
		mu.Lock()
		defer mu.Unlock()
		c := *fop
		seen, loggedAt = &c, j.Stat().LastIndex
		return &xl.Result{}
	}}
	f, err := New(leaf, j, Options{Logger: testLogger(&logBuf{})})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	call := &xl.Call{Uid: 1000, Gid: 1000, Groups: []uint32{10}, Pid: 42, Client: [16]byte{9}, Seq: 5}
	ctx := xl.WithCall(bg, call)

	check := func(fop *xl.Fop) {
		t.Helper()
		before := j.Stat().LastIndex
		seen = nil
		xl.Dispatch(ctx, f, fop)
		after := j.Stat().LastIndex
		if !fop.Mutates() {
			if after != before {
				t.Errorf("%v (flags %#x) does not mutate but was journaled", fop.Op, fop.Flags)
			}
			return
		}
		if after != before+1 {
			t.Errorf("%v mutates but was not journaled", fop.Op)
			return
		}
		if seen == nil || seen.Op != fop.Op {
			t.Errorf("%v was journaled but not applied to the child", fop.Op)
			return
		}
		if loggedAt != after {
			t.Errorf("%v reached the child before its journal record", fop.Op)
		}
		rec := lastRecord(t, j)
		if !reflect.DeepEqual(rec.Fop, *seen) {
			t.Errorf("%v journaled\n %+v\nbut the child got\n %+v", fop.Op, rec.Fop, *seen)
		}
		if !reflect.DeepEqual(rec.Call, *call) {
			t.Errorf("%v journaled caller %+v, want %+v", fop.Op, rec.Call, *call)
		}
	}
	mutating := 0
	for o := xl.Op(1); o.Valid(); o++ {
		fop := sampleFop(o)
		if fop.Mutates() {
			mutating++
		}
		check(fop)
	}
	if mutating < 15 {
		t.Fatalf("only %d mutating ops in the table", mutating)
	}
	plainOpen := sampleFop(xl.OpOpen)
	plainOpen.Flags = syscall.O_RDWR
	check(plainOpen)
}

type brick struct {
	dir, jdir string
	store     *posix.Store
	j         *journal.Journal
	f         *FDL
	syncs     *atomic.Int64
	log       *logBuf
}

// openBrick stacks fdl over a posix store; withSync wires checkpoints.
func openBrick(t *testing.T, dir, jdir string, withSync bool) *brick {
	t.Helper()
	b := &brick{dir: dir, jdir: jdir, syncs: &atomic.Int64{}, log: &logBuf{}}
	var err error
	if b.store, err = posix.New(dir, posix.Options{Logger: testLogger(&logBuf{})}); err != nil {
		t.Fatal(err)
	}
	b.j = openJournal(t, jdir)
	opts := Options{Logger: testLogger(b.log)}
	if withSync {
		syncDir := SyncDir(dir)
		opts.Sync = func(ctx context.Context) error {
			b.syncs.Add(1)
			return syncDir(ctx)
		}
	}
	if b.f, err = New(b.store, b.j, opts); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *brick) close(t *testing.T) {
	t.Helper()
	if err := b.f.Close(); err != nil {
		t.Error(err)
	}
	if err := b.j.Close(); err != nil {
		t.Error(err)
	}
	if err := b.store.Close(); err != nil {
		t.Error(err)
	}
}

// must unwraps a (value, errno) result; an errno fails the test through
// the panic's stack trace, which names the call.
func must[T any](v T, e syscall.Errno) T {
	if e != 0 {
		panic(fmt.Sprintf("unexpected errno %v", e))
	}
	return v
}

func noErr(t *testing.T, e syscall.Errno) {
	t.Helper()
	if e != 0 {
		t.Fatalf("unexpected errno %v", e)
	}
}

func readAll(t *testing.T, x xl.Xlator, g xl.GFID) string {
	t.Helper()
	fd := must(x.Open(bg, g, syscall.O_RDONLY))
	defer x.Release(bg, fd)
	buf := make([]byte, 1<<16)
	n := must(x.Read(bg, fd, buf, 0))
	return string(buf[:n])
}

func TestOverPosixJournalsAndCheckpoints(t *testing.T) {
	b := openBrick(t, t.TempDir(), t.TempDir(), true)
	f := b.f
	d := must(f.Mkdir(bg, xl.RootGFID, "d", xl.NewGFID(), 0o755))
	fd, a, e := f.Create(bg, d.GFID, "file", xl.NewGFID(), syscall.O_RDWR|syscall.O_EXCL, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	if n := must(f.Write(bg, fd, []byte("hello, journal"), 0)); n != 14 {
		t.Fatalf("wrote %d", n)
	}
	if e := f.Fsync(bg, fd, false); e != 0 {
		t.Fatal(e)
	}
	noErr(t, f.Release(bg, fd))
	must(f.Setattr(bg, a.GFID, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o600}))
	noErr(t, f.Rename(bg, d.GFID, "file", xl.RootGFID, "moved", 0))
	if got := readAll(t, f, a.GFID); got != "hello, journal" {
		t.Fatalf("read %q through fdl", got)
	}
	if e := f.Unlink(bg, d.GFID, "missing"); e != syscall.ENOENT {
		t.Fatalf("unlink of a missing name = %v, want ENOENT from the store", e)
	}
	// mkdir, create, write, setattr, rename, unlink: 6 entries; open,
	// read, fsync and release are not journaled.
	st := b.j.Stat()
	if st.LastIndex != 6 || st.Applied != 6 {
		t.Fatalf("journal %+v, want 6 entries all applied", st)
	}
	b.close(t)
	if b.syncs.Load() == 0 {
		t.Fatal("Close did not sync the store")
	}
	j := openJournal(t, b.jdir)
	defer j.Close()
	if st := j.Stat(); st.Synced != 6 {
		t.Fatalf("after a clean close synced = %d, want 6", st.Synced)
	}
	if err := j.Unapplied(func(r *journal.Record) error {
		t.Errorf("entry %d left to replay after a clean close", r.Index)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Entries journaled but never applied (the brick died between the two)
// are applied on the next start, as their original callers.
func TestReplayAfterCrash(t *testing.T) {
	dir, jdir := t.TempDir(), t.TempDir()
	b := openBrick(t, dir, jdir, true)
	d := must(b.f.Mkdir(bg, xl.RootGFID, "d", xl.NewGFID(), 0o755))
	fd, keep, e := b.f.Create(bg, d.GFID, "keep", xl.NewGFID(), syscall.O_RDWR, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	must(b.f.Write(bg, fd, []byte("kept"), 0))
	b.f.Release(bg, fd)

	// The crash: these reach the journal, never the store.
	newG, subG := xl.NewGFID(), xl.NewGFID()
	who := xl.Call{Uid: 1234, Gid: 5678, Client: [16]byte{1}, Seq: 1}
	lost := []xl.Fop{
		{Op: xl.OpCreate, GFID: d.GFID, Name: "new", GFID2: newG, Flags: syscall.O_RDWR | syscall.O_EXCL, Mode: 0o640},
		{Op: xl.OpWrite, Fd: xl.Fd{GFID: newG, H: 999, Flags: syscall.O_WRONLY | syscall.O_APPEND}, Data: []byte("replayed data")},
		{Op: xl.OpMkdir, GFID: d.GFID, Name: "sub", GFID2: subG, Mode: 0o700},
		{Op: xl.OpSetxattr, GFID: newG, Name: "user.k", Data: []byte("v")},
		{Op: xl.OpRename, GFID: d.GFID, Name: "keep", GFID2: d.GFID, Name2: "kept"},
		{Op: xl.OpUnlink, GFID: d.GFID, Name: "never-existed"},
	}
	for _, fop := range lost {
		if _, err := b.j.Append(bg, &journal.Record{Call: who, Fop: fop}); err != nil {
			t.Fatal(err)
		}
	}
	b.close(t)

	b = openBrick(t, dir, jdir, true)
	defer b.close(t)
	if !strings.Contains(b.log.String(), "entries=6 failed=0") {
		t.Errorf("replay summary missing or failures:\n%s", b.log)
	}
	s := b.store
	a := must(s.Lookup(bg, d.GFID, "new"))
	if a.GFID != newG || a.Uid != 1234 || a.Gid != 5678 {
		t.Fatalf("replayed create: gfid %v uid %d gid %d, want %v 1234 5678", a.GFID, a.Uid, a.Gid, newG)
	}
	if got := readAll(t, s, newG); got != "replayed data" {
		t.Fatalf("replayed write: file holds %q", got)
	}
	if v := must(s.Getxattr(bg, newG, "user.k")); string(v) != "v" {
		t.Fatalf("replayed setxattr: %q", v)
	}
	if a := must(s.Lookup(bg, d.GFID, "sub")); a.GFID != subG {
		t.Fatalf("replayed mkdir made %v", a.GFID)
	}
	if a := must(s.Lookup(bg, d.GFID, "kept")); a.GFID != keep.GFID {
		t.Fatal("replayed rename lost the file")
	}
	if _, e := s.Lookup(bg, d.GFID, "keep"); e != syscall.ENOENT {
		t.Fatalf("old name after replayed rename: %v", e)
	}
	if st := b.j.Stat(); st.Applied != st.LastIndex || st.Synced != st.LastIndex {
		t.Fatalf("after replay %+v: everything should be applied and synced", st)
	}
}

// Replaying entries the store already has changes nothing: here the
// whole journal is replayed over a store that applied all of it.
func TestReplayIsIdempotent(t *testing.T) {
	dir, jdir := t.TempDir(), t.TempDir()
	b := openBrick(t, dir, jdir, false)
	f := b.f
	d := must(f.Mkdir(bg, xl.RootGFID, "d", xl.NewGFID(), 0o755))
	fd, a, e := f.Create(bg, d.GFID, "f", xl.NewGFID(), syscall.O_RDWR|syscall.O_EXCL, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	must(f.Write(bg, fd, []byte("abcdef"), 0))
	f.Release(bg, fd)
	must(f.Link(bg, a.GFID, d.GFID, "g"))
	sym := must(f.Symlink(bg, d.GFID, "s", xl.NewGFID(), "f"))
	fifo := must(f.Mknod(bg, d.GFID, "p", xl.NewGFID(), syscall.S_IFIFO|0o600, 0))
	noErr(t, f.Setxattr(bg, a.GFID, "user.x", []byte("1"), 0))
	noErr(t, f.Rename(bg, d.GFID, "g", d.GFID, "h", 0))
	noErr(t, f.Unlink(bg, d.GFID, "h"))
	must(f.Truncate(bg, a.GFID, 3))
	must(f.Mkdir(bg, d.GFID, "gone", xl.NewGFID(), 0o755))
	noErr(t, f.Rmdir(bg, d.GFID, "gone"))
	b.close(t)
	// Lose every watermark: all 12 entries count as unapplied.
	if err := os.Remove(filepath.Join(jdir, "applied")); err != nil {
		t.Fatal(err)
	}

	b = openBrick(t, dir, jdir, false)
	defer b.close(t)
	if !strings.Contains(b.log.String(), "entries=12 failed=0") {
		t.Errorf("replay of applied entries reported failures:\n%s", b.log)
	}
	s := b.store
	if got := readAll(t, s, a.GFID); got != "abc" {
		t.Fatalf("file holds %q after replay, want abc", got)
	}
	for name, g := range map[string]xl.GFID{"f": a.GFID, "s": sym.GFID, "p": fifo.GFID} {
		if got := must(s.Lookup(bg, d.GFID, name)); got.GFID != g {
			t.Errorf("%s is %v after replay, want %v", name, got.GFID, g)
		}
	}
	for _, name := range []string{"g", "h", "gone"} {
		if _, e := s.Lookup(bg, d.GFID, name); e != syscall.ENOENT {
			t.Errorf("%s exists after replay (%v)", name, e)
		}
	}
	if got := must(s.Getattr(bg, a.GFID)); got.Nlink != 1 {
		t.Errorf("file has %d links after replay, want 1", got.Nlink)
	}
}

// A request the journal cannot take never reaches the store.
func TestRefusedRequestIsNotApplied(t *testing.T) {
	b := openBrick(t, t.TempDir(), t.TempDir(), false)
	defer b.store.Close()
	defer b.f.Close()
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	if _, e := b.f.Mkdir(cancelled, xl.RootGFID, "a", xl.NewGFID(), 0o755); e != syscall.EINTR {
		t.Fatalf("mkdir with a cancelled context = %v, want EINTR", e)
	}
	if err := b.j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, e := b.f.Mkdir(bg, xl.RootGFID, "b", xl.NewGFID(), 0o755); e != syscall.ENOTCONN {
		t.Fatalf("mkdir with the journal closed = %v, want ENOTCONN", e)
	}
	for _, name := range []string{"a", "b"} {
		if _, e := b.store.Lookup(bg, xl.RootGFID, name); e != syscall.ENOENT {
			t.Errorf("refused mkdir %s reached the store (%v)", name, e)
		}
	}
	// Reads still pass through.
	if _, e := b.f.Getattr(bg, xl.RootGFID); e != 0 {
		t.Fatalf("getattr = %v", e)
	}
}

func TestNewValidates(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	if _, err := New(nil, j, Options{}); err == nil {
		t.Fatal("New without a child succeeded")
	}
	if _, err := New(xl.Unsupported{}, nil, Options{}); err == nil {
		t.Fatal("New without a journal succeeded")
	}
}
