package jbrserver

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// With JournalMaxBytes, a long write stream leaves every brick's journal
// under the bound once checkpoints catch up, writes made before and after
// the pruning are all there, and a brick restarted over a pruned journal
// resumes and keeps up.
func TestJournalStaysBounded(t *testing.T) {
	const seg, bound = 64 << 10, 256 << 10
	c := startCluster(t, 3, Options{JournalMaxBytes: bound, CheckpointInterval: 10 * time.Millisecond}, seg)
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	block := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	const blocks = 512                                     // 2 MiB: 8 times the bound
	write1 := func(i int) {
		b := append([]byte(nil), block...)
		b[0] = byte(i)
		write(t, c.n[0].srv, cl, fd, string(b), int64(i*len(block)))
	}
	for i := range blocks / 2 {
		write1(i)
	}
	c.stop(1)
	c.start(1, nil)
	c.n[1].el.Observe(0, 5)
	// The leader may prune what the restarted brick lacks once the bound
	// is reached, so let it catch up before the stream goes on: without
	// that, a slow reconnect turns into a full resync, which is the
	// reconciler's job, not this package's.
	write1(blocks / 2)
	c.waitFor("the restarted brick to catch up", func() bool {
		return c.n[1].srv.Status().LastIndex >= c.n[0].srv.Status().LastIndex
	})
	for i := blocks/2 + 1; i < blocks; i++ {
		write1(i)
	}
	c.converged(0)
	c.waitFor("every journal under its bound", func() bool {
		for _, nd := range c.n {
			if nd.j.Stat().Bytes > bound {
				return false
			}
		}
		return true
	})
	for i, nd := range c.n {
		st := nd.j.Stat()
		if st.FirstIndex <= 1 {
			t.Errorf("brick %d: journal still starts at %d: nothing pruned", i, st.FirstIndex)
		}
		got, err := os.ReadFile(filepath.Join(nd.dir, "f"))
		if err != nil || len(got) != blocks*len(block) {
			t.Fatalf("brick %d: f has %d bytes (%v), want %d", i, len(got), err, blocks*len(block))
		}
		for k := range blocks {
			if got[k*len(block)] != byte(k) || !bytes.Equal(got[k*len(block)+1:(k+1)*len(block)], block[1:]) {
				t.Fatalf("brick %d: block %d of f differs", i, k)
			}
		}
	}
}

// Without JournalMaxBytes, each brick prunes what every replica holds:
// a long write stream leaves every journal a few segments long. With a
// follower stopped, the others keep every entry it lacks, and it
// catches up from their journals when it returns, with no full resync;
// then they prune again.
func TestJournalPrunedWhereEveryReplicaHolds(t *testing.T) {
	const seg = 64 << 10
	c := startCluster(t, 3, Options{CheckpointInterval: 10 * time.Millisecond}, seg)
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	block := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	const blocks = 256                                     // 1 MiB: 16 segments
	write1 := func(i int) {
		b := append([]byte(nil), block...)
		b[0] = byte(i)
		write(t, c.n[0].srv, cl, fd, string(b), int64(i*len(block)))
	}
	small := func() bool {
		for _, nd := range c.n {
			// The active segment and the one holding the prunable
			// index stay, and a checkpoint may lag by one more.
			if st := nd.j.Stat(); st.Bytes > 3*seg || st.FirstIndex <= 1 {
				return false
			}
		}
		return true
	}
	for i := range blocks {
		write1(i)
	}
	c.converged(0)
	c.waitFor("every journal pruned to a few segments", small)

	c.stop(2)
	held := c.n[2].j.Stat().LastIndex
	for i := blocks; i < 2*blocks; i++ {
		write1(i)
	}
	c.converged(0)
	commit := c.n[0].srv.Status().Commit
	c.waitFor("the running bricks to checkpoint", func() bool {
		return c.n[0].j.Synced() >= commit && c.n[1].j.Synced() >= commit
	})
	c.n[0].srv.pruneJournal() // at least once after the checkpoint
	c.n[1].srv.pruneJournal()
	for i, nd := range c.n[:2] {
		if st := nd.j.Stat(); st.FirstIndex > held+1 {
			t.Fatalf("brick %d pruned entries the stopped brick lacks: journal from %d, it holds up to %d", i, st.FirstIndex, held)
		}
	}

	c.start(2, nil)
	c.n[2].el.Observe(0, 5)
	c.converged(0)
	if rs := c.n[0].srv.NeedsResync(); len(rs) != 0 {
		t.Fatalf("the returning brick needs a full resync: %+v", rs)
	}
	c.waitFor("every journal pruned again", small)
	for i, nd := range c.n {
		got, err := os.ReadFile(filepath.Join(nd.dir, "f"))
		if err != nil || len(got) != 2*blocks*len(block) {
			t.Fatalf("brick %d: f has %d bytes (%v), want %d", i, len(got), err, 2*blocks*len(block))
		}
		for k := range 2 * blocks {
			if got[k*len(block)] != byte(k) {
				t.Fatalf("brick %d: block %d of f differs", i, k)
			}
		}
	}
}
