package jbrserver

import (
	"slices"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Committed entries apply in parallel unless they touch the same object:
// while a write to one file is held in a slow store, writes to two other
// files reach the store and complete, and a second write to the held file
// waits its turn behind the first.
func TestIndependentWritesApplyInParallel(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.stop(0)
	var g *gate
	c.start(0, func(x xl.Xlator) xl.Xlator {
		g = newGate(x, func(f *xl.Fop) bool { return f.Data[0] == 'A' })
		return g
	})
	c.elect(0, 5)
	leader := c.n[0].srv
	cl := newCaller()
	fa := create(t, leader, cl, "a", 0)
	fb := create(t, leader, cl, "b", 0)
	fc := create(t, leader, cl, "c", 0)

	type res struct {
		name string
		e    syscall.Errno
	}
	done := make(chan res, 4)
	writeAsync := func(cl *caller, fd xl.Fd, data string, off int64) {
		ctx := cl.next()
		go func() {
			_, e := leader.Write(ctx, fd, []byte(data), off)
			done <- res{data, e}
		}()
	}
	writeAsync(newCaller(), fa, "A1", 0)
	<-g.seen // A1 is in the store, held
	a1 := leader.Status().Commit
	writeAsync(newCaller(), fa, "A2", 2)
	// A2 is proposed after A1; wait until it has committed, so that the
	// applier has it queued behind A1 when B and C arrive.
	c.waitFor("A2 to commit", func() bool { return leader.Status().Commit > a1 })
	writeAsync(newCaller(), fb, "B", 0)
	writeAsync(newCaller(), fc, "C", 0)
	for range 2 {
		r := <-done
		if r.e != 0 || (r.name != "B" && r.name != "C") {
			t.Fatalf("while A1 is held, %s completed with %v; want B and C to complete", r.name, r.e)
		}
	}
	if got := g.got(); !slices.Equal(got, []string{"A1"}) {
		t.Fatalf("store saw %v while A1 was held; A2 must wait for it", got)
	}
	g.release()
	for range 2 {
		if r := <-done; r.e != 0 {
			t.Fatalf("%s: %v", r.name, r.e)
		}
	}
	if got := g.got(); !slices.Equal(got, []string{"A1", "A2"}) {
		t.Fatalf("store saw %v, want A1 then A2", got)
	}
	c.converged(0)
	c.sameEverywhere("a", "A1A2")
	c.sameEverywhere("b", "B")
	c.sameEverywhere("c", "C")
}
