package fuse

import (
	"context"
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

// fakeClock is time.Now moved forward by advance.
type fakeClock struct{ skew atomic.Int64 }

func (c *fakeClock) now() time.Time            { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *fakeClock) advance(d time.Duration)   { c.skew.Add(int64(d)) }
func (c *fakeClock) opts(t *testing.T) Options { return Options{Logger: testLogger(t), now: c.now} }
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
	dir := mountWith(t, c, clock.opts(t))
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
