package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/term"

	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/volume/rebalance"
	"github.com/gluon-fs/gluon/xlators/dht2"
)

// volumeTimeout bounds one volume command's etcd round trips.
const volumeTimeout = 30 * time.Second

func (a *app) volumeCmd() *cobra.Command {
	var endpoints []string
	cmd := &cobra.Command{
		Use:   "volume COMMAND",
		Short: "Create, start, stop, delete and inspect volumes",
		Long: `Manage the volume definitions kept in etcd. A volume is a list of
bricks (HOST:PATH directories served by 'gluon brick'), grouped into
replica sets. Clients mount started volumes.`,
		Example: `  gluon volume create vol0 server1:/data/b0
  gluon volume start vol0
  gluon volume status vol0
  gluon volume --etcd 10.0.0.5:2379 list`,
		RunE: groupRun,
	}
	cmd.PersistentFlags().StringSliceVar(&endpoints, "etcd", etcdEndpoints(),
		"etcd endpoints, comma-separated; $GLUON_ETCD sets the default")
	// withEtcd runs fn with an etcd client and a bounded context.
	withEtcd := func(fn func(ctx context.Context, cli *clientv3.Client, args []string) error) func(*cobra.Command, []string) error {
		return a.run(func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), volumeTimeout)
			defer cancel()
			cli, err := dialEtcd(ctx, endpoints)
			if err != nil {
				return err
			}
			defer cli.Close()
			return fn(ctx, cli, args)
		})
	}
	// withStore runs fn against the volume store with a bounded context.
	withStore := func(fn func(ctx context.Context, s *volume.Store, args []string) error) func(*cobra.Command, []string) error {
		return withEtcd(func(ctx context.Context, cli *clientv3.Client, args []string) error {
			s := volume.NewStore(cli)
			s.Logger = a.log
			return fn(ctx, s, args)
		})
	}
	nameArg := func(cmd *cobra.Command, args []string) error {
		if err := exactArgs("NAME")(cmd, args); err != nil {
			return err
		}
		if err := volume.ValidName(args[0]); err != nil {
			return usageError{err}
		}
		return nil
	}
	setState := func(state, verb string) func(context.Context, *volume.Store, []string) error {
		return func(ctx context.Context, s *volume.Store, args []string) error {
			if err := s.SetState(ctx, args[0], state); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "%s volume %s\n", verb, args[0])
			return err
		}
	}

	cmd.AddCommand(
		&cobra.Command{
			Use:   "create NAME [replica N] HOST:PATH...",
			Short: "Define a new volume",
			Long: `Define volume NAME over the given bricks. Each brick is a directory
HOST:PATH (absolute path; [IPV6]:PATH for IPv6 hosts) that 'gluon brick'
on HOST serves. With "replica N", every N consecutive bricks form a replica
set, so the brick count must be a multiple of N. A replica set elects a
leader through etcd, which journals every write and replicates it to the
others (JBR); a write is acknowledged once a quorum holds it.

With more bricks than one set, files are distributed over the sets by
DHT2: every directory lives on one set, chosen through a layout of 65,536
tokens kept in etcd, and its files live with it.`,
			Example: `  gluon volume create vol0 server1:/data/b0
  gluon volume create vol1 replica 3 s1:/data/b1 s2:/data/b1 s3:/data/b1
  gluon volume create vol2 replica 3 s1:/d/b1 s2:/d/b1 s3:/d/b1 s1:/d/b2 s2:/d/b2 s3:/d/b2`,
			Args: createArgs,
			RunE: withStore(func(ctx context.Context, s *volume.Store, args []string) error {
				v, _ := parseCreate(args)
				if err := s.Create(ctx, v); err != nil {
					return err
				}
				if v.Sets() > 1 {
					if _, err := volfile.EnsureLayout(ctx, dht2.NewEtcdStore(s.Client(), v.Name), v.Sets()); err != nil {
						return fmt.Errorf("volume %s: layout: %w", v.Name, err)
					}
				}
				_, err := fmt.Fprintf(a.stdout, "created volume %s (%s)\n", v.Name, v.ID)
				return err
			}),
		},
		&cobra.Command{
			Use:     "start NAME",
			Short:   "Start a volume: its bricks may serve and clients may mount it",
			Long:    "Mark volume NAME started. Bricks serve only started volumes, and clients mount only started volumes.",
			Example: "  gluon volume start vol0",
			Args:    nameArg,
			RunE:    withStore(setState(volume.StateStarted, "started")),
		},
		&cobra.Command{
			Use:     "stop NAME",
			Short:   "Stop a volume",
			Long:    "Mark volume NAME stopped: its bricks stop serving it and new mounts are refused.",
			Example: "  gluon volume stop vol0",
			Args:    nameArg,
			RunE:    withStore(setState(volume.StateStopped, "stopped")),
		},
		&cobra.Command{
			Use:   "delete NAME",
			Short: "Delete a volume's definition",
			Long: `Delete volume NAME from etcd. Its bricks' directories, and the data in
them, are left alone.`,
			Example: "  gluon volume stop vol0 && gluon volume delete vol0",
			Args:    nameArg,
			RunE: withStore(func(ctx context.Context, s *volume.Store, args []string) error {
				if err := s.Delete(ctx, args[0]); err != nil {
					return err
				}
				_, err := fmt.Fprintf(a.stdout, "deleted volume %s\n", args[0])
				return err
			}),
		},
		&cobra.Command{
			Use:     "info [NAME]",
			Short:   "Show volume definitions",
			Long:    "Show the definition of volume NAME, or of every volume.",
			Example: "  gluon volume info vol0",
			Args: func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return nil
				}
				return nameArg(cmd, args)
			},
			RunE: withStore(func(ctx context.Context, s *volume.Store, args []string) error {
				var vols []*volume.Volume
				if len(args) == 1 {
					v, err := s.Get(ctx, args[0])
					if err != nil {
						return err
					}
					vols = append(vols, v)
				} else {
					var err error
					if vols, err = s.List(ctx); err != nil {
						return err
					}
					if len(vols) == 0 {
						_, err := fmt.Fprintln(a.stdout, "no volumes")
						return err
					}
				}
				for i, v := range vols {
					if i > 0 {
						fmt.Fprintln(a.stdout)
					}
					writeInfo(a.stdout, v)
					if err := writeLayout(ctx, a.stdout, s, v); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		&cobra.Command{
			Use:     "list",
			Short:   "List volume names",
			Long:    "List the names of all volumes, one per line.",
			Example: "  gluon volume list",
			Args:    exactArgs(),
			RunE: withStore(func(ctx context.Context, s *volume.Store, args []string) error {
				vols, err := s.List(ctx)
				if err != nil {
					return err
				}
				for _, v := range vols {
					fmt.Fprintln(a.stdout, v.Name)
				}
				return nil
			}),
		},
		a.volumeStatusCmd(withEtcd, nameArg),
		a.addBrickCmd(withStore),
		a.rebalanceCmd(&endpoints, withEtcd),
		a.removeBrickCmd(&endpoints, withEtcd),
		&cobra.Command{
			Use:   "set NAME KEY VALUE",
			Short: "Set a volume option",
			Long: `Set option KEY of volume NAME to VALUE. Bricks and clients read the
options when they start, so a change takes effect when they restart.
Options (default in brackets):

` + optionsHelp(),
			Example: `  gluon volume set vol0 jbr.quorum 3
  gluon volume set vol0 jbr.lease-ttl 5s`,
			Args: func(cmd *cobra.Command, args []string) error {
				if err := exactArgs("NAME", "KEY", "VALUE")(cmd, args); err != nil {
					return err
				}
				if err := volume.ValidName(args[0]); err != nil {
					return usageError{err}
				}
				if _, ok := volume.LookupOption(args[1]); !ok {
					// The value is checked against the volume once it is read.
					return usageError{volume.CheckOption(&volume.Volume{Replica: 1}, args[1], args[2])}
				}
				return nil
			},
			RunE: withStore(func(ctx context.Context, s *volume.Store, args []string) error {
				if _, err := s.SetOption(ctx, args[0], args[1], args[2]); err != nil {
					if errors.Is(err, volume.ErrBadOption) {
						return usageError{err}
					}
					return err
				}
				_, err := fmt.Fprintf(a.stdout, "volume %s: set %s to %s\n", args[0], args[1], args[2])
				return err
			}),
		},
	)
	return cmd
}

// createArgs checks "NAME [replica N] HOST:PATH..." before contacting etcd.
func createArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usagef("%s: missing NAME and bricks", cmdName(cmd))
	}
	_, err := parseCreate(args)
	return err
}

// parseCreate turns create's arguments into a new volume, with usage
// errors for anything malformed.
func parseCreate(args []string) (*volume.Volume, error) {
	v := &volume.Volume{Name: args[0], Replica: 1}
	if err := volume.ValidName(v.Name); err != nil {
		return nil, usageError{err}
	}
	rest := args[1:]
	if len(rest) > 0 && rest[0] == "replica" {
		if len(rest) < 2 {
			return nil, usagef("replica: missing count")
		}
		n, err := strconv.Atoi(rest[1])
		if err != nil || n < 1 {
			return nil, usagef("replica %q: want a count of at least 1", rest[1])
		}
		v.Replica, rest = n, rest[2:]
	}
	if len(rest) == 0 {
		return nil, usagef("volume %s: no bricks given (HOST:PATH...)", v.Name)
	}
	for _, s := range rest {
		b, err := volume.ParseBrick(s)
		if err != nil {
			return nil, usageError{err}
		}
		v.Bricks = append(v.Bricks, b)
	}
	v.State = volume.StateCreated
	if err := v.Validate(); err != nil {
		return nil, usageError{err}
	}
	return v, nil
}

// writeInfo prints a volume the way 'gluster volume info' does.
func writeInfo(w io.Writer, v *volume.Volume) {
	typ := "Distribute"
	switch {
	case v.Replica > 1 && len(v.Bricks) > v.Replica:
		typ = "Distributed-Replicate"
	case v.Replica > 1:
		typ = "Replicate"
	case len(v.Bricks) == 1:
		typ = "Single-brick"
	}
	fmt.Fprintf(w, "Volume Name: %s\n", v.Name)
	fmt.Fprintf(w, "Volume ID: %s\n", v.ID)
	fmt.Fprintf(w, "Type: %s\n", typ)
	fmt.Fprintf(w, "Status: %s\n", v.State)
	fmt.Fprintf(w, "Created: %s\n", v.Created.Format(time.RFC3339))
	if v.Replica > 1 {
		fmt.Fprintf(w, "Number of Bricks: %d x %d = %d\n", len(v.Bricks)/v.Replica, v.Replica, len(v.Bricks))
	} else {
		fmt.Fprintf(w, "Number of Bricks: %d\n", len(v.Bricks))
	}
	fmt.Fprintln(w, "Bricks:")
	for i, b := range v.Bricks {
		if v.Sets() > 1 {
			fmt.Fprintf(w, "Brick%d: %s (set %d)\n", i, b, i/v.Replica)
		} else {
			fmt.Fprintf(w, "Brick%d: %s\n", i, b)
		}
	}
	if len(v.Options) > 0 {
		fmt.Fprintln(w, "Options Reconfigured:")
		for _, k := range slices.Sorted(maps.Keys(v.Options)) {
			fmt.Fprintf(w, "%s: %s\n", k, v.Options[k])
		}
	}
}

// optionsHelp lists the volume options for help texts.
func optionsHelp() string {
	var b strings.Builder
	for _, o := range volume.KnownOptions {
		fmt.Fprintf(&b, "  %s [%s]\n", o.Key, o.Default)
		line := "     "
		for _, w := range strings.Fields(o.Help) {
			if len(line)+1+len(w) > 76 {
				b.WriteString(line + "\n")
				line = "     "
			}
			line += " " + w
		}
		b.WriteString(line + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// writeLayout prints a distributed volume's layout: its version and the
// tokens each set homes.
func writeLayout(ctx context.Context, w io.Writer, s *volume.Store, v *volume.Volume) error {
	l, err := dht2.NewEtcdStore(s.Client(), v.Name).Load(ctx)
	switch {
	case errors.Is(err, dht2.ErrNoLayout):
		if v.Sets() > 1 {
			fmt.Fprintln(w, "Layout: none yet (made when first mounted)")
		}
		return nil
	case err != nil:
		return err
	}
	counts := l.Counts()
	parts := make([]string, v.Sets())
	for i := range parts {
		n := 0
		if i < len(counts) {
			n = counts[i]
		}
		parts[i] = fmt.Sprintf("set %d: %d", i, n)
	}
	fmt.Fprintf(w, "Layout: version %d, %d tokens (%s)\n", l.Version, dht2.Tokens, strings.Join(parts, ", "))
	r, err := s.Rebalance(ctx, v.Name)
	if err != nil || r == nil {
		return err
	}
	fmt.Fprintf(w, "Rebalance: %s\n", progressLine(r))
	return nil
}

// progressLine sums up a rebalance record on one line.
func progressLine(r *volume.Rebalance) string {
	what := "rebalance"
	if r.Kind == volume.KindRemove {
		what = fmt.Sprintf("remove-brick (draining set %d)", r.Set)
	}
	line := fmt.Sprintf("%s %s: %d/%d tokens moved, %d files, %s, %s elapsed",
		what, r.State, r.TokensMoved, r.TokensTotal, r.Files, byteSize(r.Bytes), r.Elapsed.Round(time.Second))
	if eta := r.ETA(); r.State == volume.RebalanceRunning && eta > 0 {
		line += ", ETA " + eta.String()
	}
	if r.Stop && r.State == volume.RebalanceRunning {
		line += ", stopping"
	}
	if r.Error != "" {
		line += ": " + r.Error
	}
	return line
}

func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

type etcdRunner = func(fn func(ctx context.Context, cli *clientv3.Client, args []string) error) func(*cobra.Command, []string) error

func (a *app) addBrickCmd(withStore func(fn func(ctx context.Context, s *volume.Store, args []string) error) func(*cobra.Command, []string) error) *cobra.Command {
	return &cobra.Command{
		Use:   "add-brick NAME HOST:PATH...",
		Short: "Add replica sets to a volume",
		Long: `Add bricks to volume NAME, a multiple of its replica count: every
replica-count bricks form a new replica set. Start a 'gluon brick' for each
new brick. The new sets hold nothing until 'gluon volume rebalance NAME
start' moves their share of the tokens to them. Clients that were mounted
before the add-brick reach the new sets once they mount again.`,
		Example: `  gluon volume add-brick vol1 s1:/data/b4 s2:/data/b4 s3:/data/b4
  gluon volume rebalance vol1 start`,
		Args: func(cmd *cobra.Command, args []string) error {
			_, _, err := parseBricks(cmd, args)
			return err
		},
		RunE: withStore(func(ctx context.Context, s *volume.Store, args []string) error {
			_, bricks, _ := parseBricks(nil, args)
			v, err := s.AddBricks(ctx, args[0], bricks)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "volume %s: added %d bricks; %d replica sets (gluon volume rebalance %s start moves files to the new ones)\n",
				v.Name, len(bricks), v.Sets(), v.Name)
			return err
		}),
	}
}

// parseBricks checks "NAME HOST:PATH..." (cmd nil: already checked).
func parseBricks(cmd *cobra.Command, args []string) (string, []volume.Brick, error) {
	if len(args) < 2 {
		return "", nil, usagef("%s: want NAME and at least one HOST:PATH", cmdName(cmd))
	}
	if err := volume.ValidName(args[0]); err != nil {
		return "", nil, usageError{err}
	}
	var bricks []volume.Brick
	for _, s := range args[1:] {
		b, err := volume.ParseBrick(s)
		if err != nil {
			return "", nil, usageError{err}
		}
		bricks = append(bricks, b)
	}
	return args[0], bricks, nil
}

// runRebalance runs a rebalance in the foreground, printing progress on
// stderr (one updated line on a terminal), until it completes, is
// stopped, or the command is interrupted (then it can be resumed).
func (a *app) runRebalance(ctx context.Context, cli *clientv3.Client, name, kind string, set int) error {
	tty := isTerminal(a.stderr)
	last := time.Time{}
	progress := func(r *volume.Rebalance) {
		switch {
		case tty:
			fmt.Fprintf(a.stderr, "\r\033[K%s", progressLine(r))
		case time.Since(last) >= 10*time.Second || r.State != volume.RebalanceRunning:
			fmt.Fprintln(a.stderr, progressLine(r))
			last = time.Now()
		}
	}
	r, err := rebalance.Run(ctx, cli, name, kind, set, rebalance.Options{Logger: a.log, Progress: progress})
	if tty {
		fmt.Fprintln(a.stderr)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.stdout, "volume %s: %s\n", name, progressLine(r))
	return err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

func (a *app) rebalanceCmd(endpoints *[]string, withEtcd etcdRunner) *cobra.Command {
	actions := []string{"start", "status", "stop"}
	return &cobra.Command{
		Use:   "rebalance NAME start|status|stop",
		Short: "Spread a volume's files evenly over its replica sets",
		Long: `Move DHT2 tokens, and the directories and files homed at them, so that
every replica set of volume NAME homes an even share: after add-brick,
the new sets receive theirs. Clients keep reading and writing meanwhile;
tokens move one at a time, and the layout's version is bumped as each
move completes.

start runs the rebalance in this process, in the foreground, printing
progress (tokens moved, files, bytes, ETA) on stderr, until it completes.
Interrupting it (Ctrl-C), 'stop' from elsewhere or a crash leaves every
token either moved or not; start again resumes. Run it under nohup or a
service manager to keep it going after you log out. One rebalance runs
per volume at a time.

status prints the progress, wherever the rebalance runs; stop asks it to
end after the token it is moving.`,
		Example: `  gluon volume add-brick vol1 s1:/d/b4 s2:/d/b4 s3:/d/b4
  gluon volume rebalance vol1 start
  gluon volume rebalance vol1 status`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := exactArgs("NAME", "start|status|stop")(cmd, args); err != nil {
				return err
			}
			if err := volume.ValidName(args[0]); err != nil {
				return usageError{err}
			}
			if !slices.Contains(actions, args[1]) {
				return usagef("%s: unknown action %q (want start, status or stop)", cmdName(cmd), args[1])
			}
			return nil
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if args[1] == "start" {
				return a.longRunning(cmd.Context(), *endpoints, func(ctx context.Context, cli *clientv3.Client) error {
					return a.runRebalance(ctx, cli, name, volume.KindRebalance, 0)
				})
			}
			return withEtcd(func(ctx context.Context, cli *clientv3.Client, _ []string) error {
				return a.rebalanceStatusStop(ctx, volume.NewStore(cli), name, volume.KindRebalance, args[1])
			})(cmd, args)
		}),
	}
}

// longRunning runs fn with an etcd client, without volumeTimeout.
func (a *app) longRunning(ctx context.Context, endpoints []string, fn func(ctx context.Context, cli *clientv3.Client) error) error {
	dctx, cancel := context.WithTimeout(ctx, volumeTimeout)
	cli, err := dialEtcd(dctx, endpoints)
	cancel()
	if err != nil {
		return err
	}
	defer cli.Close()
	return fn(ctx, cli)
}

func (a *app) rebalanceStatusStop(ctx context.Context, s *volume.Store, name, kind, action string) error {
	if _, err := s.Get(ctx, name); err != nil {
		return err
	}
	var r *volume.Rebalance
	var err error
	if action == "stop" {
		r, err = s.StopRebalance(ctx, name, kind)
	} else {
		r, err = s.Rebalance(ctx, name)
		if err == nil && (r == nil || r.Kind != kind) {
			what := "rebalance"
			if kind == volume.KindRemove {
				what = "remove-brick"
			}
			err = fmt.Errorf("volume %s: no %s started", name, what)
		}
	}
	if err != nil {
		return err
	}
	line := progressLine(r)
	if w, err := s.RebalanceWorker(ctx, name); err == nil && w != "" {
		line += " (worker " + w + ")"
	} else if err == nil && r.State == volume.RebalanceRunning {
		line += " (no worker: interrupted; start again to resume)"
	}
	_, err = fmt.Fprintf(a.stdout, "volume %s: %s\n", name, line)
	return err
}

func (a *app) removeBrickCmd(endpoints *[]string, withEtcd etcdRunner) *cobra.Command {
	actions := []string{"start", "status", "stop", "commit"}
	return &cobra.Command{
		Use:   "remove-brick NAME HOST:PATH... start|status|stop|commit",
		Short: "Drain a replica set, then remove it from a volume",
		Long: `Remove the replica set made of the given bricks (all of one set, the
volume's last) from volume NAME, as GlusterFS does, in two steps:

  start   move every token the set homes, with its directories and files,
          to the other sets, in the foreground with progress on stderr
          (interrupt it and start again to resume); clients keep working
  status  show the drain's progress
  stop    ask the drain to stop after the token in hand
  commit  once the set homes nothing, drop its bricks from the volume

The bricks' directories are left as they are; stop their daemons after
the commit.`,
		Example: `  gluon volume remove-brick vol1 s1:/d/b4 s2:/d/b4 s3:/d/b4 start
  gluon volume remove-brick vol1 s1:/d/b4 s2:/d/b4 s3:/d/b4 commit`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || !slices.Contains(actions, args[len(args)-1]) {
				return usagef("%s: want NAME HOST:PATH... and then start, status, stop or commit", cmdName(cmd))
			}
			_, _, err := parseBricks(cmd, args[:len(args)-1])
			return err
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			action := args[len(args)-1]
			name, bricks, _ := parseBricks(nil, args[:len(args)-1])
			switch action {
			case "start":
				return a.longRunning(cmd.Context(), *endpoints, func(ctx context.Context, cli *clientv3.Client) error {
					set, err := bricksSet(ctx, volume.NewStore(cli), name, bricks)
					if err != nil {
						return err
					}
					return a.runRebalance(ctx, cli, name, volume.KindRemove, set)
				})
			case "commit":
				return withEtcd(func(ctx context.Context, cli *clientv3.Client, _ []string) error {
					v, err := rebalance.CommitRemove(ctx, cli, name, bricks)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(a.stdout, "volume %s: removed %d bricks; %d replica sets left\n", name, len(bricks), v.Sets())
					return err
				})(cmd, args)
			}
			return withEtcd(func(ctx context.Context, cli *clientv3.Client, _ []string) error {
				s := volume.NewStore(cli)
				if _, err := bricksSet(ctx, s, name, bricks); err != nil {
					return err
				}
				return a.rebalanceStatusStop(ctx, s, name, volume.KindRemove, action)
			})(cmd, args)
		}),
	}
}

// bricksSet is the replica set the bricks make up.
func bricksSet(ctx context.Context, s *volume.Store, name string, bricks []volume.Brick) (int, error) {
	v, err := s.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	return v.SetOf(bricks)
}
