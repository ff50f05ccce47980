package jbrserver

import (
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

func readString(t *testing.T, x xl.Xlator, cl *caller, fd xl.Fd) (string, syscall.Errno) {
	t.Helper()
	buf := make([]byte, 64)
	n, e := x.Read(cl.next(), fd, buf, 0)
	return string(buf[:n]), e
}

// A linearizable read needs a quorum to confirm the leader still leads,
// by a round or by a lease the quorum granted: a leader cut off from its
// followers serves one only until its lease ends (at once without
// leases), and only what it holds. Under "lease" it serves from its own
// state while its session lasts.
func TestReadConsistency(t *testing.T) {
	for _, tc := range []struct {
		name        string
		consistency string
		lease       time.Duration
		cutOff      syscall.Errno // a read on a leader cut off from its followers, eventually
	}{
		{"linearizable", Linearizable, 0, syscall.ENOTCONN},
		{"linearizable-no-lease", Linearizable, -1, syscall.ENOTCONN},
		{"lease", Lease, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3, Options{Consistency: tc.consistency, LeaseDuration: tc.lease, RequestTimeout: time.Second})
			c.elect(0, 5)
			cl := newCaller()
			fd := create(t, c.n[0].srv, cl, "f", 0)
			write(t, c.n[0].srv, cl, fd, "data", 0)
			if got, e := readString(t, c.n[0].srv, cl, fd); e != 0 || got != "data" {
				t.Fatalf("read on the leader: %q %v", got, e)
			}
			// Status counts how the read was confirmed: by the lease or
			// a round, a round always without leases.
			want := uint64(0)
			if tc.consistency == Linearizable {
				want = 1
			}
			if st := c.n[0].srv.Status(); st.LeaseReads+st.RoundReads != want || (tc.lease < 0 && st.RoundReads != 1) {
				t.Errorf("status counts %d reads under the lease, %d after a round; want %d in all", st.LeaseReads, st.RoundReads, want)
			}
			if _, e := readString(t, c.n[1].srv, cl, fd); e != syscall.EREMOTE {
				t.Fatalf("read on a follower: %v, want EREMOTE", e)
			}
			c.links[0][1].lose.Store(true)
			c.links[0][2].lose.Store(true)
			for served := 0; ; served++ {
				got, e := readString(t, c.n[0].srv, cl, fd)
				if e == tc.cutOff && (e != 0 || served == 3) {
					break
				}
				if e != 0 || got != "data" || (tc.lease < 0 && tc.cutOff != 0) {
					t.Fatalf("read %d on a cut-off leader: %q %v, want %v", served, got, e, tc.cutOff)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// Once its session is gone it serves nothing.
			c.n[0].el.Lose()
			c.waitFor("brick 0 to step down", func() bool { return c.n[0].srv.Status().Role == "follower" })
			if _, e := readString(t, c.n[0].srv, cl, fd); e != syscall.EREMOTE {
				t.Fatalf("read after the session was lost: %v, want EREMOTE", e)
			}
		})
	}
}

// Under "follower" consistency every replica serves reads from what it
// has applied; writes still go to the leader.
func TestFollowerReads(t *testing.T) {
	c := newCluster(t, 3, Options{Consistency: FollowerRead})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	write(t, c.n[0].srv, cl, fd, "data", 0)
	c.converged(0)
	for _, nd := range c.n {
		if got, e := readString(t, nd.srv, cl, fd); e != 0 || got != "data" {
			t.Errorf("brick %d: read %q %v", nd.i, got, e)
		}
		if a, e := nd.srv.Lookup(cl.next(), xl.RootGFID, "f"); e != 0 || a.GFID != fd.GFID {
			t.Errorf("brick %d: lookup %v %v", nd.i, a.GFID, e)
		}
	}
	if _, e := c.n[1].srv.Write(cl.next(), fd, []byte("x"), 0); e != syscall.EREMOTE {
		t.Errorf("write on a follower: %v, want EREMOTE", e)
	}
}

// Fsync on the leader returns once the file's writes are committed; a
// follower sends it to the leader. Flush and Release stay local.
func TestFsyncAndLocalOps(t *testing.T) {
	c := newCluster(t, 3, Options{FsyncChild: true})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	write(t, c.n[0].srv, cl, fd, "data", 0)
	if e := c.n[0].srv.Fsync(cl.next(), fd, false); e != 0 {
		t.Fatalf("fsync on the leader: %v", e)
	}
	if e := c.n[1].srv.Fsync(cl.next(), fd, true); e != syscall.EREMOTE {
		t.Fatalf("fsync on a follower: %v, want EREMOTE", e)
	}
	if e := c.n[0].srv.Flush(cl.next(), fd); e != 0 {
		t.Fatalf("flush: %v", e)
	}
	if e := c.n[0].srv.Release(cl.next(), fd); e != 0 {
		t.Fatalf("release: %v", e)
	}
	// A follower releases its own fds (one opened in follower mode,
	// say); an unknown one is no error.
	if e := c.n[1].srv.Release(cl.next(), fd); e != 0 {
		t.Fatalf("release on a follower: %v", e)
	}
}
