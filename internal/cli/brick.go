package cli

import (
	"context"
	"errors"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/gluon-fs/gluon/brick"
)

func (a *app) brickCmd() *cobra.Command {
	var (
		endpoints []string
		vol       string
		index     int
		listen    string
		leaseTTL  time.Duration
		dbg       debugFlags
	)
	cmd := &cobra.Command{
		Use:   "brick --volume NAME --index I [--etcd ENDPOINTS] [--listen ADDR]",
		Short: "Serve one brick of a volume",
		Long: `Serve brick number I of volume NAME: its storage directory is the path
given for that brick in 'gluon volume create'. The brick registers its
address in etcd under a lease, so clients and the other bricks of its
replica set find it and 'gluon volume status' shows it online; the lease
lapses if the brick dies. A brick of a replicated volume also campaigns
to lead its replica set, and keeps a journal in DIR/.gluon/journal.

Runs until SIGTERM or SIGINT, then shuts down cleanly and exits 0. If etcd
is unreachable or the brick directory is unusable it exits 1.

Unless GOGC is set, the brick runs Go's garbage collector at GOGC=400:
a leader allocates for every write it replicates, and at the default
of 100 collecting took a fifth of its CPU. It costs the brick memory
(a few hundred MiB under a write load); GOGC=100 trades it back.`,
		Example: `  gluon brick --etcd etcd1:2379 --volume vol0 --index 0 --listen :24008
  gluon brick --volume vol0 --index 1 --log-format json --metrics :9568`,
		Args: exactArgs(),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return err
			}
			if index < 0 {
				return usagef("--index %d: must be >= 0", index)
			}
			if leaseTTL < 0 {
				return usagef("--lease-ttl %v: must not be negative", leaseTTL)
			}
			return dbg.check()
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			log := a.log
			brickGC()
			stop, err := dbg.serve(log, "brick")
			if err != nil {
				return err
			}
			defer stop()
			err = brick.Run(ctx, brick.Config{
				Etcd:     endpoints,
				Volume:   vol,
				Index:    index,
				Listen:   listen,
				Logger:   log,
				LeaseTTL: leaseTTL,
				Metrics:  dbg.registerer(),
			})
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				return nil // interrupted while starting
			}
			return err
		}),
	}
	etcdFlag(cmd, &endpoints)
	f := cmd.Flags()
	f.StringVar(&vol, "volume", "", "volume `NAME` (required)")
	f.IntVar(&index, "index", -1, "brick number `I` within the volume, from 0 (required)")
	f.StringVar(&listen, "listen", ":0", "`ADDR` to serve clients on; port 0 picks a free port (clients find it through etcd)")
	f.DurationVar(&leaseTTL, "lease-ttl", 0, "etcd lease that marks the brick online; 0 for the default")
	dbg.add(cmd)
	cmd.MarkFlagRequired("volume")
	cmd.MarkFlagRequired("index")
	return cmd
}

// brickGOGC is the brick's garbage-collection target unless $GOGC says
// otherwise. A leader allocates for every write it replicates, and at
// GOGC=100 collecting took a fifth of its CPU. The price is memory: in
// gluon bench, gluon up's processes (three bricks, the mount, etcd) peak
// at about 0.8-1.1 GiB together instead of about 0.5 GiB; GOGC=100 gives
// that back for CPU.
const brickGOGC = 400

func brickGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(brickGOGC)
	}
}
