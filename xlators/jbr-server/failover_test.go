package jbrserver

import (
	"bytes"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// A deposed leader that still believes it leads cannot get a write
// acknowledged: the followers persisted the newer term and refuse it.
func TestStaleLeaderIsFenced(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	write(t, c.n[0].srv, cl, fd, "old", 0)
	c.converged(0)

	// Brick 0 is cut off and misses the election of 1; it never hears
	// of it from etcd either.
	c.cut(0)
	c.n[1].el.Elect(1, 9)
	c.n[2].el.Observe(1, 9)
	c.waitFor("brick 1 to lead", func() bool { return c.n[1].srv.Status().Role == "leader" })
	c.heal(0)

	n, e := c.n[0].srv.Write(cl.next(), fd, []byte("stale"), 0)
	if e == 0 {
		t.Fatalf("the deposed leader acknowledged a write (%d bytes)", n)
	}
	if e != syscall.ENOTCONN && e != syscall.EREMOTE {
		t.Errorf("deposed leader's write: %v, want ENOTCONN or EREMOTE", e)
	}
	c.waitFor("brick 0 to follow term 9", func() bool {
		st := c.n[0].srv.Status()
		return st.Role == "follower" && st.Term == 9
	})
	// The new leader's writes go on, and the stale one is nowhere.
	write(t, c.n[1].srv, cl, fd, "new", 0)
	c.converged(1)
	c.sameEverywhere("f", "new")
	if st := c.n[0].j.Term(); st != 9 {
		t.Errorf("brick 0 journal term %d, want 9 (persisted before acting)", st)
	}
}

// A client that retries a request after a failover, with the same
// request id, gets the original's result and the request is applied
// once: an O_APPEND write's data appears once.
func TestRetryAfterFailoverAppliedOnce(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "log", syscall.O_APPEND)
	write(t, c.n[0].srv, cl, fd, "one;", 0)

	// The next append commits, but the client does not hear back (it
	// retries as if the reply was lost), and leadership moves.
	if n, e := c.n[0].srv.Write(cl.next(), fd, []byte("two;"), 0); e != 0 || n != 4 {
		t.Fatalf("write: %d %v", n, e)
	}
	c.n[0].el.Lose()
	c.n[1].el.Elect(1, 8)
	c.n[0].el.Observe(1, 8)
	c.n[2].el.Observe(1, 8)
	c.waitFor("brick 1 to lead", func() bool { return c.n[1].srv.Status().Role == "leader" })
	n, e := c.n[1].srv.Write(cl.again(), fd, []byte("two;"), 0)
	if e != 0 || n != 4 {
		t.Fatalf("retry on the new leader: %d %v", n, e)
	}
	write(t, c.n[1].srv, cl, fd, "three;", 0)
	c.converged(1)
	c.sameEverywhere("log", "one;two;three;")
}

// A request that commits while its leader is stuck applying it, and is
// retried on the next leader, is applied once: the new leader knows it
// committed (it recovered it) and answers from its results.
func TestRetryOfRequestCommittedByDeadLeader(t *testing.T) {
	c := newCluster(t, 3, Options{})
	// Brick 0's store holds appends of "two;".
	c.stop(0)
	var g *gate
	c.start(0, func(x xl.Xlator) xl.Xlator {
		g = newGate(x, func(f *xl.Fop) bool { return bytes.Equal(f.Data, []byte("two;")) })
		return g
	})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "log", syscall.O_APPEND)
	write(t, c.n[0].srv, cl, fd, "one;", 0)

	done := make(chan syscall.Errno, 1)
	go func() {
		_, e := c.n[0].srv.Write(cl.next(), fd, []byte("two;"), 0)
		done <- e
	}()
	<-g.seen // committed, being applied on 0
	c.waitFor("the followers to apply it", func() bool {
		return c.n[1].srv.Status().Applied >= c.n[0].srv.Status().Commit
	})
	c.stop(0) // dies mid-apply; its caller gets ENOTCONN
	if e := <-done; e != syscall.ENOTCONN {
		t.Errorf("caller of the dead leader: %v, want ENOTCONN", e)
	}
	c.n[1].el.Elect(1, 7)
	c.n[2].el.Observe(1, 7)
	var n int
	var e syscall.Errno
	c.waitFor("the retry to be served", func() bool {
		n, e = c.n[1].srv.Write(cl.again(), fd, []byte("two;"), 0)
		return e != syscall.EREMOTE // recovering: jbr-client retries
	})
	if e != 0 || n != 4 {
		t.Fatalf("retry: %d %v", n, e)
	}
	c.converged(1)
	c.sameEverywhere("log", "one;two;")
}

// With a quorum of 3 of 3, a leader that sees a peer down refuses writes
// at once with EROFS, and journals nothing.
func TestQuorumAllOnePeerDown(t *testing.T) {
	c := newCluster(t, 3, Options{Quorum: 3})
	c.elect(0, 4)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	c.converged(0)
	c.links[0][2].down.Store(true)
	before := c.n[0].j.Stat().LastIndex
	if _, e := c.n[0].srv.Write(cl.next(), fd, []byte("x"), 0); e != syscall.EROFS {
		t.Fatalf("write with a peer down: %v, want EROFS", e)
	}
	if _, e := c.n[0].srv.Mkdir(cl.next(), xl.RootGFID, "d", xl.NewGFID(), 0o755); e != syscall.EROFS {
		t.Fatalf("mkdir with a peer down: %v, want EROFS", e)
	}
	if after := c.n[0].j.Stat().LastIndex; after != before {
		t.Errorf("journal went from %d to %d records", before, after)
	}
	c.links[0][2].down.Store(false)
	write(t, c.n[0].srv, cl, fd, "x", 0)
	c.converged(0)
	c.sameEverywhere("f", "x")
}

// A request that cannot reach a quorum fails with ENOTCONN after the
// request timeout and is not applied; once the quorum is back it
// commits, and the client's retry with the same id is answered without
// applying it twice.
func TestQuorumLossTimesOut(t *testing.T) {
	c := newCluster(t, 3, Options{RequestTimeout: 300 * time.Millisecond})
	c.elect(0, 4)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", syscall.O_APPEND)
	c.converged(0)
	// The peers look connected but nothing gets through.
	c.links[0][1].lose.Store(true)
	c.links[0][2].lose.Store(true)
	if _, e := c.n[0].srv.Write(cl.next(), fd, []byte("a;"), 0); e != syscall.ENOTCONN {
		t.Fatalf("write without a quorum: %v, want ENOTCONN", e)
	}
	if st := c.n[0].srv.Status(); st.Applied != st.Commit || st.LastIndex == st.Commit {
		t.Errorf("status %+v: want the entry journaled, neither committed nor applied", st)
	}
	if b, _ := readAll(c, 0, "f"); b != "" {
		t.Errorf("leader applied %q without a quorum", b)
	}
	c.links[0][1].lose.Store(false)
	c.links[0][2].lose.Store(false)
	// The peers may still be backing off from their failures for longer
	// than one request timeout: retry, as jbr-client does, with the same id.
	c.waitFor("the retry to commit", func() bool {
		n, e := c.n[0].srv.Write(cl.again(), fd, []byte("a;"), 0)
		if e != 0 && e != syscall.ENOTCONN || e == 0 && n != 2 {
			t.Fatalf("retry: %d %v", n, e)
		}
		return e == 0
	})
	c.converged(0)
	c.sameEverywhere("f", "a;")
}

// A leader that loses its etcd session steps down at once: the requests
// waiting for a quorum fail with ENOTCONN then, not at their timeout.
func TestSessionLossFailsWaitingRequests(t *testing.T) {
	c := newCluster(t, 3, Options{RequestTimeout: time.Hour})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	c.links[0][1].lose.Store(true)
	c.links[0][2].lose.Store(true)
	last := c.n[0].srv.Status().LastIndex
	done := make(chan syscall.Errno, 1)
	ctx := cl.next()
	go func() {
		_, e := c.n[0].srv.Write(ctx, fd, []byte("x"), 0)
		done <- e
	}()
	c.waitFor("the write to be journaled", func() bool { return c.n[0].srv.Status().LastIndex > last })
	c.n[0].el.Lose()
	select {
	case e := <-done:
		if e != syscall.ENOTCONN {
			t.Fatalf("waiting write: %v, want ENOTCONN", e)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting write did not fail when the session was lost")
	}
	if st := c.n[0].srv.Status(); st.Role != "follower" {
		t.Errorf("after losing its session: %+v", st)
	}
}

// A brick whose journal fails leaves its set: it steps down and answers
// EIO, since nothing it says can be made durable.
func TestJournalFailure(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	c.n[0].j.Close()
	if _, e := c.n[0].srv.Write(cl.next(), fd, []byte("x"), 0); e != syscall.EIO {
		t.Fatalf("write with a failed journal: %v, want EIO", e)
	}
	c.waitFor("brick 0 to step down", func() bool { return c.n[0].srv.Status().Role == "follower" })
	if _, e := c.n[0].srv.Write(cl.next(), fd, []byte("x"), 0); e != syscall.EREMOTE && e != syscall.EIO {
		t.Fatalf("later write: %v", e)
	}
	// The others elect a new leader and go on.
	c.elect(1, 6)
	write(t, c.n[1].srv, cl, fd, "y", 0)
}
