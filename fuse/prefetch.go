package fuse

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Extended attribute readahead. ls -l lists a directory, then asks for
// security.selinux of each entry, one at a time, in its own (sorted)
// order. The listing itself tells which entries have no xattr at all
// (xattrCache.listed); for the others, which have some but most likely
// not that one (user.* names set by Samba or backup tools), each
// question would be a round trip. Once a getxattr of a name misses for
// an entry of a directory this mount has just listed, the mount asks for
// the same name of the next entries of the listing in parallel, as
// readahead does for data, and keeps the absences the bricks report. The
// bricks do the work ls would have asked of them anyway, but not one
// round trip at a time. Entries already known to lack the name cost
// nothing.

const (
	// prefetchWindow is how many entries one miss asks ahead for.
	prefetchWindow = 256
	// prefetchParallel bounds the getxattrs in flight for prefetches.
	prefetchParallel = 16
	// prefetchNames bounds the names prefetched per listing.
	prefetchNames = 4
	// listingsKept bounds the listings remembered, and so their memory.
	listingsKept = 8
	// listingLife is how long after a listing a miss still prefetches:
	// long enough for ls -l of a large directory.
	listingLife = time.Minute
)

// listing is the order in which this mount last listed a directory, and
// how far the prefetch of each name has gone.
type listing struct {
	dir xl.GFID
	at  time.Time

	mu     sync.Mutex
	gfids  []xl.GFID
	cursor map[string]int  // next index to prefetch, by name
	busy   map[string]bool // a window is in flight, by name
	// dirs are the subdirectories listed, in order; dirAt their index
	// there; claimed which were opened or read ahead, unclaimed how many
	// were not.
	dirs      []xl.GFID
	dirAt     map[xl.GFID]int
	claimed   []bool
	unclaimed int
}

func newListing(dir xl.GFID, now time.Time) *listing {
	return &listing{dir: dir, at: now, cursor: make(map[string]int), busy: make(map[string]bool)}
}

// add appends an entry the listing returned; past the xattr cache's
// bound, prefetching more is useless.
func (l *listing) add(a *xl.Attr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.gfids) >= xattrMaxObjs {
		return
	}
	l.gfids = append(l.gfids, a.GFID)
	if a.IsDir() {
		if l.dirAt == nil {
			l.dirAt = make(map[xl.GFID]int)
		}
		l.dirAt[a.GFID] = len(l.dirs)
		l.dirs = append(l.dirs, a.GFID)
		l.claimed = append(l.claimed, false)
		l.unclaimed++
	}
}

// dirsScan bounds how far dirsAfter looks for subdirectories to claim.
const dirsScan = 1024

// claimDir claims dir, being opened; it reports whether dir is listed.
func (l *listing) claimDir(dir xl.GFID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.dirAt[dir]
	if ok {
		l.claim(i)
	}
	return ok
}

// dirsAfter claims up to n subdirectories listed after dir and not yet
// claimed, continuing from the first one when the listing ends: find
// walks the listing's order, ls -R the names' sorted order.
func (l *listing) dirsAfter(dir xl.GFID, n int) []xl.GFID {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.dirAt[dir]
	if !ok {
		return nil
	}
	var out []xl.GFID
	for k := 1; k < min(len(l.dirs), dirsScan) && len(out) < n && l.unclaimed > 0; k++ {
		if j := (i + k) % len(l.dirs); !l.claimed[j] {
			l.claim(j)
			out = append(out, l.dirs[j])
		}
	}
	return out
}

func (l *listing) claim(i int) {
	if !l.claimed[i] {
		l.claimed[i] = true
		l.unclaimed--
	}
}

// next claims the next window of entries for which to prefetch name, or
// nil when there is none or one is already in flight.
func (l *listing) next(name string) []xl.GFID {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.cursor[name]
	if !ok && len(l.cursor) >= prefetchNames {
		return nil
	}
	if l.busy[name] || i >= len(l.gfids) {
		return nil
	}
	end := min(i+prefetchWindow, len(l.gfids))
	l.cursor[name] = end
	l.busy[name] = true
	return l.gfids[i:end:end]
}

// done ends the window in flight for name; useless ends reading ahead
// name in this listing.
func (l *listing) done(name string, useless bool) {
	l.mu.Lock()
	l.busy[name] = false
	if useless {
		l.cursor[name] = len(l.gfids)
	}
	l.mu.Unlock()
}

// listings are the last directories the mount listed, most recently
// used last.
type listings struct {
	mu   sync.Mutex
	last []*listing
}

// start records a new listing of dir and returns it.
func (ls *listings) start(dir xl.GFID, now time.Time) *listing {
	l := newListing(dir, now)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.last = slices.DeleteFunc(ls.last, func(o *listing) bool { return o.dir == dir })
	if len(ls.last) >= listingsKept {
		ls.last = slices.Delete(ls.last, 0, 1)
	}
	ls.last = append(ls.last, l)
	return l
}

// of returns the last listing of dir, or nil. It counts as a use: a
// walk keeps the listing of the directory it walks among those kept
// while it lists that directory's subdirectories.
func (ls *listings) of(dir xl.GFID) *listing {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for i, l := range ls.last {
		if l.dir == dir {
			ls.last = append(slices.Delete(ls.last, i, i+1), l)
			return l
		}
	}
	return nil
}

// prefetcher runs the prefetches of a mount. Every goroutine it starts
// ends by stop, which the mount calls once the kernel sends no more
// requests.
type prefetcher struct {
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	// release bounds the Releasedirs below: it ends releaseGrace after
	// stop starts (see volume.releasedir).
	release       context.Context
	cancelRelease context.CancelFunc

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

func newPrefetcher() *prefetcher {
	ctx, cancel := context.WithCancel(context.Background())
	rel, cancelRel := context.WithCancel(context.Background())
	return &prefetcher{ctx: ctx, cancel: cancel, sem: make(chan struct{}, prefetchParallel),
		release: rel, cancelRelease: cancelRel}
}

// goOn runs f in a goroutine unless the prefetcher is stopped.
func (p *prefetcher) goOn(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// releaseGrace is how long an unmount waits for the Releasedirs in
// flight. The bricks release a connection's handles as it closes, and a
// client retries an unanswered request for up to its RetryTimeout (30 s
// with the leader down): an unmount must not wait for that.
const releaseGrace = time.Second

// stop cancels the prefetches in flight and waits for them, cutting
// short the Releasedirs still in flight after releaseGrace.
func (p *prefetcher) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cancel()
	t := time.AfterFunc(releaseGrace, p.cancelRelease)
	p.wg.Wait()
	t.Stop()
	p.cancelRelease()
}

// parentListing is the last listing of n's parent, if it is recent
// enough to be part of a walk that n's request belongs to.
func (v *volume) parentListing(n *node) *listing {
	_, pi := n.Parent()
	if pi == nil {
		return nil
	}
	parent, ok := pi.Operations().(*node)
	if !ok {
		return nil
	}
	l := v.listings.of(parent.gfid)
	if l == nil || v.xattrs.now().Sub(l.at) > listingLife {
		return nil
	}
	return l
}

// prefetchXattr reads ahead name for the entries of n's parent's listing,
// if a miss of n's name may be part of a listing's walk. c is the caller
// that missed: the prefetch asks as it would. Getxattr calls it only
// for a miss the cache can keep, so never with the cache off.
func (v *volume) prefetchXattr(n *node, name string, c *xl.Call) {
	l := v.parentListing(n)
	if l == nil {
		return
	}
	window := l.next(name)
	if window == nil {
		return
	}
	call := *c
	call.Xdata = nil
	if !v.prefetch.goOn(func() { v.prefetchWindow(l, name, window, &call) }) {
		l.done(name, false)
	}
}

// prefetchWindow asks for name of each object of window not yet known,
// prefetchParallel at a time. Only absence is kept: if the window found
// the name on every object it asked, reading ahead is given up for it.
func (v *volume) prefetchWindow(l *listing, name string, window []xl.GFID, c *xl.Call) {
	p := v.prefetch
	var (
		wg            sync.WaitGroup
		asked, absent atomic.Int32
	)
	defer func() {
		wg.Wait()
		l.done(name, asked.Load() > 0 && absent.Load() == 0)
	}()
	for _, g := range window {
		known, token := v.xattrs.lookup(g, name)
		if known || token == nil {
			continue
		}
		select {
		case p.sem <- struct{}{}:
		case <-p.ctx.Done():
			return
		}
		call := v.again(c)
		wg.Go(func() {
			defer func() { <-p.sem }()
			_, e := v.top.Getxattr(xl.WithCall(p.ctx, call), g, name)
			if e == 0 {
				asked.Add(1)
			}
			if e == syscall.ENODATA {
				asked.Add(1)
				absent.Add(1)
				v.xattrs.noteAbsent(g, name, token)
			}
		})
	}
}
