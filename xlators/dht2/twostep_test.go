package dht2

import (
	"bytes"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluon-fs/gluon/xlators/access"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// TestCrossSetSemantics: links, renames and directories across sets keep
// POSIX semantics, and leave nothing for the scrubber.
func TestCrossSetSemantics(t *testing.T) {
	c := newCluster(t, 3, Options{ScrubGrace: -1})
	d := c.d
	p0 := c.mkdirOn(xl.RootGFID, "p0", 0)
	p1 := c.mkdirOn(xl.RootGFID, "p1", 1)
	p2 := c.mkdirOn(xl.RootGFID, "p2", 2)
	f := c.create(p0, "f", []byte("hello"))

	a := must(d.Link(bg, f, p1, "l"))(t)
	if a.GFID != f || a.Nlink != 2 {
		t.Errorf("link across sets: %+v, want gfid %v nlink 2", a, f)
	}
	if got := list(t, d, p1)["l"]; got.GFID != f || got.Size != 5 || got.Mode&syscall.S_IFMT != syscall.S_IFREG {
		t.Errorf("listing of the link: %+v", got)
	}
	if _, e := d.Link(bg, f, p1, "l"); e != syscall.EEXIST {
		t.Errorf("second link to the same name: %v, want EEXIST", e)
	}

	ok(t, d.Rename(bg, p0, "f", p2, "g", 0))
	if _, e := d.Lookup(bg, p0, "f"); e != syscall.ENOENT {
		t.Errorf("old name after rename: %v", e)
	}
	if a := must(d.Lookup(bg, p2, "g"))(t); a.GFID != f || a.Nlink != 2 {
		t.Errorf("new name: %+v", a)
	}
	if !bytes.Equal(read(t, d, f), []byte("hello")) {
		t.Error("data changed by the rename")
	}
	// Back into a directory of its own token, the name is local again:
	// the set's own entry, not a stub.
	ok(t, d.Rename(bg, p2, "g", p0, "h", 0))
	if a := must(c.stores[0].Lookup(bg, p0, "h"))(t); a.GFID != f {
		t.Errorf("on the home, h is %v, want the file itself", a.GFID)
	}
	ok(t, d.Unlink(bg, p1, "l"))
	if a := must(d.Getattr(bg, f))(t); a.Nlink != 1 {
		t.Errorf("nlink %d after unlinking the remote name", a.Nlink)
	}
	ok(t, d.Unlink(bg, p0, "h"))
	if _, e := d.Getattr(bg, f); e != syscall.ESTALE {
		t.Errorf("getattr after the last unlink: %v", e)
	}

	sub := c.mkdirOn(p0, "sub", 2)
	c.create(sub, "x", []byte("x"))
	if e := d.Rmdir(bg, p0, "sub"); e != syscall.ENOTEMPTY {
		t.Errorf("rmdir of a non-empty remote directory: %v", e)
	}
	if e := d.Unlink(bg, p0, "sub"); e != syscall.EISDIR {
		t.Errorf("unlink of a remote directory: %v", e)
	}
	ok(t, d.Unlink(bg, sub, "x"))
	ok(t, d.Rmdir(bg, p0, "sub"))
	if _, e := c.stores[2].Getattr(bg, sub); e != syscall.ESTALE {
		t.Errorf("the removed directory is still on its home: %v", e)
	}

	dd := c.mkdirOn(p0, "d", 1)
	inner := c.mkdirOn(dd, "inner", 2)
	c.create(inner, "deep", []byte("deep"))
	ok(t, d.Rename(bg, p0, "d", p2, "d2", 0))
	if e := d.Rename(bg, p2, "d2", inner, "loop", 0); e != syscall.EINVAL {
		t.Errorf("moving a directory under itself: %v, want EINVAL", e)
	}
	in := must(d.Lookup(bg, p2, "d2"))(t)
	if in.GFID != dd {
		t.Errorf("moved directory: %v, want %v", in.GFID, dd)
	}
	if deep := must(d.Lookup(bg, inner, "deep"))(t); !bytes.Equal(read(t, d, deep.GFID), []byte("deep")) {
		t.Error("content of a moved subtree changed")
	}
	st, err := d.Scrub(bg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Orphans+st.Dangling+st.Errors+st.Young != 0 || st.Stubs == 0 || st.Stubs != st.Anchored {
		t.Errorf("scrub of a clean volume: %+v", st)
	}
}

// TestCrashBetweenSteps stops each two-step op after its first step, as a
// client crash would: the namespace shows no broken entry, and the
// scrubber removes and counts the leftover.
func TestCrashBetweenSteps(t *testing.T) {
	type result struct{ orphans, dangling int }
	cases := []struct {
		name  string
		step  string
		nth   int // crash at the nth time the step is reached
		op    func(c *cluster, p0, p1, f xl.GFID) syscall.Errno
		check func(t *testing.T, c *cluster, p0, p1, f xl.GFID)
		want  result
	}{{
		name: "mkdir", step: "mkdir", nth: 1,
		op: func(c *cluster, p0, p1, f xl.GFID) syscall.Errno {
			c.want.Store(1)
			defer c.want.Store(-1)
			_, e := c.d.Mkdir(bg, p0, "x", xl.NewGFID(), 0o755)
			return e
		},
		check: func(t *testing.T, c *cluster, p0, p1, f xl.GFID) { gone(t, c, p0, "x") },
		want:  result{orphans: 1},
	}, {
		name: "link", step: "link", nth: 1,
		op: func(c *cluster, p0, p1, f xl.GFID) syscall.Errno {
			_, e := c.d.Link(bg, f, p1, "l")
			return e
		},
		check: func(t *testing.T, c *cluster, p0, p1, f xl.GFID) {
			gone(t, c, p1, "l")
			if a := must(c.d.Getattr(bg, f))(t); a.Nlink != 1 {
				t.Errorf("nlink %d", a.Nlink)
			}
		},
		want: result{dangling: 1},
	}, {
		name: "rename local to remote", step: "rename", nth: 1,
		op: func(c *cluster, p0, p1, f xl.GFID) syscall.Errno {
			return c.d.Rename(bg, p0, "f", p1, "r", 0)
		},
		check: func(t *testing.T, c *cluster, p0, p1, f xl.GFID) {
			gone(t, c, p1, "r")
			if a := must(c.d.Lookup(bg, p0, "f"))(t); a.GFID != f {
				t.Errorf("the old name names %v", a.GFID)
			}
		},
		want: result{dangling: 1},
	}, {
		name: "rename remote to remote, after the switch", step: "rename", nth: 3,
		op: func(c *cluster, p0, p1, f xl.GFID) syscall.Errno {
			if e := c.d.Rename(bg, p0, "f", p1, "r", 0); e != 0 {
				return e
			}
			p2 := c.mkdirOn(xl.RootGFID, "p2", 2)
			return c.d.Rename(bg, p1, "r", p2, "r2", 0)
		},
		check: func(t *testing.T, c *cluster, p0, p1, f xl.GFID) {
			gone(t, c, p1, "r")
			p2 := must(c.d.Lookup(bg, xl.RootGFID, "p2"))(t).GFID
			if a := must(c.d.Lookup(bg, p2, "r2"))(t); a.GFID != f {
				t.Errorf("the new name names %v", a.GFID)
			}
		},
		want: result{dangling: 1},
	}, {
		name: "unlink of a remote name", step: "remove", nth: 1,
		op: func(c *cluster, p0, p1, f xl.GFID) syscall.Errno {
			if _, e := c.d.Link(bg, f, p1, "l"); e != 0 {
				return e
			}
			return c.d.Unlink(bg, p1, "l")
		},
		check: func(t *testing.T, c *cluster, p0, p1, f xl.GFID) {
			gone(t, c, p1, "l")
			if a := must(c.d.Getattr(bg, f))(t); a.Nlink != 1 {
				t.Errorf("nlink %d", a.Nlink)
			}
		},
		want: result{dangling: 1},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			c := newCluster(t, 3, Options{ScrubGrace: -1, Registerer: reg})
			p0 := c.mkdirOn(xl.RootGFID, "p0", 0)
			p1 := c.mkdirOn(xl.RootGFID, "p1", 1)
			f := c.create(p0, "f", []byte("data"))
			n := 0
			c.d.crashHook = func(step string) bool {
				if step == tc.step {
					n++
					return n == tc.nth
				}
				return false
			}
			tc.op(c, p0, p1, f)
			c.d.crashHook = nil
			if n < tc.nth {
				t.Fatalf("the op never reached its crash point")
			}
			tc.check(t, c, p0, p1, f)
			st, err := c.d.Scrub(bg)
			if err != nil {
				t.Fatal(err)
			}
			if got := (result{st.Orphans, st.Dangling}); got != tc.want || st.Errors != 0 {
				t.Errorf("scrub: %+v, want %+v", st, tc.want)
			}
			if got := counter(t, reg, "gluon_dht2_scrub_orphans_total") + counter(t, reg, "gluon_dht2_scrub_dangling_total"); int(got) != tc.want.orphans+tc.want.dangling {
				t.Errorf("counters say %v removed", got)
			}
			tc.check(t, c, p0, p1, f)
			if !bytes.Equal(read(t, c.d, f), []byte("data")) {
				t.Error("the file's data changed")
			}
			st, err = c.d.Scrub(bg)
			if err != nil || st.Orphans+st.Dangling+st.Errors != 0 {
				t.Errorf("second scrub: %+v, %v", st, err)
			}
		})
	}
}

// gone checks that name in dir is neither found nor listed.
func gone(t *testing.T, c *cluster, dir xl.GFID, name string) {
	t.Helper()
	if _, e := c.d.Lookup(bg, dir, name); e != syscall.ENOENT {
		t.Errorf("lookup of %s: %v, want ENOENT", name, e)
	}
	if _, found := list(t, c.d, dir)[name]; found {
		t.Errorf("%s is listed", name)
	}
}

// counter reads a counter from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

// TestDanglingNameIsFree: a name left dangling by a crash is free for
// every kind of create without waiting for the scrubber.
func TestDanglingNameIsFree(t *testing.T) {
	c := newCluster(t, 3, Options{})
	p0 := c.mkdirOn(xl.RootGFID, "p0", 0)
	p1 := c.mkdirOn(xl.RootGFID, "p1", 1)
	f := c.create(p0, "f", []byte("data"))
	dangle := func(name string) {
		t.Helper()
		c.d.crashHook = func(string) bool { return true }
		c.d.Link(bg, f, p1, name)
		c.d.crashHook = nil
		gone(t, c, p1, name)
	}
	makers := map[string]func(name string) syscall.Errno{
		"create": func(name string) syscall.Errno {
			fd, a, e := c.d.Create(bg, p1, name, xl.NewGFID(), syscall.O_RDWR, 0o644)
			if e == 0 && a.GFID == f {
				t.Errorf("create of %s opened the dangling name's inode", name)
			}
			if e == 0 {
				c.d.Release(bg, fd)
			}
			return e
		},
		"exclusive create": func(name string) syscall.Errno {
			fd, _, e := c.d.Create(bg, p1, name, xl.NewGFID(), syscall.O_RDWR|syscall.O_EXCL, 0o644)
			if e == 0 {
				c.d.Release(bg, fd)
			}
			return e
		},
		"mkdir": func(name string) syscall.Errno {
			_, e := c.d.Mkdir(bg, p1, name, xl.NewGFID(), 0o755)
			return e
		},
		"symlink": func(name string) syscall.Errno {
			_, e := c.d.Symlink(bg, p1, name, xl.NewGFID(), "target")
			return e
		},
		"link": func(name string) syscall.Errno {
			_, e := c.d.Link(bg, f, p1, name)
			return e
		},
	}
	for kind, mk := range makers {
		name := "n-" + kind
		dangle(name)
		if e := mk(name); e != 0 {
			t.Errorf("%s over a dangling name: %v", kind, e)
			continue
		}
		if _, e := c.d.Lookup(bg, p1, name); e != 0 {
			t.Errorf("%s: lookup after: %v", kind, e)
		}
	}
	// A live remote name is opened, not replaced, by a create without
	// O_EXCL.
	must(c.d.Link(bg, f, p1, "live"))(t)
	fd, a, e := c.d.Create(bg, p1, "live", xl.NewGFID(), syscall.O_RDWR, 0o644)
	ok(t, e)
	c.d.Release(bg, fd)
	if a.GFID != f {
		t.Errorf("create of a live remote name made %v, want the linked file", a.GFID)
	}
	if _, _, e := c.d.Create(bg, p1, "live", xl.NewGFID(), syscall.O_RDWR|syscall.O_EXCL, 0o644); e != syscall.EEXIST {
		t.Errorf("exclusive create of a live remote name: %v", e)
	}
}

// TestRemoteNamesKeepPermissions: with access control on each set, as on
// bricks, a caller who may not write a directory cannot remove, rename
// or replace its remote names, though their inodes live in an anchor
// anyone may write.
func TestRemoteNamesKeepPermissions(t *testing.T) {
	c := newClusterWith(t, 3, 3, Options{}, func(x xl.Xlator) xl.Xlator {
		a, err := access.New(x, access.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return a
	})
	p0 := c.mkdirOn(xl.RootGFID, "p0", 0)
	must(c.d.Setattr(bg, p0, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o755}))(t)
	pub := c.mkdirOn(xl.RootGFID, "pub", 2)
	must(c.d.Setattr(bg, pub, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o777}))(t)
	c.mkdirOn(p0, "sub", 1)
	f := c.create(pub, "f", nil)
	must(c.d.Link(bg, f, p0, "link"))(t)
	c.create(pub, "g", nil)
	user := xl.WithCall(bg, &xl.Call{Uid: 65534, Gid: 65534})
	for op, e := range map[string]syscall.Errno{
		"rmdir":          c.d.Rmdir(user, p0, "sub"),
		"unlink":         c.d.Unlink(user, p0, "link"),
		"rename out":     c.d.Rename(user, p0, "sub", pub, "sub", 0),
		"rename link":    c.d.Rename(user, p0, "link", pub, "l2", 0),
		"rename over it": c.d.Rename(user, pub, "g", p0, "link", 0),
	} {
		if e != syscall.EACCES {
			t.Errorf("%s by a user without write permission: %v, want EACCES", op, e)
		}
	}
	for _, name := range []string{"sub", "link"} {
		if _, e := c.d.Lookup(bg, p0, name); e != 0 {
			t.Errorf("%s after the denied ops: %v", name, e)
		}
	}
	// Where the user may write, remote names work for the user.
	a := must(c.d.Mkdir(user, pub, "mine", xl.NewGFID(), 0o755))(t)
	if a.Uid != 65534 {
		t.Errorf("the user's directory belongs to %d", a.Uid)
	}
	ok(t, c.d.Rmdir(user, pub, "mine"))
}
