package dht2

import (
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// TestGuardFences: a fenced token is refused for every way a request can
// name it, persists across a new guard, and a fence written behind the
// guard's back (a replica set's new leader) is picked up on reload.
func TestGuardFences(t *testing.T) {
	store := memfs.New(memfs.Options{})
	g, err := NewGuard(store, GuardOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	dir := NewGFID(7)
	must(g.Mkdir(bg, xl.RootGFID, "d", dir, 0o755))(t)
	f := NewGFID(7)
	fd, _, e := g.Create(bg, dir, "f", f, syscall.O_RDWR, 0o644)
	ok(t, e)
	toks := xl.Xdata{"tokens": encodeTokens([]uint16{7})}
	must(g.Ipc(bg, IpcFence, toks))(t)
	refused := map[string]syscall.Errno{}
	_, refused["lookup"] = g.Lookup(bg, dir, "f")
	_, refused["getattr"] = g.Getattr(bg, f)
	_, refused["write"] = g.Write(bg, fd, []byte("x"), 0)
	_, refused["mkdir of the token"] = g.Mkdir(bg, xl.RootGFID, "e", NewGFID(7), 0o755)
	_, refused["anchor name"] = g.Lookup(bg, bucket(7), anchorKey(f, NewGFID(1), "n"))
	for op, e := range refused {
		if e != ErrnoMoved {
			t.Errorf("%s of a fenced token: %v, want ErrnoMoved", op, e)
		}
	}
	if _, e := g.Statfs(bg, xl.RootGFID); e != 0 {
		t.Errorf("statfs: %v", e)
	}
	if _, e := g.Getattr(bg, xl.RootGFID); e != 0 {
		t.Errorf("another token: %v", e)
	}
	bypass := xl.WithCall(bg, &xl.Call{Xdata: xl.Xdata{bypassKey: nil}})
	if _, e := g.Getattr(bypass, f); e != 0 {
		t.Errorf("the migrator's getattr: %v", e)
	}
	g2, err := NewGuard(store, GuardOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if !g2.Fenced(7) {
		t.Error("the fence did not persist")
	}
	must(g2.Ipc(bg, IpcUnfence, toks))(t)
	g.every = 0 // reread on every request
	if _, e := g.Getattr(bg, f); e != 0 {
		t.Errorf("after the fence was lifted behind its back: %v", e)
	}
	ok(t, store.Setxattr(bg, xl.RootGFID, fenceXattr, []byte{0, 7, 0, 7, 0, 9, 0, 10}, 0))
	if _, e := g.Getattr(bg, f); e != ErrnoMoved || !g.Fenced(9) || !g.Fenced(10) || g.Fenced(8) {
		t.Errorf("a fence written behind its back: %v", e)
	}
}
