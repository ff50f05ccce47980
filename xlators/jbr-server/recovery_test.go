package jbrserver

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// A replica that is killed and restarted (journal and store closed and
// reopened) catches up on what it missed, entries written before and
// after its restart alike.
func TestRestartedReplicaCatchesUp(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	write(t, c.n[0].srv, cl, fd, "a", 0)
	c.converged(0)

	c.cut(2)
	write(t, c.n[0].srv, cl, fd, "b", 1)
	c.stop(2)
	var want strings.Builder
	want.WriteString("ab")
	for i := range 50 {
		s := fmt.Sprintf("<%d>", i)
		write(t, c.n[0].srv, cl, fd, s, int64(want.Len()))
		want.WriteString(s)
	}
	fd2 := create(t, c.n[0].srv, cl, "g", 0)
	write(t, c.n[0].srv, cl, fd2, "g", 0)

	c.start(2, nil)
	c.n[2].el.Observe(0, 5)
	c.heal(2)
	c.converged(0)
	c.sameEverywhere("f", want.String())
	c.sameEverywhere("g", "g")
	if st := c.n[2].srv.Status(); st.Term != 5 || st.Role != "follower" || st.Leader != 0 {
		t.Errorf("restarted brick: %+v", st)
	}
}

// A leader that journaled an entry no follower got (never acknowledged)
// has that tail replaced by the next leader's entries once it follows,
// and never applies it, not even after a restart.
func TestDivergentTailIsReplaced(t *testing.T) {
	c := newCluster(t, 3, Options{RequestTimeout: time.Second})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	write(t, c.n[0].srv, cl, fd, "a", 0)
	c.converged(0)

	c.links[0][1].lose.Store(true)
	c.links[0][2].lose.Store(true)
	if _, e := c.n[0].srv.Write(cl.next(), fd, []byte("lost"), 0); e != syscall.ENOTCONN {
		t.Fatalf("write without a quorum: %v", e)
	}
	c.cut(0)
	c.links[0][1].lose.Store(false)
	c.links[0][2].lose.Store(false)
	c.n[0].el.Lose()
	c.elect(1, 7)
	write(t, c.n[1].srv, cl, fd, "b", 0)
	write(t, c.n[1].srv, cl, fd, "c", 1)
	c.heal(0)
	c.converged(1)
	c.sameEverywhere("f", "bc")
	if st := c.n[0].srv.Status(); st.LastIndex != c.n[1].srv.Status().LastIndex || st.LastTerm != 7 {
		t.Errorf("old leader's log: %+v", st)
	}

	// The replaced record stays in 0's journal, but a restart must not
	// bring it back.
	c.stop(0)
	c.start(0, nil)
	c.n[0].el.Observe(1, 7)
	write(t, c.n[1].srv, cl, fd, "d", 2)
	c.converged(1)
	c.sameEverywhere("f", "bcd")
}

// Entries known committed but not applied when a brick stopped (it
// crashed between the two) are applied when it starts again, before New
// returns, even with no leader in sight.
func TestColdStartReplaysCommitted(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.stop(2)
	var g *gate
	c.start(2, func(x xl.Xlator) xl.Xlator {
		g = newGate(x, func(f *xl.Fop) bool { return true })
		return g
	})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	write(t, c.n[0].srv, cl, fd, "hello", 0)
	// The next write's journal record on brick 2 says "hello" committed.
	write(t, c.n[0].srv, cl, fd, "world", 5)
	<-g.seen // brick 2 is applying "hello", and holds it there
	c.waitFor("brick 2 to journal both", func() bool { return c.n[2].srv.Status().LastIndex == c.n[0].srv.Status().LastIndex })
	c.cut(2)
	c.stop(2) // "crash": the apply never finished
	if got, _ := readAll(c, 2, "f"); got != "" {
		t.Fatalf("brick 2 holds %q before the restart", got)
	}

	c.start(2, nil) // cut off: nobody to ask
	if got, _ := readAll(c, 2, "f"); got != "hello" {
		t.Fatalf("after the restart brick 2 holds %q, want the committed %q", got, "hello")
	}
	if st := c.n[2].srv.Status(); st.Applied != st.Commit || st.LastIndex != st.Commit+1 {
		t.Errorf("status %+v: want everything known committed applied, one entry waiting", st)
	}
	// The leader tells it the rest.
	c.heal(2)
	c.n[2].el.Observe(0, 5)
	c.converged(0)
	c.sameEverywhere("f", "helloworld")
}

// A clean shutdown checkpoints: everything applied is synced, so a
// reboot replays nothing.
func TestCloseCheckpoints(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	write(t, c.n[0].srv, cl, fd, "x", 0)
	c.converged(0)
	for _, nd := range c.n {
		if err := nd.srv.Close(); err != nil {
			t.Fatal(err)
		}
		if a, s := nd.j.Applied(), nd.j.Synced(); a == 0 || s != a {
			t.Errorf("brick %d: applied %d synced %d", nd.i, a, s)
		}
	}
}

// A new leader that missed entries fetches them from the peer with the
// most advanced journal before it takes requests.
func TestNewLeaderFetchesWhatItMissed(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	c.converged(0)
	c.cut(2)
	big := strings.Repeat("x", 2<<20) // several journal segments' worth, over several batches
	for i := range 4 {
		write(t, c.n[0].srv, cl, fd, big, int64(i*len(big)))
	}
	c.stop(0)
	c.heal(2)
	c.elect(2, 6)
	write(t, c.n[2].srv, cl, fd, "end", int64(4*len(big)))
	c.converged(2)
	c.sameEverywhere("f", strings.Repeat(big, 4)+"end")
}

// After every brick stopped, the set starts again from its journals:
// the new leader recovers and commits what was there, and the terms go
// on from where they were.
func TestWholeSetRestarts(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", syscall.O_APPEND)
	// Appends carry the end of file as the client sees it, as FUSE
	// passes it: a replay after a crash writes there (see the doc).
	var want string
	for i := range 20 {
		s := fmt.Sprint(i, ";")
		write(t, c.n[0].srv, cl, fd, s, int64(len(want)))
		want += s
	}
	for i := range c.n {
		c.stop(i)
	}
	for i := range c.n {
		c.start(i, nil)
		if st := c.n[i].srv.Status(); st.Term != 5 {
			t.Errorf("brick %d restarted in term %d, want 5", i, st.Term)
		}
	}
	c.elect(1, 9)
	write(t, c.n[1].srv, cl, fd, "after;", int64(len(want)))
	c.converged(1)
	c.sameEverywhere("f", want+"after;")
}
