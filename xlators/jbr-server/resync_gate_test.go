package jbrserver

import (
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

func setResync(t *testing.T, x xl.Xlator, on string) {
	t.Helper()
	if _, e := x.Ipc(newCaller().next(), IpcResync, xl.Xdata{"resync": []byte(on)}); e != 0 {
		t.Fatalf("resync %s: %v", on, e)
	}
}

// A brick being resynced in full still journals and applies what its
// leader sends, but its acks count toward no quorum and it serves no
// follower reads; once the mark is cleared it counts again, without a
// restart.
func TestResyncingBrickNeitherVotesNorServes(t *testing.T) {
	c := newCluster(t, 3, Options{Consistency: FollowerRead})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	write(t, c.n[0].srv, cl, fd, "a", 0)
	c.converged(0)

	setResync(t, c.n[2].srv, "1")
	if !c.n[2].srv.Status().Resyncing {
		t.Fatal("status does not show the resync")
	}
	if _, e := readString(t, c.n[2].srv, cl, fd); e != syscall.EREMOTE {
		t.Errorf("follower read on a resyncing brick: %v, want EREMOTE", e)
	}
	if got, e := readString(t, c.n[1].srv, cl, fd); e != 0 || got != "a" {
		t.Errorf("follower read on brick 1: %q %v", got, e)
	}
	if _, e := c.n[2].srv.Ipc(cl.next(), IpcResync, xl.Xdata{"resync": []byte("maybe")}); e != syscall.EINVAL {
		t.Errorf("resync maybe: %v, want EINVAL", e)
	}

	// Brick 1 away: brick 2 journals the write but cannot commit it.
	c.cut(1)
	before := c.n[0].srv.Status()
	done := make(chan syscall.Errno, 1)
	ctx := cl.next()
	go func() {
		_, e := c.n[0].srv.Write(ctx, fd, []byte("b"), 1)
		done <- e
	}()
	c.waitFor("brick 2 to journal the write", func() bool {
		return c.n[2].srv.Status().LastIndex > before.LastIndex
	})
	time.Sleep(10 * c.n[0].srv.opts.Heartbeat) // time for its ack to reach the leader, were it to count
	select {
	case e := <-done:
		t.Fatalf("write with only a resyncing follower returned %v", e)
	default:
	}
	if st := c.n[0].srv.Status(); st.Commit != before.Commit {
		t.Errorf("commit moved from %d to %d on a resyncing follower's ack", before.Commit, st.Commit)
	}
	c.heal(1)
	if e := <-done; e != 0 {
		t.Fatalf("write once brick 1 is back: %v", e)
	}

	// Cleared: brick 2 counts again.
	setResync(t, c.n[2].srv, "0")
	c.cut(1)
	write(t, c.n[0].srv, cl, fd, "c", 2)
	c.heal(1)
	c.converged(0)
	if got, e := readString(t, c.n[2].srv, cl, fd); e != 0 || got != "abc" {
		t.Errorf("follower read once caught up: %q %v", got, e)
	}
	c.sameEverywhere("f", "abc")
}
