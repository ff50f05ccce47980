package fuse

import (
	"sync"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// xattrCache remembers which extended attributes objects lack, as
// GlusterFS's md-cache does. ls -l asks for security.selinux of every
// file it lists (ACLs are answered without asking), and the kernel asks for
// security.capability before every first write; on most volumes none of
// them exist, and without the cache each question is a round trip to the
// bricks. An answer is trusted for the attribute timeout: another
// client's setxattr is seen as late as its chmod. This mount's own changes
// drop what is known of the object at once.
//
// Only absence is kept: it is what the kernel and ls ask about, and it
// costs no copy of values, which the bricks may also change on their own
// (they clear file capabilities on write). Besides the answers to its
// own questions, the mount learns from listings which objects have no
// extended attribute at all (xl.Dirent.NoXattrs), as md-cache does from
// readdirp: ls -l then asks the bricks nothing about them.
type xattrCache struct {
	ttl time.Duration // zero: keep nothing
	now func() time.Time

	mu   sync.Mutex
	objs map[xl.GFID]*absentSet
	// gen counts invalidations; recent holds the last objects
	// invalidated, gen%len(recent) being the slot of the newest. A
	// listing started at generation g is trusted for every object but
	// those invalidated since.
	gen    uint64
	recent [64]xl.GFID
}

// absentSet is what is known of one object: the names it lacks, each
// with when that knowledge goes stale, and until when it lacks every
// name. A fill stores its answer only if the set it started from is
// still the object's: invalidation replaces the set, so an answer that
// raced with a change is dropped.
type absentSet struct {
	names map[string]time.Time
	none  time.Time
}

func newAbsentSet() *absentSet { return &absentSet{names: make(map[string]time.Time, 2)} }

const (
	// xattrMaxObjs bounds the objects known; beyond it some are
	// forgotten. It fits a listing of a large directory.
	xattrMaxObjs = 1 << 15
	// xattrMaxNames bounds the names kept per object.
	xattrMaxNames = 8
)

func newXattrCache(ttl time.Duration, now func() time.Time) *xattrCache {
	if now == nil {
		now = time.Now
	}
	return &xattrCache{ttl: ttl, now: now, objs: make(map[xl.GFID]*absentSet)}
}

// lookup reports whether gfid is known to lack name. When it is not, it
// returns the token to hand to noteAbsent with the translator's answer.
func (c *xattrCache) lookup(gfid xl.GFID, name string) (absent bool, token *absentSet) {
	if c.ttl <= 0 {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.objs[gfid]
	if s != nil {
		now := c.now()
		if now.Before(s.none) {
			return true, nil
		}
		if exp, ok := s.names[name]; ok {
			if now.Before(exp) {
				return true, nil
			}
			delete(s.names, name)
		}
		return false, s
	}
	return false, c.addLocked(gfid)
}

// addLocked starts knowing gfid.
func (c *xattrCache) addLocked(gfid xl.GFID) *absentSet {
	if len(c.objs) >= xattrMaxObjs {
		c.evictLocked()
	}
	s := newAbsentSet()
	c.objs[gfid] = s
	return s
}

// generation is the point from which a listing about to be asked for
// can be trusted; pass it to listed with the listing's entries.
func (c *xattrCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// listed records that the entries marked NoXattrs lack every name,
// except those invalidated since gen, about which the listing may be
// older than this mount's own change: all of them if too many were to
// tell which.
func (c *xattrCache) listed(gen uint64, ents []xl.Dirent) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.gen - gen
	if changed > uint64(len(c.recent)) {
		return
	}
	exp := c.now().Add(c.ttl)
	for i := range ents {
		de := &ents[i]
		if !de.NoXattrs || de.Attr.GFID.IsZero() || c.invalidatedLocked(de.Attr.GFID, changed) {
			continue
		}
		s := c.objs[de.Attr.GFID]
		if s == nil {
			s = c.addLocked(de.Attr.GFID)
		}
		s.none = exp
	}
}

// invalidatedLocked reports whether gfid is among the last n objects
// invalidated.
func (c *xattrCache) invalidatedLocked(gfid xl.GFID, n uint64) bool {
	for i := range n {
		if c.recent[(c.gen-i)%uint64(len(c.recent))] == gfid {
			return true
		}
	}
	return false
}

// noteAbsent records that gfid lacks name, as the translators said in
// answer to the question lookup returned token for.
func (c *xattrCache) noteAbsent(gfid xl.GFID, name string, token *absentSet) {
	if token == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.objs[gfid] != token || len(token.names) >= xattrMaxNames {
		return
	}
	token.names[name] = c.now().Add(c.ttl)
}

// knownAbsent records that gfid lacks name without asking, for an object
// this mount has just made.
func (c *xattrCache) knownAbsent(gfid xl.GFID, name string) {
	if _, token := c.lookup(gfid, name); token != nil {
		c.noteAbsent(gfid, name, token)
	}
}

// invalidate forgets what is known of gfid, and turns away the answers of
// questions asked and listings begun before: gfid has changed.
func (c *xattrCache) invalidate(gfid xl.GFID) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	delete(c.objs, gfid)
	c.gen++
	c.recent[c.gen%uint64(len(c.recent))] = gfid
	c.mu.Unlock()
}

// forget drops what is known of gfid, which has not changed: the kernel
// has forgotten it.
func (c *xattrCache) forget(gfid xl.GFID) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	delete(c.objs, gfid)
	c.mu.Unlock()
}

// evictLocked makes room: it drops stale knowledge, then, if that was not
// enough, a quarter of the objects, whichever map order yields first.
func (c *xattrCache) evictLocked() {
	now := c.now()
	for g, s := range c.objs {
		fresh := now.Before(s.none)
		for _, exp := range s.names {
			if now.Before(exp) {
				fresh = true
				break
			}
		}
		if !fresh {
			delete(c.objs, g)
		}
	}
	for g := range c.objs {
		if len(c.objs) <= xattrMaxObjs*3/4 {
			break
		}
		delete(c.objs, g)
	}
}
