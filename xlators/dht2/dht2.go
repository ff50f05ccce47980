package dht2

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// ErrnoMoved is what a Guard answers for a token its set no longer owns
// (the migration fenced it). DHT2 reloads the layout and retries; it never
// reaches applications.
const ErrnoMoved = syscall.EREMCHG

// maxRedirects bounds how often one request follows a moved token.
const maxRedirects = 8

// movedWait bounds how long a refused request waits for the layout that
// moved its token to be published.
const movedWait = 30 * time.Second

// Policy chooses a new directory's token.
type Policy interface {
	// DirToken returns the token of a new directory named name in parent.
	// gfid is the caller's (random) request GFID: a policy that derives
	// the token from it gives a retried request the same answer.
	DirToken(l *Layout, parent xl.GFID, name string, gfid xl.GFID) uint16
}

// RandomToken takes the token from random bits of the request GFID:
// uniform over the token space, so sets receive directories in proportion
// to the tokens they own, within random variation.
type RandomToken struct{}

// DirToken implements Policy.
func (RandomToken) DirToken(_ *Layout, _ xl.GFID, _ string, gfid xl.GFID) uint16 {
	return uint16(gfid[10])<<8 | uint16(gfid[11])
}

// Spread, the default policy, deals new directories to the sets in turn
// (each client keeps its own turn), each to a random token of its set:
// even to within one directory per client, where RandomToken's spread
// only evens out over many directories.
type Spread struct {
	next  atomic.Uint64
	cache atomic.Pointer[spreadCache]
}

type spreadCache struct {
	l     *Layout
	owned [][]uint16 // by set
}

// DirToken implements Policy.
func (p *Spread) DirToken(l *Layout, _ xl.GFID, _ string, gfid xl.GFID) uint16 {
	c := p.cache.Load()
	if c == nil || c.l != l {
		c = &spreadCache{l: l, owned: make([][]uint16, l.Sets)}
		for t, s := range l.Owner {
			c.owned[s] = append(c.owned[s], uint16(t))
		}
		p.cache.Store(c)
	}
	for range l.Sets {
		s := c.owned[p.next.Add(1)%uint64(l.Sets)]
		if len(s) > 0 { // a drained set gets none
			return s[int(binary.BigEndian.Uint32(gfid[10:14]))%len(s)]
		}
	}
	return RandomToken{}.DirToken(l, xl.GFID{}, "", gfid)
}

// PolicyFunc adapts a function to Policy.
type PolicyFunc func(l *Layout, parent xl.GFID, name string, gfid xl.GFID) uint16

// DirToken implements Policy.
func (f PolicyFunc) DirToken(l *Layout, parent xl.GFID, name string, gfid xl.GFID) uint16 {
	return f(l, parent, name, gfid)
}

// Options configures a DHT2 translator.
type Options struct {
	// Subvols are the sets, in layout order: set i is Subvols[i].
	Subvols []xl.Xlator
	// Layout is loaded once by New and then watched.
	Layout LayoutSource
	// Policy places new directories. Default a new Spread.
	Policy Policy
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// ScrubGrace is how old an unmatched half of a two-step op must be
	// before the scrubber removes it, so that ops in flight are left
	// alone. Default one minute.
	ScrubGrace time.Duration
	// ScrubRate bounds the scrubber's requests per second per subvolume
	// (default 1000; negative: unlimited).
	ScrubRate int
	// Registerer, when set, receives the scrubber's counters.
	Registerer prometheus.Registerer
}

// DHT2 is the distribution translator. See the package documentation.
type DHT2 struct {
	xl.Unsupported
	subs   []xl.Xlator
	src    LayoutSource
	policy Policy
	log    *slog.Logger

	layout  atomic.Pointer[Layout]
	changed chan struct{} // closed and replaced on each new layout
	chMu    sync.Mutex
	loaded  atomic.Int64 // unix nanoseconds of the last explicit Load

	// gates freeze a token in this client while it migrates: requests
	// hold a read lock for the token they route by, MigrateToken the
	// write lock for its cutover.
	gates [Tokens]sync.RWMutex

	// overrides route tokens this client migrated until a layout at
	// least as new as the override's arrives.
	// Copy on write, nil when empty: the request path only loads it.
	ovMu      sync.Mutex
	overrides atomic.Pointer[map[uint16]override]

	anchorMade []atomic.Bool           // per set: the anchor exists
	anchored   []*[buckets]atomic.Bool // per set: anchor buckets known to exist
	noResolve  []atomic.Int64          // per set: unix ns until which IpcResolve is not tried

	fds sync.Map // fdKey -> set index the fd was opened on

	migrateMu sync.Mutex
	scrub     scrubber

	crashHook   func(step string) bool // tests only
	migrateHook func(step string)      // tests only
	stageQuiet  time.Duration          // see quietFor

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

type override struct {
	set   int
	after uint64 // drop once the layout version exceeds this
}

type fdKey struct {
	g xl.GFID
	h uint64
}

var (
	_ xl.Xlator    = (*DHT2)(nil)
	_ xl.Lifecycle = (*DHT2)(nil)
)

// New loads the layout and starts watching it.
func New(opts Options) (*DHT2, error) {
	if len(opts.Subvols) == 0 {
		return nil, errors.New("dht2: no subvolumes")
	}
	for i, s := range opts.Subvols {
		if s == nil {
			return nil, fmt.Errorf("dht2: subvolume %d is nil", i)
		}
	}
	if opts.Layout == nil {
		return nil, errors.New("dht2: no layout source")
	}
	subs := make([]xl.Xlator, len(opts.Subvols))
	for i, s := range opts.Subvols {
		subs[i] = reqIDs(s)
	}
	d := &DHT2{
		subs:       subs,
		src:        opts.Layout,
		policy:     opts.Policy,
		log:        opts.Logger,
		changed:    make(chan struct{}),
		anchored:   make([]*[buckets]atomic.Bool, len(opts.Subvols)),
		anchorMade: make([]atomic.Bool, len(opts.Subvols)),
		noResolve:  make([]atomic.Int64, len(opts.Subvols)),
	}
	d.stageQuiet = quietFor
	for i := range d.anchored {
		d.anchored[i] = new([buckets]atomic.Bool)
	}
	if d.policy == nil {
		d.policy = new(Spread)
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Watch before the load: a layout saved in between is delivered.
	w := opts.Layout.Watch(ctx)
	lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
	l, err := opts.Layout.Load(lctx)
	lcancel()
	if err == nil {
		err = d.fits(l)
	}
	if err == nil {
		d.layout.Store(l)
		err = d.scrub.init(opts)
	}
	if err != nil {
		cancel() // ends the watch
		return nil, err
	}
	d.cancel = cancel
	d.wg.Add(1)
	go d.watch(w)
	return d, nil
}

func (d *DHT2) fits(l *Layout) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if l.Sets > len(d.subs) {
		return fmt.Errorf("dht2: layout version %d names %d sets, only %d subvolumes", l.Version, l.Sets, len(d.subs))
	}
	return nil
}

// Close stops the watcher and the scrubber. Subvolumes are not closed.
func (d *DHT2) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.cancel()
	d.wg.Wait()
	return nil
}

func (d *DHT2) watch(ch <-chan *Layout) {
	defer d.wg.Done()
	for l := range ch {
		d.install(l)
	}
}

// install adopts l if it is newer than the current layout.
func (d *DHT2) install(l *Layout) bool {
	if err := d.fits(l); err != nil {
		d.log.Error("dht2: ignoring layout", "err", err)
		return false
	}
	for {
		cur := d.layout.Load()
		if cur != nil && cur.Version >= l.Version {
			return false
		}
		if d.layout.CompareAndSwap(cur, l) {
			break
		}
	}
	d.ovMu.Lock()
	if old := d.overrides.Load(); old != nil {
		keep := map[uint16]override{}
		for t, o := range *old {
			if l.Version <= o.after {
				keep[t] = o
			}
		}
		if len(keep) == 0 {
			d.overrides.Store(nil)
		} else {
			d.overrides.Store(&keep)
		}
	}
	d.ovMu.Unlock()
	d.chMu.Lock()
	close(d.changed)
	d.changed = make(chan struct{})
	d.chMu.Unlock()
	d.log.Debug("dht2: layout", "version", l.Version, "sets", l.Sets)
	return true
}

// Layout is the layout in use.
func (d *DHT2) Layout() *Layout { return d.layout.Load() }

// route is token t's set and the layout version it was read from.
func (d *DHT2) route(t uint16) (int, uint64) {
	l := d.layout.Load()
	if m := d.overrides.Load(); m != nil {
		if o, ok := (*m)[t]; ok {
			return o.set, l.Version
		}
	}
	return int(l.Owner[t]), l.Version
}

// refresh is called after a subvolume refused a request routed with
// layout version ver, or did not know its object. It returns whether the
// layout has moved past ver, waiting for that only if wait is set.
func (d *DHT2) refresh(ctx context.Context, ver uint64, wait bool) bool {
	if d.layout.Load().Version > ver {
		return true
	}
	// ESTALE is also the answer for a removed file: ask the store at
	// most once a second (the watch delivers layouts anyway) unless a
	// set refused the token outright.
	now := time.Now().UnixNano()
	if last := d.loaded.Load(); wait || now-last >= int64(time.Second) && d.loaded.CompareAndSwap(last, now) {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		l, err := d.src.Load(lctx)
		cancel()
		if err == nil {
			d.install(l)
		}
	}
	if d.layout.Load().Version > ver || !wait {
		return d.layout.Load().Version > ver
	}
	timer := time.NewTimer(movedWait)
	defer timer.Stop()
	for d.layout.Load().Version <= ver {
		d.chMu.Lock()
		ch := d.changed
		d.chMu.Unlock()
		if d.layout.Load().Version > ver {
			break
		}
		select {
		case <-ch:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// on runs f on token t's home, holding t's gate, and follows the token if
// it moved: a Guard's refusal waits for the new layout; ESTALE retries
// only if a newer layout moved the token.
func (d *DHT2) on(ctx context.Context, t uint16, f func(i int, x xl.Xlator) syscall.Errno) syscall.Errno {
	for n := 0; ; n++ {
		d.gates[t].RLock()
		i, ver := d.route(t)
		e := f(i, d.subs[i])
		d.gates[t].RUnlock()
		switch {
		case e == 0 || n == maxRedirects:
		case e == ErrnoMoved:
			if d.refresh(ctx, ver, true) {
				continue
			}
			return syscall.ESTALE
		case e == syscall.ESTALE:
			if d.refresh(ctx, ver, false) {
				if j, _ := d.route(t); j != i {
					continue
				}
			}
		}
		if e == ErrnoMoved {
			e = syscall.ESTALE
		}
		return e
	}
}

// at is on for a GFID's token.
func (d *DHT2) at(ctx context.Context, g xl.GFID, f func(x xl.Xlator) syscall.Errno) syscall.Errno {
	return d.on(ctx, TokenOf(g), func(_ int, x xl.Xlator) syscall.Errno { return f(x) })
}

// withToken is g with its high bits replaced by t, and the RFC 4122
// variant (stubs use another, see stubGFID).
func withToken(g xl.GFID, t uint16) xl.GFID {
	g[0], g[1] = byte(t>>8), byte(t)
	g[8] = g[8]&0x3f | 0x80
	return g
}

// override routes token t to set until a layout newer than after arrives.
func (d *DHT2) override(t uint16, set int, after uint64) {
	d.ovMu.Lock()
	defer d.ovMu.Unlock()
	m := map[uint16]override{}
	if old := d.overrides.Load(); old != nil {
		maps.Copy(m, *old)
	}
	m[t] = override{set: set, after: after}
	d.overrides.Store(&m)
}
