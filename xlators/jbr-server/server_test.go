package jbrserver

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Writes on the leader reach every replica, in the same order; a brick
// that does not lead refuses requests with EREMOTE and names the leader.
func TestWritesReachEveryReplica(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	leader := c.n[0].srv
	cl := newCaller()

	fd := create(t, leader, cl, "a", 0)
	write(t, leader, cl, fd, "hello ", 0)
	write(t, leader, cl, fd, "world", 6)
	dir := xl.NewGFID()
	if _, e := leader.Mkdir(cl.next(), xl.RootGFID, "d", dir, 0o755); e != 0 {
		t.Fatal(e)
	}
	fd2 := create(t, leader, cl, "b", 0)
	write(t, leader, cl, fd2, "moved", 0)
	if e := leader.Rename(cl.next(), xl.RootGFID, "b", dir, "b2", 0); e != 0 {
		t.Fatal(e)
	}
	if e := leader.Setxattr(cl.next(), fd.GFID, "user.k", []byte("v"), 0); e != 0 {
		t.Fatal(e)
	}
	if _, e := leader.Setattr(cl.next(), fd.GFID, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o600}); e != 0 {
		t.Fatal(e)
	}
	// Open with O_TRUNC replicates as a truncate.
	fd3 := create(t, leader, cl, "c", 0)
	write(t, leader, cl, fd3, "to be truncated", 0)
	if _, e := leader.Open(cl.next(), fd3.GFID, syscall.O_RDWR|syscall.O_TRUNC); e != 0 {
		t.Fatal(e)
	}
	c.converged(0)
	c.sameEverywhere("a", "hello world")
	c.sameEverywhere("d/b2", "moved")
	c.sameEverywhere("c", "")
	for _, nd := range c.n {
		fi, err := os.Stat(filepath.Join(nd.dir, "a"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("brick %d: a: %v %v", nd.i, fi, err)
		}
		if _, err := os.Stat(filepath.Join(nd.dir, "b")); !os.IsNotExist(err) {
			t.Errorf("brick %d: b still there after the rename: %v", nd.i, err)
		}
		v, e := nd.store.Getxattr(cl.next(), fd.GFID, "user.k")
		if e != 0 || string(v) != "v" {
			t.Errorf("brick %d: xattr %q %v", nd.i, v, e)
		}
	}

	// Reads on the leader see the writes.
	buf := make([]byte, 64)
	n, e := leader.Read(cl.next(), fd, buf, 0)
	if e != 0 || string(buf[:n]) != "hello world" {
		t.Fatalf("read on leader: %q %v", buf[:n], e)
	}

	// A follower refuses reads and writes.
	f := c.n[1].srv
	if _, e := f.Write(cl.next(), fd, []byte("x"), 0); e != syscall.EREMOTE {
		t.Errorf("write on a follower: %v, want EREMOTE", e)
	}
	if _, e := f.Getattr(cl.next(), fd.GFID); e != syscall.EREMOTE {
		t.Errorf("getattr on a follower: %v, want EREMOTE", e)
	}
	x, e := f.Ipc(cl.next(), IpcLeader, nil)
	if e != 0 {
		t.Fatal(e)
	}
	if l, term, err := ParseLeader(x); err != nil || l != 0 || term != 5 {
		t.Errorf("leader %d term %d %v, want 0 and 5", l, term, err)
	}
	// Other Ipc ops reach the store.
	if _, e := f.Ipc(cl.next(), "no.such.op", nil); e == 0 {
		t.Error("unknown ipc op answered")
	}
}

// Before any election nobody leads: requests get EREMOTE and the leader
// is unknown.
func TestNoLeaderYet(t *testing.T) {
	c := newCluster(t, 3, Options{})
	cl := newCaller()
	for _, nd := range c.n {
		if _, e := nd.srv.Mkdir(cl.next(), xl.RootGFID, "d", xl.NewGFID(), 0o755); e != syscall.EREMOTE {
			t.Errorf("brick %d: mkdir %v, want EREMOTE", nd.i, e)
		}
		x, _ := nd.srv.Ipc(cl.next(), IpcLeader, nil)
		if l, _, err := ParseLeader(x); err != nil || l != -1 {
			t.Errorf("brick %d: leader %d %v", nd.i, l, err)
		}
	}
}

// Fd handles are per brick: a handle from another brick (the previous
// leader) may name a different open of the same file here, read-only
// say. Writes reach the file by GFID with the fd's own flags, so every
// replica does the same thing.
func TestForeignHandle(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	if e := c.n[0].srv.Release(cl.next(), fd); e != 0 {
		t.Fatal(e)
	}
	ro, e := c.n[0].store.Open(cl.next(), fd.GFID, syscall.O_RDONLY)
	if e != 0 {
		t.Fatal(e)
	}
	defer c.n[0].store.Release(cl.next(), ro)
	foreign := xl.Fd{GFID: fd.GFID, H: ro.H, Flags: syscall.O_RDWR}
	write(t, c.n[0].srv, cl, foreign, "data", 0)
	c.converged(0)
	c.sameEverywhere("f", "data")
}

// Peer messages from another replica set (a volfile mistake), for
// another brick, or from outside the set are refused, not stepped.
func TestStepRefusesStrangers(t *testing.T) {
	c := newCluster(t, 3, Options{})
	s := c.n[1].srv
	hb := []core.Message{{Type: core.MsgAppend, From: 0, To: 1, Term: 3}}
	for name, b := range map[string]xl.Xdata{
		"another set":    encodeMessages(setID{volume: "v", set: 1}, hb),
		"another volume": encodeMessages(setID{volume: "w"}, hb),
		"another brick":  encodeMessages(setID{volume: "v"}, []core.Message{{Type: core.MsgAppend, From: 0, To: 2, Term: 3}}),
		"outsider":       encodeMessages(setID{volume: "v"}, []core.Message{{Type: core.MsgAppend, From: 7, To: 1, Term: 3}}),
		"garbage":        {stepKey: []byte("garbage")},
	} {
		if _, e := s.Ipc(newCaller().next(), IpcStep, b); e != syscall.EINVAL {
			t.Errorf("%s: %v, want EINVAL", name, e)
		}
	}
	if st := s.Status(); st.Term != 0 {
		t.Errorf("a refused message moved the term to %d", st.Term)
	}
	if _, e := s.Ipc(newCaller().next(), IpcStep, encodeMessages(setID{volume: "v"}, hb)); e != 0 {
		t.Errorf("a proper message: %v", e)
	}
}
