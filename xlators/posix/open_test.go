package posix

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// opened checks what a client does with a file it just opened: fstat
// (Getattr by gfid) and read through the fd.
func (b *brick) opened(fd xl.Fd, data string) error {
	a, e := b.Getattr(bg, fd.GFID)
	if e != 0 {
		return fmt.Errorf("getattr of an open file: %v", e)
	}
	if a.Size != uint64(len(data)) {
		return fmt.Errorf("getattr of an open file: size %d, want %d", a.Size, len(data))
	}
	buf := make([]byte, 64)
	n, e := b.Read(bg, fd, buf, 0)
	if e != 0 || string(buf[:n]) != data {
		return fmt.Errorf("read of an open file: %q, %v", buf[:n], e)
	}
	return nil
}

// race runs fns at once, as often as the race detector lets a test
// afford, and reports the first error.
func race(t *testing.T, rounds int, round func(i int) []func() error) {
	t.Helper()
	for i := range rounds {
		fns := round(i)
		errs := make([]error, len(fns))
		var wg sync.WaitGroup
		for j, fn := range fns {
			wg.Go(func() { errs[j] = fn() })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
}

// An Open landing next to the removal of the file's last name either
// fails with ESTALE (the removal came first) or gives an fd that works
// until its release, which then removes the handle.
func TestOpenRacesRemoval(t *testing.T) {
	b := newBrick(t)
	const data = "data"
	race(t, 300, func(i int) []func() error {
		b.Unlink(bg, xl.RootGFID, "f") // the last round's renamed file
		g := b.file(xl.RootGFID, "f", data)
		if i%2 == 1 {
			b.file(xl.RootGFID, "src", "other")
		}
		open := func() error {
			fd, e := b.Open(bg, g, uint32(os.O_RDONLY))
			switch e {
			case 0:
			case syscall.ESTALE:
				return nil
			default:
				return fmt.Errorf("open: %v", e)
			}
			defer b.Release(bg, fd)
			return b.opened(fd, data)
		}
		anon := func() error { // an fd from before a restart
			buf := make([]byte, 64)
			n, e := b.Read(bg, xl.Fd{GFID: g, H: 1}, buf, 0)
			if e != 0 && e != syscall.ESTALE || e == 0 && string(buf[:n]) != data {
				return fmt.Errorf("anonymous read: %q, %v", buf[:n], e)
			}
			return nil
		}
		remove := func() error {
			if i%2 == 0 {
				if e := b.Unlink(bg, xl.RootGFID, "f"); e != 0 {
					return fmt.Errorf("unlink: %v", e)
				}
			} else if e := b.Rename(bg, xl.RootGFID, "src", xl.RootGFID, "f", 0); e != 0 {
				return fmt.Errorf("rename over: %v", e)
			}
			return nil
		}
		return []func() error{open, open, anon, remove}
	})
	b.wantNoLeftovers()
}

// wantNoLeftovers fails if a file's handle outlived its names and opens.
func (b *brick) wantNoLeftovers() {
	b.t.Helper()
	b.mu.Lock()
	n := len(b.opens)
	b.mu.Unlock()
	if n != 0 {
		b.t.Errorf("%d objects still counted open", n)
	}
	if err := eachEntry(b.hfd, ".", func(hfd int, ab string) error {
		return eachEntry(hfd, ab, func(dfd int, name string) error {
			if b.orphan(dfd, name) {
				return fmt.Errorf("orphaned handle %s", name)
			}
			return nil
		})
	}); err != nil {
		b.t.Error(err)
	}
}

// A Create without O_EXCL that finds the name and loses it to an Unlink
// creates the file after all; whichever file it opens stays reachable.
func TestCreateRacesUnlink(t *testing.T) {
	b := newBrick(t)
	race(t, 300, func(i int) []func() error {
		b.Unlink(bg, xl.RootGFID, "f") // the last round's creation
		b.file(xl.RootGFID, "f", "")
		create := func() error {
			fd, a, e := b.Create(bg, xl.RootGFID, "f", xl.NewGFID(), uint32(os.O_RDWR), 0o644)
			if e != 0 {
				return fmt.Errorf("create: %v", e)
			}
			defer b.Release(bg, fd)
			if a.GFID != fd.GFID {
				return fmt.Errorf("create: attr of %v, fd of %v", a.GFID, fd.GFID)
			}
			if _, e := b.Write(bg, fd, []byte("x"), 0); e != 0 {
				return fmt.Errorf("write: %v", e)
			}
			return b.opened(fd, "x")
		}
		unlink := func() error {
			if e := b.Unlink(bg, xl.RootGFID, "f"); e != 0 && e != syscall.ENOENT {
				return fmt.Errorf("unlink: %v", e)
			}
			return nil
		}
		return []func() error{create, create, unlink}
	})
	b.Unlink(bg, xl.RootGFID, "f")
	b.wantNoLeftovers()
}

// go-fuse's posixtest RenameOpenDir: fstat of an open directory that a
// rename replaced gives the removed directory, as on Linux.
func TestRenameOverOpenDir(t *testing.T) {
	b := newBrick(t)
	b.mkdir(xl.RootGFID, "dir1")
	g := xl.NewGFID()
	_, e := b.Mkdir(bg, xl.RootGFID, "dir2", g, 0o700)
	ok(t, e)
	dfd, e := b.Opendir(bg, g)
	ok(t, e)
	ok(t, b.Rename(bg, xl.RootGFID, "dir1", xl.RootGFID, "dir2", 0))
	if b.hasHandle(g) {
		t.Error("the replaced directory's handle survives")
	}
	b.dirs.evict(g) // as if the cache had dropped it
	a, e := b.Getattr(bg, g)
	ok(t, e)
	if !a.IsDir() || a.Mode&0o777 != 0o700 || a.Nlink != 0 || a.GFID != g {
		t.Errorf("getattr of the replaced open directory: %+v", a)
	}
	// Linux lists a removed directory as ENOENT.
	_, e = b.Readdir(bg, dfd, 0, 10)
	want(t, e, syscall.ENOENT)
	_, e = b.Readdir(bg, xl.Fd{GFID: g, H: 1}, 0, 10) // anonymous
	want(t, e, syscall.ENOENT)
	// Namespace ops in it fail as they did: it is gone.
	_, e = b.Mkdir(bg, g, "x", xl.NewGFID(), 0o755)
	want(t, e, syscall.ESTALE)
	ok(t, b.Releasedir(bg, dfd))
	_, e = b.Getattr(bg, g)
	want(t, e, syscall.ESTALE)
	b.wantNoLeftovers()
}

// An Rmdir'd open directory keeps its attributes and xattrs, spilled
// ones included, until the last Releasedir.
func TestRmdirOpenDir(t *testing.T) {
	b := newBrick(t)
	spills := refuses(t, b.dir, 64<<10)
	big := pattern(64<<10, 5)
	g := b.mkdir(xl.RootGFID, "d")
	ok(t, b.Setxattr(bg, g, "user.big", big, 0))
	fd1, e := b.Opendir(bg, g)
	ok(t, e)
	fd2, e := b.Opendir(bg, g)
	ok(t, e)
	ok(t, b.Rmdir(bg, xl.RootGFID, "d"))
	a, e := b.Getattr(bg, g)
	ok(t, e)
	if !a.IsDir() || a.Nlink != 0 {
		t.Errorf("getattr of the removed open directory: %+v", a)
	}
	b.wantXattr(g, "user.big", big)
	ok(t, b.Setxattr(bg, g, "user.more", big, 0))
	b.wantXattr(g, "user.more", big)
	ok(t, b.Releasedir(bg, fd1))
	_, e = b.Getattr(bg, g)
	ok(t, e)
	if spills && !b.hasSpillDir(g) {
		t.Error("spills gone while the directory is open")
	}
	ok(t, b.Releasedir(bg, fd2))
	_, e = b.Getattr(bg, g)
	want(t, e, syscall.ESTALE)
	if b.hasSpillDir(g) {
		t.Error("spills survive the last releasedir")
	}

	// A crash while open leaves only spills, which New collects: a
	// second store on the brick starts as if the first had died.
	g2 := b.mkdir(xl.RootGFID, "d2")
	ok(t, b.Setxattr(bg, g2, "user.big", big, 0))
	_, e = b.Opendir(bg, g2)
	ok(t, e)
	ok(t, b.Rmdir(bg, xl.RootGFID, "d2"))
	b2 := openBrick(t, b.dir)
	if b2.hasSpillDir(g2) {
		t.Error("spills of a directory removed while open survive a restart")
	}
	b2.wantNoLeftovers()
}

// An Opendir landing next to an Rmdir or a rename over the directory
// either fails with ESTALE or gives a stream whose directory Getattr
// and Getxattr reach until its Releasedir.
func TestOpendirRacesRemoval(t *testing.T) {
	b := newBrick(t)
	big := pattern(64<<10, 9) // spilled on ext4
	race(t, 200, func(i int) []func() error {
		b.Rmdir(bg, xl.RootGFID, "d") // the last round's renamed directory
		g := b.mkdir(xl.RootGFID, "d")
		ok(t, b.Setxattr(bg, g, "user.big", big, 0))
		if i%2 == 1 {
			b.mkdir(xl.RootGFID, "src")
		}
		open := func() error {
			fd, e := b.Opendir(bg, g)
			switch e {
			case 0:
			case syscall.ESTALE:
				return nil
			default:
				return fmt.Errorf("opendir: %v", e)
			}
			defer b.Releasedir(bg, fd)
			a, e := b.Getattr(bg, g)
			if e != 0 || !a.IsDir() {
				return fmt.Errorf("getattr of an open directory: %+v, %v", a, e)
			}
			if v, e := b.Getxattr(bg, g, "user.big"); e != 0 || !bytes.Equal(v, big) {
				return fmt.Errorf("getxattr of an open directory: %d bytes, %v", len(v), e)
			}
			if _, e := b.Readdir(bg, fd, 0, 10); e != 0 && e != syscall.ENOENT {
				return fmt.Errorf("readdir of an open directory: %v", e)
			}
			return nil
		}
		remove := func() error {
			if i%2 == 0 {
				if e := b.Rmdir(bg, xl.RootGFID, "d"); e != 0 {
					return fmt.Errorf("rmdir: %v", e)
				}
			} else if e := b.Rename(bg, xl.RootGFID, "src", xl.RootGFID, "d", 0); e != 0 {
				return fmt.Errorf("rename over: %v", e)
			}
			return nil
		}
		return []func() error{open, open, remove}
	})
	b.wantNoLeftovers()
}

// A resolution that opened a directory before its Rmdir evicted it
// does not cache it: Getattr and Opendir would then find a removed
// directory as if it were live.
func TestDirCacheSkipsRemovedDir(t *testing.T) {
	b := newBrick(t)
	g := b.mkdir(xl.RootGFID, "d")
	gen := b.dirs.gen.Load() // a resolution of g starts
	fd, err := unix.Openat(b.root.fd, "d", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ok(t, b.Rmdir(bg, xl.RootGFID, "d"))
	b.dirs.add(g, newDirRef(fd), gen).put() // and ends
	if d := b.dirs.get(g); d != nil {
		d.put()
		t.Fatal("a directory removed while resolved was cached")
	}
	_, e := b.Getattr(bg, g)
	want(t, e, syscall.ESTALE)
	_, e = b.Opendir(bg, g)
	want(t, e, syscall.ESTALE)
	b.wantNoLeftovers()
}

// What Unlink or Rename pins under a name is what it removes, though
// other ops remove and make that name at the same time: no handle
// outlives its file.
func TestRemovalRacesNameReuse(t *testing.T) {
	b := newBrick(t)
	race(t, 300, func(i int) []func() error {
		b.Unlink(bg, xl.RootGFID, "f") // the last round's creation
		b.Unlink(bg, xl.RootGFID, "src")
		b.file(xl.RootGFID, "f", "")
		b.file(xl.RootGFID, "src", "")
		unlink := func() error {
			if e := b.Unlink(bg, xl.RootGFID, "f"); e != 0 && e != syscall.ENOENT {
				return fmt.Errorf("unlink: %v", e)
			}
			return nil
		}
		create := func() error {
			fd, _, e := b.Create(bg, xl.RootGFID, "f", xl.NewGFID(), uint32(os.O_RDWR|os.O_EXCL), 0o644)
			switch e {
			case 0:
				return errors.Join(b.opened(fd, ""), errnoErr("release", b.Release(bg, fd)))
			case syscall.EEXIST:
				return nil
			}
			return fmt.Errorf("create: %v", e)
		}
		rename := func() error {
			if e := b.Rename(bg, xl.RootGFID, "src", xl.RootGFID, "f", 0); e != 0 {
				return fmt.Errorf("rename over: %v", e)
			}
			return nil
		}
		if i%2 == 0 {
			return []func() error{unlink, unlink, create}
		}
		return []func() error{rename, unlink, create}
	})
	b.Unlink(bg, xl.RootGFID, "f")
	b.Unlink(bg, xl.RootGFID, "src")
	b.wantNoLeftovers()
}

func errnoErr(op string, e syscall.Errno) error {
	if e != 0 {
		return fmt.Errorf("%s: %v", op, e)
	}
	return nil
}

// The xattr ops racing the removal of an object whose values spilled:
// while the object is open they work as on a live one, as f*xattr(2) on
// an open fd does; otherwise each either works or finds the object gone
// (ESTALE, or ENOENT for a file), never a marker without its value
// (EIO). Nothing spilled outlives the object.
func TestXattrRacesRemoval(t *testing.T) {
	b := newBrick(t)
	big, other := pattern(64<<10, 3), pattern(64<<10, 4) // spilled on ext4
	var removed []xl.GFID
	// done checks a removed open object after its round, and releases it.
	done := func() {}
	race(t, 200, func(i int) []func() error {
		done()
		dir, open := i%2 == 0, i%4 >= 2
		var g xl.GFID
		if dir {
			g = b.mkdir(xl.RootGFID, "o")
		} else {
			g = b.file(xl.RootGFID, "o", "")
		}
		removed = append(removed, g)
		for _, name := range []string{"user.big", "user.rm", "user.set"} {
			ok(t, b.Setxattr(bg, g, name, big, 0))
		}
		done = func() {}
		if open {
			var fd xl.Fd
			var e syscall.Errno
			if dir {
				fd, e = b.Opendir(bg, g)
			} else {
				fd, e = b.Open(bg, g, uint32(os.O_RDONLY))
			}
			ok(t, e)
			done = func() {
				t.Helper()
				b.wantXattr(g, "user.big", big)
				b.wantXattr(g, "user.set", other)
				_, e := b.Getxattr(bg, g, "user.rm")
				want(t, e, syscall.ENODATA)
				b.wantList(g, "user.big", "user.set")
				ok(t, b.Release(bg, fd))
			}
		}
		// check accepts success, or the object gone unless it is open.
		check := func(op string, e syscall.Errno) error {
			if e == 0 || !open && (e == syscall.ESTALE || !dir && e == syscall.ENOENT) {
				return nil
			}
			return fmt.Errorf("%s (dir %v, open %v): %v", op, dir, open, e)
		}
		get := func() error {
			v, e := b.Getxattr(bg, g, "user.big")
			if e == 0 && !bytes.Equal(v, big) {
				return fmt.Errorf("getxattr: %d bytes, want %d", len(v), len(big))
			}
			return check("getxattr", e)
		}
		set := func() error { return check("setxattr", b.Setxattr(bg, g, "user.set", other, 0)) }
		rm := func() error { return check("removexattr", b.Removexattr(bg, g, "user.rm")) }
		list := func() error {
			names, e := b.Listxattr(bg, g)
			if e == 0 && !slices.Contains(names, "user.big") {
				return fmt.Errorf("listxattr: %q lacks user.big", names)
			}
			return check("listxattr", e)
		}
		remove := func() error {
			if dir {
				return errnoErr("rmdir", b.Rmdir(bg, xl.RootGFID, "o"))
			}
			return errnoErr("unlink", b.Unlink(bg, xl.RootGFID, "o"))
		}
		return []func() error{get, get, set, rm, list, remove}
	})
	done()
	b.wantNoLeftovers()
	for _, g := range removed {
		if b.hasSpillDir(g) {
			t.Errorf("spills of removed %v survive", g)
		}
	}
}
