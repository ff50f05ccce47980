// Package client opens a volume the way a mount does: it reads the volume
// from etcd, waits until its bricks are online, and builds the client
// translator graph over their addresses. The FUSE bridge, benchmarks and
// tests put the returned translator on top of whatever they drive.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Options configure Open.
type Options struct {
	Logger *slog.Logger // default slog.Default()
}

// Volume is an open volume: the top of its client graph.
type Volume struct {
	Info  *volume.Volume
	Top   xl.Xlator
	Graph *volfile.Graph
	close func() error
}

// Open opens the started volume name. It waits for every brick to be
// online until ctx is done; give ctx a deadline to bound the wait.
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
	st, err := waitOnline(ctx, store, v, log)
	if err != nil {
		return nil, err
	}
	addrs := make([]string, len(st))
	for i, b := range st {
		addrs[i] = b.Addr
	}
	g, err := volfile.ClientVolfile(v, addrs)
	if err != nil {
		return nil, err
	}
	top, closeGraph, err := volfile.Build(ctx, g, volfile.DefaultRegistry(log))
	if err != nil {
		return nil, fmt.Errorf("volume %s: client graph: %w", name, err)
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

// waitOnline returns the bricks' status once all are online.
func waitOnline(ctx context.Context, store *volume.Store, v *volume.Volume, log *slog.Logger) ([]volume.BrickStatus, error) {
	st, err := store.Status(ctx, v.Name)
	if err != nil {
		return nil, err
	}
	if offline(st) == nil {
		return st, nil
	}
	log.Info("waiting for bricks", "volume", v.Name, "offline", strings.Join(offline(st), " "))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates := store.WatchBricks(wctx, v.Name)
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("volume %s: bricks not online: %s: %w", v.Name, strings.Join(offline(st), ", "), ctx.Err())
		case next, ok := <-updates:
			if !ok {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("volume %s: bricks not online: %s: %w", v.Name, strings.Join(offline(st), ", "), err)
				}
				return nil, errors.New("volume " + v.Name + ": brick watch ended")
			}
			if len(next) != len(v.Bricks) {
				return nil, fmt.Errorf("volume %s changed or was deleted while waiting for its bricks", v.Name)
			}
			st = next
			if offline(st) == nil {
				return st, nil
			}
		}
	}
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
