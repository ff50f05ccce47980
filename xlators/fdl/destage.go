package fdl

import (
	"bytes"
	"context"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Destage modes (Options.Destage).
const (
	// DestageSync applies each request to the store before answering it.
	DestageSync = "sync"
	// DestageDeferred answers a write once it is journaled and applies
	// it in the background; reads overlay what is not applied yet.
	DestageDeferred = "deferred"
)

const (
	// DefaultDestageWorkers is how many objects deferred destage applies
	// to at once.
	DefaultDestageWorkers = 4
	// DefaultMaxPendingBytes bounds what deferred destage holds in memory.
	DefaultMaxPendingBytes = 64 << 20
)

const (
	// entryOverhead is what a pending entry costs besides its data, so
	// the byte cap also bounds a flood of tiny writes.
	entryOverhead = 256
	// destageBatch is how many entries of one object a worker applies
	// before letting other objects have a turn.
	destageBatch = 32
	// recentLen is how many applies fixAttrs can look back over.
	recentLen = 1024
	// maxErrs bounds the destage errors kept for Fsync and Flush.
	maxErrs = 4096
	stripes = 256
)

// DestageStat describes deferred destage at one moment.
type DestageStat struct {
	Objects int    // objects with entries not yet applied
	Entries int    // entries journaled, not yet applied
	Bytes   int64  // memory those entries hold, and writers have reserved
	Waiting int    // writers held back by MaxPendingBytes
	Applied uint64 // entries destaged since New
}

// entry is a journaled request waiting to be applied: a write or a size
// change. Immutable once queued.
type entry struct {
	index uint64
	call  xl.Call
	fop   xl.Fop // a write's Data is the entry's own copy
	cost  int64
	when  xl.Timespec // when it was journaled: the mtime readers see
}

// resizes reports whether e sets the size, and to what.
func (e *entry) resizes() (uint64, bool) {
	switch e.fop.Op {
	case xl.OpTruncate:
		return uint64(e.fop.Len), true
	case xl.OpSetattr:
		return e.fop.Setattr.Size, true
	}
	return 0, false
}

// object is the pending state of one GFID. It exists while the GFID has
// entries not yet applied, or a worker holds it.
type object struct {
	gfid xl.GFID
	// apply is held by a worker while it applies one entry, and shared by
	// readers while they read the store and the pending entries, so that
	// each sees the store and the overlay at the same point.
	apply sync.RWMutex

	// Guarded by destager.mu.
	ents     []*entry // in index order
	durable  int      // ents[:durable] are durable: visible and applicable
	queued   bool     // in the ready queue or held by a worker
	dead     bool     // forgotten: every entry applied
	progress chan struct{}
}

// destager applies deferred entries to the child: per object in index
// order, across objects in parallel.
type destager struct {
	child xl.Xlator
	j     *journal.Journal
	log   *slog.Logger
	max   int64
	grew  func(int64) // told how much was journaled
	seed  maphash.Seed

	// stripes order requests by object: a deferred write holds its
	// object's stripe from Queue to being listed, so an object's list is
	// in journal order; an op that drains an object holds it until it is
	// applied, so nothing slips in between.
	stripes [stripes]sync.Mutex

	mu       sync.Mutex
	objs     map[xl.GFID]*object
	ready    []*object
	work     *sync.Cond // on mu: ready objects or stopping
	entries  int
	bytes    int64 // entries' cost, and reservations of writers queuing
	waiting  int
	space    chan struct{} // closed when bytes drop and someone waits
	recent   [recentLen]xl.GFID
	errs     map[xl.GFID]syscall.Errno
	closing  bool // new writes are applied in line
	stopping bool // workers exit once nothing is ready
	wg       sync.WaitGroup

	seq   atomic.Uint64 // applies so far; recent[seq%recentLen] is the last
	nobjs atomic.Int64
}

func newDestager(child xl.Xlator, j *journal.Journal, log *slog.Logger, workers int, maxBytes int64, grew func(int64)) *destager {
	d := &destager{
		child: child, j: j, log: log, max: maxBytes, grew: grew,
		seed:  maphash.MakeSeed(),
		objs:  map[xl.GFID]*object{},
		errs:  map[xl.GFID]syscall.Errno{},
		space: make(chan struct{}),
	}
	d.work = sync.NewCond(&d.mu)
	d.wg.Add(workers)
	for range workers {
		go d.worker()
	}
	return d
}

func (d *destager) stripe(g xl.GFID) *sync.Mutex {
	return &d.stripes[maphash.Bytes(d.seed, g[:])%stripes]
}

// stat returns a snapshot of the pending state.
func (d *destager) stat() DestageStat {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DestageStat{Objects: len(d.objs), Entries: d.entries, Bytes: d.bytes, Waiting: d.waiting, Applied: d.seq.Load()}
}

// handle performs a mutating request: deferred if it is a write (or a
// size change of an object with pending writes), else in line after the
// object's pending entries.
func (d *destager) handle(ctx context.Context, fop *xl.Fop, apply func(context.Context, *xl.Fop) *xl.Result) *xl.Result {
	if d.deferrable(fop) {
		if r := d.deferOp(ctx, fop); r != nil {
			return r
		}
	}
	s0 := d.seq.Load()
	r := d.ordered(ctx, fop, apply)
	if r.Errno == 0 && !r.Attr.GFID.IsZero() {
		d.fixAttrs(ctx, s0, []*xl.Attr{&r.Attr})
	}
	return r
}

// deferrable reports whether fop can be answered before it is applied.
// O_APPEND writes cannot: where they land is known only once applied.
// A size change is deferred only behind pending writes, whose object is
// known to be a regular file; elsewhere the store's answer is awaited.
func (d *destager) deferrable(fop *xl.Fop) bool {
	switch fop.Op {
	case xl.OpWrite:
		fl := fop.Fd.Flags
		return len(fop.Data) > 0 && fop.Off >= 0 && fl&syscall.O_APPEND == 0 && fl&syscall.O_ACCMODE != syscall.O_RDONLY
	case xl.OpTruncate:
		return d.pending(fop.GFID)
	case xl.OpSetattr:
		const sizeOnly = xl.SetSize | xl.SetMtimeNow | xl.SetAtimeNow
		v := fop.Setattr.Valid
		return v&xl.SetSize != 0 && v&^sizeOnly == 0 && d.pending(fop.GFID)
	}
	return false
}

func (d *destager) pending(g xl.GFID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.objs[g] != nil
}

// deferOp journals fop and lists it for destage. It returns nil, having
// done nothing, once the destager is closing.
func (d *destager) deferOp(ctx context.Context, fop *xl.Fop) *xl.Result {
	if ctx.Err() != nil {
		return &xl.Result{Errno: syscall.EINTR}
	}
	e := &entry{call: *xl.CallFrom(ctx), fop: *fop, when: xl.TimespecOf(time.Now())}
	e.fop.Data = bytes.Clone(fop.Data)
	e.cost = int64(len(e.fop.Data)) + entryOverhead
	ok, errno := d.reserve(ctx, e.cost)
	if errno != 0 {
		return &xl.Result{Errno: errno}
	}
	if !ok {
		return nil
	}
	g := fop.Target()
	st := d.stripe(g)
	st.Lock()
	idx, wait, err := d.j.Queue(&journal.Record{Call: e.call, Fop: e.fop})
	if err != nil {
		st.Unlock()
		d.unreserve(e.cost)
		d.log.Debug("fdl: journal refused request", "op", fop.Op, "err", err)
		return &xl.Result{Errno: errnoOf(err)}
	}
	e.index = idx
	d.mu.Lock()
	o := d.objs[g]
	if o == nil {
		o = &object{gfid: g}
		d.objs[g] = o
		d.nobjs.Add(1)
	}
	o.ents = append(o.ents, e)
	d.entries++
	d.mu.Unlock()
	st.Unlock()
	d.grew(e.cost)

	if err := wait(); err != nil {
		d.drop(o, e)
		d.log.Debug("fdl: journal refused request", "op", fop.Op, "err", err)
		return &xl.Result{Errno: errnoOf(err)}
	}
	d.madeDurable(o, idx)
	if fop.Op == xl.OpWrite {
		return &xl.Result{N: int64(len(fop.Data))}
	}
	a, errno := d.getattr(ctx, g)
	return &xl.Result{Attr: a, Errno: errno}
}

// reserve waits until cost fits under the cap (an entry larger than the
// cap goes alone) and takes it. ok is false once the destager is closing.
func (d *destager) reserve(ctx context.Context, cost int64) (ok bool, errno syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for !d.closing && d.bytes > 0 && d.bytes+cost > d.max {
		ch := d.space
		d.waiting++
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			errno = syscall.EINTR
		}
		d.mu.Lock()
		d.waiting--
		if errno != 0 {
			return false, errno
		}
	}
	if d.closing {
		return false, 0
	}
	d.bytes += cost
	return true, 0
}

// unreserve gives back cost. Called with mu held or not, as named.
func (d *destager) unreserve(cost int64) {
	d.mu.Lock()
	d.freed(cost)
	d.mu.Unlock()
}

func (d *destager) freed(cost int64) {
	d.bytes -= cost
	if d.waiting > 0 || d.closing {
		close(d.space)
		d.space = make(chan struct{})
	}
}

// drop unlists an entry whose journal write failed. It never became
// durable, so it was never applied or shown.
func (d *destager) drop(o *object, e *entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i := slices.Index(o.ents, e); i >= o.durable {
		o.ents = slices.Delete(o.ents, i, i+1)
		d.entries--
		d.freed(e.cost)
		d.changed(o)
	}
}

// madeDurable marks every listed entry of o up to index durable (the
// journal makes records durable in index order) and hands o to a worker.
func (d *destager) madeDurable(o *object, index uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for o.durable < len(o.ents) && o.ents[o.durable].index <= index {
		o.durable++
	}
	if o.durable > 0 && !o.queued {
		o.queued = true
		d.ready = append(d.ready, o)
		d.work.Signal()
	}
}

// changed wakes those waiting on o and forgets o once it is empty and no
// worker holds it. Called with mu held.
func (d *destager) changed(o *object) {
	if o.progress != nil {
		close(o.progress)
		o.progress = nil
	}
	if len(o.ents) == 0 && !o.queued && !o.dead {
		o.dead = true
		delete(d.objs, o.gfid)
		d.nobjs.Add(-1)
	}
}

func (d *destager) worker() {
	defer d.wg.Done()
	d.mu.Lock()
	for {
		for len(d.ready) == 0 && !d.stopping {
			d.work.Wait()
		}
		if len(d.ready) == 0 {
			d.mu.Unlock()
			return
		}
		o := d.ready[0]
		d.ready[0] = nil
		d.ready = d.ready[1:]
		d.mu.Unlock()
		d.run(o)
		d.mu.Lock()
	}
}

// run applies o's durable entries in order, up to destageBatch of them.
func (d *destager) run(o *object) {
	for n := 0; ; n++ {
		d.mu.Lock()
		if o.durable == 0 || n == destageBatch {
			if o.durable == 0 {
				o.queued = false
				d.changed(o)
			} else {
				d.ready = append(d.ready, o) // let other objects have a turn
				d.work.Signal()
			}
			d.mu.Unlock()
			return
		}
		e := o.ents[0]
		d.mu.Unlock()

		o.apply.Lock()
		r := xl.Dispatch(xl.WithCall(context.Background(), &e.call), d.child, &e.fop)
		errno := r.Errno
		if errno == 0 && e.fop.Op == xl.OpWrite && r.N < int64(len(e.fop.Data)) {
			errno = syscall.ENOSPC // a short write is the store running out of room
		}
		d.mu.Lock()
		o.ents[0] = nil
		o.ents = o.ents[1:]
		o.durable--
		d.entries--
		d.freed(e.cost)
		s := d.seq.Load() + 1
		d.recent[s%recentLen] = o.gfid
		d.seq.Store(s)
		if errno != 0 {
			d.failed(o.gfid, e, errno)
		}
		d.changed(o)
		d.mu.Unlock()
		o.apply.Unlock()
		d.j.MarkApplied(e.index)
	}
}

// failed remembers a destage error for the object's next Fsync or Flush.
// Called with mu held.
func (d *destager) failed(g xl.GFID, e *entry, errno syscall.Errno) {
	lvl := slog.LevelDebug
	if _, ok := d.errs[g]; !ok && len(d.errs) < maxErrs {
		d.errs[g] = errno
		lvl = slog.LevelWarn
	}
	d.log.Log(context.Background(), lvl, "fdl: destage failed; reported on the file's next fsync or flush",
		"gfid", g, "index", e.index, "op", e.fop.Op, "errno", errno)
}

// takeErr returns and forgets g's destage error.
func (d *destager) takeErr(g xl.GFID) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.errs[g]
	delete(d.errs, g)
	return e
}

// drain waits until every entry of g listed so far is applied.
func (d *destager) drain(ctx context.Context, g xl.GFID) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.objs[g]
	if o == nil || len(o.ents) == 0 {
		return 0
	}
	last := o.ents[len(o.ents)-1].index
	for !o.dead && len(o.ents) > 0 && o.ents[0].index <= last {
		if o.progress == nil {
			o.progress = make(chan struct{})
		}
		ch := o.progress
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			d.mu.Lock()
			return syscall.EINTR
		}
		d.mu.Lock()
	}
	return 0
}

// ordered performs a request that is not deferred: after the pending
// entries of the object it changes, holding that object's stripe so that
// no deferred write of it is journaled before and applied after.
func (d *destager) ordered(ctx context.Context, fop *xl.Fop, apply func(context.Context, *xl.Fop) *xl.Result) *xl.Result {
	g := d.drainTarget(ctx, fop)
	if g.IsZero() {
		return apply(ctx, fop)
	}
	st := d.stripe(g)
	st.Lock()
	defer st.Unlock()
	if e := d.drain(ctx, g); e != 0 {
		return &xl.Result{Errno: e}
	}
	return apply(ctx, fop)
}

// drainTarget names the object whose pending entries must be applied
// before fop: the object whose data, size or attributes it changes.
// Namespace ops move or unlink names; pending writes reach their object
// by GFID (or through an fd that Release drains) wherever it is named.
func (d *destager) drainTarget(ctx context.Context, fop *xl.Fop) xl.GFID {
	switch fop.Op {
	case xl.OpSetattr, xl.OpTruncate, xl.OpSetxattr, xl.OpRemovexattr, xl.OpOpen:
		return fop.GFID
	case xl.OpWrite, xl.OpFallocate:
		return fop.Fd.GFID
	case xl.OpCreate:
		// Create of an existing name opens, and with O_TRUNC truncates,
		// the object already there.
		if fop.Flags&syscall.O_TRUNC != 0 && fop.Flags&syscall.O_EXCL == 0 {
			if a, e := d.child.Lookup(ctx, fop.GFID, fop.Name); e == 0 {
				return a.GFID
			}
		}
	}
	return xl.GFID{}
}

// hold returns g's pending object with its apply lock shared, or nil if
// g has nothing pending: then the store alone is current.
func (d *destager) hold(g xl.GFID) *object {
	for {
		d.mu.Lock()
		o := d.objs[g]
		d.mu.Unlock()
		if o == nil {
			return nil
		}
		o.apply.RLock()
		d.mu.Lock()
		dead := o.dead
		d.mu.Unlock()
		if !dead {
			return o
		}
		o.apply.RUnlock()
	}
}

// visible returns o's entries that are durable, hence acknowledged or
// about to be. Their order is their journal order.
func (d *destager) visible(o *object) []*entry {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(o.ents[:o.durable])
}

// read is the store's read overlaid with the pending entries.
func (d *destager) read(ctx context.Context, fd xl.Fd, dst []byte, off int64) (int, syscall.Errno) {
	o := d.hold(fd.GFID)
	if o == nil {
		return d.child.Read(ctx, fd, dst, off)
	}
	defer o.apply.RUnlock()
	n, e := d.child.Read(ctx, fd, dst, off)
	if e != 0 {
		return n, e
	}
	return overlay(dst, off, n, d.visible(o)), 0
}

// overlay applies entries, in order, to the n bytes the store returned
// for [off, off+len(dst)) and returns how many bytes the read returns.
// The store's file ends at off+n if n is short; if not, only a size
// change can end it inside the window, and that is exact.
func overlay(dst []byte, off int64, n int, ents []*entry) int {
	clear(dst[n:])
	end := off + int64(len(dst))
	size := off + int64(n)
	for _, e := range ents {
		if sz, ok := e.resizes(); ok {
			s := int64(min(sz, 1<<62))
			if s < end {
				clear(dst[max(s-off, 0):])
			}
			size = s
			continue
		}
		data := e.fop.Data
		wlo, whi := e.fop.Off, e.fop.Off+int64(len(data))
		if lo, hi := max(wlo, off), min(whi, end); lo < hi {
			copy(dst[lo-off:hi-off], data[lo-wlo:])
		}
		size = max(size, whi)
	}
	return int(min(max(size-off, 0), int64(len(dst))))
}

// foldAttr applies entries' size and time changes to a.
func foldAttr(a *xl.Attr, ents []*entry) {
	for _, e := range ents {
		if sz, ok := e.resizes(); ok {
			a.Size = sz
		} else {
			a.Size = max(a.Size, uint64(e.fop.Off)+uint64(len(e.fop.Data)))
		}
		if later(e.when, a.Mtime) {
			a.Mtime = e.when
		}
		if later(e.when, a.Ctime) {
			a.Ctime = e.when
		}
	}
}

func later(a, b xl.Timespec) bool {
	return a.Sec > b.Sec || (a.Sec == b.Sec && a.Nsec > b.Nsec)
}

// getattr is the store's attributes with the pending entries applied.
func (d *destager) getattr(ctx context.Context, g xl.GFID) (xl.Attr, syscall.Errno) {
	o := d.hold(g)
	if o == nil {
		return d.child.Getattr(ctx, g)
	}
	defer o.apply.RUnlock()
	a, e := d.child.Getattr(ctx, g)
	if e != 0 {
		return a, e
	}
	foldAttr(&a, d.visible(o))
	return a, 0
}

// fixAttrs brings attributes the store returned (lookup, readdir, entry
// ops) up to date with the pending entries. s0 is seq from before the
// store was asked. An object nothing was applied to since then gets its
// pending entries folded in; one that had entries applied meanwhile is
// asked again, consistently.
func (d *destager) fixAttrs(ctx context.Context, s0 uint64, attrs []*xl.Attr) {
	if d.nobjs.Load() == 0 && d.seq.Load() == s0 {
		return
	}
	var again []*xl.Attr
	d.mu.Lock()
	s := d.seq.Load()
	var touched map[xl.GFID]bool
	if s-s0 <= recentLen {
		touched = make(map[xl.GFID]bool, s-s0)
		for i := s0 + 1; i <= s; i++ {
			touched[d.recent[i%recentLen]] = true
		}
	}
	for _, a := range attrs {
		if a.GFID.IsZero() {
			continue
		}
		switch o := d.objs[a.GFID]; {
		case touched == nil || touched[a.GFID]:
			again = append(again, a)
		case o != nil:
			foldAttr(a, o.ents[:o.durable])
		}
	}
	d.mu.Unlock()
	for _, a := range again {
		if fresh, e := d.getattr(ctx, a.GFID); e == 0 {
			*a = fresh
		}
	}
}

func (d *destager) lookup(ctx context.Context, parent xl.GFID, name string) (xl.Attr, syscall.Errno) {
	s0 := d.seq.Load()
	a, e := d.child.Lookup(ctx, parent, name)
	if e == 0 {
		d.fixAttrs(ctx, s0, []*xl.Attr{&a})
	}
	return a, e
}

func (d *destager) readdir(ctx context.Context, fd xl.Fd, off uint64, max int) ([]xl.Dirent, syscall.Errno) {
	s0 := d.seq.Load()
	ds, e := d.child.Readdir(ctx, fd, off, max)
	if e != 0 || len(ds) == 0 || (d.nobjs.Load() == 0 && d.seq.Load() == s0) {
		return ds, e
	}
	attrs := make([]*xl.Attr, len(ds))
	for i := range ds {
		attrs[i] = &ds[i].Attr
	}
	d.fixAttrs(ctx, s0, attrs)
	return ds, 0
}

// fsync applies the object's pending entries, then syncs it in the store.
// A destage error since the last report comes first.
func (d *destager) fsync(ctx context.Context, fd xl.Fd, datasync bool) syscall.Errno {
	if e := d.drain(ctx, fd.GFID); e != 0 {
		return e
	}
	e := d.child.Fsync(ctx, fd, datasync)
	if de := d.takeErr(fd.GFID); de != 0 {
		return de
	}
	return e
}

// flush reports a destage error without waiting for the pending entries:
// close(2) promises no more.
func (d *destager) flush(ctx context.Context, fd xl.Fd) syscall.Errno {
	e := d.child.Flush(ctx, fd)
	if de := d.takeErr(fd.GFID); de != 0 {
		return de
	}
	return e
}

// release applies the pending entries, which may name the handle, before
// the store forgets it.
func (d *destager) release(ctx context.Context, fd xl.Fd) syscall.Errno {
	d.drain(context.WithoutCancel(ctx), fd.GFID)
	e := d.child.Release(ctx, fd)
	if de := d.takeErr(fd.GFID); de != 0 {
		return de
	}
	return e
}

// lseek finds data and holes in the store, so the data must be there.
func (d *destager) lseek(ctx context.Context, fd xl.Fd, off int64, whence uint32) (int64, syscall.Errno) {
	if e := d.drain(ctx, fd.GFID); e != 0 {
		return 0, e
	}
	return d.child.Lseek(ctx, fd, off, whence)
}

// close applies everything pending and stops the workers. Writes that
// arrive meanwhile or later are applied in line.
func (d *destager) close() {
	d.mu.Lock()
	d.closing = true
	for d.bytes > 0 {
		ch := d.space
		d.mu.Unlock()
		<-ch
		d.mu.Lock()
	}
	d.stopping = true
	d.work.Broadcast()
	d.mu.Unlock()
	d.wg.Wait()
}
