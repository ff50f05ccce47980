package fuse

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Listing readahead. find and ls -R list a directory, then open its
// subdirectories one after the other, in the order listed, and each
// opening waits for a round trip to the bricks, which on a cold cache
// read the subdirectory's inodes from disk. Once a subdirectory of a
// directory this mount has just listed is opened, the mount reads the
// first batch of the next dirsAhead subdirectories of that listing in
// the background, as readahead does for data, so the bricks work on
// several directories at once and the walk finds their batches ready.
//
// A batch read ahead is served to the opendir that comes for it only
// while the kernel could still be serving the same entries and
// attributes from its own caches (the entry and attribute timeouts,
// the lesser of the two), only to a caller with the identity it was
// read as (the bricks checked that one's permissions, not another's),
// and only if this mount changed nothing in the meantime
// (volume.changes): another client's change shows as late as it would
// in a cached lookup, this mount's own at once. The entries and
// attributes it gives the kernel are cached there only for what is left
// of their timeouts (dir.Lookup), so none is shown older than its
// timeout. With either timeout off nothing is read ahead.
//
// The directory is opened below beside the read, as the same caller,
// and the opendir that takes the batch takes that handle too: the
// listing, which ends only once its Opendir has answered, need not wait
// for one more round trip.

const (
	// dirsAhead is how many subdirectories after the one opened are
	// read ahead.
	dirsAhead = 8
	// earlyKept bounds the batches read ahead not yet served, and so
	// their memory and the reads in flight.
	earlyKept = 64
)

// earlyListings are the first batches of directories read before any
// handle of them asked. Each holds a directory open on the bricks, so
// none is kept past its ttl even if no opendir comes (sweep, armed while
// any is kept), nor past this mount's next change (dropAll), which would
// void it anyway and may be the removal of the directory it holds.
type earlyListings struct {
	ttl time.Duration // zero: read nothing ahead

	mu sync.Mutex
	m  map[xl.GFID]*early
	// timer sweeps m while it is not empty; armed counts its arming, so
	// that a sweep of a timer stopped meanwhile does nothing.
	timer *time.Timer
	armed uint64
	// kept is set while m may be non-empty: a change checks it before
	// it takes mu.
	kept atomic.Bool
}

// early is one directory's first batch, read ahead.
type early struct {
	r       *readahead
	open    *dirOpen
	who     *xl.Call // the caller it is read as
	changes uint64   // volume.changes before the read started
}

// take returns the batch read ahead for dir and its Opendir, if they may
// be served to an opendir by the caller c at now, when volume.changes is
// changes.
func (el *earlyListings) take(v *volume, dir xl.GFID, c *xl.Call, changes uint64, now time.Time) (*readahead, *dirOpen) {
	el.mu.Lock()
	e := el.m[dir]
	delete(el.m, dir)
	el.sweep(v, now)
	el.mu.Unlock()
	if e == nil {
		return nil, nil
	}
	if e.changes != changes || now.Sub(e.r.at) > el.ttl || !sameCaller(e.who, c) {
		e.drop(v)
		return nil, nil
	}
	select {
	case <-e.open.done:
		if e.open.errno != 0 {
			// It may have failed for want of the walker's permission, or
			// for a brick's passing fault: the caller opens as itself.
			return e.r, nil
		}
	default:
	}
	return e.r, e.open
}

// sweep drops the batches too old to be served. el.mu is held.
func (el *earlyListings) sweep(v *volume, now time.Time) {
	for g, e := range el.m {
		if now.Sub(e.r.at) > el.ttl {
			e.drop(v)
			delete(el.m, g)
		}
	}
}

// arm starts the sweep timer unless it runs. el.mu is held.
func (el *earlyListings) arm(v *volume) {
	if el.timer != nil {
		return
	}
	el.armed++
	armed := el.armed
	el.timer = time.AfterFunc(el.ttl, func() { el.tick(v, armed) })
}

// tick sweeps, and goes on sweeping while batches are kept.
func (el *earlyListings) tick(v *volume, armed uint64) {
	el.mu.Lock()
	defer el.mu.Unlock()
	if el.timer == nil || el.armed != armed {
		return // stopped by dropAll
	}
	el.sweep(v, v.xattrs.now())
	if len(el.m) > 0 {
		el.timer.Reset(el.ttl)
		return
	}
	el.timer = nil
}

// dropAll drops every batch. The mount calls it as each of its changes
// ends, and once the kernel sends no more requests, before it stops the
// prefetcher.
func (el *earlyListings) dropAll(v *volume) {
	if !el.kept.Load() {
		return
	}
	el.mu.Lock()
	m := el.takeAll()
	el.mu.Unlock()
	for _, e := range m {
		e.drop(v)
	}
}

// takeAll empties m and stops the timer; it returns what m held. el.mu
// is held.
func (el *earlyListings) takeAll() map[xl.GFID]*early {
	m := el.m
	el.m = nil
	el.kept.Store(false)
	if el.timer != nil {
		el.timer.Stop()
		el.timer = nil
	}
	return m
}

// drop abandons the read and releases what the Opendir opened, or will.
func (e *early) drop(v *volume) {
	e.r.cancel()
	fd, ok := e.open.close()
	if !ok {
		return
	}
	call := v.again(e.who)
	release := func() { v.releasedir(xl.WithCall(v.prefetch.ctx, call), fd) }
	if !v.prefetch.goOn(release) {
		release()
	}
}

// sameCaller reports whether a and b are checked alike by the bricks.
func sameCaller(a, b *xl.Call) bool {
	return a.Uid == b.Uid && a.Gid == b.Gid && slices.Equal(a.Groups, b.Groups)
}

// start reads ahead the first batch of dir as the caller c, unless it is
// being read already or too many are.
func (el *earlyListings) start(v *volume, dir xl.GFID, c *xl.Call) {
	changes := v.changes.Load() // before the read: a change meanwhile voids it
	el.mu.Lock()
	defer el.mu.Unlock()
	if _, ok := el.m[dir]; ok {
		return
	}
	el.sweep(v, v.xattrs.now())
	if len(el.m) >= earlyKept {
		return
	}
	// An anonymous fd: the handle that takes the batch continues from
	// its cookies with its own.
	r := v.readAhead(c, xl.Fd{GFID: dir}, 0, readdirBatch, true)
	if r == nil {
		return
	}
	o := newDirOpen()
	if !v.prefetch.goOn(func() { o.run(v, dir, c) }) {
		r.cancel()
		return
	}
	if el.m == nil {
		el.m = make(map[xl.GFID]*early)
	}
	el.m[dir] = &early{r: r, open: o, who: c, changes: changes}
	el.kept.Store(true)
	el.arm(v)
}

// walkOf returns the last listing of n's parent, with n claimed in it,
// if n's opening may be part of a walk, or nil. It comes before the
// opening takes what was read ahead for n: a walker reading ahead
// meanwhile does not open n a second time.
func (v *volume) walkOf(n *node) *listing {
	if v.early.ttl <= 0 {
		return nil
	}
	l := v.parentListing(n)
	if l == nil || !l.claimDir(n.gfid) {
		return nil
	}
	return l
}

// listAhead reads ahead the subdirectories listed after n in l, n's
// walk. c is the caller that opened n: the reads ask as it would.
func (v *volume) listAhead(l *listing, n *node, c *xl.Call) {
	for _, g := range l.dirsAfter(n.gfid, dirsAhead) {
		v.early.start(v, g, c)
	}
}
