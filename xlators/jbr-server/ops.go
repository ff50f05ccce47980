package jbrserver

import (
	"context"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// requestKind says what a request asks of the loop.
type requestKind int

const (
	propose   requestKind = iota // replicate and apply a mutating request
	readRound                    // confirm leadership for a read
	barrier                      // wait until everything proposed so far is synced on a quorum
	syncTo                       // wait until the entries up to index are synced on a quorum
	resyncOn                     // mark a full resync (Core.SetResyncing)
	resyncOff                    // clear it
)

// request is a caller waiting on the loop.
type request struct {
	kind     requestKind
	e        *entry // propose
	durable  bool   // propose: the caller waits for SyncCommit too (core.ProposeDurable)
	index    uint64 // syncTo
	start    time.Time
	deadline time.Time
	reply    chan answer // buffered: the loop never blocks on it
}

// answer is the loop's reply: an errno, or the outcome to wait for (or
// to bring about: apply), or the index a read must see applied.
type answer struct {
	errno syscall.Errno
	out   *outcome
	apply bool
	index uint64
}

// ask sends r to the loop and waits for its answer.
func (s *Server) ask(r *request) answer {
	if e := s.send(r); e != 0 {
		return answer{errno: e}
	}
	return s.await(r)
}

// send hands r to the loop.
func (s *Server) send(r *request) syscall.Errno {
	r.start = time.Now()
	r.deadline = r.start.Add(s.opts.RequestTimeout)
	r.reply = make(chan answer, 1)
	select {
	case s.reqs <- r:
		return 0
	case <-s.stop:
		return errStopped
	}
}

// await waits for the loop's answer to r.
func (s *Server) await(r *request) answer {
	select {
	case a := <-r.reply:
		return a
	case <-s.done:
		// The loop answered everything it held before ending.
		select {
		case a := <-r.reply:
			return a
		default:
			return answer{errno: errStopped}
		}
	}
}

// leading answers EREMOTE unless this brick leads.
func (s *Server) leading() syscall.Errno {
	if s.snap.Load().role != core.Leader {
		return syscall.EREMOTE
	}
	return 0
}

// quorumVisible reports whether enough peers are connected for a write
// to commit.
func (s *Server) quorumVisible() bool {
	n := 1
	for _, p := range s.peers {
		if p.connected() {
			n++
		}
	}
	if n >= s.quorum {
		return true
	}
	now := time.Now().UnixNano()
	if last := s.lastWarn.Load(); now-last > int64(5*time.Second) && s.lastWarn.CompareAndSwap(last, now) {
		s.log.Warn("jbr: refusing writes with EROFS: too few peers connected for a quorum", "connected", n, "quorum", s.quorum)
	}
	return false
}

// write replicates a mutating request and answers with the local
// store's result once it is committed and applied.
func (s *Server) write(ctx context.Context, f *xl.Fop) *xl.Result {
	if e := s.leading(); e != 0 {
		return &xl.Result{Errno: e}
	}
	if !s.quorumVisible() {
		return &xl.Result{Errno: syscall.EROFS}
	}
	if f.Op == xl.OpWrite && len(f.Data) > xl.MaxIO {
		return &xl.Result{Errno: syscall.EINVAL}
	}
	if ctx.Err() != nil {
		return &xl.Result{Errno: syscall.EINTR}
	}
	call := *xl.CallFrom(ctx)
	_, durable := call.Xdata[DurableKey]
	// O_SYNC and O_DSYNC (which O_SYNC includes) writes are durable on a
	// quorum before they return.
	durable = durable || (f.Op == xl.OpWrite && f.Fd.Flags&syscall.O_DSYNC != 0)
	var x xl.Xdata
	for k, v := range call.Xdata {
		if k != keysKey && k != posKey && k != DurableKey { // ours alone, or no part of the op
			if x == nil {
				x = xl.Xdata{}
			}
			x[k] = v
		}
	}
	if extra := namedObjects(ctx, s.child, f); len(extra) > 0 {
		if x == nil {
			x = xl.Xdata{}
		}
		x[keysKey] = extra
	}
	call.Xdata = x
	if call.Seq == 0 {
		// No request id: give it one of ours, so that it is not taken
		// for a retry of another; a retry of it cannot be recognised.
		call.Client, call.Seq = s.client, s.seq.Add(1)
	}
	e := &entry{call: call, fop: *f}
	var off int
	e.Data, off = encodeRequest(&e.call, &e.fop)
	if len(e.Data) > journal.MaxRecordSize-4096 {
		return &xl.Result{Errno: syscall.E2BIG}
	}
	if e.fop.Data != nil {
		e.fop.Data = e.Data[off:] // ours: the caller's buffer is not
	}
	e.keys = conflictKeys(&e.fop, x[keysKey])
	e.Req = core.ReqID{Client: call.Client, Seq: call.Seq}
	e.Key = e.keys[0]
	a := s.ask(&request{kind: propose, e: e, durable: durable})
	if a.errno != 0 {
		return &xl.Result{Errno: a.errno}
	}
	if a.apply {
		if !s.apply.applyOwn(a.out) {
			return &xl.Result{Errno: errStopped}
		}
	} else {
		select {
		case <-a.out.done:
		case <-s.done:
			return &xl.Result{Errno: errStopped}
		}
	}
	r := a.out.res
	if durable && r.Errno == 0 {
		// Also a retry answered from the results cache: what it says
		// was done must be durable too, on whichever leader answers.
		if e := s.durable(ctx, a.out.index, f.Target()); e != 0 {
			return &xl.Result{Errno: e}
		}
	}
	return &r
}

// durable returns once the entries up to index are committed and
// fdatasynced in a quorum of journals (and, with Options.FsyncChild, the
// local store has synced target), as an Fsync after the request would.
// Applying the entry overlapped the fdatasyncs, which its proposal
// started (core.ProposeDurable), so they are often done by now.
func (s *Server) durable(ctx context.Context, index uint64, target xl.GFID) syscall.Errno {
	if s.snap.Load().syncCommit < index {
		if a := s.ask(&request{kind: syncTo, index: index}); a.errno != 0 {
			return a.errno
		}
	}
	if s.opts.FsyncChild && !target.IsZero() {
		if e := s.child.Fsync(ctx, xl.Fd{GFID: target, Flags: syscall.O_RDONLY}, false); e != 0 {
			return e
		}
	}
	return 0
}

// openTrunc is Open with O_TRUNC: a replicated truncate to zero, then a
// local open without O_TRUNC.
func (s *Server) openTrunc(ctx context.Context, f *xl.Fop) *xl.Result {
	r := s.write(ctx, &xl.Fop{Op: xl.OpTruncate, GFID: f.GFID})
	if r.Errno != 0 {
		return r
	}
	fd, e := s.child.Open(ctx, f.GFID, f.Flags&^syscall.O_TRUNC)
	return &xl.Result{Fd: fd, Errno: e}
}

// fsync returns once every entry proposed before it has committed and is
// fdatasynced in a quorum of journals (see syncQuorum).
func (s *Server) fsync(ctx context.Context, f *xl.Fop) *xl.Result {
	if e := s.syncQuorum(); e != 0 {
		return &xl.Result{Errno: e}
	}
	if s.opts.FsyncChild {
		return xl.Dispatch(ctx, s.child, f)
	}
	return &xl.Result{}
}

// pure reports whether op leaves no trace in the store (Open and
// Opendir make fds), so that its result may be thrown away.
func pure(op xl.Op) bool {
	switch op {
	case xl.OpLookup, xl.OpGetattr, xl.OpAccess, xl.OpReadlink, xl.OpRead, xl.OpLseek,
		xl.OpReaddir, xl.OpStatfs, xl.OpGetxattr, xl.OpListxattr:
		return true
	}
	return false
}

// readDuringRound serves a linearizable read while its leadership round
// r is out, and answers once the round is confirmed: a cold read's disk
// time and the round's network time overlap. It is still linearizable.
// The read sees every entry committed when it arrived (commit, which the
// loop publishes before it acknowledges a write), and only committed
// entries. The confirmation shows that no newer leader could have
// committed anything before the round started, which was after the read
// arrived; if it fails, the result is thrown away.
func (s *Server) readDuringRound(ctx context.Context, f *xl.Fop, r *request, commit uint64) *xl.Result {
	if commit > 0 && !s.apply.wait(ctx, readKey(f), commit) {
		if ctx.Err() != nil {
			return &xl.Result{Errno: syscall.EINTR}
		}
		return &xl.Result{Errno: errStopped}
	}
	res := xl.Dispatch(ctx, s.child, f)
	if a := s.await(r); a.errno != 0 {
		return &xl.Result{Errno: a.errno}
	}
	return res
}

// syncQuorum returns once every entry proposed before it is committed
// and fdatasynced in a quorum of journals: one fdatasync per journal
// covers every sync waiting meanwhile. When the loop last showed that
// holding already, it is not asked.
func (s *Server) syncQuorum() syscall.Errno {
	sn := s.snap.Load()
	if sn.role != core.Leader {
		return syscall.EREMOTE
	}
	if sn.syncCommit < sn.lastIndex {
		if a := s.ask(&request{kind: barrier}); a.errno != 0 {
			return a.errno
		}
	}
	return 0
}

// read serves a request that does not change the store, as the
// consistency level says.
func (s *Server) read(ctx context.Context, f *xl.Fop) *xl.Result {
	var index uint64
	switch s.opts.Consistency {
	case FollowerRead:
		if s.snap.Load().resyncing {
			// Its store lacks what the resync has yet to copy.
			return &xl.Result{Errno: syscall.EREMOTE}
		}
	case Linearizable:
		sn := s.snap.Load()
		if sn.role != core.Leader {
			return &xl.Result{Errno: syscall.EREMOTE}
		}
		if s.clock() < sn.leaseUntil {
			// No other leader can commit anything before the lease
			// ends: what committed by now is all there is.
			s.metrics.leaseReads.Add(1)
			index = sn.commit
			break
		}
		s.metrics.roundReads.Add(1)
		r := &request{kind: readRound}
		if e := s.send(r); e != 0 {
			return &xl.Result{Errno: e}
		}
		if pure(f.Op) {
			return s.readDuringRound(ctx, f, r, sn.commit)
		}
		a := s.await(r)
		if a.errno != 0 {
			return &xl.Result{Errno: a.errno}
		}
		index = a.index
	case Lease:
		sn := s.snap.Load()
		if sn.role != core.Leader {
			return &xl.Result{Errno: syscall.EREMOTE}
		}
		index = sn.commit
	}
	if index > 0 && !s.apply.wait(ctx, readKey(f), index) {
		if ctx.Err() != nil {
			return &xl.Result{Errno: syscall.EINTR}
		}
		return &xl.Result{Errno: errStopped}
	}
	return xl.Dispatch(ctx, s.child, f)
}
