package jbrserver

import (
	"context"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// ReconKey, present in a request's xl.Call Xdata, sends the request
// straight to this brick's own store, around replication: reconciliation
// compares every replica's state, not the leader's (GlusterFS's JBR let
// reads with trusted.jbr.recon-term through on followers for the same
// reason). Reads are served on any brick. Changes, the repair of a
// replica from the leader's copy, are refused on the leader with
// EREMOTE: the leader is the reference and is never repaired this way.
const ReconKey = "trusted.jbr.recon"

// ReconContext marks ctx's requests as reconciliation's (see ReconKey),
// keeping the rest of its xl.Call.
func ReconContext(ctx context.Context) context.Context {
	c := *xl.CallFrom(ctx)
	x := make(xl.Xdata, len(c.Xdata)+1)
	for k, v := range c.Xdata {
		x[k] = v
	}
	x[ReconKey] = []byte{1}
	c.Xdata = x
	return xl.WithCall(ctx, &c)
}

func isRecon(ctx context.Context) bool {
	_, ok := xl.CallFrom(ctx).Xdata[ReconKey]
	return ok
}

// recon serves a reconciliation request from the local store.
func (s *Server) recon(ctx context.Context, f *xl.Fop) *xl.Result {
	if f.Mutates() && s.snap.Load().role != core.Follower {
		return &xl.Result{Errno: syscall.EREMOTE}
	}
	return xl.Dispatch(ctx, s.child, f)
}
