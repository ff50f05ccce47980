package posix

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// A store whose handles are in the two-level layout of older stores
// (ab/cd/<gfid>) moves them to ab/<gfid> when it opens; objects stay
// reachable by gfid, and orphans among the old handles are collected.
func TestOpensTwoLevelLayout(t *testing.T) {
	b := newBrick(t)
	f := b.file(xl.RootGFID, "f", "data")
	d := b.mkdir(xl.RootGFID, "d")
	g := b.file(d, "g", "more")
	lost := b.file(xl.RootGFID, "lost", "l")
	b.Close()
	hdir := filepath.Join(b.dir, ".gluon", "handles")
	for _, gfid := range []xl.GFID{f, d, g, lost} {
		old := filepath.Join(hdir, bucketPath(gfid))
		if err := os.MkdirAll(filepath.Dir(old), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(hdir, hpath(gfid)), old); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(b.dir, "lost")) // behind the store's back

	b = openBrick(t, b.dir)
	for _, gfid := range []xl.GFID{f, d, g} {
		if !b.hasHandle(gfid) {
			t.Errorf("handle of %v not moved", gfid)
		}
		if _, err := os.Lstat(filepath.Join(hdir, bucketPath(gfid))); !os.IsNotExist(err) {
			t.Errorf("old handle of %v left: %v", gfid, err)
		}
	}
	if b.hasHandle(lost) {
		t.Error("orphaned old handle moved instead of collected")
	}
	for _, gfid := range []xl.GFID{f, d, g, lost} {
		if _, err := os.Lstat(filepath.Dir(filepath.Join(hdir, bucketPath(gfid)))); !os.IsNotExist(err) {
			t.Errorf("old bucket of %v left: %v", gfid, err)
		}
	}
	fd, e := b.Open(bg, g, uint32(os.O_RDONLY))
	ok(t, e)
	defer b.Release(bg, fd)
	if got := b.read(fd, 0, 10); got != "more" {
		t.Errorf("read %q through a moved handle", got)
	}
	_, e = b.Getattr(bg, d)
	ok(t, e)
	b.mkdir(d, "sub") // resolves d through its moved handle
	b.wantLogged("moved handles to the one-level layout")
}

// Making files makes no directories: the buckets exist from the start.
func TestCreateMakesNoHandleDirectories(t *testing.T) {
	b := newBrick(t)
	hdir := filepath.Join(b.dir, ".gluon", "handles")
	before, err := os.ReadDir(hdir)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 256 {
		t.Fatalf("%d handle buckets, want 256", len(before))
	}
	for range 20 {
		g := b.file(xl.RootGFID, xl.NewGFID().String(), "x")
		ents, err := os.ReadDir(filepath.Join(hdir, hpath(g)[:2]))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.IsDir() {
				t.Fatalf("a directory %s among the handles", e.Name())
			}
		}
	}
}
