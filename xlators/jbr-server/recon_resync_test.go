package jbrserver

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
)

// A follower away while the others prune what it lacks is reported by
// the leader as needing a full resync, and once its log is fast-forwarded
// to the index the leader names it takes every later entry by
// replication. (Its store is repaired by recon; see systest.)
func TestPrunedFollowerFastForwards(t *testing.T) {
	const seg, bound = 64 << 10, 256 << 10
	c := startCluster(t, 3, Options{JournalMaxBytes: bound, CheckpointInterval: 10 * time.Millisecond}, seg)
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	block := string(bytes.Repeat([]byte("x"), 4096))
	write(t, c.n[0].srv, cl, fd, block, 0)
	c.converged(0)

	c.stop(2)
	for i := 1; i < 256; i++ { // 1 MiB: 4 times the bound
		write(t, c.n[0].srv, cl, fd, block, int64(i*len(block)))
	}
	c.waitFor("the leader to prune", func() bool { return c.n[0].j.FirstIndex() > 2 })
	c.start(2, nil)
	c.n[2].el.Observe(0, 5)
	var rs []Resync
	c.waitFor("the leader to report brick 2", func() bool {
		rs = c.n[0].srv.NeedsResync()
		return slices.ContainsFunc(rs, func(r Resync) bool { return r.Replica == 2 })
	})
	r := rs[slices.IndexFunc(rs, func(r Resync) bool { return r.Replica == 2 })]
	if st := c.n[2].srv.Status(); st.Applied >= r.Index || r.Term != 5 {
		t.Fatalf("brick 2 %+v, reported %+v: want it behind, at term 5", st, r)
	}

	c.stop(2)
	if err := c.n[2].reopenJournal(t, c, func() error { return FastForward(c.n[2].j, r.Term, r.Index) }); err != nil {
		t.Fatal(err)
	}
	c.start(2, nil)
	c.n[2].el.Observe(0, 5)
	fd2 := create(t, c.n[0].srv, cl, "g", 0)
	write(t, c.n[0].srv, cl, fd2, "after", 0)
	c.converged(0)
	c.sameEverywhere("g", "after")
	if st := c.n[2].srv.Status(); st.LastIndex != c.n[0].srv.Status().LastIndex {
		t.Errorf("brick 2 after fast-forward: %+v", st)
	}
}

// reopenJournal opens a stopped brick's journal, runs fn and closes it.
func (nd *node) reopenJournal(t *testing.T, c *cluster, fn func() error) error {
	t.Helper()
	j, err := journal.Open(nd.jdir, journal.Options{Logger: c.log, SegmentSize: c.segSize})
	if err != nil {
		return err
	}
	nd.j = j
	if err := fn(); err != nil {
		j.Close()
		return fmt.Errorf("on the stopped journal: %w", err)
	}
	return j.Close()
}
