// Package brick runs a brick daemon: it reads its volume from etcd, builds
// the brick's translator graph from the generated volfile, serves it with
// protocol/server and advertises its address under a lease, so clients
// and the other bricks of its replica set find it, and a dead brick drops
// out of the volume's status by itself. A brick of a replicated volume
// campaigns in its set's election, keeps a journal under its directory
// (volfile.JournalDir) and replicates through its peers; see package
// volfile for the graph. It also reconciles: as its set's leader it
// scrubs the set and resyncs followers in full, as a follower it
// fast-forwards its log when told to (recon.go).
package brick

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/internal/sysmon"
	"github.com/gluon-fs/gluon/recon"
	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
)

// DefaultLeaseTTL is how long a brick stays listed after it stops renewing
// its registration (crash, partition).
const DefaultLeaseTTL = 10 * time.Second

// Config configures Run.
type Config struct {
	Etcd   []string // etcd endpoints
	Volume string
	Index  int // the brick's position in the volume's brick list
	// Listen is the TCP address to serve on, e.g. "127.0.0.1:0". Empty
	// means every interface on a free port. When the host part is empty or
	// unspecified (0.0.0.0, ::), clients are told the brick's own host.
	Listen   string
	Logger   *slog.Logger  // default slog.Default()
	LeaseTTL time.Duration // default DefaultLeaseTTL
	// Metrics, if set, receives the brick's translators' metrics.
	Metrics prometheus.Registerer
}

// etcdTimeout bounds each of Run's etcd round trips, so that an etcd that
// stops answering is an error rather than a hang.
const etcdTimeout = 10 * time.Second

// Run serves brick cfg.Index of cfg.Volume until ctx ends or the volume is
// stopped or deleted; then it deregisters, closes the server and the graph
// and returns nil. Errors: etcd unreachable (within volume.ConnectTimeout),
// a missing or stopped volume, a bad brick index, a brick directory that
// posix cannot use, an address in use, or another daemon serving the brick
// for longer than two lease TTLs. A brick told to fast-forward its log
// for a full resync rebuilds its graph and serves again, on a new port.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("volume", cfg.Volume, "brick", cfg.Index)
	sysmon.Relax(log)
	ttl := cfg.LeaseTTL
	if ttl == 0 {
		ttl = DefaultLeaseTTL
	}
	if ttl < 0 {
		return fmt.Errorf("brick: negative lease TTL %v", ttl)
	}

	cli, err := volume.Connect(ctx, cfg.Etcd)
	if err != nil {
		return fmt.Errorf("brick: %w", err)
	}
	defer cli.Close()
	store := volume.NewStore(cli)
	store.Logger = log
	gctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	v, err := store.Get(gctx, cfg.Volume)
	cancel()
	if err != nil {
		return fmt.Errorf("brick: %w", err)
	}
	if cfg.Index < 0 || cfg.Index >= len(v.Bricks) {
		return fmt.Errorf("brick: volume %s has no brick %d (it has %d)", v.Name, cfg.Index, len(v.Bricks))
	}
	if v.State == volume.StateStopped {
		return fmt.Errorf("brick: volume %s is stopped", v.Name)
	}
	m := newReconMetrics(cfg.Metrics, log, v.Name, cfg.Index)
	defer m.group.Unregister()
	for {
		ff, err := serve(ctx, cfg, cli, store, v, m, ttl, log)
		if err != nil || ff == nil {
			return err
		}
		// The leader found the entries this brick lacks pruned: move the
		// log on and serve again; the leader repairs the store. (Or this
		// brick was elected while being resynced: serve again, behind
		// another leader.)
		if err := fastForward(ctx, cli, v, cfg.Index, *ff, log); err != nil {
			return fmt.Errorf("brick %s: fast-forwarding the journal: %w", v.Bricks[cfg.Index], err)
		}
		gctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		nv, err := store.Get(gctx, cfg.Volume)
		cancel()
		if err != nil {
			return fmt.Errorf("brick: %w", err)
		}
		if nv.ID != v.ID || nv.State == volume.StateStopped {
			return nil
		}
		v = nv
	}
}

// serve builds the brick's graph and serves it until ctx ends or the
// volume is stopped or deleted (nil, nil), or until the reconciler asks
// for the log to be fast-forwarded (the mark, nil).
func serve(ctx context.Context, cfg Config, cli *clientv3.Client, store *volume.Store, v *volume.Volume, m *reconMetrics, ttl time.Duration, log *slog.Logger) (*recon.Resync, error) {
	b := v.Bricks[cfg.Index]
	g := volfile.BrickVolfile(v, cfg.Index)
	srvNode := g.Top()
	if srvNode.Type != volfile.TypeServer || len(srvNode.Subvolumes) != 1 {
		return nil, fmt.Errorf("brick %s: volfile top is %s, want %s over one subvolume", b, srvNode.Type, volfile.TypeServer)
	}
	export, err := g.Subgraph(srvNode.Subvolumes[0])
	if err != nil {
		return nil, fmt.Errorf("brick %s: %w", b, err)
	}
	env := volfile.Env{Logger: log, Etcd: cli, Metrics: cfg.Metrics}
	top, closeGraph, err := volfile.Build(ctx, export, volfile.DefaultRegistry(env))
	if err != nil {
		return nil, fmt.Errorf("brick %s: %w", b, err)
	}
	defer closeGraph()

	listen := cfg.Listen
	if listen == "" {
		listen = ":0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("brick %s: %w", b, err)
	}
	addr := advertised(ln.Addr().(*net.TCPAddr), b.Host)
	srv := server.New(top, server.Options{Volume: export.Top().Name, Logger: log})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var serveErr error
	serving := true
	stopServer := func() error {
		srv.Close()
		if serving {
			serveErr, serving = <-served, false
		}
		return serveErr
	}

	reg, err := register(ctx, store, v.Name, cfg.Index, addr, ttl, log)
	if err != nil {
		stopServer()
		return nil, fmt.Errorf("brick %s: %w", b, err)
	}
	log.Info("brick online", "addr", addr, "dir", b.Path)

	rctx, stopRecon := context.WithCancel(ctx)
	reconDone := make(chan struct{})
	fastFwd := make(chan recon.Resync, 1)
	if v.Replica > 1 {
		set := cfg.Index / v.Replica
		rc := &reconciler{
			cli: cli, store: store, vol: v.Name, set: set, self: cfg.Index % v.Replica, replicas: v.Replica,
			top: top, log: log, m: m, fastFwd: fastFwd,
			resyncOpts: recon.VolumeOptions{Logger: log, Set: set},
		}
		go func() { defer close(reconDone); rc.run(rctx) }()
	} else {
		close(reconDone)
	}
	defer func() { stopRecon(); <-reconDone }()

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	changes := store.WatchVolume(wctx, v.Name)
	var ff *recon.Resync
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("brick stopping")
			break wait
		case serveErr = <-served:
			serving = false
			log.Error("brick server failed", "err", serveErr)
			break wait
		case mk := <-fastFwd:
			ff = &mk
			break wait
		case nv, ok := <-changes:
			switch {
			case !ok: // ctx ended
				log.Info("brick stopping")
				break wait
			case nv == nil || nv.ID != v.ID:
				log.Info("volume deleted; brick stopping")
				break wait
			case nv.State == volume.StateStopped:
				log.Info("volume stopped; brick stopping")
				break wait
			case !maps.Equal(nv.Options, v.Options):
				log.Warn("volume options changed; they take effect when the brick restarts", "options", nv.Options)
				v = nv
			}
		}
	}
	stopRecon()
	<-reconDone
	// Leave the volume's status first, so clients stop choosing us.
	if err := reg.Close(); err != nil {
		log.Warn("brick deregistration failed; the lease expires on its own", "err", err, "ttl", ttl)
	}
	err = errors.Join(stopServer(), closeGraph())
	stopWatch()
	for range changes {
	}
	if err != nil {
		return nil, fmt.Errorf("brick %s: %w", b, err)
	}
	return ff, nil
}

// advertised is the address clients dial: the listener's IP unless it is a
// wildcard, then the brick's host.
func advertised(a *net.TCPAddr, brickHost string) string {
	host := brickHost
	if a.IP != nil && !a.IP.IsUnspecified() {
		host = a.IP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(a.Port))
}

// register claims the brick's liveness key. A restarted daemon may find
// its predecessor's registration still held by an unexpired lease, so a
// busy brick is retried for two TTLs: long enough for a dead holder's
// lease to expire, short enough to report a live duplicate.
func register(ctx context.Context, store *volume.Store, vol string, index int, addr string, ttl time.Duration, log *slog.Logger) (*volume.Registration, error) {
	deadline := time.Now().Add(2 * ttl)
	for {
		rctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		reg, err := store.Register(rctx, vol, index, addr, ttl)
		cancel()
		if !errors.Is(err, volume.ErrBrickBusy) || time.Now().After(deadline) {
			return reg, err
		}
		log.Info("waiting for a previous registration to expire", "err", err)
		t := time.NewTimer(ttl / 4)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
