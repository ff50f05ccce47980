package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gluon-fs/gluon/volume"
)

// devBrickHost is the host gluon up's bricks are defined on.
const devBrickHost = "127.0.0.1"

func (a *app) upCmd() *cobra.Command {
	var (
		dir        string
		mnt        string
		volName    string
		nbricks    int
		replica    int
		distribute int
		etcdListen string
		timeout    time.Duration
		ff         fuseFlags
		dbg        debugFlags
	)
	cmd := &cobra.Command{
		Use:   "up [--dir DIR] [--mount MOUNTPOINT]",
		Short: "Run a complete single-machine cluster and mount it",
		Long: `Run everything a volume needs on this machine and mount it: an etcd
member (in this process), brick daemons (child processes), the volume
definition, and the FUSE client. The volume is replicated three ways by
default: three bricks, one elected leader that journals every write and
replicates it to the other two (JBR). --replica 1 makes a single-brick
volume. --distribute N makes N replica sets of --replica bricks each,
with files distributed over them by DHT2 (3 x 3 = 9 bricks for
--distribute 3). Prints "mounted VOLUME at MOUNTPOINT" once the mount is usable
(for a replicated volume, a leader is elected and answers); on SIGINT or
SIGTERM it unmounts, stops the bricks and etcd, and exits 0.

State lives under --dir: etcd data in DIR/etcd, brick N's files in
DIR/bricks/bN (its journal in DIR/bricks/bN/.gluon/journal). Without --dir
a temporary directory is used and removed on exit; with --dir, running
gluon up again brings the same volume back.

etcd serves clients on --etcd-listen (127.0.0.1:2379, or a free port if
that is taken; the URL is printed as "etcd at URL" on stderr), so 'gluon
volume' commands work against the running cluster.`,
		Example: `  gluon up --mount /mnt/gluon
  gluon up --replica 1 --dir /var/lib/gluon-dev --volume scratch --attr-timeout 0
  gluon up --distribute 3 --mount /mnt/gluon     # 3 x 3 distributed-replicate
  gluon volume status gv0     # from another terminal`,
		Args: exactArgs(),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if err := volume.ValidName(volName); err != nil {
				return usagef("--volume: %v", err)
			}
			if replica < 1 {
				return usagef("--replica %d: need at least 1", replica)
			}
			if distribute < 1 {
				return usagef("--distribute %d: need at least 1", distribute)
			}
			switch {
			case cmd.Flags().Changed("bricks") && cmd.Flags().Changed("distribute"):
				return usagef("--bricks and --distribute: give one (--distribute N makes N replica sets of --replica bricks)")
			case !cmd.Flags().Changed("bricks"):
				nbricks = replica * distribute
			case !cmd.Flags().Changed("replica"):
				replica = nbricks // --bricks N alone: one replica set of N
			}
			if nbricks < 1 {
				return usagef("--bricks %d: need at least 1", nbricks)
			}
			if nbricks%replica != 0 {
				return usagef("--bricks %d: not a multiple of --replica %d", nbricks, replica)
			}
			if timeout <= 0 {
				return usagef("--timeout %v: must be positive", timeout)
			}
			if err := ff.check(); err != nil {
				return err
			}
			return dbg.check()
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			u := &upRun{
				app: a, dir: dir, mnt: mnt, vol: volName, nbricks: nbricks, replica: replica,
				etcdListen: etcdListen, fallback: !cmd.Flags().Changed("etcd-listen"),
				timeout: timeout, ff: &ff, dbg: &dbg,
			}
			return u.run(cmd.Context())
		}),
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "keep state in `DIR` (default: a temporary directory, removed on exit)")
	f.StringVar(&mnt, "mount", "", "mount the volume at `MOUNTPOINT`, created if missing (default DIR/mnt)")
	f.StringVar(&volName, "volume", "gv0", "volume `NAME`")
	f.IntVar(&replica, "replica", 3, "replicas of every file: bricks per replica set (1: a single brick, no replication)")
	f.IntVar(&nbricks, "bricks", 0, "number of bricks (default --replica times --distribute; alone, --bricks N makes one replica set of N)")
	f.IntVar(&distribute, "distribute", 1, "replica sets to distribute files over (DHT2)")
	f.StringVar(&etcdListen, "etcd-listen", defaultEtcd, "`HOST:PORT` for etcd's clients")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the volume to be usable (bricks online, a leader elected)")
	ff.add(cmd)
	dbg.add(cmd)
	return cmd
}

// upRun is one run of gluon up.
type upRun struct {
	*app
	dir, mnt, vol string
	nbricks       int
	replica       int
	etcdListen    string
	fallback      bool
	timeout       time.Duration
	ff            *fuseFlags
	dbg           *debugFlags
}

func (u *upRun) run(ctx context.Context) (err error) {
	log := u.log
	dir := u.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "gluon-up-"); err != nil {
			return err
		}
		defer func() {
			// Never recurse into a mount that failed to go away.
			if busy, _ := mountedUnder(dir); busy != "" {
				log.Error("not removing state directory: something is still mounted in it", "dir", dir, "mount", busy)
				return
			}
			os.RemoveAll(dir)
		}()
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	mnt := u.mnt
	if mnt == "" {
		mnt = filepath.Join(dir, "mnt")
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	if mnt, err = mountDir(mnt); err != nil {
		return err
	}
	if ok, err := isMounted(mnt); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%s: a gluon volume is already mounted there", mnt)
	}

	stopDebug, err := u.dbg.serve(log, "up")
	if err != nil {
		return err
	}
	defer stopDebug()

	etcd, err := startDevEtcd(filepath.Join(dir, "etcd"), u.etcdListen, u.fallback, log)
	if err != nil {
		return err
	}
	defer etcd.Close()
	fmt.Fprintf(u.stderr, "etcd at %s\n", etcd.URL())

	cli, err := dialEtcd(ctx, []string{etcd.URL()})
	if err != nil {
		return err
	}
	defer cli.Close()
	store := volume.NewStore(cli)
	store.Logger = log
	if err := u.ensureVolume(ctx, store, dir); err != nil {
		return err
	}

	// A brick dying while we wait for the volume cuts the wait short.
	octx, cancel := context.WithTimeoutCause(ctx, u.timeout,
		fmt.Errorf("volume not usable after %v", u.timeout))
	defer cancel()
	octx, cancelDied := context.WithCancelCause(octx)
	defer cancelDied(nil)
	// The bricks share the CPUs. This process, the client every request
	// goes through, keeps them all: on 2 cores that measured best (random
	// reads 1.7x faster with the bricks at 1; the client at 1 lost more).
	bricks := &brickProcs{log: log, gomaxprocs: cpuShare(u.nbricks + 1), died: func(i int, err error) {
		cancelDied(fmt.Errorf("brick %d exited: %s", i, exitStatus(err)))
	}}
	defer bricks.stop()
	for i := range u.nbricks {
		if err := bricks.start(i, etcd.URL(), u.vol, u.logLevel, u.logFormat, u.stderr); err != nil {
			return err
		}
	}

	m, err := mountVolume(octx, cli, u.vol, mnt, u.ff.options(log, "gluon:"+u.vol), u.dbg.registerer(), log)
	if err != nil {
		if cause := context.Cause(octx); cause != nil && ctx.Err() == nil {
			return fmt.Errorf("%w: %v", cause, err)
		}
		if ctx.Err() != nil {
			return nil // interrupted while starting: not a failure
		}
		return err
	}
	if _, err := fmt.Fprintf(u.stdout, "mounted %s at %s\n", u.vol, mnt); err != nil {
		m.close(log)
		return err
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-m.gone:
		log.Info("unmounted from outside; shutting down", "dir", mnt)
	case err := <-etcd.Err():
		log.Error("etcd failed; shutting down", "err", err)
	}
	if err := m.close(log); err != nil {
		return err
	}
	log.Info("unmounted", "dir", mnt)
	return nil
}

// ensureVolume creates the dev volume, or reuses the one a previous run
// with the same --dir left, and starts it.
func (u *upRun) ensureVolume(ctx context.Context, store *volume.Store, dir string) error {
	v, err := store.Get(ctx, u.vol)
	switch {
	case errors.Is(err, volume.ErrNotFound):
		v = &volume.Volume{Name: u.vol, Replica: u.replica}
		for i := range u.nbricks {
			v.Bricks = append(v.Bricks, volume.Brick{
				Host: devBrickHost,
				Path: filepath.Join(dir, "bricks", fmt.Sprintf("b%d", i)),
			})
		}
		for _, b := range v.Bricks {
			if err := os.MkdirAll(b.Path, 0o755); err != nil {
				return fmt.Errorf("brick directory: %w", err)
			}
		}
		if err := store.Create(ctx, v); err != nil {
			return err
		}
		u.log.Info("created volume", "volume", v.Name, "id", v.ID)
	case err != nil:
		return err
	default:
		if len(v.Bricks) != u.nbricks || v.Replica != u.replica {
			return fmt.Errorf("volume %s in %s has %d bricks in replica sets of %d, not %d in sets of %d (use the same --replica and --bricks, or another --dir)",
				v.Name, dir, len(v.Bricks), v.Replica, u.nbricks, u.replica)
		}
		u.log.Info("reusing volume", "volume", v.Name, "id", v.ID)
	}
	if v.State != volume.StateStarted {
		return store.SetState(ctx, v.Name, volume.StateStarted)
	}
	return nil
}

// mountedUnder returns a mount point at or below dir, if there is one.
func mountedUnder(dir string) (string, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if p := unescapeMount(f[4]); p == dir || strings.HasPrefix(p, dir+"/") {
			return p, nil
		}
	}
	return "", nil
}
