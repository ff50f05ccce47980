package fuse

import (
	"sync"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// xattrCache remembers which extended attributes objects lack, as
// GlusterFS's md-cache does. ls -l asks for security.selinux and
// system.posix_acl_access of every file it lists, and the kernel asks for
// security.capability before every first write; on most volumes none of
// them exist, and without the cache each question is a round trip to the
// bricks. An answer is trusted for the attribute timeout: another
// client's setxattr is seen as late as its chmod. This mount's own changes
// drop what is known of the object at once.
//
// Only absence is kept: it is what the kernel and ls ask about, and it
// costs no copy of values, which the bricks may also change on their own
// (they clear file capabilities on write).
type xattrCache struct {
	ttl time.Duration // zero: keep nothing
	now func() time.Time

	mu   sync.Mutex
	objs map[xl.GFID]*absentSet
}

// absentSet is what is known of one object: the names it lacks, each
// with when that knowledge goes stale. A fill stores its answer only if
// the set it started from is still the object's: invalidation replaces
// the set, so an answer that raced with a change is dropped.
type absentSet struct {
	names map[string]time.Time
}

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
		if exp, ok := s.names[name]; ok {
			if c.now().Before(exp) {
				return true, nil
			}
			delete(s.names, name)
		}
		return false, s
	}
	if len(c.objs) >= xattrMaxObjs {
		c.evictLocked()
	}
	s = &absentSet{names: make(map[string]time.Time, 2)}
	c.objs[gfid] = s
	return false, s
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
// questions asked before.
func (c *xattrCache) invalidate(gfid xl.GFID) {
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
		fresh := false
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
