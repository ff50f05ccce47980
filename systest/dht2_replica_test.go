package systest

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/dht2"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// TestDHT2ReplicatedSetsKeepNames: on a distributed volume of replica-3
// sets, every directory made in the root keeps its name while files are
// made in it, whichever set its inode lives on. A directory whose inode
// lives on the root's own set takes two requests to that set (its inode
// in the anchor, then its stub); under the caller's one request id the
// set took the second for a retry of the first and never made the stub,
// so the name vanished.
func TestDHT2ReplicatedSetsKeepNames(t *testing.T) {
	d := newDvolReplica(t, 2, 3)
	top := d.open().Top
	c := newCaller(top)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	l, err := dht2.NewEtcdStore(d.cli, dvolName).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const dirs, files = 4, 20
	gfids := map[string]xl.GFID{}
	onRootSet := 0
	for i := range dirs {
		name := fmt.Sprintf("d%d", i)
		a, e := top.Mkdir(c.ctx(context.Background()), xl.RootGFID, name, xl.NewGFID(), 0o755)
		if e != 0 {
			t.Fatalf("mkdir %s: %v", name, e)
		}
		gfids[name] = a.GFID
		if dht2.TokenOf(a.GFID) != 0 && l.Set(dht2.TokenOf(a.GFID)) == 0 {
			onRootSet++
		}
		for k := range files {
			fd, _, e := top.Create(c.ctx(context.Background()), a.GFID, fmt.Sprintf("f%d", k), xl.NewGFID(), syscall.O_RDWR, 0o644)
			if e != 0 {
				t.Fatalf("create %s/f%d: %v", name, k, e)
			}
			top.Release(c.ctx(context.Background()), fd)
		}
	}
	if onRootSet == 0 {
		t.Fatal("no directory's inode was placed on the root's set: the case is not covered")
	}
	for name, g := range gfids {
		a, e := top.Lookup(c.ctx(context.Background()), xl.RootGFID, name)
		if e != 0 || a.GFID != g {
			t.Errorf("lookup %s: %v, %v; want %v", name, a.GFID, e, g)
		}
	}
}
