package systest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// The measurements below take minutes and gigabytes of disk, so they
// run only when asked for with RECON_MEASURE=1 (they need real bricks,
// which the cluster helpers give tests, not benchmarks). They report
// times; they assert only that reconciliation ends with identical
// replicas.
func measuring(t *testing.T) {
	if os.Getenv("RECON_MEASURE") == "" {
		t.Skip("a measurement: run with RECON_MEASURE=1")
	}
}

// envInt reads a size from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, s, err)
		}
		return n
	}
	return def
}

// TestReconMeasureCatchUp: a follower is killed, misses RECON_BENCH_MIB
// (default 1024) MiB of writes (1 MiB each, to 16 files), and restarts;
// the time measured is from its restart until it has applied everything
// its leader committed (replication ships it the journal entries it
// lacks) and holds the same tree.
//
//	RECON_MEASURE=1 go test ./systest -run TestReconMeasureCatchUp -v
func TestReconMeasureCatchUp(t *testing.T) {
	measuring(t)
	mib := envInt(t, "RECON_BENCH_MIB", 1024)
	c := newCluster(t, map[string]string{volume.OptLeaseTTL: "1s"})
	v := c.open()
	w := newCaller(v.Top)
	leader, _ := c.leader(-1, 0)
	f := (leader + 1) % replicas
	c.kill(f)
	const files = 16
	fds := make([]xl.Fd, files)
	for i := range fds {
		fds[i] = w.create(t, fmt.Sprintf("big-%02d", i), syscall.O_WRONLY)
	}
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var wg sync.WaitGroup
	for k := range files {
		wg.Go(func() {
			for j := k; j < mib; j += files {
				if n, e := v.Top.Write(w.ctx(context.Background()), fds[k], data, int64(j/files)<<20); e != 0 || n != len(data) {
					t.Errorf("write: %d, %v", n, e)
					return
				}
			}
		})
	}
	wg.Wait()
	st, err := c.status()
	if err != nil {
		t.Fatal(err)
	}
	lj := st.Sets[0].Bricks[st.Sets[0].Leader].JBR
	t.Logf("follower %d missed %d MiB: leader at index %d", f, mib, lj.LastIndex)
	start := time.Now()
	c.start(f)
	c.poll("the follower to catch up", func() (bool, string) {
		st, err := c.status()
		if err != nil {
			return false, err.Error()
		}
		return sameJournals(st)
	})
	took := time.Since(start)
	t.Logf("caught up %d MiB in %v (%.0f MiB/s)", mib, took.Round(time.Millisecond), float64(mib)/took.Seconds())
	c.verifyIdentical()
}

// TestReconMeasureFullResync: a follower's store of RECON_BENCH_FILES
// (default 10,000) files of 4 KiB is lost, its journal kept; the time
// measured is gluon recon run resyncing it in full from the leader over
// the network (scan both stores by GFID, make every object, copy data
// and metadata).
//
//	RECON_MEASURE=1 go test ./systest -run TestReconMeasureFullResync -v
func TestReconMeasureFullResync(t *testing.T) {
	measuring(t)
	files := envInt(t, "RECON_BENCH_FILES", 10000)
	c := newCluster(t, map[string]string{volume.OptLeaseTTL: "1s"})
	v := c.open()
	data := make([]byte, 4096)
	var wg sync.WaitGroup
	const writers = 8
	for k := range writers {
		wg.Go(func() {
			w := newCaller(v.Top)
			for i := k; i < files; i += writers {
				ctx := context.Background()
				fd, _, e := v.Top.Create(w.ctx(ctx), xl.RootGFID, fmt.Sprintf("f%06d", i), xl.NewGFID(), syscall.O_WRONLY|syscall.O_CREAT, 0o644)
				if e != 0 {
					t.Errorf("create: %v", e)
					return
				}
				if _, e := v.Top.Write(w.ctx(ctx), fd, data, 0); e != 0 {
					t.Errorf("write: %v", e)
					return
				}
				v.Top.Release(w.ctx(ctx), fd)
			}
		})
	}
	wg.Wait()
	leader, _ := c.leader(-1, 0)
	c.converge()
	f := (leader + 1) % replicas
	c.stop(f)
	wipeStore(t, c.dirs[f])
	c.start(f)
	c.waitOnline(f)
	start := time.Now()
	code, out, errs := c.reconRunWithin(20*time.Minute, "run", volName)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("gluon recon run: exit %d: %s\n%s", code, errs, out)
	}
	t.Logf("full resync of %d files in %v (%.0f files/s):\n%s", files, took.Round(time.Millisecond), float64(files)/took.Seconds(), out)
	c.verifyIdentical()
}
