package brick

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// eventually polls cond until it holds; the bound only catches a hang.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sameOn reports whether name holds want in every one of dirs.
func sameOn(dirs []string, name string, want []byte) bool {
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, name)); err != nil || !bytes.Equal(b, want) {
			return false
		}
	}
	return true
}

// A replica-3 volume served by three brick daemons: writes through the
// client graph land in every brick; when the leader stops the others
// elect a new one and writes go on; the stopped brick comes back on a
// new port, peers and client find it through etcd, and it catches up.
func TestRunReplicated(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	e.createReplica(t, "rv", 3, map[string]string{volume.OptLeaseTTL: "2", volume.OptRetryTimeout: "20s"}, dirs...)
	if err := e.store.SetState(ctx, "rv", volume.StateStarted); err != nil {
		t.Fatal(err)
	}
	runners := make([]*runner, 3)
	for i := range runners {
		runners[i] = e.run(t, "rv", i)
	}

	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	vol, err := client.Open(octx, e.cli, "rv", client.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	top := vol.Top
	// One client's requests, numbered as a mount numbers them.
	id, seq := xl.NewGFID(), uint64(0)
	call := func() context.Context {
		seq++
		return xl.WithCall(octx, &xl.Call{Client: id, Seq: seq})
	}

	fd, _, errno := top.Create(call(), xl.RootGFID, "f", xl.NewGFID(), syscall.O_RDWR, 0o644)
	if errno != 0 {
		t.Fatalf("Create: %v", errno)
	}
	first := []byte("written while all three run\n")
	if n, errno := top.Write(call(), fd, first, 0); errno != 0 || n != len(first) {
		t.Fatalf("Write = %d, %v", n, errno)
	}
	eventually(t, "the write to reach every brick", func() bool { return sameOn(dirs, "f", first) })

	st, err := client.Status(octx, e.cli, "rv")
	if err != nil {
		t.Fatal(err)
	}
	set := st.Sets[0]
	if set.Leader < 0 || set.Term == 0 {
		t.Fatalf("status names no leader: %+v", set)
	}
	for _, b := range set.Bricks {
		if b.JBR == nil || b.JBR.LastIndex == 0 || b.Lag < 0 {
			t.Fatalf("brick %d status: %+v", b.Index, b)
		}
		if want := "follower"; b.Index == set.Leader {
			if b.JBR.Role != "leader" {
				t.Errorf("leader brick %d has role %s", b.Index, b.JBR.Role)
			}
		} else if b.JBR.Role != want {
			t.Errorf("brick %d has role %s, want %s", b.Index, b.JBR.Role, want)
		}
	}

	// The leader stops; the other two elect a leader and take writes.
	old := set.Leader
	if err := runners[old].stop(t); err != nil {
		t.Fatalf("stopping brick %d: %v", old, err)
	}
	second := []byte("written after a failover\n")
	if n, errno := top.Write(call(), fd, second, int64(len(first))); errno != 0 || n != len(second) {
		t.Fatalf("Write after the leader stopped = %d, %v", n, errno)
	}
	both := append(append([]byte(nil), first...), second...)
	var live []string
	for i, d := range dirs {
		if i != old {
			live = append(live, d)
		}
	}
	eventually(t, "the write to reach the two live bricks", func() bool { return sameOn(live, "f", both) })
	st, err = client.Status(octx, e.cli, "rv")
	if err != nil {
		t.Fatal(err)
	}
	if l := st.Sets[0].Leader; l == old || l < 0 || st.Sets[0].Term <= set.Term {
		t.Fatalf("after failover: leader %d term %d (was %d, term %d)", l, st.Sets[0].Term, old, set.Term)
	}

	// The old leader comes back on a new port and catches up.
	runners[old] = e.run(t, "rv", old)
	e.online(t, "rv", old, runners[old])
	eventually(t, fmt.Sprintf("brick %d to catch up", old), func() bool { return sameOn(dirs, "f", both) })
	if errno := top.Release(call(), fd); errno != 0 {
		t.Fatalf("Release: %v", errno)
	}
}
