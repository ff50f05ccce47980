package dht2

import (
	"fmt"
	"slices"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// TestOneSetPerDirectory counts requests per set: lookup, create and
// listing of a directory of files reach its home and no other set.
func TestOneSetPerDirectory(t *testing.T) {
	c := newCluster(t, 3, Options{})
	for home := range 3 {
		dir := c.mkdirOn(xl.RootGFID, fmt.Sprintf("d%d", home), home)
		for i := range 20 {
			c.create(dir, fmt.Sprintf("f%d", i), nil)
		}
		c.resetCounts()
		fd, a, e := c.d.Create(bg, dir, "new", xl.NewGFID(), syscall.O_RDWR, 0o644)
		ok(t, e)
		if got := c.d.Layout().Set(TokenOf(a.GFID)); got != home {
			t.Errorf("file in a directory of set %d made on set %d", home, got)
		}
		ok(t, c.d.Release(bg, fd))
		if got, n := c.touched(), c.counts[home].total(); !slices.Equal(got, []int{home}) || n != 2 {
			t.Errorf("create and release reached sets %v with %d requests, want two to [%d]", got, n, home)
		}
		c.resetCounts()
		_, e = c.d.Lookup(bg, dir, "f3")
		ok(t, e)
		if got, n := c.touched(), c.counts[home].total(); !slices.Equal(got, []int{home}) || n != 1 {
			t.Errorf("lookup reached sets %v with %d requests, want one to [%d]", got, n, home)
		}
		c.resetCounts()
		ok(t, c.d.Unlink(bg, dir, "f4"))
		if got, n := c.touched(), c.counts[home].total(); !slices.Equal(got, []int{home}) || n != 1 {
			t.Errorf("unlink reached sets %v with %d requests, want one to [%d]", got, n, home)
		}
		c.create(dir, "f4", nil)
		c.resetCounts()
		ents := list(t, c.d, dir)
		if len(ents) != 21 {
			t.Errorf("listed %d entries, want 21", len(ents))
		}
		if got := c.touched(); !slices.Equal(got, []int{home}) {
			t.Errorf("readdir reached sets %v, want [%d]", got, home)
		}
		if n := c.counts[home].n[xl.OpReaddir]; n != 2 { // one batch, then the end
			t.Errorf("%d readdir requests, want 2", n)
		}
	}
}

// TestRemoteEntries: a directory lives only on its home; its name in the
// parent is a stub listed by the parent's home with the directory's own
// attributes, fetched from its home.
func TestRemoteEntries(t *testing.T) {
	c := newCluster(t, 3, Options{})
	p := c.mkdirOn(xl.RootGFID, "p", 0)
	sub := c.mkdirOn(p, "sub", 2)
	must(c.d.Setattr(bg, sub, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o711}))(t)
	// The directory itself exists on set 2 only.
	for s, st := range c.stores {
		_, e := st.Getattr(bg, sub)
		if (e == 0) != (s == 2) {
			t.Errorf("set %d: getattr of the directory: %v", s, e)
		}
	}
	ents := list(t, c.d, p)
	a, found := ents["sub"]
	if !found || a.GFID != sub || !a.IsDir() || a.Mode&0o7777 != 0o711 {
		t.Fatalf("listing of p: sub = %+v (found %v)", a, found)
	}
	pa := must(c.d.Getattr(bg, p))(t)
	if pa.Nlink != 3 {
		t.Errorf("parent nlink %d, want 3", pa.Nlink)
	}
	la := must(c.d.Lookup(bg, p, "sub"))(t)
	if la.GFID != sub || la.Mode&0o7777 != 0o711 {
		t.Errorf("lookup: %+v", la)
	}
	// The anchor is not visible.
	if _, e := c.d.Lookup(bg, xl.RootGFID, AnchorName); e != syscall.ENOENT {
		t.Errorf("lookup of the anchor: %v", e)
	}
	if _, found := list(t, c.d, xl.RootGFID)[AnchorName]; found {
		t.Error("the root lists the anchor")
	}
	if _, e := c.d.Mkdir(bg, xl.RootGFID, AnchorName, xl.NewGFID(), 0o755); e != syscall.EPERM {
		t.Errorf("mkdir of the anchor's name: %v", e)
	}
}

// TestRealFilesSpread makes 150 directories with a file each through
// the default policy, which deals directories to sets in turn: each set
// holds a third of the files.
func TestRealFilesSpread(t *testing.T) {
	c := newCluster(t, 3, Options{Policy: new(Spread)})
	for i := range 150 {
		a := must(c.d.Mkdir(bg, xl.RootGFID, fmt.Sprintf("d%d", i), xl.NewGFID(), 0o755))(t)
		c.create(a.GFID, "f", nil)
	}
	for s, x := range c.counts {
		if n := x.n[xl.OpCreate]; n != 50 {
			t.Errorf("set %d: %d files of 150", s, n)
		}
	}
}

func TestStatfsAddsUp(t *testing.T) {
	c := newCluster(t, 3, Options{})
	sum := must(c.d.Statfs(bg, xl.RootGFID))(t)
	one := must(c.stores[0].Statfs(bg, xl.RootGFID))(t)
	// Three stores on one filesystem: three times its size.
	if sum.Blocks != 3*one.Blocks || sum.Files != 3*one.Files {
		t.Errorf("statfs %d blocks %d files, want 3 x %d, 3 x %d", sum.Blocks, sum.Files, one.Blocks, one.Files)
	}
}
