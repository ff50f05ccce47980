package posix

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/internal/sysmon"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestBadNames(t *testing.T) {
	b := newBrick(t)
	d := b.mkdir(xl.RootGFID, "d")
	g := b.file(d, "f", "")
	long := strings.Repeat("n", 256)
	cases := map[string]syscall.Errno{
		"": syscall.EINVAL, ".": syscall.EINVAL, "..": syscall.EINVAL,
		"a/b": syscall.EINVAL, "../x": syscall.EINVAL, "x\x00y": syscall.EINVAL,
		long: syscall.ENAMETOOLONG,
	}
	for name, w := range cases {
		_, e := b.Lookup(bg, d, name)
		want(t, e, w)
		_, _, e = b.Create(bg, d, name, xl.NewGFID(), uint32(os.O_RDWR), 0o644)
		want(t, e, w)
		_, e = b.Mkdir(bg, d, name, xl.NewGFID(), 0o755)
		want(t, e, w)
		_, e = b.Mknod(bg, d, name, xl.NewGFID(), syscall.S_IFIFO|0o644, 0)
		want(t, e, w)
		_, e = b.Symlink(bg, d, name, xl.NewGFID(), "t")
		want(t, e, w)
		_, e = b.Link(bg, g, d, name)
		want(t, e, w)
		want(t, b.Unlink(bg, d, name), w)
		want(t, b.Rmdir(bg, d, name), w)
		want(t, b.Rename(bg, d, "f", d, name, 0), w)
		want(t, b.Rename(bg, d, name, d, "x", 0), w)
	}
	b.wantLogged("rejected name")
	// Nothing escaped: the brick's parent holds only the brick.
	ents, _ := os.ReadDir(filepath.Dir(b.dir))
	if len(ents) != 1 {
		t.Errorf("brick parent holds %d entries", len(ents))
	}
	name255 := strings.Repeat("n", 255)
	_, e := b.Mkdir(bg, d, name255, xl.NewGFID(), 0o755)
	ok(t, e)
}

// A symlink planted in the brick, pointing outside it, is an object like
// any other: no operation follows it.
func TestPlantedSymlinkIsNotFollowed(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := newBrick(t)
	if err := os.Symlink(outside, filepath.Join(b.dir, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(b.dir, "evilfile")); err != nil {
		t.Fatal(err)
	}
	a, e := b.Lookup(bg, xl.RootGFID, "evil")
	ok(t, e)
	if a.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		t.Fatalf("planted symlink looks like %o", a.Mode)
	}
	evil := a.GFID
	fa, e := b.Lookup(bg, xl.RootGFID, "evilfile")
	ok(t, e)
	evilfile := fa.GFID

	_, e = b.Mkdir(bg, evil, "x", xl.NewGFID(), 0o755)
	want(t, e, syscall.ENOTDIR)
	_, _, e = b.Create(bg, evil, "x", xl.NewGFID(), uint32(os.O_RDWR), 0o644)
	want(t, e, syscall.ENOTDIR)
	_, e = b.Lookup(bg, evil, "secret")
	want(t, e, syscall.ENOTDIR)
	_, e = b.Opendir(bg, evil)
	want(t, e, syscall.ENOTDIR)
	_, e = b.Open(bg, evilfile, uint32(os.O_RDWR|os.O_TRUNC))
	want(t, e, syscall.ELOOP)
	_, e = b.Read(bg, xl.Fd{GFID: evilfile, H: 1}, make([]byte, 10), 0)
	want(t, e, syscall.ELOOP)
	_, _, e = b.Create(bg, xl.RootGFID, "evilfile", xl.NewGFID(), uint32(os.O_RDWR|os.O_TRUNC), 0o644)
	want(t, e, syscall.ELOOP)
	_, e = b.Setattr(bg, evilfile, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o777})
	want(t, e, syscall.EOPNOTSUPP)
	_, e = b.Truncate(bg, evilfile, 0)
	want(t, e, syscall.EINVAL)
	_, e = b.Setattr(bg, evilfile, xl.SetattrIn{Valid: xl.SetUid | xl.SetMtime, Uid: 4242, Mtime: xl.Timespec{Sec: 1}})
	ok(t, e)
	ok(t, b.Setxattr(bg, evilfile, "trusted.t", []byte("x"), 0))
	want(t, b.Setxattr(bg, evilfile, "user.t", []byte("x"), 0), syscall.EPERM)
	_, e = b.Link(bg, evilfile, xl.RootGFID, "evil2")
	ok(t, e)
	ok(t, b.Unlink(bg, xl.RootGFID, "evil2"))

	var st unix.Stat_t
	if err := unix.Stat(secret, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 6 || st.Mode&0o777 != 0o600 || st.Uid == 4242 || st.Mtim.Sec == 1 {
		t.Errorf("the symlink's target was changed: %+v", st)
	}
	if _, err := unix.Getxattr(secret, "trusted.t", nil); err != unix.ENODATA {
		t.Errorf("xattr reached the target: %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("outside directory holds %d entries", len(ents))
	}
}

// A directory swapped for a symlink behind the store's back is refused
// when resolved by gfid, and the refusal is logged.
func TestDirectoryReplacedBySymlink(t *testing.T) {
	outside := t.TempDir()
	b := newBrick(t)
	d := b.mkdir(xl.RootGFID, "d")
	sub := b.mkdir(d, "sub")
	b.Close()
	if err := os.Rename(filepath.Join(b.dir, "d"), filepath.Join(b.dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(b.dir, "d")); err != nil {
		t.Fatal(err)
	}
	b = openBrick(t, b.dir)
	_, _, e := b.Create(bg, d, "f", xl.NewGFID(), uint32(os.O_RDWR), 0o644)
	want(t, e, syscall.ESTALE)
	_, e = b.Mkdir(bg, sub, "x", xl.NewGFID(), 0o755)
	want(t, e, syscall.ESTALE)
	_, e = b.Getattr(bg, d)
	want(t, e, syscall.ESTALE)
	b.wantLogged("refusing a non-directory")
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("outside directory holds %d entries", len(ents))
	}
	// A directory of the right name but another identity is refused too.
	os.Remove(filepath.Join(b.dir, "d"))
	os.Mkdir(filepath.Join(b.dir, "d"), 0o755)
	_, e = b.Getattr(bg, d)
	want(t, e, syscall.ESTALE)
}

func TestReaddirLarge(t *testing.T) {
	b := newBrick(t)
	d := b.mkdir(xl.RootGFID, "big")
	const n = 10000
	gfids := make(map[string]xl.GFID, n)
	for i := range n {
		name := fmt.Sprintf("entry-%05d", i)
		// One handle directory for all, as DHT2 gfids of one directory
		// share their high bytes: the test times readdir, not mkdir.
		g := xl.NewGFID()
		g[0], g[1] = 0xab, 0xcd
		_, e := b.Mknod(bg, d, name, g, syscall.S_IFREG|0o644, 0)
		ok(t, e)
		gfids[name] = g
	}
	fd, e := b.Opendir(bg, d)
	ok(t, e)
	defer b.Releasedir(bg, fd)
	check := func(ents []xl.Dirent) {
		t.Helper()
		seen := map[string]bool{}
		for _, de := range ents {
			if seen[de.Name] {
				t.Fatalf("%q listed twice", de.Name)
			}
			seen[de.Name] = true
			if g, ok := gfids[de.Name]; !ok || de.Attr.GFID != g || de.Attr.Nlink != 1 {
				t.Fatalf("unexpected entry %q %+v", de.Name, de.Attr)
			}
		}
		if len(seen) != n {
			t.Fatalf("listed %d of %d entries", len(seen), n)
		}
	}
	check(b.readdirAll(fd, 7))
	// In batches whose attributes are read in parallel, and back to an
	// earlier cookie on the same stream, on one P that the fills widen
	// as gluon up lets them (sysmon.Widen).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	defer narrowed(t)
	t.Setenv(sysmon.WidenEnv, "2")
	check(b.readdirAll(fd, 333))
	head, e := b.Readdir(bg, fd, 0, 500)
	ok(t, e)
	check(append(head[:100:100], b.readdirFrom(fd, head[99].Off, 1000)...))
	head, e = b.Readdir(bg, fd, 0, 500)
	ok(t, e)
	check(append(head, b.readdirFrom(fd, head[len(head)-1].Off, 1000)...))

	// Restart from a cookie in the middle, through an anonymous stream.
	first, e := b.Readdir(bg, fd, 0, 100)
	ok(t, e)
	anon := xl.Fd{GFID: d, H: 99}
	rest := b.readdirFrom(anon, first[len(first)-1].Off, 333)
	check(append(first, rest...))
}

// narrowed waits for Widen's lingering Ps to go after the last fill,
// so that the next test runs as it expects.
func narrowed(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); runtime.GOMAXPROCS(0) != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("GOMAXPROCS %d 10 s after the last widened fill, want 1 again", runtime.GOMAXPROCS(0))
		}
	}
}

func (b *brick) readdirFrom(fd xl.Fd, off uint64, max int) []xl.Dirent {
	var all []xl.Dirent
	for {
		ents, e := b.Readdir(bg, fd, off, max)
		ok(b.t, e)
		if len(ents) == 0 {
			return all
		}
		all = append(all, ents...)
		off = ents[len(ents)-1].Off
	}
}

// Creates, unlinks, lookups and directory renames in parallel: resolution
// by gfid must keep working while the directory moves.
func TestConcurrentOps(t *testing.T) {
	b := newBrick(t)
	p1 := b.mkdir(xl.RootGFID, "p1")
	p2 := b.mkdir(xl.RootGFID, "p2")
	sub := b.mkdir(p1, "sub")
	files := b.mkdir(xl.RootGFID, "files")
	const rounds = 200
	errs := make(chan error, 8)
	run := func(fn func(i int) error) {
		go func() {
			for i := range rounds {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	run(func(i int) error { // move sub back and forth
		from, to := p1, p2
		if i%2 == 1 {
			from, to = p2, p1
		}
		if e := b.Rename(bg, from, "sub", to, "sub", 0); e != 0 {
			return fmt.Errorf("rename %d: %v", i, e)
		}
		return nil
	})
	run(func(i int) error { // work inside sub, resolving it afresh
		b.dirs.evict(sub)
		name := "d" + fmt.Sprint(i)
		if _, e := b.Mkdir(bg, sub, name, xl.NewGFID(), 0o755); e != 0 {
			return fmt.Errorf("mkdir in moving dir: %v", e)
		}
		if e := b.Rmdir(bg, sub, name); e != 0 {
			return fmt.Errorf("rmdir in moving dir: %v", e)
		}
		return nil
	})
	for w := range 2 {
		run(func(i int) error { // file life cycles
			name := fmt.Sprintf("w%d-%d", w, i)
			fd, _, e := b.Create(bg, files, name, xl.NewGFID(), uint32(os.O_RDWR|os.O_EXCL), 0o644)
			if e != 0 {
				return fmt.Errorf("create: %v", e)
			}
			if _, e := b.Write(bg, fd, []byte(name), 0); e != 0 {
				return fmt.Errorf("write: %v", e)
			}
			if e := b.Unlink(bg, files, name); e != 0 {
				return fmt.Errorf("unlink: %v", e)
			}
			buf := make([]byte, 64)
			if n, e := b.Read(bg, fd, buf, 0); e != 0 || string(buf[:n]) != name {
				return fmt.Errorf("read after unlink: %q %v", buf[:n], e)
			}
			b.Release(bg, fd)
			if b.hasHandle(fd.GFID) {
				return fmt.Errorf("handle of %s survives", name)
			}
			return nil
		})
	}
	run(func(i int) error { // readers
		if _, e := b.Getattr(bg, sub); e != 0 {
			return fmt.Errorf("getattr of moving dir: %v", e)
		}
		_, e := b.Lookup(bg, files, fmt.Sprintf("w0-%d", i))
		if e != 0 && e != syscall.ENOENT {
			return fmt.Errorf("lookup: %v", e)
		}
		return nil
	})
	for range 5 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
