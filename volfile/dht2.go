package volfile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/dht2"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// layoutTimeout bounds reading or creating a layout while a graph is
// built.
const layoutTimeout = 30 * time.Second

// dht2 builds cluster/dht2 over the volume's replica sets, in set order.
// The layout comes from etcd and is watched; a volume mounted for the
// first time gets an even one over its sets (see EnsureLayout).
func (env Env) dht2(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
	if len(children) == 0 {
		return nil, errors.New("wants the volume's replica sets as subvolumes, has none")
	}
	if err := CheckOptions(opts, []string{"volume", "scrub-interval"}, []string{"volume"}); err != nil {
		return nil, err
	}
	vol := opts["volume"]
	if err := volume.ValidName(vol); err != nil {
		return nil, fmt.Errorf("option volume: %w", err)
	}
	o := dht2.Options{Subvols: children, Logger: env.Logger, Registerer: env.Metrics}
	if v, ok := opts["scrub-interval"]; ok {
		d, err := duration(v)
		if err != nil {
			return nil, fmt.Errorf("option scrub-interval: %v", err)
		}
		o.ScrubInterval = d
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
	return dht2.New(o)
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
