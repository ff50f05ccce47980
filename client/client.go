// Package client opens a volume the way a mount does: it reads the volume
// from etcd, builds the client translator graph (whose protocol clients
// find the bricks through their registrations in etcd), and waits until
// the volume answers. The FUSE bridge, benchmarks and tests put the
// returned translator on top of whatever they drive. Status reports a
// volume's bricks and replication state.
package client

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Options configure Open.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// Metrics, if set, receives the client translators' metrics.
	Metrics prometheus.Registerer
	// From, if set, names the graph node to build down from instead of
	// the volume's top: tools that move data, such as rebalance, start
	// below the performance translators.
	From string
}

// Volume is an open volume: the top of its client graph.
type Volume struct {
	Info  *volume.Volume
	Top   xl.Xlator
	Graph *volfile.Graph
	close func() error
}

// probeInterval spaces Open's attempts to reach the volume.
const probeInterval = 100 * time.Millisecond

// Open opens the started volume name and returns once it answers: a stat
// of its root succeeds, which for a replicated volume means a leader is
// elected and reachable with its quorum. It waits until ctx is done; give
// ctx a deadline to bound the wait. The caller keeps cli, which must stay
// open until Close.
func Open(ctx context.Context, cli *clientv3.Client, name string, opts Options) (*Volume, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	store := volume.NewStore(cli)
	store.Logger = log
	v, err := store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if v.State != volume.StateStarted {
		return nil, fmt.Errorf("volume %s is %s, not started (gluon volume start %s)", name, v.State, name)
	}
	g, err := volfile.ClientVolfile(v)
	if err != nil {
		return nil, err
	}
	if opts.From != "" {
		if g, err = g.Subgraph(opts.From); err != nil {
			return nil, fmt.Errorf("volume %s: %w", name, err)
		}
	}
	top, closeGraph, err := volfile.Build(ctx, g, volfile.DefaultRegistry(volfile.Env{Logger: log, Etcd: cli, Metrics: opts.Metrics}))
	if err != nil {
		return nil, fmt.Errorf("volume %s: client graph: %w", name, err)
	}
	if err := waitUsable(ctx, store, v, top, log); err != nil {
		closeGraph()
		return nil, err
	}
	return &Volume{Info: v, Top: top, Graph: g, close: closeGraph}, nil
}

// Close tears down the client graph.
func (v *Volume) Close() error {
	if v.close == nil {
		return nil
	}
	return v.close()
}

// waitUsable stats the volume's root until it answers or ctx ends; then
// it says which bricks are offline.
func waitUsable(ctx context.Context, store *volume.Store, v *volume.Volume, top xl.Xlator, log *slog.Logger) error {
	root := xl.WithCall(ctx, &xl.Call{})
	for attempt := 0; ; attempt++ {
		_, e := top.Getattr(root, xl.RootGFID)
		if e == 0 {
			return nil
		}
		if attempt == 0 {
			log.Info("waiting for the volume to answer", "volume", v.Name, "err", e)
		}
		t := time.NewTimer(probeInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return unusable(ctx, store, v, e)
		}
	}
}

// unusable explains why the volume did not answer before ctx ended.
func unusable(ctx context.Context, store *volume.Store, v *volume.Volume, last syscall.Errno) error {
	why := fmt.Sprintf("last error %v", last)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if st, err := store.Status(sctx, v.Name); err == nil {
		if off := offline(st); len(off) > 0 {
			why = "offline: " + strings.Join(off, ", ")
		} else if v.Replica > 1 {
			why = "no leader answered (" + why + ")"
		}
	}
	return fmt.Errorf("volume %s: not usable: %s: %w", v.Name, why, ctx.Err())
}

// offline names the bricks that are not online.
func offline(st []volume.BrickStatus) []string {
	var out []string
	for i, b := range st {
		if !b.Online || b.Addr == "" {
			out = append(out, fmt.Sprintf("brick %d (%s)", i, b.Brick))
		}
	}
	return out
}
