package systest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestWriteBehindErrorAtClose: with write-behind on (the default), a
// write made while the replica set has no quorum is acknowledged from the
// client's memory; its failure comes back on the fd's next flush, as
// close(2) reports it, within a bound. Writes made before are on every
// brick once flushed, and the same fd writes again once quorum is back.
func TestWriteBehindErrorAtClose(t *testing.T) {
	c, v, w, fd := newQuorumCluster(t)
	bg := context.Background()
	for slot := range 32 {
		if n, e := v.Top.Write(w.ctx(bg), fd, record(slot), int64(slot*recordSize)); e != 0 || n != recordSize {
			t.Fatalf("write of slot %d: %d, %v", slot, n, e)
		}
	}
	if e := v.Top.Flush(w.ctx(bg), fd); e != 0 {
		t.Fatalf("flush with every brick up: %v", e)
	}

	leader, _ := c.leader(-1, 0)
	down := followers(leader)
	c.kill(down...)
	if n, e := v.Top.Write(w.ctx(bg), fd, record(40), 40*recordSize); e != 0 || n != recordSize {
		t.Fatalf("write without quorum: %d, %v; write-behind acknowledges it", n, e)
	}
	start := time.Now()
	e := v.Top.Flush(w.ctx(bg), fd)
	took := time.Since(start)
	if !errnoIn(e, syscall.EROFS, syscall.ENOTCONN) {
		t.Fatalf("flush after a write without quorum: %v after %v, want EROFS or ENOTCONN", e, took)
	}
	if took > hangBound {
		t.Fatalf("flush reported %v after %v: want it within %v", e, took, hangBound)
	}
	t.Logf("flush reported the written-behind failure: %v after %v", e, took.Round(time.Millisecond))

	for _, i := range down {
		c.start(i)
	}
	c.waitOnline(down...)
	c.poll("writes to resume", func() (bool, string) {
		_, e := v.Top.Write(w.ctx(bg), fd, record(50), 50*recordSize)
		if e == 0 {
			e = v.Top.Flush(w.ctx(bg), fd)
		}
		return e == 0, e.Error()
	})
	if e := v.Top.Release(w.ctx(bg), fd); e != 0 {
		t.Fatalf("release: %v", e)
	}
	c.converge()
	for i, d := range c.dirs {
		got, err := os.ReadFile(filepath.Join(d, "data"))
		if err != nil {
			t.Fatal(err)
		}
		for _, slot := range []int{0, 31, 50} {
			if end := (slot + 1) * recordSize; len(got) < end || !bytes.Equal(got[slot*recordSize:end], record(slot)) {
				t.Errorf("brick %d: flushed write of slot %d missing", i, slot)
			}
		}
	}
}
