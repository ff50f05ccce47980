package dht2

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// readdirAll lists dir through d in batches of max.
func readdirAll(t *testing.T, d *DHT2, dir xl.GFID, max int) map[string]xl.Attr {
	t.Helper()
	fd := must(d.Opendir(bg, dir))(t)
	defer d.Releasedir(bg, fd)
	m := map[string]xl.Attr{}
	for off := uint64(0); ; {
		ents := must(d.Readdir(bg, fd, off, max))(t)
		if len(ents) == 0 {
			return m
		}
		for _, de := range ents {
			m[de.Name] = de.Attr
		}
		off = ents[len(ents)-1].Off
	}
}

// TestListingResolvesPerSet counts requests: listing a directory whose
// subdirectories live on all three sets costs each set at most one
// request per batch for their attributes, whatever their number, and
// the attributes are the subdirectories' own.
func TestListingResolvesPerSet(t *testing.T) {
	c := newCluster(t, 3, Options{})
	p := c.mkdirOn(xl.RootGFID, "p", 0)
	const perSet = 20
	want := map[string]xl.GFID{}
	for i := range 3 * perSet {
		name := fmt.Sprintf("d%02d", i)
		want[name] = c.mkdirOn(p, name, i%3)
		must(c.d.Setattr(bg, want[name], xl.SetattrIn{Valid: xl.SetMode, Mode: uint32(0o700 + i%8)}))(t)
	}
	for i := range 10 {
		c.create(p, fmt.Sprintf("f%d", i), nil)
	}
	c.resetCounts()
	if a := must(c.d.Lookup(bg, p, "d01"))(t); a.GFID != want["d01"] {
		t.Errorf("lookup of d01: %v, want %v", a.GFID, want["d01"])
	}
	if n0, n1 := c.counts[0].total(), c.counts[1].total(); n0 != 1 || n1 != 1 || c.counts[2].total() != 0 {
		t.Errorf("lookup of a name on another set: %d requests to the parent's home, %d to the inode's, want 1 and 1", n0, n1)
	}
	for _, max := range []int{256, 25} {
		c.resetCounts()
		got := readdirAll(t, c.d, p, max)
		batches := c.counts[0].n[xl.OpReaddir] - 1 // the last one is empty
		for name, g := range want {
			i := 0
			fmt.Sscanf(name, "d%d", &i)
			if a := got[name]; a.GFID != g || !a.IsDir() || a.Mode&0o777 != uint32(0o700+i%8) {
				t.Errorf("max %d: %s listed as %+v, want GFID %v mode %o", max, name, a, g, 0o700+i%8)
			}
		}
		if len(got) != 3*perSet+10 {
			t.Errorf("max %d: listed %d entries, want %d", max, len(got), 3*perSet+10)
		}
		for s, x := range c.counts {
			if n := x.n[xl.OpLookup]; n != 0 {
				t.Errorf("max %d: set %d got %d lookups, want none", max, s, n)
			}
			if n := x.n[xl.OpIpc]; n < 1 || n > batches {
				t.Errorf("max %d: set %d got %d resolve requests for %d batches, want 1 to %d", max, s, n, batches, batches)
			}
			if s != 0 && x.total() != x.n[xl.OpIpc] {
				t.Errorf("max %d: set %d got %d requests, %d of them resolves", max, s, x.total(), x.n[xl.OpIpc])
			}
		}
	}
}

// noResolve refuses IpcResolve, as a brick without a Guard does.
func noResolve(next xl.Xlator) xl.Xlator {
	return xl.Funnel{H: func(ctx context.Context, f *xl.Fop) *xl.Result {
		if f.Op == xl.OpIpc && f.Name == string(IpcResolve) {
			return &xl.Result{Errno: syscall.ENOTSUP}
		}
		return xl.Dispatch(ctx, next, f)
	}}
}

// TestListingWithoutResolve: sets that cannot resolve in batches are
// asked one lookup per entry, and asked to resolve no more for a while.
func TestListingWithoutResolve(t *testing.T) {
	c := newClusterWith(t, 3, 3, Options{}, noResolve)
	p := c.mkdirOn(xl.RootGFID, "p", 0)
	want := map[string]xl.GFID{}
	for i := range 9 {
		name := fmt.Sprintf("d%d", i)
		want[name] = c.mkdirOn(p, name, i%3)
	}
	for round := range 2 {
		c.resetCounts()
		got := readdirAll(t, c.d, p, 256)
		for name, g := range want {
			if a := got[name]; a.GFID != g || !a.IsDir() {
				t.Errorf("round %d: %s listed as %+v", round, name, a)
			}
		}
		for s, x := range c.counts {
			ipc, lookups := x.n[xl.OpIpc], x.n[xl.OpLookup]
			if lookups != 3 || round == 0 && ipc != 1 || round == 1 && ipc != 0 {
				t.Errorf("round %d: set %d got %d resolves and %d lookups", round, s, ipc, lookups)
			}
		}
	}
}

// TestListingFollowsMovedToken: a client listing with a stale layout
// asks a set that gave one subdirectory's token away; that entry follows
// the token once the layout says where it went, the others are resolved
// in the batch.
func TestListingFollowsMovedToken(t *testing.T) {
	c := newCluster(t, 3, Options{})
	stale := NewMemStore(Even(3))
	b := c.client(Options{Layout: stale})
	p := c.mkdirOn(xl.RootGFID, "p", 0)
	moved := c.mkdirOn(p, "moved", 1)
	stay := c.mkdirOn(p, "stay", 1)
	for TokenOf(stay) == TokenOf(moved) { // another token of set 1
		ok(t, c.d.Rmdir(bg, p, "stay"))
		stay = c.mkdirOn(p, "stay", 1)
	}
	tok := TokenOf(moved)
	if err := c.d.MigrateToken(bg, tok, 2, nil); err != nil {
		t.Fatal(err)
	}
	c.move(c.src, tok, 2)
	go func() {
		time.Sleep(50 * time.Millisecond)
		c.move(stale, tok, 2)
	}()
	got := readdirAll(t, b, p, 256)
	if got["moved"].GFID != moved || got["stay"].GFID != stay {
		t.Errorf("stale listing: moved %v stay %v, want %v %v", got["moved"].GFID, got["stay"].GFID, moved, stay)
	}
	if b.Layout().Version != c.d.Layout().Version {
		t.Errorf("the stale client did not learn the layout")
	}
}

// TestResolveWire: attributes survive the answer's encoding, and a Guard
// refuses a malformed request rather than guessing.
func TestResolveWire(t *testing.T) {
	a := xl.Attr{GFID: xl.NewGFID(), Mode: syscall.S_IFDIR | 0o755, Nlink: 3, Uid: 1, Gid: 2, Rdev: 3,
		Size: 4096, Blocks: 8, Blksize: 4096, Atime: xl.Timespec{Sec: -1, Nsec: 5},
		Mtime: xl.Timespec{Sec: 1 << 40, Nsec: 999999999}, Ctime: xl.Timespec{Sec: 7}}
	b := appendAttr(nil, &a)
	if len(b) != attrLen || readAttr(b) != a {
		t.Errorf("attr %+v came back as %+v (%d bytes)", a, readAttr(b), len(b))
	}
	c := newCluster(t, 1, Options{})
	for _, keys := range [][]byte{make([]byte, resolveKeyLen+1), make([]byte, (maxResolve+1)*resolveKeyLen)} {
		if _, e := c.guards[0].Ipc(bg, IpcResolve, xl.Xdata{"keys": keys}); e != syscall.EINVAL {
			t.Errorf("%d bytes of keys: %v, want EINVAL", len(keys), e)
		}
	}
}
