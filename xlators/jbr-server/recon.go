package jbrserver

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
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

// IpcReconJournal returns Xdata{"journal": JournalStat as JSON}: where
// this brick's journal stands on disk, for gluon recon status.
const IpcReconJournal xl.IpcOp = "jbr.recon-journal"

// JournalStat is a brick's journal on disk.
type JournalStat struct {
	Term uint64 `json:"term"`
	// FirstIndex and LastIndex bound the records held (journal indexes,
	// which count replaced records too); FirstIndex is LastIndex+1 when
	// there are none.
	FirstIndex uint64 `json:"first_index"`
	LastIndex  uint64 `json:"last_index"`
	Applied    uint64 `json:"applied"`
	Synced     uint64 `json:"synced"`
	Segments   int    `json:"segments"`
	Terms      int    `json:"terms"`
	Bytes      int64  `json:"bytes"`
	// NeedsResync lists the peers this brick cannot catch up from its
	// journal (see FastForward).
	NeedsResync []Resync `json:"needs_resync,omitempty"`
}

func (s *Server) reconJournal() *xl.Result {
	st := s.j.Stat()
	b, err := json.Marshal(JournalStat{
		Term: st.Term, FirstIndex: st.FirstIndex, LastIndex: st.LastIndex,
		Applied: st.Applied, Synced: st.Synced, Segments: st.Segments, Terms: len(st.Terms), Bytes: st.Bytes,
		NeedsResync: s.NeedsResync(),
	})
	if err != nil {
		return &xl.Result{Errno: syscall.EIO}
	}
	return &xl.Result{Xdata: xl.Xdata{"journal": b}}
}

// Position reads a journal record's place in the replicated log: its
// term and index, and the commit index known when it was written. ok is
// false for a record jbr-server did not write.
func Position(rec *journal.Record) (term, index, commit uint64, ok bool) {
	pos := rec.Call.Xdata[posKey]
	if len(pos) != 24 {
		return 0, 0, 0, false
	}
	le := binary.LittleEndian
	return le.Uint64(pos), le.Uint64(pos[8:]), le.Uint64(pos[16:]), true
}

// IsNoop reports whether rec is a leader's no-op record: it holds no
// request.
func IsNoop(rec *journal.Record) bool {
	return rec.Fop.Op == xl.OpIpc && rec.Fop.Name == noopOp
}
