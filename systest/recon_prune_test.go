package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/recon"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// journalBound is the jbr.journal-max-size of these tests: the smallest
// the option takes.
const journalBound = 4 << 20

// bigBlock is block i of a big file: 1 MiB, different for every block.
func bigBlock(i int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("<%07d>", i)), (1<<20)/9+1)[:1<<20]
}

// writeBig writes blocks [from, to) of name, 1 MiB each, creating it
// first if from is 0.
func writeBig(t *testing.T, w *caller, name string, from, to int) {
	t.Helper()
	ctx := context.Background()
	var fd xl.Fd
	if from == 0 {
		fd = w.create(t, name, syscall.O_WRONLY)
	} else {
		a, e := w.top.Lookup(w.ctx(ctx), xl.RootGFID, name)
		if e != 0 {
			t.Fatalf("lookup %s: %v", name, e)
		}
		if fd, e = w.top.Open(w.ctx(ctx), a.GFID, syscall.O_WRONLY); e != 0 {
			t.Fatalf("open %s: %v", name, e)
		}
	}
	defer w.top.Release(w.ctx(ctx), fd)
	for i := from; i < to; i++ {
		b := bigBlock(i)
		if n, e := w.top.Write(w.ctx(ctx), fd, b, int64(i)<<20); e != 0 || n != len(b) {
			t.Fatalf("write block %d of %s: %d, %v", i, name, n, e)
		}
	}
}

// checkBig reads name back: it must hold blocks [0, n).
func checkBig(t *testing.T, w *caller, name string, n int) {
	t.Helper()
	got, err := w.readFile(xl.RootGFID, name)
	if err != nil {
		t.Fatalf("acknowledged %s lost: %v", name, err)
	}
	if len(got) != n<<20 {
		t.Fatalf("%s: %d bytes; want %d", name, len(got), n<<20)
	}
	for i := range n {
		if !bytes.Equal(got[i<<20:(i+1)<<20], bigBlock(i)) {
			t.Fatalf("%s: block %d differs", name, i)
		}
	}
}

// reconStatus runs gluon recon status --json.
func (c *cluster) reconStatus() ([]recon.SetState, error) {
	code, out, errs := c.reconRun("status", volName, "--json")
	var st []recon.SetState
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || len(st) != 1 {
		return nil, fmt.Errorf("gluon recon status --json: exit %d, %v, %s", code, err, errs)
	}
	return st, nil
}

// TestReconJournalBounded: with jbr.journal-max-size, a write stream of
// eight times the bound leaves every brick's journal under it once the
// bricks' checkpoints have caught up, as gluon recon status shows, and
// the replicas end identical with every write present.
func TestReconJournalBounded(t *testing.T) {
	c := newCluster(t, map[string]string{volume.OptLeaseTTL: "1s", volume.OptJournalMaxSize: fmt.Sprint(journalBound)})
	v := c.open()
	w := newCaller(v.Top)
	const blocks = 8 * journalBound >> 20
	start := time.Now()
	writeBig(t, w, "big", 0, blocks)
	t.Logf("wrote %d MiB in %v", blocks, time.Since(start).Round(time.Millisecond))
	c.converge()
	c.poll("every brick's journal under jbr.journal-max-size", func() (bool, string) {
		st, err := c.reconStatus()
		if err != nil {
			return false, err.Error()
		}
		for _, b := range st[0].Bricks {
			if b.Journal == nil || b.Journal.Bytes > journalBound || b.Journal.FirstIndex <= 1 {
				return false, fmt.Sprintf("brick %d: journal %+v", b.Index, b.Journal)
			}
		}
		return true, ""
	})
	_, out, _ := c.reconRun("status", volName)
	t.Logf("gluon recon status after %d MiB with a %d MiB bound:\n%s", blocks, journalBound>>20, out)
	c.verifyIdentical()
	checkBig(t, w, "big", blocks)
}

// TestReconPrunedReplicaResynced: a follower is away while the others
// write four times the journal bound, so the leader prunes the entries
// it lacks. When it returns the leader finds them gone and marks it for
// a full resync; the follower's daemon fast-forwards its log to the
// leader's commit index and serves again; the leader repairs its store
// by GFID walk (files made and removed while it was away, a big file's
// blocks) and clears the mark. verify then finds the replicas identical
// and every acknowledged write present.
func TestReconPrunedReplicaResynced(t *testing.T) {
	c, w, leader, _ := newWritten(t, map[string]string{volume.OptLeaseTTL: "1s", volume.OptJournalMaxSize: fmt.Sprint(journalBound)}, 20)
	f := (leader + 1) % replicas
	js := c.jbrStatusWait(f)
	c.kill(f)
	const blocks = 4 * journalBound >> 20
	writeBig(t, w, "big", 0, blocks)
	writeFiles(t, w, 20, 40)
	if e := w.top.Unlink(w.ctx(context.Background()), xl.RootGFID, fileName(3)); e != 0 {
		t.Fatal(e)
	}
	c.poll("the leader to prune the entries the follower lacks", func() (bool, string) {
		st, err := c.reconStatus()
		if err != nil {
			return false, err.Error()
		}
		lj := st[0].Bricks[leader].Journal
		return lj != nil && lj.FirstIndex > js.LastIndex+1, fmt.Sprintf("leader's journal %+v, follower at %d", lj, js.LastIndex)
	})

	c.start(f)
	c.waitOnline(f)
	// Writes go on through the resync: the leader and the other follower
	// make the quorum whether or not the marked replica is counted.
	writeFiles(t, w, 40, 45)
	// The resync is the leader's to do, and leadership may move meanwhile
	// (an etcd stall on a loaded machine): any brick's log may tell it.
	c.poll("the full resync to be marked, done and cleared", func() (bool, string) {
		fl, err := os.ReadFile(c.logs[f])
		if err != nil {
			return false, err.Error()
		}
		done := false
		for _, l := range c.logs {
			b, err := os.ReadFile(l)
			if err != nil {
				return false, err.Error()
			}
			done = done || bytes.Contains(b, []byte("recon: full resync done"))
		}
		if !bytes.Contains(fl, []byte("recon: log fast-forwarded")) || !done {
			return false, "no fast-forward and resync logged yet"
		}
		marks, err := recon.Resyncs(context.Background(), c.cli, volName, 0)
		return err == nil && len(marks) == 0, fmt.Sprintf("marks %+v, %v", marks, err)
	})
	// Marked, it stopped voting and serving; cleared, it votes again
	// without another restart.
	if fl, err := os.ReadFile(c.logs[f]); err != nil || !bytes.Contains(fl, []byte("jbr: being resynced in full")) {
		t.Errorf("the resynced replica never stopped voting (%v)", err)
	}
	c.poll("the resynced replica to vote again", func() (bool, string) {
		js, err := c.jbrStatus(f)
		if err != nil {
			return false, err.Error()
		}
		return !js.Resyncing, fmt.Sprintf("status %+v", js)
	})
	c.converge()
	c.verifyIdentical()
	checkFiles(t, w, 0, 3)
	checkFiles(t, w, 4, 45)
	if _, e := w.top.Lookup(w.ctx(context.Background()), xl.RootGFID, fileName(3)); e != syscall.ENOENT {
		t.Errorf("lookup of the removed %s: %v, want ENOENT", fileName(3), e)
	}
	checkBig(t, w, "big", blocks)
	for _, l := range c.logs {
		if b, err := os.ReadFile(l); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "full resync") {
					t.Log(l)
				}
			}
		}
	}
}

// TestReconResyncedLeaderStepsDown: a brick marked for a full resync
// must not lead (its store is not the set's). Marked while it leads, it
// restarts, another brick takes over, repairs it and clears the mark.
func TestReconResyncedLeaderStepsDown(t *testing.T) {
	c, w, leader, term := newWritten(t, map[string]string{volume.OptLeaseTTL: "1s"}, 10)
	ctx := context.Background()
	mk := recon.Resync{State: recon.ResyncRepair, Term: term, Since: time.Now().UTC()}
	if err := recon.MarkResync(ctx, c.cli, volName, 0, leader, mk); err != nil {
		t.Fatal(err)
	}
	next, _ := c.leader(leader, term)
	c.poll("the new leader to repair the old one and clear its mark", func() (bool, string) {
		marks, err := recon.Resyncs(ctx, c.cli, volName, 0)
		return err == nil && len(marks) == 0, fmt.Sprintf("marks %+v, %v", marks, err)
	})
	t.Logf("brick %d, marked for a resync, handed leadership to brick %d", leader, next)
	writeFiles(t, w, 10, 20)
	c.converge()
	c.verifyIdentical()
	checkFiles(t, w, 0, 20)
}

// TestReconJournalPrunedByDefault: bricks prune what every replica of
// the set holds, whatever jbr.journal-max-size says. The cap here (16
// MiB, so 4 MiB segments) is never reached: with all replicas up, a
// write stream of five segments leaves every journal at its active
// segment or two, as gluon recon status shows. With a follower away, the
// others keep every entry it lacks, and it catches up from their
// journals when it returns, with no full resync.
func TestReconJournalPrunedByDefault(t *testing.T) {
	const limit, seg = 16 << 20, 4 << 20 // segments are a quarter of the cap
	c := newCluster(t, map[string]string{volume.OptLeaseTTL: "1s", volume.OptJournalMaxSize: fmt.Sprint(limit)})
	v := c.open()
	w := newCaller(v.Top)
	small := func() (bool, string) {
		st, err := c.reconStatus()
		if err != nil {
			return false, err.Error()
		}
		for _, b := range st[0].Bricks {
			if b.Journal == nil || b.Journal.Bytes > 2*seg || b.Journal.FirstIndex <= 1 {
				return false, fmt.Sprintf("brick %d: journal %+v", b.Index, b.Journal)
			}
		}
		return true, ""
	}
	const blocks = 5 * seg >> 20
	writeBig(t, w, "big", 0, blocks)
	c.converge()
	c.poll("every brick's journal pruned to a segment or two", small)
	_, out, _ := c.reconRun("status", volName)
	t.Logf("gluon recon status after %d MiB, all replicas up:\n%s", blocks, out)

	leader, _ := c.leader(-1, 0)
	f := (leader + 1) % replicas
	js := c.jbrStatusWait(f)
	c.kill(f)
	const more = 5 // MiB: the cap is not reached
	writeBig(t, w, "big2", 0, more)
	writeFiles(t, w, 0, 10)
	// Give the running bricks a few checkpoints to prune what they may.
	c.poll("the running bricks to keep what the follower lacks", func() (bool, string) {
		st, err := c.reconStatus()
		if err != nil {
			return false, err.Error()
		}
		for _, b := range st[0].Bricks {
			if b.Index == f {
				continue
			}
			if b.Journal == nil || b.Journal.Synced < b.Journal.LastIndex {
				return false, fmt.Sprintf("brick %d not checkpointed: %+v", b.Index, b.Journal)
			}
			if b.Journal.FirstIndex > js.LastIndex+1 {
				t.Fatalf("brick %d pruned what the follower lacks: journal %+v, follower at %d", b.Index, b.Journal, js.LastIndex)
			}
		}
		return true, ""
	})
	c.start(f)
	c.waitOnline(f)
	c.converge()
	c.poll("every brick's journal pruned again", small)
	for i := range replicas {
		if b, err := os.ReadFile(c.logs[i]); err != nil || bytes.Contains(b, []byte("full resync")) || bytes.Contains(b, []byte("fast-forwarded")) {
			t.Errorf("brick %d: a full resync (%v)", i, err)
		}
	}
	if marks, err := recon.Resyncs(context.Background(), c.cli, volName, 0); err != nil || len(marks) != 0 {
		t.Errorf("resync marks %+v, %v", marks, err)
	}
	c.verifyIdentical()
	checkBig(t, w, "big", blocks)
	checkBig(t, w, "big2", more)
	checkFiles(t, w, 0, 10)
}
