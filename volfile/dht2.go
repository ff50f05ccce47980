package volfile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/dht2"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// layoutTimeout bounds reading or creating a layout while a graph is
// built.
const layoutTimeout = 30 * time.Second

// dht2 builds cluster/dht2 over the volume's replica sets, in set order.
// With scrub-interval (not 0), the client takes its turn at the volume's
// background scrub: whichever client claims it in etcd scrubs, at most
// once per interval across all clients (see dht2.SharedScrub).
// The layout comes from etcd and is watched; a volume mounted for the
// first time gets an even one over its sets (see EnsureLayout). The
// volume's definition is watched too: when add-brick gives it more sets,
// their subgraphs are built and a DHT2 over every set takes over, so that
// a mounted client reaches the tokens a rebalance moves to them.
func (env Env) dht2(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
	if len(children) == 0 {
		return nil, errors.New("wants the volume's replica sets as subvolumes, has none")
	}
	if err := CheckOptions(opts, []string{"volume", "scrub-interval", "scrub-grace"}, []string{"volume"}); err != nil {
		return nil, err
	}
	vol := opts["volume"]
	if err := volume.ValidName(vol); err != nil {
		return nil, fmt.Errorf("option volume: %w", err)
	}
	// The scrub is shared by the volume's clients (see sharedScrub).
	o := dht2.Options{Logger: env.Logger, Registerer: env.Metrics}
	var every time.Duration
	if v, ok := opts["scrub-interval"]; ok {
		d, err := volume.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("option scrub-interval: %q: want seconds or a duration, 0 for none", v)
		}
		every = d
	}
	if v, ok := opts["scrub-grace"]; ok {
		d, err := duration(v)
		if err != nil {
			return nil, fmt.Errorf("option scrub-grace: %v", err)
		}
		o.ScrubGrace = d
	}
	if env.Etcd == nil {
		return nil, errors.New("needs etcd for its layout")
	}
	store := dht2.NewEtcdStore(env.Etcd, vol)
	ctx, cancel := context.WithTimeout(context.Background(), layoutTimeout)
	defer cancel()
	if _, err := EnsureLayout(ctx, store, len(children)); err != nil {
		return nil, err
	}
	o.Layout = store
	return newGrowing(env, vol, children, o, every)
}

// LayoutStore is where a volume's layout is kept: dht2.EtcdStore, or
// dht2.MemStore in tests.
type LayoutStore interface {
	dht2.LayoutSource
	Save(ctx context.Context, l *dht2.Layout) error
}

// EnsureLayout returns the stored layout, first saving one that spreads
// the tokens evenly over sets if none is stored yet. Volumes get their
// layout when created; this covers volumes defined without the CLI and
// those that grew from one set, which needed none.
func EnsureLayout(ctx context.Context, s LayoutStore, sets int) (*dht2.Layout, error) {
	for {
		l, err := s.Load(ctx)
		if !errors.Is(err, dht2.ErrNoLayout) {
			return l, err
		}
		l = dht2.Even(sets)
		switch err := s.Save(ctx, l); {
		case err == nil:
			return l, nil
		case errors.Is(err, dht2.ErrConflict): // saved by another: read it
		default:
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// dht2Guard builds cluster/dht2-guard, the brick-side fence of tokens
// being moved, over the brick's store (or its replica set's server).
func (env Env) dht2Guard(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
	if len(children) != 1 {
		return nil, fmt.Errorf("wants one subvolume, has %d", len(children))
	}
	if err := CheckOptions(opts, nil, nil); err != nil {
		return nil, err
	}
	return dht2.NewGuard(children[0], dht2.GuardOptions{Logger: env.Logger})
}

// oldGrace is how long a replaced DHT2 lives on for the requests that
// were in flight on it.
const oldGrace = 10 * time.Second

// growing is cluster/dht2 for a volume that may gain sets: a DHT2 over
// the sets the volume has, replaced by one over more sets when add-brick
// adds them. Requests go to the newest; one in flight on an older DHT2
// finishes there, and the older one is closed oldGrace later. The
// subgraphs built for new sets are closed with the graph.
type growing struct {
	xl.Funnel
	env    Env
	vol    string
	opts   dht2.Options // Subvols: every set so far
	log    *slog.Logger
	cur    atomic.Pointer[dht2.DHT2]
	cancel context.CancelFunc
	done   chan struct{}
	scrubs sync.WaitGroup // the shared scrub's loop

	mu      sync.Mutex
	old     []*time.Timer // each closes a replaced DHT2
	oldWG   sync.WaitGroup
	closers []xl.Lifecycle // of the sets' subgraphs built here, in build order
	built   map[string]xl.Xlator
}

var (
	_ xl.Xlator    = (*growing)(nil)
	_ xl.Lifecycle = (*growing)(nil)
)

func newGrowing(env Env, vol string, sets []xl.Xlator, o dht2.Options, scrubEvery time.Duration) (*growing, error) {
	o.Subvols = slices.Clip(sets)
	d, err := dht2.New(o)
	if err != nil {
		return nil, err
	}
	g := &growing{env: env, vol: vol, opts: o, log: env.Logger.With("volume", vol), done: make(chan struct{}), built: map[string]xl.Xlator{}}
	g.cur.Store(d)
	g.Funnel = xl.Funnel{H: func(ctx context.Context, f *xl.Fop) *xl.Result {
		return xl.Dispatch(ctx, g.cur.Load(), f)
	}}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	store := volume.NewStore(env.Etcd)
	store.Logger = g.log
	go g.follow(store.WatchVolume(ctx, vol))
	if scrubEvery > 0 {
		s := &dht2.SharedScrub{Etcd: env.Etcd, Volume: vol, Interval: scrubEvery, Logger: g.log,
			Scrub: func(ctx context.Context) (dht2.ScrubStats, error) { return g.cur.Load().Scrub(ctx) }}
		g.scrubs.Go(func() { s.Run(ctx) })
	}
	return g, nil
}

// follow grows the DHT2 whenever the volume has more sets than it.
func (g *growing) follow(defs <-chan *volume.Volume) {
	defer close(g.done)
	for v := range defs {
		if v == nil || v.Sets() <= len(g.opts.Subvols) {
			continue
		}
		if err := g.grow(v); err != nil {
			g.log.Error("dht2: cannot reach the volume's new replica sets; remount to use them", "sets", v.Sets(), "err", err)
		}
	}
}

// grow builds the subgraphs of v's sets beyond those it has and puts a
// DHT2 over all of them in front.
func (g *growing) grow(v *volume.Volume) error {
	graph, err := ClientVolfile(v)
	if err != nil {
		return err
	}
	reg := DefaultRegistry(g.env)
	// The volume's cluster/dht2, under whatever the graph puts on top.
	top := graph.Node(g.vol + "-dht2")
	if top == nil || top.Type != TypeDHT2 {
		return fmt.Errorf("volume %s: the client graph has no %s-dht2", g.vol, g.vol)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	sets := slices.Clone(g.opts.Subvols)
	if len(top.Subvolumes) < len(sets) {
		return fmt.Errorf("volume %s: %d replica sets, fewer than the %d mounted", g.vol, len(top.Subvolumes), len(sets))
	}
	for _, name := range top.Subvolumes[len(sets):] {
		sub, err := graph.Subgraph(name)
		if err != nil {
			return err
		}
		for _, n := range sub.Nodes {
			if _, ok := g.built[n.Name]; ok {
				continue
			}
			x, err := buildNode(n, g.built, reg)
			if err != nil {
				return err
			}
			g.built[n.Name] = x
			if c, ok := x.(xl.Lifecycle); ok {
				g.closers = append(g.closers, c)
			}
		}
		sets = append(sets, g.built[name])
	}
	o := g.opts
	o.Subvols = sets
	d, err := dht2.New(o)
	if err != nil {
		return err
	}
	g.opts = o
	prev := g.cur.Swap(d)
	g.oldWG.Add(1)
	g.old = append(g.old, time.AfterFunc(oldGrace, func() {
		defer g.oldWG.Done()
		prev.Close()
	}))
	g.log.Info("dht2: reaching the volume's new replica sets", "sets", len(sets))
	return nil
}

// MigrateToken moves a token with the current DHT2 (see package
// rebalance).
func (g *growing) MigrateToken(ctx context.Context, token uint16, to int, progress func(dht2.MigrateProgress)) error {
	return g.cur.Load().MigrateToken(ctx, token, to, progress)
}

// Close stops following the volume and scrubbing, then closes every DHT2 and the
// subgraphs built for new sets, newest first.
func (g *growing) Close() error {
	g.cancel()
	<-g.done
	g.scrubs.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	errs := []error{g.cur.Load().Close()}
	for _, t := range g.old {
		if t.Stop() { // not fired: close it now
			t.Reset(0)
		}
	}
	g.oldWG.Wait()
	for _, c := range slices.Backward(g.closers) {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
