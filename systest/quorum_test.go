package systest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

const (
	quorumRetryTimeout   = 3 * time.Second
	quorumRequestTimeout = 2 * time.Second
	// hangBound is how long a request may take to fail without quorum
	// before the test calls it a hang. jbr-client's retry timeout starts
	// at a request's first failure, at the latest when the leader's
	// request timeout ends the first attempt, and bounds the attempts
	// after it too (TestRetryTimeout pins that). The rest is a generous
	// margin for a loaded machine: this test is about never hanging. A
	// getattr waits for the file's written-behind write to fail first
	// (package writebehind), so it may take two such failures.
	hangBound = 2*(quorumRequestTimeout+quorumRetryTimeout) + 10*time.Second
)

// newQuorumCluster starts a replica-3 cluster with the short timeouts
// above, opens it and creates "data" in it.
func newQuorumCluster(t *testing.T) (*cluster, *client.Volume, *caller, xl.Fd) {
	t.Helper()
	c := newCluster(t, map[string]string{
		volume.OptLeaseTTL:       "1s",
		volume.OptRetryTimeout:   quorumRetryTimeout.String(),
		volume.OptRequestTimeout: quorumRequestTimeout.String(),
	})
	v := c.open()
	w := newCaller(v.Top)
	return c, v, w, w.create(t, "data", syscall.O_RDWR)
}

// outcome is how one request ended.
type outcome struct {
	op    string
	e     syscall.Errno
	took  time.Duration
	began time.Duration // after the bricks went down
}

// TestQuorumLoss: two of the three bricks go away, in three ways (both
// followers killed; both followers stopped, their connections still open;
// the leader and a follower killed). Each time, a write, a create, a read
// and a getattr through the client graph fail with EROFS or ENOTCONN (the
// documented errnos; reads, once the leader's read lease from its last
// quorum has run out, with ENOTCONN) within a bound, never hanging.
// Writes refused with EROFS never appear later. Once the bricks are back,
// the same client graph writes and reads again, everything acknowledged
// is there, and the replicas converge.
func TestQuorumLoss(t *testing.T) {
	leaseDuration := (&volume.Volume{}).Duration(volume.OptLeaseDuration) // the default, which the cluster keeps
	c, v, w, fd := newQuorumCluster(t)
	// Slot 0 is written now; slot 1+p by phase p while without quorum, and
	// slot 10+p once it is back.
	acked := map[int]bool{}
	refused := map[int]bool{}         // slots whose write was refused with EROFS
	refusedFiles := map[string]bool{} // files whose create was
	// write writes slot and fsyncs it: write-behind acknowledges the
	// write itself from memory and reports its failure at the fsync.
	write := func(slot int) (syscall.Errno, time.Duration) {
		start := time.Now()
		n, e := v.Top.Write(w.ctx(context.Background()), fd, record(slot), int64(slot*recordSize))
		if e == 0 && n != recordSize {
			t.Fatalf("write of slot %d: short write %d", slot, n)
		}
		if e == 0 {
			e = v.Top.Fsync(w.ctx(context.Background()), fd, true)
		}
		return e, time.Since(start)
	}
	if e, _ := write(0); e != 0 {
		t.Fatalf("write: %v", e)
	}
	acked[0] = true

	phases := []struct {
		name string
		down func(leader int) []int
		sig  syscall.Signal
	}{
		{"both followers killed", followers, syscall.SIGKILL},
		{"both followers stopped", followers, syscall.SIGSTOP},
		{"the leader and a follower killed", func(l int) []int { return []int{l, followers(l)[0]} }, syscall.SIGKILL},
	}
	for p, ph := range phases {
		leader, _ := c.leader(-1, 0)
		down := ph.down(leader)
		t.Logf("phase %d: %s: leader %d, bricks %v down", p, ph.name, leader, down)
		if ph.sig == syscall.SIGKILL {
			c.kill(down...)
		} else {
			for _, i := range down {
				c.signal(i, ph.sig)
			}
		}
		lost := time.Now()

		// All at once, so that the phase costs one bound, not four.
		name := fmt.Sprintf("p%d", p)
		slot := 1 + p
		ops := map[string]func() syscall.Errno{
			"write": func() syscall.Errno { e, _ := write(slot); return e },
			"create": func() syscall.Errno {
				fd, _, e := v.Top.Create(w.ctx(context.Background()), xl.RootGFID, name, xl.NewGFID(), syscall.O_RDWR, 0o644)
				if e == 0 {
					v.Top.Release(w.ctx(context.Background()), fd)
				}
				return e
			},
			"read": func() syscall.Errno {
				_, e := v.Top.Read(w.ctx(context.Background()), fd, make([]byte, recordSize), 0)
				return e
			},
			"getattr": func() syscall.Errno {
				_, e := v.Top.Getattr(w.ctx(context.Background()), fd.GFID)
				return e
			},
		}
		results := make(chan outcome, len(ops))
		var wg sync.WaitGroup
		for op, f := range ops {
			wg.Go(func() {
				start := time.Now()
				e := f()
				results <- outcome{op, e, time.Since(start), start.Sub(lost)}
			})
		}
		bound := time.After(hangBound)
		for range ops {
			select {
			case r := <-results:
				want := []syscall.Errno{syscall.EROFS, syscall.ENOTCONN}
				if r.op == "read" || r.op == "getattr" {
					want = []syscall.Errno{syscall.ENOTCONN}
				}
				if (r.op == "read" || r.op == "getattr") && r.e == 0 && r.began < leaseDuration {
					// Linearizable still: no other leader can commit
					// before the lease the followers promised runs out.
					t.Logf("phase %d: %s served within the leader's lease, %v after the loss", p, r.op, r.began)
					continue
				}
				if !errnoIn(r.e, want...) {
					t.Errorf("phase %d (%s): %s: %v (errno %d) after %v, want one of %v", p, ph.name, r.op, r.e, r.e, r.took, want)
				} else {
					t.Logf("phase %d: %s failed cleanly: %v after %v", p, r.op, r.e, r.took.Round(time.Millisecond))
				}
				if r.e == syscall.EROFS && r.op == "write" {
					refused[slot] = true
				}
				if r.e == syscall.EROFS && r.op == "create" {
					refusedFiles[name] = true
				}
				if r.e == 0 && r.op == "write" {
					acked[slot] = true
				}
			case <-bound:
				t.Fatalf("phase %d (%s): requests still running after %v: a hang", p, ph.name, hangBound)
			}
		}
		wg.Wait()
		if p < 2 { // the leader is up: once its lease is out, it serves no read
			time.Sleep(time.Until(lost.Add(leaseDuration)))
			if _, e := v.Top.Read(w.ctx(context.Background()), fd, make([]byte, recordSize), 0); e != syscall.ENOTCONN {
				t.Errorf("phase %d (%s): read after the lease ran out: %v, want ENOTCONN", p, ph.name, e)
			}
		}

		// Back up: the same client graph resumes.
		back := time.Now()
		if ph.sig == syscall.SIGKILL {
			for _, i := range down {
				c.start(i)
			}
			c.waitOnline(down...)
		} else {
			for _, i := range down {
				c.signal(i, syscall.SIGCONT)
			}
		}
		slot = 10 + p
		c.poll("writes to resume", func() (bool, string) {
			e, took := write(slot)
			switch {
			case e == 0:
				return true, ""
			case !errnoIn(e, syscall.EROFS, syscall.ENOTCONN):
				t.Fatalf("phase %d: write after the bricks came back: %v", p, e)
			}
			return false, fmt.Sprintf("last write: %v after %v", e, took)
		})
		acked[slot] = true
		t.Logf("phase %d: writes resumed %v after the bricks were back", p, time.Since(back).Round(time.Millisecond))
		if _, e := v.Top.Read(w.ctx(context.Background()), fd, make([]byte, recordSize), 0); e != 0 {
			t.Errorf("phase %d: read after the bricks came back: %v", p, e)
		}
	}

	c.converge()
	// Acknowledged writes are on every brick; refused ones on none.
	for i, d := range c.dirs {
		got, err := os.ReadFile(filepath.Join(d, "data"))
		if err != nil {
			t.Fatal(err)
		}
		for _, slot := range slices.Sorted(maps.Keys(acked)) {
			if end := (slot + 1) * recordSize; len(got) < end || !bytes.Equal(got[slot*recordSize:end], record(slot)) {
				t.Errorf("brick %d: acknowledged write of slot %d missing", i, slot)
			}
		}
		for slot := range refused {
			if end := (slot + 1) * recordSize; len(got) >= end && bytes.Equal(got[slot*recordSize:end], record(slot)) {
				t.Errorf("brick %d: the write of slot %d was refused with EROFS, yet it is there", i, slot)
			}
		}
		for name := range refusedFiles {
			if _, err := os.Lstat(filepath.Join(d, name)); err == nil {
				t.Errorf("brick %d: the create of %s was refused with EROFS, yet it exists", i, name)
			}
		}
	}
}

// followers returns the bricks other than leader.
func followers(leader int) []int {
	var out []int
	for i := range replicas {
		if i != leader {
			out = append(out, i)
		}
	}
	return out
}

// TestRetryTimeout: the client's retry timeout bounds how long a request
// goes on after its first failure (package jbrclient: "A request gives up
// RetryTimeout after its first failure"). Both followers are stopped, so
// the leader fails each attempt with ENOTCONN at its request timeout; a
// read and a write must then end within one request timeout, the retry
// timeout and one more attempt, not linger on a stopped brick until a
// connection's ping timeout (10 s) declares it dead.
func TestRetryTimeout(t *testing.T) {
	const retry, request = time.Second, time.Second
	c := newCluster(t, map[string]string{
		volume.OptLeaseTTL:       "1s",
		volume.OptRetryTimeout:   retry.String(),
		volume.OptRequestTimeout: request.String(),
	})
	v := c.open()
	w := newCaller(v.Top)
	fd := w.create(t, "data", syscall.O_RDWR)
	// The margin is for a loaded machine (a stalled test process counts
	// the stall in); the bound stays well below the ping timeout.
	leaseDuration := (&volume.Volume{}).Duration(volume.OptLeaseDuration) // the default, which the cluster keeps
	bound := leaseDuration + request + retry + request + 4*time.Second
	ops := map[string]func() syscall.Errno{
		"write": func() syscall.Errno {
			// Acknowledged by write-behind; the fsync reports its failure.
			_, e := v.Top.Write(w.ctx(context.Background()), fd, record(0), 0)
			if e == 0 {
				e = v.Top.Fsync(w.ctx(context.Background()), fd, true)
			}
			return e
		},
		"read": func() syscall.Errno {
			// Within the leader's read lease from its last quorum a read
			// is served, rightly (TestQuorumLoss); once it has run out,
			// the read must fail like the write.
			time.Sleep(leaseDuration)
			_, e := v.Top.Read(w.ctx(context.Background()), fd, make([]byte, recordSize), 0)
			return e
		},
	}
	type result struct {
		op   string
		e    syscall.Errno
		took time.Duration
	}
	// The requests must meet the leader the followers were stopped
	// under: if an election moved the lead meanwhile (an etcd stall on a
	// loaded machine), they run again.
	var results []result
	for attempt := 1; ; attempt++ {
		leader, term := c.leader(-1, 0)
		for _, i := range followers(leader) {
			c.signal(i, syscall.SIGSTOP)
		}
		var mu sync.Mutex
		results = results[:0]
		var wg sync.WaitGroup
		for op, f := range ops {
			wg.Go(func() {
				start := time.Now()
				e := f()
				mu.Lock()
				results = append(results, result{op, e, time.Since(start)})
				mu.Unlock()
			})
		}
		wg.Wait()
		for _, r := range results {
			// Two of three bricks stopped: no leader, old or new, has a
			// quorum, so an acknowledged write is wrong whoever led.
			if r.op == "write" && r.e == 0 {
				t.Errorf("write acknowledged with two of three bricks stopped (attempt %d)", attempt)
			}
		}
		stable := c.still(leader, term)
		for _, i := range followers(leader) {
			c.signal(i, syscall.SIGCONT)
		}
		if stable {
			break
		}
		if attempt == 5 {
			t.Fatalf("leadership never held still while the followers were stopped: %+v", results)
		}
		t.Logf("brick %d lost the lead (term %d) while its followers were stopped: %+v; again", leader, term, results)
		c.converge()
	}
	for _, r := range results {
		switch {
		case r.e != syscall.ENOTCONN:
			t.Errorf("%s without quorum: %v after %v, want ENOTCONN", r.op, r.e, r.took)
		case r.took > bound:
			t.Errorf("%s without quorum: ENOTCONN after %v; want it within %v (request timeout %v, retry timeout %v)", r.op, r.took.Round(time.Millisecond), bound, request, retry)
		default:
			t.Logf("%s without quorum: ENOTCONN after %v", r.op, r.took.Round(time.Millisecond))
		}
	}
	c.converge()
}
