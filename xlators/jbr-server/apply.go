package jbrserver

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/fdl"
	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// applyWorkers bounds how many entries are applied to the store at once.
const applyWorkers = 32

// outcome is the result of applying a committed request, shared by the
// callers waiting for it and kept for retries (see results).
type outcome struct {
	index uint64
	done  chan struct{} // closed once res is set
	res   xl.Result

	// A request proposed here is applied by the caller that proposed it,
	// which waits anyway, rather than handed to a worker that would then
	// wake it: one goroutine hand-off less per write. turn is nil when no
	// caller waits; otherwise it receives the entry once it may be
	// applied, unless the caller left first (claim says which).
	turn  chan *aentry
	claim atomic.Int32
}

// outcome.claim values.
const (
	callerWaits int32 = iota
	callerApplies
	callerGone
)

func newOutcome(index uint64, caller bool) *outcome {
	o := &outcome{index: index, done: make(chan struct{})}
	if caller {
		o.turn = make(chan *aentry, 1)
	}
	return o
}

// applyOwn applies the entry of o, proposed by the caller, once its turn
// comes, and reports whether it did; false means the server stopped
// first, and the entry stays in the journal for the next start.
func (a *applier) applyOwn(o *outcome) bool {
	var e *aentry
	select {
	case e = <-o.turn:
	case <-a.s.done:
		if o.claim.CompareAndSwap(callerWaits, callerGone) {
			return false // a worker applies it, if there is time
		}
		e = <-o.turn // handed over already: ours to apply
	}
	defer a.callers.Done()
	if !a.s.applyEntry(e.entry) {
		return false
	}
	a.finish(e)
	return true
}

// results remembers the outcomes of the last max committed requests, by
// request id, so that a retry of a committed request is answered rather
// than applied again. Every replica fills it as it commits, so a new
// leader answers retries of what its predecessor committed.
type results struct {
	mu    sync.Mutex
	max   int
	m     map[core.ReqID]*outcome
	order []core.ReqID // oldest first; order[head:] are live
	head  int
}

func newResults(max int) *results {
	return &results{max: max, m: map[core.ReqID]*outcome{}}
}

func (r *results) get(id core.ReqID) *outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[id]
}

func (r *results) add(id core.ReqID, o *outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[id]; !ok {
		r.order = append(r.order, id)
	}
	r.m[id] = o
	// Forget the oldest that are done; one still being applied stays,
	// and so do those after it, until it is.
	for len(r.order)-r.head > r.max {
		old := r.m[r.order[r.head]]
		select {
		case <-old.done:
		default:
			return
		}
		delete(r.m, r.order[r.head])
		r.order[r.head] = core.ReqID{}
		r.head++
	}
	if r.head > len(r.order)/2 && r.head > 1024 {
		r.order = append(r.order[:0], r.order[r.head:]...)
		r.head = 0
	}
}

// aentry is a committed entry in the applier.
type aentry struct {
	*entry
	blocked int           // keys on which an earlier entry is still queued
	done    chan struct{} // closed once applied
}

// waiter waits for an index to be submitted or applied.
type waiter struct {
	index uint64
	ch    chan struct{}
}

// applier applies committed entries to the store: an entry waits only
// for earlier entries that share one of its keys, and a pool of workers
// applies the ready ones in parallel.
type applier struct {
	s    *Server
	mu   sync.Mutex
	cond *sync.Cond // workers wait here for ready entries
	// queues holds, per key, the entries not yet applied, in index order.
	queues map[xl.GFID][]*aentry
	ready  []*aentry
	closed bool

	submitted uint64 // every index up to here was submitted
	applied   uint64 // every index up to here is applied
	above     map[uint64]struct{}
	// gaps maps the index before a hole in the log to the hole's last
	// index: a fast-forwarded log (full resync) skips the entries it was
	// never sent, and the watermark steps over them.
	gaps     map[uint64]uint64
	subWait  []waiter
	applWait []waiter
	wg       sync.WaitGroup // workers
	callers  sync.WaitGroup // callers handed their own entry
}

func newApplier(s *Server, from uint64) *applier {
	a := &applier{s: s, queues: map[xl.GFID][]*aentry{}, above: map[uint64]struct{}{}, gaps: map[uint64]uint64{},
		submitted: from, applied: from}
	a.cond = sync.NewCond(&a.mu)
	for range applyWorkers {
		a.wg.Add(1)
		go a.worker()
	}
	return a
}

// submit queues e, the next committed index. Loop only.
func (a *applier) submit(e *entry) {
	ae := &aentry{entry: e, done: make(chan struct{})}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !e.noop {
		for _, k := range e.keys {
			if len(a.queues[k]) > 0 {
				ae.blocked++
			}
			a.queues[k] = append(a.queues[k], ae)
		}
	}
	if e.Index > a.submitted+1 {
		a.gaps[a.submitted] = e.Index - 1
		a.advance(a.applied)
	}
	a.submitted = e.Index
	a.subWait = release(a.subWait, a.submitted)
	if ae.blocked == 0 {
		a.start(ae)
	}
}

// start hands a ready entry to its caller, or else to a worker. Called
// with mu held.
func (a *applier) start(e *aentry) {
	if o := e.out; o != nil && o.turn != nil && o.claim.CompareAndSwap(callerWaits, callerApplies) {
		a.callers.Add(1)
		o.turn <- e
		return
	}
	a.ready = append(a.ready, e)
	a.cond.Signal()
}

// release closes the waits satisfied at index and returns the rest.
func release(ws []waiter, index uint64) []waiter {
	keep := ws[:0]
	for _, w := range ws {
		if w.index <= index {
			close(w.ch)
		} else {
			keep = append(keep, w)
		}
	}
	return keep
}

func (a *applier) worker() {
	defer a.wg.Done()
	for {
		a.mu.Lock()
		for len(a.ready) == 0 && !a.closed {
			a.cond.Wait()
		}
		if a.closed {
			a.mu.Unlock()
			return
		}
		e := a.ready[0]
		a.ready[0] = nil
		a.ready = a.ready[1:]
		a.mu.Unlock()
		if !a.s.applyEntry(e.entry) {
			return // shutting down: the entry stays unapplied in the journal
		}
		a.finish(e)
	}
}

// finish releases the entries waiting for e and moves the watermark.
func (a *applier) finish(e *aentry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !e.noop {
		for _, k := range e.keys {
			q := a.queues[k][1:] // e is the head of each of its queues
			if len(q) == 0 {
				delete(a.queues, k)
				continue
			}
			a.queues[k] = q
			if q[0].blocked--; q[0].blocked == 0 {
				a.start(q[0])
			}
		}
	}
	close(e.done)
	from := a.applied
	if e.Index == a.applied+1 {
		a.applied++ // in order, the common case: no map work
	} else {
		a.above[e.Index] = struct{}{}
	}
	a.advance(from)
}

// advance moves the watermark over the applied entries and holes that
// follow it, and releases the waits it passes since from. Called with mu
// held.
func (a *applier) advance(from uint64) {
	for {
		if end, ok := a.gaps[a.applied]; ok {
			delete(a.gaps, a.applied)
			a.applied = end
			continue
		}
		if _, ok := a.above[a.applied+1]; !ok {
			break
		}
		delete(a.above, a.applied+1)
		a.applied++
	}
	if a.applied != from {
		a.applWait = release(a.applWait, a.applied)
	}
}

// wait blocks until every entry up to index that shares key is applied,
// or every entry up to index when key is zero. It returns false if ctx
// ends or the server stops first.
func (a *applier) wait(ctx context.Context, key xl.GFID, index uint64) bool {
	a.mu.Lock()
	var ch chan struct{}
	switch {
	case key.IsZero() && a.applied < index:
		ch = make(chan struct{})
		a.applWait = append(a.applWait, waiter{index, ch})
	case a.submitted < index:
		ch = make(chan struct{})
		a.subWait = append(a.subWait, waiter{index, ch})
	}
	a.mu.Unlock()
	if ch != nil && !a.block(ctx, ch) {
		return false
	}
	if key.IsZero() {
		return true
	}
	a.mu.Lock()
	var last *aentry
	for _, e := range a.queues[key] {
		if e.Index > index {
			break
		}
		last = e
	}
	a.mu.Unlock()
	return last == nil || a.block(ctx, last.done)
}

func (a *applier) block(ctx context.Context, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
	case <-a.s.stop:
	}
	return false
}

func (a *applier) appliedIndex() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied
}

// close stops the workers once their current entries are done, and
// waits for callers applying their own. The loop has ended.
func (a *applier) close() {
	a.mu.Lock()
	a.closed = true
	a.cond.Broadcast()
	a.mu.Unlock()
	a.wg.Wait()
	a.callers.Wait()
}

// applyEntry applies a committed entry to the child and publishes its
// result. It returns false, leaving the entry unapplied, if Close
// interrupted it.
func (s *Server) applyEntry(e *entry) bool {
	if e.noop {
		s.j.MarkApplied(e.jidx)
		return true
	}
	call := e.call
	if call.Xdata != nil {
		x := make(xl.Xdata, len(call.Xdata))
		for k, v := range call.Xdata {
			if k != keysKey {
				x[k] = v
			}
		}
		call.Xdata = x
	}
	ctx := xl.WithCall(s.ctx, &call)
	var r *xl.Result
	if e.redo {
		// It may have been applied before a crash: apply it the way
		// FDL replays, idempotently where it can be.
		r = fdl.Reapply(ctx, s.child, call, e.fop)
		r.Fd.H = 0
	} else {
		fop := e.fop
		if xl.Ops[fop.Op].FdBased {
			// Handles are per brick, and the proposer's may even name
			// another open of the same file here: every replica reaches
			// the file by GFID, with the fd's flags, and does the same.
			fop.Fd.H = 0
		}
		r = xl.Dispatch(ctx, s.child, &fop)
		if r.Errno == 0 && fop.Op == xl.OpCreate && !e.local {
			s.child.Release(ctx, r.Fd)
			r.Fd.H = 0
		}
	}
	if r.Errno != 0 && s.ctx.Err() != nil {
		return false // interrupted by Close: maybe not applied, replay it
	}
	if r.Errno != 0 {
		s.log.Debug("jbr: applied entry failed", "index", e.Index, "op", e.fop.Op, "errno", r.Errno)
	}
	s.j.MarkApplied(e.jidx)
	if o := e.out; o != nil {
		o.res = xl.Result{Errno: r.Errno, Attr: r.Attr, Fd: r.Fd, N: r.N}
		close(o.done)
	}
	s.metrics.applied.Inc()
	return true
}

// errStopped is what a caller gets when the server closes under it.
const errStopped = syscall.ENOTCONN
