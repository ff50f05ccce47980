package dht2

import (
	"context"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// replicaChild is a replicated set's server as a Guard sees it: only
// while it leads does it take requests; a follower answers EREMOTE.
type replicaChild struct {
	xl.Funnel
	term    atomic.Uint64
	leading atomic.Bool
}

func newReplicaChild(next xl.Xlator) *replicaChild {
	r := &replicaChild{}
	r.Funnel = xl.Funnel{H: func(ctx context.Context, f *xl.Fop) *xl.Result {
		if f.Op != xl.OpIpc && !r.leading.Load() {
			return &xl.Result{Errno: syscall.EREMOTE}
		}
		return xl.Dispatch(ctx, next, f)
	}}
	return r
}

func (r *replicaChild) LeaderTerm() (uint64, bool) { return r.term.Load(), r.leading.Load() }

// elect makes r lead in a new term, or follow.
func (r *replicaChild) elect(leading bool) {
	r.term.Add(1)
	r.leading.Store(leading)
}

// TestGuardOverReplicatedSet: above a replicated set's server, a guard
// built on a follower works; a fence asked of a follower is refused and
// not kept; and a brick that becomes leader serves no request before it
// has read the fences its set's previous leaders wrote (they reach its
// store beneath the guard), however recently it last tried.
func TestGuardOverReplicatedSet(t *testing.T) {
	store := memfs.New(memfs.Options{})
	set := newReplicaChild(store)
	g, err := NewGuard(set, GuardOptions{Logger: quiet})
	if err != nil {
		t.Fatalf("guard over a follower: %v", err)
	}
	g.every = time.Hour // no periodic reread: only leadership counts
	toks := xl.Xdata{"tokens": encodeTokens([]uint16{7})}

	if _, e := g.Getattr(bg, xl.RootGFID); e != syscall.EREMOTE {
		t.Errorf("a request to a follower: %v, want its EREMOTE", e)
	}
	if _, e := g.Ipc(bg, IpcFence, toks); e != syscall.EREMOTE || g.Fenced(7) {
		t.Errorf("a fence asked of a follower: %v, fenced %v; want EREMOTE, not fenced", e, g.Fenced(7))
	}
	if _, e := g.Ipc(bg, "jbr.leader", nil); e == syscall.EREMOTE || e == ErrnoMoved {
		t.Errorf("a follower's guard answered who leads with %v", e)
	}

	set.elect(true)
	dir := NewGFID(7)
	must(g.Mkdir(bg, xl.RootGFID, "d", dir, 0o755))(t)

	// Another brick leads and fences token 7; it reaches this store.
	set.elect(false)
	ok(t, store.Setxattr(bg, xl.RootGFID, fenceXattr, []byte{0, 7, 0, 7}, 0))
	set.elect(true)
	if _, e := g.Getattr(bg, dir); e != ErrnoMoved {
		t.Errorf("first request to a new leader, for a token fenced meanwhile: %v, want ErrnoMoved", e)
	}

	// And lifts it again.
	set.elect(false)
	ok(t, store.Removexattr(bg, xl.RootGFID, fenceXattr))
	set.elect(true)
	if _, e := g.Getattr(bg, dir); e != 0 {
		t.Errorf("after the fence was lifted by another leader: %v", e)
	}

	// A leader's fences persist through its set.
	must(g.Ipc(bg, IpcFence, toks))(t)
	if _, e := g.Getattr(bg, dir); e != ErrnoMoved {
		t.Errorf("after fencing as leader: %v, want ErrnoMoved", e)
	}
	if v, e := store.Getxattr(bg, xl.RootGFID, fenceXattr); e != 0 || !slices.Equal(decodeRuns(v), []uint16{7}) {
		t.Errorf("persisted fences: %v, %v; want token 7", decodeRuns(v), e)
	}
}
