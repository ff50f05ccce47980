package fuse

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// xattrCounter counts the getxattrs that reach the translators, by name
// and by object (inode number) and name.
type xattrCounter struct {
	xl.Base
	mu    sync.Mutex
	n     map[string]int
	byObj map[objName]int
	asked map[string]map[xl.GFID]bool // the objects asked, by name
}

type objName struct {
	ino  uint64
	name string
}

func (c *xattrCounter) Getxattr(ctx context.Context, ino xl.GFID, name string) ([]byte, syscall.Errno) {
	c.mu.Lock()
	c.n[name]++
	if c.byObj == nil {
		c.byObj = make(map[objName]int)
	}
	c.byObj[objName{ino.Ino(), name}]++
	if c.asked == nil {
		c.asked = make(map[string]map[xl.GFID]bool)
	}
	if c.asked[name] == nil {
		c.asked[name] = make(map[xl.GFID]bool)
	}
	c.asked[name][ino] = true
	c.mu.Unlock()
	return c.Base.Getxattr(ctx, ino, name)
}

func (c *xattrCounter) callsOf(ino uint64, name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byObj[objName{ino, name}]
}

// askedOf returns the objects asked for name.
func (c *xattrCounter) askedOf(name string) []xl.GFID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Keys(c.asked[name]))
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

// stillMount mounts a counter over a fresh store with a clock that
// stands still unless advanced: however slow the machine, what the mount
// learned does not expire.
func stillMount(t *testing.T) (*xattrCounter, string, *fakeClock) {
	c, dir, clock, _ := stillMountPoint(t)
	return c, dir, clock
}

// stillMountPoint is stillMount, with the mount.
func stillMountPoint(t *testing.T) (*xattrCounter, string, *fakeClock, *MountPoint) {
	t.Helper()
	c := &xattrCounter{Base: xl.Base{Xlator: newLeaf(t)}, n: map[string]int{}}
	clock := &fakeClock{}
	clock.ns.Store(time.Now().UnixNano())
	// With SELinux labels stored, ls -l's security.selinux getxattr per
	// file reaches the mount: the case the cache is for.
	dir, m := mountWith(t, c, Options{Logger: testLogger(t), now: clock.now, SELinux: true})
	return c, dir, clock, m
}

// Without Options.SELinux, security.selinux is refused with EOPNOTSUPP
// before any translator is asked, as GlusterFS refuses it without
// --selinux; ls -l then asks once per mount, not once per file.
func TestSELinuxRefused(t *testing.T) {
	c := &xattrCounter{Base: xl.Base{Xlator: newLeaf(t)}, n: map[string]int{}}
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t)})
	fn := filepath.Join(dir, "f")
	if err := os.WriteFile(fn, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(fn, &st); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := unix.Lgetxattr(fn, "security.selinux", buf); err != unix.EOPNOTSUPP {
		t.Errorf("getxattr security.selinux: %v, want EOPNOTSUPP", err)
	}
	if err := unix.Lsetxattr(fn, "security.selinux", []byte("system_u:object_r:tmp_t:s0"), 0); err != unix.EOPNOTSUPP {
		t.Errorf("setxattr security.selinux: %v, want EOPNOTSUPP", err)
	}
	if err := unix.Lremovexattr(fn, "security.selinux"); err != unix.EOPNOTSUPP {
		t.Errorf("removexattr security.selinux: %v, want EOPNOTSUPP", err)
	}
	if n := c.callsOf(st.Ino, "security.selinux"); n != 0 {
		t.Errorf("%d security.selinux getxattrs reached the translators", n)
	}
	// Other names still work.
	if err := unix.Lsetxattr(fn, "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Lgetxattr(fn, "user.k", buf); err != nil || string(buf[:n]) != "v" {
		t.Errorf("getxattr user.k: %q, %v", buf[:n], err)
	}
}

// An attribute a file lacks is asked for once per attribute timeout (ls -l
// asks for two of them on every file); this mount's own changes to the
// file are seen at once.
func TestXattrAbsenceCached(t *testing.T) {
	c, dir, clock := stillMount(t)
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
	dir, _ := mountWith(t, c, Options{Logger: testLogger(t), AttrTimeout: -1})
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
// ahead for the other entries that have xattrs, so ls's questions for them are answered
// without a round trip each.
func TestXattrReadahead(t *testing.T) {
	c, dir, _, m := stillMountPoint(t)
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
	for i := range files {
		// Files with xattrs of their own: of the others, the listing
		// tells the mount they lack name.
		if err := unix.Setxattr(filepath.Join(sub, fmt.Sprint(i)), "user.other", []byte("v"), 0); err != nil {
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
	// racing with the getxattr that started it); wait until the mount
	// has noted every answer.
	noted := func() bool {
		asked := c.askedOf(name)
		for _, g := range asked {
			if absent, _ := m.vol.xattrs.lookup(g, name); !absent {
				return false
			}
		}
		return len(asked) == files
	}
	for deadline := time.Now().Add(30 * time.Second); !noted(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entries asked ahead", len(c.askedOf(name)), files)
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

// A listing's xattr-free entries lack every name for the attribute
// timeout, except those this mount changed while the listing was out.
func TestXattrCacheListed(t *testing.T) {
	var clock fakeClock
	c := newXattrCache(time.Minute, clock.now)
	free, other, changed := xl.NewGFID(), xl.NewGFID(), xl.NewGFID()
	gen := c.generation()
	c.invalidate(changed) // a setxattr finished while the listing was out
	c.listed(gen, []xl.Dirent{
		{Name: "free", Attr: xl.Attr{GFID: free}, NoXattrs: true},
		{Name: "other", Attr: xl.Attr{GFID: other}},
		{Name: "changed", Attr: xl.Attr{GFID: changed}, NoXattrs: true},
	})
	for g, want := range map[xl.GFID]bool{free: true, other: false, changed: false} {
		for _, name := range []string{"security.selinux", "user.any"} {
			if absent, _ := c.lookup(g, name); absent != want {
				t.Errorf("%v %s: absent %v, want %v", g, name, absent, want)
			}
		}
	}
	clock.advance(time.Minute)
	if absent, _ := c.lookup(free, "user.any"); absent {
		t.Error("a listing trusted past the timeout")
	}

	// Too many changes meanwhile to tell which: the listing is not trusted.
	gen = c.generation()
	for range len(c.recent) + 1 {
		c.invalidate(xl.NewGFID())
	}
	c.listed(gen, []xl.Dirent{{Name: "free", Attr: xl.Attr{GFID: free}, NoXattrs: true}})
	if absent, _ := c.lookup(free, "user.any"); absent {
		t.Error("a listing trusted across more changes than are remembered")
	}
}

// ls -l of a directory asks the bricks nothing about entries the listing
// said have no xattrs, and still finds the xattrs of those that have.
// ACLs are answered EOPNOTSUPP without a round trip.
func TestXattrFreeListing(t *testing.T) {
	c, dir, _ := stillMount(t)
	files := func(d string, n int) {
		t.Helper()
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprint(i)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	const selinux = "security.selinux"
	buf := make([]byte, 64)
	// lsl lists d and asks each entry what ls -l asks; it returns how
	// many security.selinux getxattrs about each entry reached the
	// translators meanwhile.
	lsl := func(d string) map[string]int {
		t.Helper()
		inos := make(map[string]uint64)
		before := make(map[string]int)
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				t.Fatal(err)
			}
			inos[e.Name()], before[e.Name()] = st.Ino, c.callsOf(st.Ino, selinux)
			if _, err := unix.Lgetxattr(p, selinux, buf); err != unix.ENODATA {
				t.Fatalf("%s: %s: %v, want ENODATA", e.Name(), selinux, err)
			}
			if _, err := unix.Getxattr(p, "system.posix_acl_access", buf); err != unix.EOPNOTSUPP {
				t.Fatalf("%s: system.posix_acl_access: %v, want EOPNOTSUPP", e.Name(), err)
			}
		}
		got := make(map[string]int)
		for name, ino := range inos {
			got[name] = c.callsOf(ino, selinux) - before[name]
		}
		return got
	}

	d := filepath.Join(dir, "d")
	files(d, 20)
	if err := os.Mkdir(filepath.Join(d, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	with := filepath.Join(d, "with")
	if err := os.WriteFile(with, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(with, "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	got := lsl(d)
	if len(got) != 22 {
		t.Fatalf("listed %d entries, want 22", len(got))
	}
	for name, n := range got {
		// Only "with" costs a round trip (perhaps two: ls's and the
		// readahead's).
		if name == "with" && n == 0 || name != "with" && n != 0 {
			t.Errorf("ls -l: %d getxattrs of %s reached the translators", n, name)
		}
	}
	n, err := unix.Getxattr(with, "user.k", buf)
	if err != nil || string(buf[:n]) != "v" {
		t.Errorf("getxattr user.k of a file with xattrs: %q, %v", buf[:n], err)
	}

	// This mount's change is seen at once, and the next listing tells
	// the mount again once it is undone. Its entries never miss, so no
	// readahead asks about them behind the test's back.
	e := filepath.Join(dir, "e")
	files(e, 5)
	for name, n := range lsl(e) {
		if n != 0 {
			t.Errorf("ls -l: %d getxattrs of %s reached the translators", n, name)
		}
	}
	f0 := filepath.Join(e, "0")
	if err := unix.Setxattr(f0, "user.k", []byte("w"), 0); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Getxattr(f0, "user.k", buf); err != nil || string(buf[:n]) != "w" {
		t.Errorf("getxattr after setxattr: %q, %v", buf[:n], err)
	}
	if err := unix.Removexattr(f0, "user.k"); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(f0, "user.k", buf); err != unix.ENODATA {
		t.Errorf("getxattr after removexattr: %v, want ENODATA", err)
	}
	for name, n := range lsl(e) {
		if n != 0 {
			t.Errorf("ls -l again: %d getxattrs of %s reached the translators", n, name)
		}
	}

	// user::rw- user:1000:r-- group::r-- mask::r-- other::r--
	acl := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range [][3]uint32{{0x01, 6, ^uint32(0)}, {0x02, 4, 1000}, {0x04, 4, ^uint32(0)}, {0x10, 4, ^uint32(0)}, {0x20, 4, ^uint32(0)}} {
		acl = binary.LittleEndian.AppendUint16(acl, uint16(e[0]))
		acl = binary.LittleEndian.AppendUint16(acl, uint16(e[1]))
		acl = binary.LittleEndian.AppendUint32(acl, e[2])
	}
	for i, err := range []error{
		unix.Setxattr(f0, "system.posix_acl_access", acl, 0),
		unix.Removexattr(f0, "system.posix_acl_access"),
		unix.Setxattr(e, "system.posix_acl_default", acl, 0),
		unix.Removexattr(e, "system.posix_acl_default"),
	} {
		if err != unix.EOPNOTSUPP {
			t.Errorf("ACL change %d: %v, want EOPNOTSUPP", i, err)
		}
	}
}
