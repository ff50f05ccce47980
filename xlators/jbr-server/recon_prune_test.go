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
	for i := blocks / 2; i < blocks; i++ {
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
