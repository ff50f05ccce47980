package fuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// dirCounter counts, per directory, the Readdirs from the start begun
// and ended, and the Opendirs and Releasedirs; it keeps the caller of the
// last Readdir from the start of each directory.
type dirCounter struct {
	xl.Base
	mu                 sync.Mutex
	starts, ends       map[xl.GFID]int
	startedBy          map[xl.GFID]xl.Call
	opens, releases    int
	anonymous, handled int // Readdirs through an anonymous fd, through an opened one
}

func newDirCounter(t *testing.T) *dirCounter {
	return &dirCounter{Base: xl.Base{Xlator: newLeaf(t)}, starts: make(map[xl.GFID]int),
		ends: make(map[xl.GFID]int), startedBy: make(map[xl.GFID]xl.Call)}
}

func (c *dirCounter) Readdir(ctx context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	c.mu.Lock()
	if off == 0 {
		c.starts[fd.GFID]++
		c.startedBy[fd.GFID] = *xl.CallFrom(ctx)
	}
	if fd.H == 0 {
		c.anonymous++
	} else {
		c.handled++
	}
	c.mu.Unlock()
	ents, e := c.Base.Readdir(ctx, fd, off, max)
	if off == 0 {
		c.mu.Lock()
		c.ends[fd.GFID]++
		c.mu.Unlock()
	}
	return ents, e
}

func (c *dirCounter) Opendir(ctx context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	fd, e := c.Base.Opendir(ctx, ino)
	if e == 0 {
		c.mu.Lock()
		c.opens++
		c.mu.Unlock()
	}
	return fd, e
}

func (c *dirCounter) Releasedir(ctx context.Context, fd xl.Fd) syscall.Errno {
	c.mu.Lock()
	c.releases++
	c.mu.Unlock()
	return c.Base.Releasedir(ctx, fd)
}

func (c *dirCounter) startsOf(g xl.GFID) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.starts[g]
}

func (c *dirCounter) endsOf(g xl.GFID) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ends[g]
}

func (c *dirCounter) anonymousReads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.anonymous
}

// eventually polls cond until it holds; it fails the test after a
// minute, which only a hang takes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not: %s", what)
		}
	}
}

// makeTree makes n subdirectories s00... of a new directory "top", each
// with files files, through x; it returns their GFIDs in order.
func makeTree(t *testing.T, x xl.Xlator, n, files int) []xl.GFID {
	t.Helper()
	ctx := context.Background()
	top, e := x.Mkdir(ctx, xl.RootGFID, "top", xl.NewGFID(), 0o755)
	if e != 0 {
		t.Fatal(e)
	}
	var subs []xl.GFID
	for i := range n {
		a, e := x.Mkdir(ctx, top.GFID, fmt.Sprintf("s%02d", i), xl.NewGFID(), 0o755)
		if e != 0 {
			t.Fatal(e)
		}
		makeFiles(t, x, a.GFID, "f", files)
		subs = append(subs, a.GFID)
	}
	return subs
}

// readNames lists dir, without sorting.
func readNames(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// A walk (list a directory, then each subdirectory in the order listed)
// finds the subdirectories after the first read already: each is read
// from its start once, by the listing readahead, and lists all it holds.
// Every directory opened below is released once closed.
func TestListingReadahead(t *testing.T) {
	c := newDirCounter(t)
	// The clock stands still: however slow the machine, what was read
	// ahead is served.
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t), now: (&fakeClock{}).now})
	subs := makeTree(t, c, 4, 3)
	top := filepath.Join(dir, "top")
	order := readNames(t, top) // the listing order, which the walk keeps
	if len(order) != len(subs) {
		t.Fatalf("top lists %v", order)
	}
	byName := make(map[string]xl.GFID)
	for i, g := range subs {
		byName[fmt.Sprintf("s%02d", i)] = g
	}
	for i, name := range order {
		if i == 1 {
			// The first opening read the others ahead.
			for _, n := range order[1:] {
				eventually(t, n+" read ahead", func() bool { return c.startsOf(byName[n]) == 1 })
			}
		}
		got := readNames(t, filepath.Join(top, name))
		slices.Sort(got)
		if want := []string{"f00000", "f00001", "f00002"}; !slices.Equal(got, want) {
			t.Errorf("%s lists %v, want %v", name, got, want)
		}
		if n := c.startsOf(byName[name]); n != 1 {
			t.Errorf("%s read from its start %d times, want 1", name, n)
		}
	}
	eventually(t, "every Opendir released", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.opens == len(subs)+1 && c.releases == c.opens
	})
}

// allReleased waits until every directory opened below is released.
func allReleased(t *testing.T, c *dirCounter) {
	t.Helper()
	eventually(t, "every Opendir released", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.opens == c.releases
	})
}

// This mount's own change between a directory's readahead and its
// opening shows in its listing. What the readahead opened is released.
func TestListingReadaheadOwnChange(t *testing.T) {
	c := newDirCounter(t)
	// The clock stands still: only the change voids what was read ahead.
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t), now: (&fakeClock{}).now})
	top, order, second := twoDirs(t, c, dir)
	readNames(t, filepath.Join(top, order[0]))
	eventually(t, "second read ahead", func() bool { return c.startsOf(second) == 1 })
	if err := os.WriteFile(filepath.Join(top, order[1], "new"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := readNames(t, filepath.Join(top, order[1]))
	if !slices.Contains(got, "new") {
		t.Errorf("%s lists %v, without the file this mount just made", order[1], got)
	}
	allReleased(t, c)
}

// Unmounting releases what was opened for batches read ahead and never
// served.
func TestUnmountReleasesReadahead(t *testing.T) {
	c := newDirCounter(t)
	dir, m := mountWith(t, c, Options{Logger: testLogger(t), now: (&fakeClock{}).now})
	_, second := walkToSecond(t, c, dir)
	// The kernel sends the RELEASEDIR of a closed directory in the
	// background, and one still queued at unmount is dropped with the
	// connection: wait until only the read-ahead's Opendir is open.
	eventually(t, "the walked directories released", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.opens-c.releases == 1
	})
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	m.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.starts[second] != 1 || c.opens != c.releases {
		t.Errorf("second read %d times; %d Opendirs, %d Releasedirs", c.starts[second], c.opens, c.releases)
	}
}

// With the kernel's caches off, a listing is never older than its
// opening: another client's change made before it shows.
func TestListingReadaheadOffWithoutCaches(t *testing.T) {
	c := newDirCounter(t)
	dir, m := mountWith(t, c, Options{Logger: testLogger(t), EntryTimeout: -1})
	top, order, second := twoDirs(t, c, dir)
	readNames(t, filepath.Join(top, order[0]))
	// The opening of the first started whatever it reads ahead before it
	// answered.
	m.vol.early.mu.Lock()
	started := len(m.vol.early.m)
	m.vol.early.mu.Unlock()
	if started != 0 || c.startsOf(second) != 0 {
		t.Errorf("%d directories read ahead, the second read %d times before it was opened", started, c.startsOf(second))
	}
	// Another client: straight to the translator.
	makeFiles(t, c, second, "other", 1)
	got := readNames(t, filepath.Join(top, order[1]))
	if !slices.Contains(got, "other00000") {
		t.Errorf("%s lists %v, without the file made before it was opened", order[1], got)
	}
}

// slowOpen holds every Opendir until gate is opened or its context
// ends, and then fails it with fail if that is set.
type slowOpen struct {
	*dirCounter
	gate chan struct{}
	once sync.Once
	fail syscall.Errno
}

// newSlowOpen holds the Opendirs of c; the gate opens at the latest as
// the test ends, so that a failing test does not hang.
func newSlowOpen(t *testing.T, c *dirCounter, fail syscall.Errno) *slowOpen {
	s := &slowOpen{dirCounter: c, gate: make(chan struct{}), fail: fail}
	t.Cleanup(s.open)
	return s
}

func (s *slowOpen) open() { s.once.Do(func() { close(s.gate) }) }

func (s *slowOpen) Opendir(ctx context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	select {
	case <-s.gate:
	case <-ctx.Done():
		return xl.Fd{}, syscall.ECANCELED
	}
	if s.fail != 0 {
		return xl.Fd{}, s.fail
	}
	return s.dirCounter.Opendir(ctx, ino)
}

// listAsync lists dir in the background; the result comes on the
// channel.
func listAsync(dir string) <-chan listResult {
	ch := make(chan listResult, 1)
	go func() {
		f, err := os.Open(dir)
		if err != nil {
			ch <- listResult{err: err}
			return
		}
		defer f.Close()
		names, err := f.Readdirnames(-1)
		ch <- listResult{names, err}
	}()
	return ch
}

type listResult struct {
	names []string
	err   error
}

// A listing does not wait for the Opendir below to read: it reads
// through an anonymous fd meanwhile, to the end. It ends once the
// Opendir has answered. What the Opendir opened is released once the
// directory is closed.
func TestOpendirBesideReads(t *testing.T) {
	c := newDirCounter(t)
	s := newSlowOpen(t, c, 0)
	dir, _ := mount(t, s)
	ctx := context.Background()
	d, e := c.Mkdir(ctx, xl.RootGFID, "d", xl.NewGFID(), 0o755)
	if e != 0 {
		t.Fatal(e)
	}
	const n = readdirBatch + readaheadBatch + 10
	makeFiles(t, c, d.GFID, "f", n)
	res := listAsync(filepath.Join(dir, "d"))
	// Three batches and the empty one that ends the listing.
	eventually(t, "the listing read to its end", func() bool { return c.anonymousReads() == 4 })
	s.open()
	r := <-res
	if r.err != nil || len(r.names) != n {
		t.Errorf("listed %d names, err %v; want %d", len(r.names), r.err, n)
	}
	c.mu.Lock()
	anon, handled := c.anonymous, c.handled
	c.mu.Unlock()
	if anon != 4 || handled != 0 {
		t.Errorf("readdirs: %d anonymous, %d through a handle; want 4, 0", anon, handled)
	}
	eventually(t, "Opendir released", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.opens == 1 && c.releases == 1
	})
}

// An Opendir that fails after a listing read through the anonymous fd
// fails the listing: it does not end as though the directory could be
// read.
func TestOpendirFailsListing(t *testing.T) {
	c := newDirCounter(t)
	s := newSlowOpen(t, c, syscall.EIO)
	dir, _ := mount(t, s)
	d, e := c.Mkdir(context.Background(), xl.RootGFID, "d", xl.NewGFID(), 0o755)
	if e != 0 {
		t.Fatal(e)
	}
	makeFiles(t, c, d.GFID, "f", 3)
	res := listAsync(filepath.Join(dir, "d"))
	// The batch and the empty one that ends the listing.
	eventually(t, "the listing read to its end", func() bool { return c.anonymousReads() == 2 })
	s.open()
	if r := <-res; !errors.Is(r.err, syscall.EIO) {
		t.Errorf("listing ended with %v (%d names), want EIO", r.err, len(r.names))
	}
}

// Unmounting while an Opendir below is in flight cancels it, and leaves
// no goroutine behind.
func TestUnmountDuringOpendir(t *testing.T) {
	c := newDirCounter(t)
	s := newSlowOpen(t, c, 0)
	ignore := goleak.IgnoreCurrent()
	dir := t.TempDir()
	m, err := Mount(dir, s, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	unmountOrHang(t, m, "the Opendir in flight", s.open)
	goleak.VerifyNone(t, ignore)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opens != c.releases {
		t.Errorf("%d Opendirs, %d Releasedirs", c.opens, c.releases)
	}
}

// A directory read ahead is served only while the kernel's caches could
// be as old: past that, another client's change made before the
// opening shows.
func TestListingReadaheadExpires(t *testing.T) {
	c := newDirCounter(t)
	clock := &fakeClock{}
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t), now: clock.now})
	top, order, second := twoDirs(t, c, dir)
	readNames(t, filepath.Join(top, order[0]))
	eventually(t, "second read ahead", func() bool { return c.startsOf(second) == 1 })
	clock.advance(defaultTimeout + time.Nanosecond)
	makeFiles(t, c, second, "other", 1) // another client: straight to the translator
	got := readNames(t, filepath.Join(top, order[1]))
	if !slices.Contains(got, "other00000") {
		t.Errorf("%s lists %v, from a readahead older than the caches", order[1], got)
	}
}

// failFirst fails the first Readdir of dir from its start.
type failFirst struct {
	*dirCounter
	dir    atomic.Pointer[xl.GFID]
	failed atomic.Bool
}

func (f *failFirst) Readdir(ctx context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	if d := f.dir.Load(); d != nil && fd.GFID == *d && off == 0 && f.failed.CompareAndSwap(false, true) {
		f.mu.Lock()
		f.starts[fd.GFID]++
		f.mu.Unlock()
		return nil, syscall.EACCES
	}
	return f.dirCounter.Readdir(ctx, fd, off, max)
}

// A read ahead that failed, perhaps for want of the walker's permission,
// is not the answer of the opendir that comes for it: that one reads
// again, as its own caller.
func TestListingReadaheadFailed(t *testing.T) {
	c := newDirCounter(t)
	f := &failFirst{dirCounter: c}
	// The clock stands still: only the failure keeps the read ahead from
	// being served.
	dir, _ := mountWith(t, f, Options{Logger: testLogger(t), now: (&fakeClock{}).now})
	top, order, second := twoDirs(t, c, dir)
	f.dir.Store(&second)
	readNames(t, filepath.Join(top, order[0]))
	eventually(t, "second read ahead", func() bool { return c.startsOf(second) == 1 })
	if got := readNames(t, filepath.Join(top, order[1])); !slices.Equal(got, []string{"f00000"}) {
		t.Errorf("%s lists %v, want [f00000]", order[1], got)
	}
}

// twoDirs makes a tree of two subdirectories of top through c and lists
// top. It returns top, the subdirectories in the order listed, and the
// GFID of the second.
func twoDirs(t *testing.T, c *dirCounter, dir string) (string, []string, xl.GFID) {
	t.Helper()
	subs := makeTree(t, c, 2, 1)
	top := filepath.Join(dir, "top")
	order := readNames(t, top)
	second := subs[0]
	if order[1] == "s01" {
		second = subs[1]
	}
	return top, order, second
}

// walkToSecond makes a tree of two subdirectories of top through c, lists
// top, then the first subdirectory in the order listed, and waits until
// the second has been read ahead. It returns the second's path and GFID.
func walkToSecond(t *testing.T, c *dirCounter, dir string) (string, xl.GFID) {
	t.Helper()
	top, order, second := twoDirs(t, c, dir)
	readNames(t, filepath.Join(top, order[0]))
	eventually(t, "second read ahead", func() bool { return c.endsOf(second) == 1 })
	return filepath.Join(top, order[1]), second
}

// A batch read ahead as one caller is not served to another, whom the
// bricks did not check: that one's opening reads as itself.
func TestListingReadaheadOtherCaller(t *testing.T) {
	c := newDirCounter(t)
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t), now: (&fakeClock{}).now})
	// t.TempDir's parent is private; the user must reach the mount.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	path, second := walkToSecond(t, c, dir)
	cmd := exec.Command("ls", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1234, Gid: 1235}}
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "f00000\n" {
		t.Fatalf("ls as uid 1234: %v: %q", err, out)
	}
	c.mu.Lock()
	by := c.startedBy[second]
	c.mu.Unlock()
	if n := c.startsOf(second); n != 2 || by.Uid != 1234 || by.Gid != 1235 {
		t.Errorf("second read from its start %d times, last as %d:%d; want twice, last as 1234:1235", n, by.Uid, by.Gid)
	}
	allReleased(t, c)
}

// What a batch read ahead shows is cached by the kernel only for what is
// left of the timeouts since it was read: another client's change shows
// no later than AttrTimeout after the read, not a whole timeout after
// the batch was served.
func TestListingReadaheadAttrLifetime(t *testing.T) {
	c := newDirCounter(t)
	clock := &fakeClock{}
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t), now: clock.now, AttrTimeout: time.Hour, EntryTimeout: time.Hour})
	path, second := walkToSecond(t, c, dir)
	f, e := c.Lookup(context.Background(), second, "f00000")
	if e != 0 {
		t.Fatal(e)
	}
	// Another client changes the file; the batch read ahead is at the
	// end of its life as it is served.
	if _, e := c.Setattr(context.Background(), f.GFID, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o600}); e != 0 {
		t.Fatal(e)
	}
	clock.advance(time.Hour)
	if got := readNames(t, path); !slices.Equal(got, []string{"f00000"}) {
		t.Fatalf("lists %v", got)
	}
	if n := c.startsOf(second); n != 1 {
		t.Fatalf("second read from its start %d times, want once (served from the readahead)", n)
	}
	// The kernel's clock: what is left of the lifetime, rounded up to a
	// tick, has passed.
	time.Sleep(50 * time.Millisecond)
	st, err := os.Stat(filepath.Join(path, "f00000"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the other client's 0600: attributes read ahead an hour ago are still cached", st.Mode().Perm())
	}
}

// openCounts reports how many Opendirs below succeeded and how many of them
// were released.
func (c *dirCounter) openCounts() (opens, releases int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opens, c.releases
}

// A directory opened ahead of a walk that never comes for it is released
// once what was read ahead is too old to be served.
func TestListingReadaheadUntakenReleased(t *testing.T) {
	c := newDirCounter(t)
	clock := &fakeClock{}
	const ttl = 50 * time.Millisecond // how often the sweep looks
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t), now: clock.now, AttrTimeout: ttl, EntryTimeout: ttl})
	walkToSecond(t, c, dir)
	// top, the first, and the second opened ahead.
	eventually(t, "second opened ahead", func() bool { o, _ := c.openCounts(); return o == 3 })
	clock.advance(ttl + time.Nanosecond)
	allReleased(t, c)
}

// This mount's own change releases what was opened ahead, which it
// voided: the change may be the removal of that directory.
func TestListingReadaheadReleasedOnOwnChange(t *testing.T) {
	c := newDirCounter(t)
	// The clock stands still: nothing grows too old to be served.
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t), now: (&fakeClock{}).now})
	walkToSecond(t, c, dir)
	eventually(t, "second opened ahead", func() bool { o, _ := c.openCounts(); return o == 3 })
	if err := os.Mkdir(filepath.Join(dir, "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	allReleased(t, c)
}

// failOpen fails the first Opendir of dir with EIO.
type failOpen struct {
	*dirCounter
	dir    atomic.Pointer[xl.GFID]
	failed atomic.Bool
}

func (f *failOpen) Opendir(ctx context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	if d := f.dir.Load(); d != nil && ino == *d && f.failed.CompareAndSwap(false, true) {
		return xl.Fd{}, syscall.EIO
	}
	return f.dirCounter.Opendir(ctx, ino)
}

// An Opendir read ahead that failed, perhaps for a brick's passing fault
// or for want of the walker's permission, is not handed to the opening
// that comes for the batch: that one opens again, as its own caller.
func TestListingReadaheadOpenFailed(t *testing.T) {
	c := newDirCounter(t)
	f := &failOpen{dirCounter: c}
	dir, m := mountWith(t, f, Options{Logger: testLogger(t), now: (&fakeClock{}).now})
	top, order, second := twoDirs(t, c, dir)
	f.dir.Store(&second)
	readNames(t, filepath.Join(top, order[0]))
	var e *early
	eventually(t, "second read ahead", func() bool {
		m.vol.early.mu.Lock()
		defer m.vol.early.mu.Unlock()
		e = m.vol.early.m[second]
		return e != nil
	})
	<-e.open.done
	if !f.failed.Load() || e.open.errno != syscall.EIO {
		t.Fatalf("the Opendir ahead answered %v", e.open.errno)
	}
	if got := readNames(t, filepath.Join(top, order[1])); !slices.Equal(got, []string{"f00000"}) {
		t.Errorf("%s lists %v, want [f00000]", order[1], got)
	}
	allReleased(t, c)
}

// blockRelease holds the Releasedirs of dir until their context ends, as
// a client does that retries while the bricks do not answer.
type blockRelease struct {
	*dirCounter
	dir     atomic.Pointer[xl.GFID]
	blocked atomic.Int32
}

func (b *blockRelease) Releasedir(ctx context.Context, fd xl.Fd) syscall.Errno {
	if d := b.dir.Load(); d != nil && fd.GFID == *d {
		b.blocked.Add(1)
		<-ctx.Done()
		return syscall.ECANCELED
	}
	return b.dirCounter.Releasedir(ctx, fd)
}

// Unmounting does not wait for the bricks to answer the Releasedir of
// what was opened ahead: they release a connection's handles as it
// closes.
func TestUnmountUnansweredReleasedir(t *testing.T) {
	c := newDirCounter(t)
	b := &blockRelease{dirCounter: c}
	ignore := goleak.IgnoreCurrent()
	dir := t.TempDir()
	m, err := Mount(dir, b, Options{Logger: testLogger(t), now: (&fakeClock{}).now})
	if err != nil {
		t.Fatal(err)
	}
	top, order, second := twoDirs(t, c, dir)
	b.dir.Store(&second)
	readNames(t, filepath.Join(top, order[0]))
	eventually(t, "second opened ahead", func() bool { o, _ := c.openCounts(); return o == 3 })
	unmountOrHang(t, m, "the Releasedir", nil)
	if n := b.blocked.Load(); n != 1 {
		t.Errorf("%d Releasedirs of the directory opened ahead, want 1", n)
	}
	goleak.VerifyNone(t, ignore)
}

// unmountOrHang unmounts m and fails the test if that hangs on what;
// unblock, if set, lets the hang end so that the test can finish.
func unmountOrHang(t *testing.T, m *MountPoint, what string, unblock func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		err := m.Unmount()
		m.Wait()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Unmount: %v", err)
		}
	case <-time.After(30 * time.Second): // only a hang takes this long
		if unblock != nil {
			unblock()
			<-done
		}
		t.Fatal("Unmount hung on " + what)
	}
}
