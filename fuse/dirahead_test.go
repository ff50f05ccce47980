package fuse

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// dirCounter counts, per directory, the Readdirs from the start, and the
// Opendirs and Releasedirs.
type dirCounter struct {
	xl.Base
	mu                 sync.Mutex
	starts             map[xl.GFID]int
	opens, releases    int
	anonymous, handled int // Readdirs through an anonymous fd, through an opened one
}

func newDirCounter(t *testing.T) *dirCounter {
	return &dirCounter{Base: xl.Base{Xlator: newLeaf(t)}, starts: make(map[xl.GFID]int)}
}

func (c *dirCounter) Readdir(ctx context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	c.mu.Lock()
	if off == 0 {
		c.starts[fd.GFID]++
	}
	if fd.H == 0 {
		c.anonymous++
	} else {
		c.handled++
	}
	c.mu.Unlock()
	return c.Base.Readdir(ctx, fd, off, max)
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
	dir, _ := mount(t, c)
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

// This mount's own change between a directory's readahead and its
// opening shows in its listing.
func TestListingReadaheadOwnChange(t *testing.T) {
	c := newDirCounter(t)
	dir, _ := mount(t, c)
	subs := makeTree(t, c, 2, 1)
	top := filepath.Join(dir, "top")
	order := readNames(t, top)
	readNames(t, filepath.Join(top, order[0]))
	second := subs[0]
	if order[1] == "s01" {
		second = subs[1]
	}
	eventually(t, "second read ahead", func() bool { return c.startsOf(second) == 1 })
	if err := os.WriteFile(filepath.Join(top, order[1], "new"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := readNames(t, filepath.Join(top, order[1]))
	if !slices.Contains(got, "new") {
		t.Errorf("%s lists %v, without the file this mount just made", order[1], got)
	}
}

// With the kernel's caches off, a listing is never older than its
// opening: another client's change made before it shows.
func TestListingReadaheadOffWithoutCaches(t *testing.T) {
	c := newDirCounter(t)
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t), EntryTimeout: -1})
	subs := makeTree(t, c, 2, 1)
	top := filepath.Join(dir, "top")
	order := readNames(t, top)
	readNames(t, filepath.Join(top, order[0]))
	second := subs[0]
	if order[1] == "s01" {
		second = subs[1]
	}
	// Another client: straight to the translator.
	makeFiles(t, c, second, "other", 1)
	got := readNames(t, filepath.Join(top, order[1]))
	if !slices.Contains(got, "other00000") {
		t.Errorf("%s lists %v, without the file made before it was opened", order[1], got)
	}
}

// slowOpen holds every Opendir until gate is closed.
type slowOpen struct {
	*dirCounter
	gate chan struct{}
}

func (s *slowOpen) Opendir(ctx context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	<-s.gate
	return s.dirCounter.Opendir(ctx, ino)
}

// A listing does not wait for the Opendir below: it reads through an
// anonymous fd meanwhile. Closing the directory waits for the Opendir
// and releases what it opened.
func TestOpendirBesideReads(t *testing.T) {
	c := newDirCounter(t)
	s := &slowOpen{dirCounter: c, gate: make(chan struct{})}
	dir, _ := mount(t, s)
	ctx := context.Background()
	d, e := c.Mkdir(ctx, xl.RootGFID, "d", xl.NewGFID(), 0o755)
	if e != 0 {
		t.Fatal(e)
	}
	const n = readdirBatch + readaheadBatch + 10
	makeFiles(t, c, d.GFID, "f", n)
	if names := readNames(t, filepath.Join(dir, "d")); len(names) != n {
		t.Errorf("listed %d names, want %d", len(names), n)
	}
	c.mu.Lock()
	anon, handled := c.anonymous, c.handled
	c.mu.Unlock()
	if anon < 3 || handled != 0 {
		t.Errorf("readdirs: %d anonymous, %d through a handle; want at least 3, 0", anon, handled)
	}
	close(s.gate)
	eventually(t, "Opendir released", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.opens == 1 && c.releases == 1
	})
}

// A directory read ahead is served only while the kernel's caches could
// be as old: past that, another client's change made before the
// opening shows.
func TestListingReadaheadExpires(t *testing.T) {
	c := newDirCounter(t)
	clock := &fakeClock{}
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t), now: clock.now})
	subs := makeTree(t, c, 2, 1)
	top := filepath.Join(dir, "top")
	order := readNames(t, top)
	readNames(t, filepath.Join(top, order[0]))
	second := subs[0]
	if order[1] == "s01" {
		second = subs[1]
	}
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
	dir, _ := mount(t, f)
	subs := makeTree(t, c, 2, 1)
	top := filepath.Join(dir, "top")
	order := readNames(t, top)
	second := subs[0]
	if order[1] == "s01" {
		second = subs[1]
	}
	f.dir.Store(&second)
	readNames(t, filepath.Join(top, order[0]))
	eventually(t, "second read ahead", func() bool { return c.startsOf(second) == 1 })
	if got := readNames(t, filepath.Join(top, order[1])); !slices.Equal(got, []string{"f00000"}) {
		t.Errorf("%s lists %v, want [f00000]", order[1], got)
	}
}
