package dht2

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

type reqKey struct {
	client [16]byte
	seq    uint64
}

// newReplicated answers a mutating request whose (Client, Seq) it has
// seen with the first one's reply, without applying it, as a replicated
// set (jbr-server) does to tell a retry from a new request.
func newReplicated(next xl.Xlator) xl.Xlator {
	done := map[reqKey]*xl.Result{}
	var mu sync.Mutex
	return xl.Funnel{H: func(ctx context.Context, f *xl.Fop) *xl.Result {
		c := xl.CallFrom(ctx)
		if !f.Mutates() || c.Seq == 0 {
			return xl.Dispatch(ctx, next, f)
		}
		k := reqKey{c.Client, c.Seq}
		mu.Lock()
		defer mu.Unlock()
		if r, ok := done[k]; ok {
			return r
		}
		r := xl.Dispatch(ctx, next, f)
		done[k] = r
		return r
	}}
}

// TestOneRequestManyStepsOnOneSet: over sets that deduplicate requests by
// id, as replicated sets do, a request that takes several steps on one
// set (a remote directory whose inode and stub share a set, a remote
// link, remove and rename) applies every step. Under one request id the
// second step was answered as a retry of the first and never applied: a
// directory lost its name once the kernel's cached entry expired.
func TestOneRequestManyStepsOnOneSet(t *testing.T) {
	c := newClusterWith(t, 3, 3, Options{ScrubGrace: -1}, newReplicated)
	d := c.d
	// Every request from above has an id of its own, as the mount's.
	client := xl.NewGFID()
	var seq atomic.Uint64
	req := func() context.Context {
		return xl.WithCall(context.Background(), &xl.Call{Client: client, Seq: seq.Add(1)})
	}
	mkdir := func(parent xl.GFID, name string, set int) xl.GFID {
		t.Helper()
		c.want.Store(int32(set))
		defer c.want.Store(-1)
		a := must(d.Mkdir(req(), parent, name, xl.NewGFID(), 0o755))(t)
		if got := d.Layout().Set(TokenOf(a.GFID)); got != set {
			t.Fatalf("mkdir %s: on set %d, want %d", name, got, set)
		}
		return a.GFID
	}
	visible := func(parent xl.GFID, name string, want xl.GFID) {
		t.Helper()
		if a, e := d.Lookup(req(), parent, name); e != 0 || a.GFID != want {
			t.Errorf("lookup %s: %v, %v; want %v", name, a.GFID, e, want)
		}
		if got, ok := list(t, d, parent)[name]; !ok || got.GFID != want {
			t.Errorf("listing: %s is %v (listed %v), want %v", name, got.GFID, ok, want)
		}
	}
	absent := func(parent xl.GFID, name string) {
		t.Helper()
		if _, e := d.Lookup(req(), parent, name); e != syscall.ENOENT {
			t.Errorf("lookup %s: %v, want ENOENT", name, e)
		}
		if _, ok := list(t, d, parent)[name]; ok {
			t.Errorf("listing: %s still listed", name)
		}
	}

	// The root's home is set 0: "z" is made in set 0's anchor, then
	// named by a stub in set 0's root.
	z := mkdir(xl.RootGFID, "z", 0)
	visible(xl.RootGFID, "z", z)
	for _, name := range []string{"f1", "f2", "f3"} {
		fd, _ := must2(d.Create(req(), z, name, xl.NewGFID(), syscall.O_RDWR, 0o644))(t)
		ok(t, d.Release(req(), fd))
	}
	visible(xl.RootGFID, "z", z)
	f := must(d.Lookup(req(), z, "f1"))(t).GFID

	// A link into the root: stub and anchor link on set 0.
	must(d.Link(req(), f, xl.RootGFID, "l"))(t)
	visible(xl.RootGFID, "l", f)
	if a := must(d.Getattr(req(), f))(t); a.Nlink != 2 {
		t.Errorf("nlink %d after the link, want 2", a.Nlink)
	}
	// Its removal: probe, anchor name and stub, all on set 0.
	ok(t, d.Unlink(req(), xl.RootGFID, "l"))
	absent(xl.RootGFID, "l")
	if a := must(d.Getattr(req(), f))(t); a.Nlink != 1 {
		t.Errorf("nlink %d after unlinking the link, want 1", a.Nlink)
	}

	// A rename out of z into the root and back, within set 0.
	ok(t, d.Rename(req(), z, "f2", xl.RootGFID, "g", 0))
	absent(z, "f2")
	f2 := must(d.Lookup(req(), xl.RootGFID, "g"))(t).GFID
	ok(t, d.Rename(req(), xl.RootGFID, "g", z, "f2", 0))
	absent(xl.RootGFID, "g")
	visible(z, "f2", f2)

	// A directory whose inode lives on another set still works, and so
	// does an empty remote directory's removal on set 0.
	p1 := mkdir(xl.RootGFID, "p1", 1)
	visible(xl.RootGFID, "p1", p1)
	e := mkdir(xl.RootGFID, "e", 0)
	visible(xl.RootGFID, "e", e)
	ok(t, d.Rmdir(req(), xl.RootGFID, "e"))
	absent(xl.RootGFID, "e")

	st, err := d.Scrub(bg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Orphans+st.Dangling+st.Errors+st.Young != 0 || st.Stubs != st.Anchored {
		t.Errorf("scrub after the ops: %+v, want nothing left over", st)
	}
}

func must2[A, B any](a A, b B, e syscall.Errno) func(testing.TB) (A, B) {
	return func(t testing.TB) (A, B) {
		t.Helper()
		if e != 0 {
			t.Fatalf("errno %v", e)
		}
		return a, b
	}
}
