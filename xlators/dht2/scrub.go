package dht2

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// ScrubStats counts what one Scrub found.
type ScrubStats struct {
	Dirs     int // directories listed
	Stubs    int // remote names' stubs seen
	Anchored int // anchor names seen
	Orphans  int // anchor names without a stub (orphan inodes or links), removed
	Dangling int // stubs without an anchor name (dangling names), removed
	Young    int // unmatched but younger than the grace period: left alone
	Errors   int // removals that failed; the next scrub retries
}

type scrubber struct {
	grace                           time.Duration
	rate                            int
	runs, orphans, dangling, errors prometheus.Counter
}

func (s *scrubber) init(opts Options) error {
	s.grace = opts.ScrubGrace
	if s.grace == 0 {
		s.grace = time.Minute
	}
	if s.grace < 0 {
		s.grace = 0
	}
	s.rate = opts.ScrubRate
	if s.rate == 0 {
		s.rate = 1000
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "dht2", Name: name, Help: help})
	}
	s.runs = c("scrub_runs_total", "Completed scrubs.")
	s.orphans = c("scrub_orphans_total", "Orphan inodes and links (anchor names without a stub) removed.")
	s.dangling = c("scrub_dangling_total", "Dangling names (stubs without an anchor name) removed.")
	s.errors = c("scrub_errors_total", "Scrubber removals that failed.")
	if r := opts.Registerer; r != nil {
		for _, m := range []prometheus.Counter{s.runs, s.orphans, s.dangling, s.errors} {
			if err := r.Register(m); err != nil {
				return fmt.Errorf("dht2: scrub metrics: %w", err)
			}
		}
	}
	return nil
}

// seen is one half of a remote name.
type seen struct {
	set    int
	name   string  // the stub's name, or the anchor key
	dir    xl.GFID // the stub's directory
	isDir  bool
	ctime  xl.Timespec
	target xl.GFID // a stub's inode
}

// Scrub lists every set's namespace once (the tokens each set owns) and
// matches stubs with anchor names. What matches nothing and is older than
// the grace period is the leftover of an interrupted two-step op, and is
// removed: orphan anchor names (an inode or a link without a visible name)
// and dangling stubs. It holds every remote name in memory while it runs.
func (d *DHT2) Scrub(ctx context.Context) (ScrubStats, error) {
	var st ScrubStats
	l := d.layout.Load()
	stubs := map[string]seen{}   // by the anchor key they need
	anchors := map[string]seen{} // by key
	lim := newLimiter(d.scrub.rate)
	defer lim.stop()
	rctx := asRoot(ctx)
	for i := range l.Sets {
		if err := d.scanSet(rctx, l, i, lim, stubs, anchors, &st); err != nil {
			return st, err
		}
	}
	now := time.Now()
	young := func(s seen) bool { return now.Sub(s.ctime.Time()) < d.scrub.grace }
	for k, a := range anchors {
		if _, ok := stubs[k]; ok {
			continue
		}
		if young(a) {
			st.Young++
			continue
		}
		if err := lim.wait(ctx); err != nil {
			return st, err
		}
		// The listing may have missed the stub: its directory's token
		// may have moved between sets meanwhile. Look again, routed.
		if named, err := d.named(rctx, k); named || err != nil {
			if err != nil {
				st.Errors++
			}
			continue
		}
		x := d.subs[a.set]
		var e syscall.Errno
		if a.isDir {
			e = x.Rmdir(rctx, a.dir, k)
		} else {
			e = x.Unlink(rctx, a.dir, k)
		}
		d.count(&st, e, &st.Orphans, d.scrub.orphans, "orphan", k)
	}
	for k, s := range stubs {
		if _, ok := anchors[k]; ok {
			continue
		}
		if young(s) {
			st.Young++
			continue
		}
		if err := lim.wait(ctx); err != nil {
			return st, err
		}
		// As above: the inode's token may have moved meanwhile.
		if _, e := d.remoteAttr(rctx, s.dir, s.name, s.target); e != syscall.ENOENT {
			if e != 0 {
				st.Errors++
			}
			continue
		}
		x := d.subs[s.set]
		var e syscall.Errno
		if s.isDir {
			e = x.Rmdir(rctx, s.dir, s.name)
		} else {
			e = x.Unlink(rctx, s.dir, s.name)
		}
		d.count(&st, e, &st.Dangling, d.scrub.dangling, "dangling name", s.name)
	}
	d.scrub.runs.Inc()
	return st, nil
}

func (d *DHT2) count(st *ScrubStats, e syscall.Errno, n *int, c prometheus.Counter, what, name string) {
	if e != 0 && e != syscall.ENOENT {
		st.Errors++
		d.scrub.errors.Inc()
		d.log.Warn("dht2: scrub: removing "+what, "name", name, "errno", e)
		return
	}
	*n++
	c.Inc()
	d.log.Info("dht2: scrub: removed "+what, "name", name)
}

// scanSet lists set i's root and anchor, and every directory below them
// whose token the set owns.
func (d *DHT2) scanSet(ctx context.Context, l *Layout, i int, lim *limiter, stubs, anchors map[string]seen, st *ScrubStats) error {
	x := d.subs[i]
	var todo []xl.GFID
	if l.Set(0) == i {
		todo = append(todo, xl.RootGFID)
	}
	// By GFID: a lookup by name could adopt an anchor being made.
	if _, e := x.Getattr(ctx, AnchorGFID); e == 0 {
		todo = append(todo, AnchorGFID)
	} else if e != syscall.ESTALE && e != syscall.ENOENT {
		return fmt.Errorf("dht2: scrub: set %d: anchor: %w", i, e)
	}
	for len(todo) > 0 {
		dir := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		st.Dirs++
		err := d.list(ctx, x, dir, lim, func(de *xl.Dirent) {
			g := de.Attr.GFID
			isDir := de.Attr.IsDir()
			s := seen{set: i, name: de.Name, dir: dir, isDir: isDir, ctime: de.Attr.Ctime}
			switch {
			case dir == AnchorGFID:
				if t, ok := parseBucket(de.Name); ok && g == bucket(t) {
					todo = append(todo, g)
				}
				return
			case inAnchorFamily(dir):
				ig, _, _, ok := parseKey(de.Name)
				if !ok || ig != g || l.Set(TokenOf(g)) != i {
					return // not ours, or a token on its way here or away
				}
				st.Anchored++
				anchors[de.Name] = s
			case dir == xl.RootGFID && de.Name == AnchorName:
				return
			case TokenOf(g) != TokenOf(dir):
				st.Stubs++
				s.target = stubTarget(g, dir, de.Name)
				stubs[anchorKey(s.target, dir, de.Name)] = s
				return
			}
			if isDir && l.Set(TokenOf(g)) == i {
				todo = append(todo, g)
			}
		})
		if err != nil {
			return fmt.Errorf("dht2: scrub: set %d: %w", i, err)
		}
	}
	return nil
}

// list calls f for each entry of dir on x.
func (d *DHT2) list(ctx context.Context, x xl.Xlator, dir xl.GFID, lim *limiter, f func(*xl.Dirent)) error {
	if err := lim.wait(ctx); err != nil {
		return err
	}
	fd, e := x.Opendir(ctx, dir)
	if e == syscall.ENOENT || e == syscall.ESTALE {
		return nil // removed meanwhile
	}
	if e != 0 {
		return e
	}
	defer x.Releasedir(context.WithoutCancel(ctx), fd)
	var off uint64
	for {
		if err := lim.wait(ctx); err != nil {
			return err
		}
		ents, e := x.Readdir(ctx, fd, off, 512)
		if e != 0 {
			return e
		}
		if len(ents) == 0 {
			return nil
		}
		for k := range ents {
			f(&ents[k])
		}
		off = ents[len(ents)-1].Off
	}
}

// limiter paces requests; a nil ticker is no limit.
type limiter struct{ t *time.Ticker }

func newLimiter(perSecond int) *limiter {
	if perSecond <= 0 {
		return &limiter{}
	}
	return &limiter{t: time.NewTicker(time.Second / time.Duration(perSecond))}
}

func (l *limiter) wait(ctx context.Context) error {
	if l.t == nil {
		return ctx.Err()
	}
	select {
	case <-l.t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *limiter) stop() {
	if l.t != nil {
		l.t.Stop()
	}
}

// parseBucket reads a bucket's name: its first token.
func parseBucket(name string) (uint16, bool) {
	if len(name) != 2 {
		return 0, false
	}
	t, err := strconv.ParseUint(name, 16, 8)
	return uint16(t) << 8, err == nil
}

// named reports whether the anchor name k has its stub, looking through
// the layout as requests do.
func (d *DHT2) named(ctx context.Context, k string) (bool, error) {
	g, parent, h, ok := parseKey(k)
	if !ok {
		return false, nil
	}
	var fd xl.Fd
	e := d.at(ctx, parent, func(x xl.Xlator) (e syscall.Errno) { fd, e = x.Opendir(ctx, parent); return })
	switch {
	case e == syscall.ENOENT || e == syscall.ESTALE:
		return false, nil // the directory is gone
	case e != 0:
		return false, e
	}
	defer d.at(context.WithoutCancel(ctx), parent, func(x xl.Xlator) syscall.Errno { return x.Releasedir(ctx, fd) })
	for off := uint64(0); ; {
		var ents []xl.Dirent
		e := d.at(ctx, parent, func(x xl.Xlator) (e syscall.Errno) { ents, e = x.Readdir(ctx, fd, off, 512); return })
		if e != 0 {
			return false, e
		}
		if len(ents) == 0 {
			return false, nil
		}
		for _, de := range ents {
			if xxhash.Sum64String(de.Name) == h && stubTarget(de.Attr.GFID, parent, de.Name) == g {
				return true, nil
			}
		}
		off = ents[len(ents)-1].Off
	}
}
