package jbrserver

import (
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Every op the op table marks mutating goes through the log on the
// leader (one journal record each, whatever the store then answers) and
// is refused by a follower; every other op is not journaled. An op added
// to xl later cannot be forgotten here.
func TestEveryMutatingOpIsReplicated(t *testing.T) {
	c := newCluster(t, 3, Options{})
	c.elect(0, 5)
	leader, follower := c.n[0].srv, c.n[1].srv
	cl := newCaller()
	fd := create(t, leader, cl, "f", 0)
	for o := xl.OpInvalid + 1; o.Valid(); o++ {
		f := &xl.Fop{Op: o, GFID: fd.GFID, GFID2: xl.NewGFID(), Name: "n", Name2: "n2", Fd: fd, Len: 1, Data: []byte("d"), Mode: 0o644}
		switch o {
		case xl.OpIpc:
			f.Name = "no.such.op"
		case xl.OpMknod:
			f.GFID, f.Mode = xl.RootGFID, syscall.S_IFIFO|0o644
		case xl.OpMkdir, xl.OpSymlink, xl.OpCreate, xl.OpUnlink, xl.OpRmdir:
			f.GFID = xl.RootGFID
		case xl.OpRename:
			f.GFID, f.GFID2 = xl.RootGFID, xl.RootGFID
		case xl.OpLink:
			f.GFID2 = xl.RootGFID
		case xl.OpRead:
			f.Data = nil
		}
		mutating := xl.Ops[o].Mutating
		before := c.n[0].j.Stat().LastIndex
		r := xl.Dispatch(cl.next(), leader, f)
		after := c.n[0].j.Stat().LastIndex
		if mutating && after != before+1 {
			t.Errorf("%v (errno %v): journal grew by %d records, want 1", o, r.Errno, after-before)
		}
		if !mutating && after != before {
			t.Errorf("%v: journaled", o)
		}
		if r.Errno == 0 && r.Fd.H != 0 && (o == xl.OpCreate || o == xl.OpOpen || o == xl.OpOpendir) {
			if o == xl.OpOpendir {
				leader.Releasedir(cl.next(), r.Fd)
			} else {
				leader.Release(cl.next(), r.Fd)
			}
		}
		if mutating {
			g := *f
			if r := xl.Dispatch(cl.next(), follower, &g); r.Errno != syscall.EREMOTE {
				t.Errorf("%v on a follower: %v, want EREMOTE", o, r.Errno)
			}
		}
	}
	c.converged(0)
}
