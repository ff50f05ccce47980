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
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// xattrCounter counts the getxattrs that reach the translators, by name.
type xattrCounter struct {
	xl.Base
	mu sync.Mutex
	n  map[string]int
}

func (c *xattrCounter) Getxattr(ctx context.Context, ino xl.GFID, name string) ([]byte, syscall.Errno) {
	c.mu.Lock()
	c.n[name]++
	c.mu.Unlock()
	return c.Base.Getxattr(ctx, ino, name)
}

func (c *xattrCounter) calls(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

// fakeClock stands still but when advanced.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func mountWith(t *testing.T, top xl.Xlator, o Options) string {
	t.Helper()
	dir := t.TempDir()
	m, err := Mount(dir, top, o)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
		m.Wait()
	})
	return dir
}

// An attribute a file lacks is asked for once per attribute timeout (ls -l
// asks for two of them on every file); this mount's own changes to the
// file are seen at once.
func TestXattrAbsenceCached(t *testing.T) {
	c := &xattrCounter{Base: xl.Base{Xlator: newLeaf(t)}, n: map[string]int{}}
	var clock fakeClock
	clock.ns.Store(time.Now().UnixNano())
	dir := mountWith(t, c, Options{Logger: testLogger(t), now: clock.now})
	fn := filepath.Join(dir, "f")
	if err := os.WriteFile(fn, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const name = "user.probe"
	buf := make([]byte, 64)
	// get asks for name and checks the answer and the calls below so far.
	get := func(step string, wantErr error, wantCalls int) {
		t.Helper()
		_, err := unix.Getxattr(fn, name, buf)
		if err != wantErr {
			t.Fatalf("%s: getxattr: %v, want %v", step, err, wantErr)
		}
		if n := c.calls(name); n != wantCalls {
			t.Fatalf("%s: %d getxattrs reached the translators, want %d", step, n, wantCalls)
		}
	}
	get("first", unix.ENODATA, 1)
	get("again", unix.ENODATA, 1)

	if err := unix.Setxattr(fn, "user.other", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	get("after setxattr of another name", unix.ENODATA, 2)
	if err := unix.Setxattr(fn, name, []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	get("after setxattr", nil, 3)
	if err := unix.Removexattr(fn, name); err != nil {
		t.Fatal(err)
	}
	get("after removexattr", unix.ENODATA, 4)
	get("cached again", unix.ENODATA, 4)
	if err := os.Chmod(fn, 0o600); err != nil {
		t.Fatal(err)
	}
	get("after chmod", unix.ENODATA, 5)

	clock.advance(defaultTimeout - time.Millisecond)
	get("within the timeout", unix.ENODATA, 5)
	clock.advance(2 * time.Millisecond)
	get("after the timeout", unix.ENODATA, 6)
}

// With the attribute cache off, so is the xattr cache.
func TestXattrAbsenceNotCachedWithoutAttrTimeout(t *testing.T) {
	c := &xattrCounter{Base: xl.Base{Xlator: newLeaf(t)}, n: map[string]int{}}
	dir := mountWith(t, c, Options{Logger: testLogger(t), AttrTimeout: -1})
	fn := filepath.Join(dir, "f")
	if err := os.WriteFile(fn, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := unix.Getxattr(fn, "user.probe", nil); err != unix.ENODATA {
			t.Fatalf("getxattr: %v, want ENODATA", err)
		}
	}
	if n := c.calls("user.probe"); n != 2 {
		t.Errorf("%d getxattrs reached the translators, want 2", n)
	}
}

// The cache stays bounded, and an answer that raced with a change is not
// kept.
func TestXattrCacheBounds(t *testing.T) {
	c := newXattrCache(time.Minute, nil)
	for i := range xattrMaxObjs + 10 {
		g := xl.NewGFID()
		_, tok := c.lookup(g, "a")
		c.noteAbsent(g, "a", tok)
		if i == 0 {
			for j := range xattrMaxNames + 5 {
				name := string(rune('b' + j))
				_, tok := c.lookup(g, name)
				c.noteAbsent(g, name, tok)
			}
			if got := len(c.objs[g].names); got != xattrMaxNames {
				t.Errorf("%d names kept for one object, want %d", got, xattrMaxNames)
			}
		}
	}
	if len(c.objs) > xattrMaxObjs {
		t.Errorf("%d objects known, want at most %d", len(c.objs), xattrMaxObjs)
	}

	g := xl.NewGFID()
	_, tok := c.lookup(g, "a")
	c.invalidate(g) // a setxattr finished while the getxattr was out
	c.noteAbsent(g, "a", tok)
	if absent, _ := c.lookup(g, "a"); absent {
		t.Error("an answer from before an invalidation was kept")
	}
}

// After ls -l's first getxattr in a directory just listed, the mount asks
// ahead for the other entries, so ls's questions for them are answered
// without a round trip each.
func TestXattrReadahead(t *testing.T) {
	c := &xattrCounter{Base: xl.Base{Xlator: newLeaf(t)}, n: map[string]int{}}
	dir := mountWith(t, c, Options{Logger: testLogger(t)})
	const files, name = 50, "user.probe"
	sub := filepath.Join(dir, "d")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range files {
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(sub)
	if err != nil || len(ents) != files {
		t.Fatalf("readdir: %d entries, %v", len(ents), err)
	}
	get := func(e os.DirEntry) {
		t.Helper()
		if _, err := unix.Getxattr(filepath.Join(sub, e.Name()), name, nil); err != unix.ENODATA {
			t.Fatalf("getxattr %s: %v, want ENODATA", e.Name(), err)
		}
	}
	get(ents[0])
	// The readahead asks once for each entry (the first perhaps twice,
	// racing with the getxattr that started it); wait for it.
	for deadline := time.Now().Add(30 * time.Second); c.calls(name) < files; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entries asked ahead", c.calls(name), files)
		}
	}
	before := c.calls(name)
	if before > files+1 {
		t.Errorf("readahead asked %d times for %d files", before, files)
	}
	for _, e := range ents {
		get(e)
	}
	if n := c.calls(name) - before; n != 0 {
		t.Errorf("%d getxattrs reached the translators after the readahead, want 0", n)
	}
}
