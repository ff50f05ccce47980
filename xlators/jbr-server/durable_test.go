package jbrserver

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"

	jbrclient "github.com/gluon-fs/gluon/xlators/jbr-client"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// durableCtx is ctx with its Call asking for a durable answer.
func durableCtx(ctx context.Context) context.Context {
	call := *xl.CallFrom(ctx)
	call.Xdata = xl.Xdata{DurableKey: {1}}
	return xl.WithCall(ctx, &call)
}

// synced reports whether brick i, leading, has every entry of its log
// committed and synced on a quorum.
func (c *cluster) synced(i int) error { return c.syncedTo(i, c.n[i].srv.Status().LastIndex) }

// syncedTo reports whether brick i, leading, has every entry up to index
// committed and synced on a quorum.
func (c *cluster) syncedTo(i int, index uint64) error {
	st := c.n[i].srv.Status()
	if st.Role != "leader" || st.SyncCommit < index {
		return fmt.Errorf("brick %d: %s, sync commit %d, want %d", i, st.Role, st.SyncCommit, index)
	}
	return nil
}

// A request asking for a durable answer, and an O_DSYNC write, are
// answered only once synced on a quorum, not once committed. Nothing
// else writes, so the last entry is the request's.
func TestDurableAnswerWaitsForQuorumSync(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	dsync := fd
	dsync.Flags |= syscall.O_DSYNC
	for i := range 20 {
		ctx, f := durableCtx(cl.next()), fd
		if i%2 == 1 {
			ctx, f = cl.next(), dsync
		}
		if _, e := c.n[0].srv.Write(ctx, f, []byte{byte(i)}, int64(i)); e != 0 {
			t.Fatalf("write %d: %v", i, e)
		}
		if err := c.synced(0); err != nil {
			t.Fatalf("write %d answered before synced on a quorum: %v", i, err)
		}
	}
	if _, e := c.n[0].srv.Setattr(durableCtx(cl.next()), fd.GFID, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o600}); e != 0 {
		t.Fatal(e)
	}
	if err := c.synced(0); err != nil {
		t.Fatalf("setattr answered before synced on a quorum: %v", err)
	}
}

// A retry asking for a durable answer is durable even when the
// original, which did not ask, committed and is answered from the
// results cache, on the leader that committed it or on the next.
func TestDurableRetryOfCommittedRequest(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "log", syscall.O_APPEND)
	write(t, c.n[0].srv, cl, fd, "one;", 0)
	if n, e := c.n[0].srv.Write(durableCtx(cl.again()), fd, []byte("one;"), 0); e != 0 || n != 4 {
		t.Fatalf("retry: %d %v", n, e)
	}
	if err := c.synced(0); err != nil {
		t.Fatalf("retry answered before synced on a quorum: %v", err)
	}

	write(t, c.n[0].srv, cl, fd, "two;", 0)
	two := c.n[0].srv.Status().LastIndex
	c.n[0].el.Lose()
	c.n[1].el.Elect(1, 8)
	c.n[0].el.Observe(1, 8)
	c.n[2].el.Observe(1, 8)
	c.waitFor("brick 1 to lead", func() bool { return c.n[1].srv.Status().Role == "leader" })
	if n, e := c.n[1].srv.Write(durableCtx(cl.again()), fd, []byte("two;"), 0); e != 0 || n != 4 {
		t.Fatalf("retry on the new leader: %d %v", n, e)
	}
	// The new leader's no-op may follow it, unsynced yet.
	if err := c.syncedTo(1, two); err != nil {
		t.Fatalf("retry on the new leader answered before synced on a quorum: %v", err)
	}
	c.converged(1)
	c.sameEverywhere("log", "one;two;")
}

// counted is a brick as jbr-client sees it, counting the FSYNCs that
// reach it.
type counted struct {
	xl.Funnel
	fsyncs atomic.Int64
}

func countFsyncs(c *cluster, i int) *counted {
	x := &counted{}
	x.H = func(ctx context.Context, f *xl.Fop) *xl.Result {
		s := c.n[i].srv
		if s == nil {
			return &xl.Result{Errno: syscall.ENOTCONN}
		}
		if f.Op == xl.OpFsync {
			x.fsyncs.Add(1)
		}
		return xl.Dispatch(ctx, s, f)
	}
	return x
}

// Through jbr-client, a writer that fsyncs after every write sends one
// FSYNC, and every fsync returns with what it covers synced on a quorum,
// across a failover too.
func TestClientFsyncAfterDurableWrites(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	kids := []*counted{countFsyncs(c, 0), countFsyncs(c, 1), countFsyncs(c, 2)}
	jc, err := jbrclient.New([]xl.Xlator{kids[0], kids[1], kids[2]}, jbrclient.Options{Logger: c.log})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	cl := newCaller()
	fd := create(t, jc, cl, "f", 0)
	fsyncs := func() (n int64) {
		for _, k := range kids {
			n += k.fsyncs.Load()
		}
		return n
	}
	round := func(leader, i int) {
		t.Helper()
		write(t, jc, cl, fd, fmt.Sprint(i), int64(i))
		if e := jc.Fsync(cl.next(), fd, false); e != 0 {
			t.Fatalf("fsync %d: %v", i, e)
		}
		if err := c.synced(leader); err != nil {
			t.Fatalf("fsync %d returned before its write was synced on a quorum: %v", i, err)
		}
	}
	for i := range 10 {
		round(0, i)
	}
	if n := fsyncs(); n != 1 {
		t.Errorf("%d FSYNCs reached the bricks, want 1 (the first)", n)
	}
	// A leader change between a write and its fsync changes nothing: a
	// durable answer holds on every later leader.
	write(t, jc, cl, fd, "x", 10)
	c.n[0].el.Lose()
	c.n[1].el.Elect(1, 8)
	c.n[0].el.Observe(1, 8)
	c.n[2].el.Observe(1, 8)
	c.waitFor("brick 1 to lead", func() bool { return c.n[1].srv.Status().Role == "leader" })
	if e := jc.Fsync(cl.next(), fd, false); e != 0 {
		t.Fatal(e)
	}
	for i := 11; i < 15; i++ {
		round(1, i)
	}
	if n := fsyncs(); n != 1 {
		t.Errorf("%d FSYNCs reached the bricks, want 1", n)
	}
	// A write that did not ask (the second since the last fsync) sends
	// the next fsync to the leader.
	write(t, jc, cl, fd, "y", 15)
	round(1, 16)
	if n := fsyncs(); n != 2 {
		t.Errorf("%d FSYNCs reached the bricks, want 2", n)
	}
}

// With FsyncChild a durable answer also fsyncs a file in the leader's
// store; a durable change to a directory still succeeds.
func TestDurableAnswerFsyncsChild(t *testing.T) {
	c := newCluster(t, 3, Options{FsyncChild: true})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	if _, e := c.n[0].srv.Write(durableCtx(cl.next()), fd, []byte("x"), 0); e != 0 {
		t.Fatalf("durable write: %v", e)
	}
	if _, e := c.n[0].srv.Setattr(durableCtx(cl.next()), xl.RootGFID, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o755}); e != 0 {
		t.Fatalf("durable setattr of a directory: %v", e)
	}
	if err := c.synced(0); err != nil {
		t.Fatal(err)
	}
}
