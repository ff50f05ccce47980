// Package rebalance runs a volume's rebalance: it moves DHT2 tokens, one
// at a time, to the layout that spreads them evenly over the volume's
// replica sets (after add-brick) or off a set being removed
// (remove-brick), while clients keep using the volume.
//
// The worker runs in the process that asks for it ('gluon volume
// rebalance V start' in the foreground): it opens the volume's client
// graph in process, and for each token calls DHT2.MigrateToken, then
// saves the layout with that token's new home and the version bumped
// (tokens that move quickly, as empty ones do, are saved together within
// Options.PublishEvery).
// Its progress (tokens, files, bytes, time spent) is kept in etcd
// (volume.Rebalance), where status reads it and stop asks it to end
// after the token in hand. One worker runs per volume (a leased claim);
// a worker that dies leaves the layout consistent, every token either
// moved and saved or not yet, and starting again resumes from the stored
// layout.
package rebalance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/dht2"
)

// Options configure Run.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// Progress, if set, is called with the record after every token the
	// worker moves, and when it ends.
	Progress func(*volume.Rebalance)
	// ClaimTTL is the worker claim's lease: a dead worker can be replaced
	// after about this long. Default 10s.
	ClaimTTL time.Duration
	// SaveEvery spaces the progress records written to etcd. Default 1s.
	SaveEvery time.Duration
	// PublishEvery bounds how long a moved token waits for the stored
	// layout to say so: the layout is saved, its version bumped, once a
	// moved token has waited this long (and before anything else). Most
	// tokens of a young volume are empty and move in well under a
	// millisecond; one etcd write per token would take longer than the
	// move. A client that meets a moved token waits for the layout, so
	// keep it short. Default 10ms; 1ns saves after every token.
	PublishEvery time.Duration
}

// Target returns the layout a rebalance of kind (set: the set drained by
// KindRemove) over a volume of sets sets leads to from cur.
func Target(cur *dht2.Layout, kind string, set, sets int) (*dht2.Layout, error) {
	if cur.Sets > sets {
		return nil, fmt.Errorf("the layout names %d replica sets, the volume has %d", cur.Sets, sets)
	}
	if cur.Sets < sets {
		// New sets own nothing yet; naming them moves nothing.
		c := cur.Clone()
		c.Sets = sets
		cur = c
	}
	switch kind {
	case volume.KindRebalance:
		return cur.Rebalanced(sets), nil
	case volume.KindRemove:
		if set < 0 || set >= sets || sets < 2 {
			return nil, fmt.Errorf("cannot drain replica set %d of %d", set, sets)
		}
		return cur.Drained(set), nil
	}
	return nil, fmt.Errorf("unknown rebalance kind %q", kind)
}

// migrator is what cluster/dht2 in a distributed volume's client graph
// does.
type migrator interface {
	MigrateToken(ctx context.Context, token uint16, to int, progress func(dht2.MigrateProgress)) error
}

// openDHT2 opens the volume's client graph from its cluster/dht2 down
// (the translators above it, such as write-behind, have no part in moving
// tokens) and returns the DHT2, the volume's sets and what closes the
// graph.
func openDHT2(ctx context.Context, cli *clientv3.Client, name string, log *slog.Logger) (m migrator, sets int, closeAll func() error, err error) {
	v, err := volume.NewStore(cli).Get(ctx, name)
	if err != nil {
		return nil, 0, nil, err
	}
	if v.Sets() < 2 {
		return nil, 0, nil, fmt.Errorf("volume %s: %d replica set(s): nothing to rebalance over", name, v.Sets())
	}
	vol, err := client.Open(ctx, cli, name, client.Options{Logger: log, From: name + "-dht2"})
	if err != nil {
		return nil, 0, nil, err
	}
	m, ok := vol.Top.(migrator)
	if !ok {
		vol.Close()
		return nil, 0, nil, fmt.Errorf("volume %s: its client graph has no cluster/dht2", name)
	}
	return m, vol.Info.Sets(), vol.Close, nil
}

// Run starts (or resumes) the volume's rebalance of kind and runs it
// until it completes, is stopped (gluon volume rebalance V stop, or ctx
// ends), or fails; it returns the final record. Only one process runs a
// volume's rebalance at a time: Run fails wrapping volume.ErrWorkerBusy
// if another does.
func Run(ctx context.Context, cli *clientv3.Client, name, kind string, set int, opts Options) (*volume.Rebalance, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.ClaimTTL <= 0 {
		opts.ClaimTTL = 10 * time.Second
	}
	if opts.SaveEvery <= 0 {
		opts.SaveEvery = time.Second
	}
	if opts.PublishEvery <= 0 {
		opts.PublishEvery = 10 * time.Millisecond
	}
	store := volume.NewStore(cli)
	store.Logger = log
	claim, err := store.ClaimRebalance(ctx, name, opts.ClaimTTL)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := claim.Release(); err != nil {
			log.Warn("rebalance: releasing the worker claim; it expires with its lease", "err", err)
		}
	}()
	r, err := store.StartRebalance(ctx, name, kind, set)
	if err != nil {
		return nil, err
	}
	w := &worker{store: store, name: name, r: r, opts: opts, log: log.With("volume", name, "rebalance", r.ID)}
	// The claim lost means another worker may take over: stop at once.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-claim.Lost:
			cancel()
		case <-wctx.Done():
		}
	}()
	runErr := w.run(wctx, cli)
	// Record the outcome even if ctx ended.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), volume.ConnectTimeout)
	defer fcancel()
	final, err := store.UpdateRebalance(fctx, name, r.ID, func(rec *volume.Rebalance) error {
		w.fold(rec)
		switch {
		case runErr == nil:
			rec.State = volume.RebalanceCompleted
		case errors.Is(runErr, errStopped) || ctx.Err() != nil:
			rec.State = volume.RebalanceStopped
		default:
			rec.State, rec.Error = volume.RebalanceFailed, runErr.Error()
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(runErr, err)
	}
	if opts.Progress != nil {
		opts.Progress(final)
	}
	if errors.Is(runErr, errStopped) || ctx.Err() != nil {
		runErr = nil // a stop is not a failure
	}
	return final, runErr
}

var errStopped = errors.New("rebalance stopped")

type worker struct {
	store *volume.Store
	name  string
	r     *volume.Rebalance // as last read or written
	opts  Options
	log   *slog.Logger

	// Progress not yet written to etcd.
	moved        int
	files, bytes int64
	elapsed      time.Duration
}

// fold adds the unwritten progress to rec.
func (w *worker) fold(rec *volume.Rebalance) {
	rec.TokensMoved += w.moved
	rec.Files += w.files
	rec.Bytes += w.bytes
	rec.Elapsed += w.elapsed
	w.moved, w.files, w.bytes, w.elapsed = 0, 0, 0, 0
}

// flush writes the progress and reads the stop flag.
func (w *worker) flush(ctx context.Context, total int) error {
	r, err := w.store.UpdateRebalance(ctx, w.name, w.r.ID, func(rec *volume.Rebalance) error {
		w.fold(rec)
		if total >= 0 {
			rec.TokensTotal = total
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.r = r
	if r.Stop {
		return errStopped
	}
	return nil
}

func (w *worker) run(ctx context.Context, cli *clientv3.Client) error {
	m, sets, closeAll, err := openDHT2(ctx, cli, w.name, w.log)
	if err != nil {
		return err
	}
	defer closeAll()
	if sets != w.r.Sets {
		return fmt.Errorf("volume %s now has %d replica sets, not the %d this rebalance started with; start it again", w.name, sets, w.r.Sets)
	}
	if _, err := volfile.EnsureLayout(ctx, dht2.NewEtcdStore(cli, w.name), sets); err != nil {
		return err
	}
	lw := &layoutWriter{cli: cli, key: dht2.LayoutKey(w.name)}
	cur, err := lw.load(ctx)
	if err != nil {
		return err
	}
	target, err := Target(cur, w.r.Kind, w.r.Set, sets)
	if err != nil {
		return fmt.Errorf("volume %s: %w", w.name, err)
	}
	moves := cur.Moves(target)
	w.log.Info("rebalance: moving tokens", "tokens", len(moves), "layout", cur.Version)
	if err := w.flush(ctx, w.r.TokensMoved+len(moves)); err != nil {
		return err
	}
	// Moved tokens not yet in the stored layout, since when, and what
	// they carried: progress counts tokens once their layout is saved.
	var pending []uint16
	var since time.Time
	var files, bytes int64
	publish := func(ctx context.Context) error {
		if len(pending) == 0 {
			return nil
		}
		n := withMoves(cur, target, pending)
		if err := lw.save(ctx, n); err != nil {
			return err
		}
		w.moved += len(pending)
		w.files += files
		w.bytes += bytes
		cur, pending, files, bytes = n, pending[:0], 0, 0
		return nil
	}
	// publishLast saves what moved before the worker ends, even if ctx
	// has: those tokens are fenced where they were.
	publishLast := func() error {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), volume.ConnectTimeout)
		defer cancel()
		return publish(pctx)
	}
	last, tick := time.Now(), time.Now()
	for _, t := range moves {
		to := target.Set(t)
		var p dht2.MigrateProgress
		if err := m.MigrateToken(ctx, t, to, func(mp dht2.MigrateProgress) { p = mp }); err != nil {
			return errors.Join(fmt.Errorf("token %d to replica set %d: %w", t, to, err), publishLast())
		}
		if len(pending) == 0 {
			since = time.Now()
		}
		pending = append(pending, t)
		files += int64(p.Files + p.Dirs)
		bytes += p.Bytes
		if time.Since(since) >= w.opts.PublishEvery {
			if err := publish(ctx); err != nil {
				return errors.Join(err, publishLast())
			}
		}
		now := time.Now()
		w.elapsed += now.Sub(tick)
		tick = now
		if now.Sub(last) >= w.opts.SaveEvery {
			if err := publish(ctx); err != nil {
				return errors.Join(err, publishLast())
			}
			if err := w.flush(ctx, -1); err != nil {
				return err
			}
			last = time.Now()
			if w.opts.Progress != nil {
				w.opts.Progress(w.r)
			}
		}
		if err := ctx.Err(); err != nil {
			return errors.Join(err, publishLast())
		}
	}
	if err := publish(ctx); err != nil {
		return errors.Join(err, publishLast())
	}
	return w.flush(ctx, -1)
}

// layoutWriter saves the layout with one compare-and-swap round trip:
// only the worker writes the layout while it runs, so it knows the
// revision of its last write. A conflict means another wrote it (a
// worker that lost its claim, or an operator), and is an error rather
// than something to overwrite.
type layoutWriter struct {
	cli *clientv3.Client
	key string
	rev int64
}

// load reads the layout and remembers its revision.
func (w *layoutWriter) load(ctx context.Context) (*dht2.Layout, error) {
	r, err := w.cli.Get(ctx, w.key)
	if err != nil {
		return nil, fmt.Errorf("load layout: %w", err)
	}
	if len(r.Kvs) == 0 {
		return nil, dht2.ErrNoLayout
	}
	l := &dht2.Layout{}
	if err := l.UnmarshalBinary(r.Kvs[0].Value); err != nil {
		return nil, fmt.Errorf("layout %s: %w", w.key, err)
	}
	w.rev = r.Kvs[0].ModRevision
	return l, nil
}

func (w *layoutWriter) save(ctx context.Context, l *dht2.Layout) error {
	b, err := l.MarshalBinary()
	if err != nil {
		return err
	}
	r, err := w.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(w.key), "=", w.rev)).
		Then(clientv3.OpPut(w.key, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("save layout version %d: %w", l.Version, err)
	}
	if !r.Succeeded {
		return fmt.Errorf("save layout version %d: %w", l.Version, dht2.ErrConflict)
	}
	w.rev = r.Header.Revision
	return nil
}

// withMoves is cur with the moved tokens homed at their new sets (in
// target) and the version bumped.
func withMoves(cur, target *dht2.Layout, moved []uint16) *dht2.Layout {
	n := cur.Clone()
	n.Version++
	n.Sets = max(n.Sets, target.Sets)
	for _, t := range moved {
		n.Owner[t] = uint16(target.Set(t))
	}
	return n
}

// CommitRemove drops the replica set made of bricks from the volume, once
// it owns no token (remove-brick ... start has drained it), and the
// layout's numbering of sets with it, in one transaction.
func CommitRemove(ctx context.Context, cli *clientv3.Client, name string, bricks []volume.Brick) (*volume.Volume, error) {
	store := volume.NewStore(cli)
	v, err := store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	set, err := v.SetOf(bricks)
	if err != nil {
		return nil, err
	}
	return store.RemoveSet(ctx, name, set, func(v *volume.Volume) ([]clientv3.Cmp, []clientv3.Op, error) {
		key := dht2.LayoutKey(name)
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return nil, nil, fmt.Errorf("volume %s: layout: %w", name, err)
		}
		cmp := clientv3.Compare(clientv3.ModRevision(key), "=", 0)
		if len(resp.Kvs) == 0 {
			return []clientv3.Cmp{cmp}, nil, nil // never distributed: nothing to drain
		}
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
		l := &dht2.Layout{}
		if err := l.UnmarshalBinary(resp.Kvs[0].Value); err != nil {
			return nil, nil, fmt.Errorf("volume %s: layout: %w", name, err)
		}
		if set >= l.Sets { // added and never given tokens
			return []clientv3.Cmp{cmp}, nil, nil
		}
		if n := l.Counts()[set]; n > 0 {
			return nil, nil, fmt.Errorf("volume %s: replica set %d still homes %d tokens; drain it first (gluon volume remove-brick %s ... start)", name, set, n, name)
		}
		nl, err := l.Without(set)
		if err != nil {
			return nil, nil, err
		}
		b, err := nl.MarshalBinary()
		if err != nil {
			return nil, nil, err
		}
		return []clientv3.Cmp{cmp}, []clientv3.Op{clientv3.OpPut(key, string(b))}, nil
	})
}
