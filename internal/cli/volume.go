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

	"github.com/gluon-fs/gluon/volume"
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

A volume can be mounted with one replica set (one brick, or N bricks with
replica N): distribution over several sets (DHT2) is not built yet.`,
			Example: `  gluon volume create vol0 server1:/data/b0
  gluon volume create vol1 replica 3 s1:/data/b1 s2:/data/b1 s3:/data/b1`,
			Args: createArgs,
			RunE: withStore(func(ctx context.Context, s *volume.Store, args []string) error {
				v, _ := parseCreate(args)
				if err := s.Create(ctx, v); err != nil {
					return err
				}
				if v.Sets() > 1 {
					a.log.Warn("this volume cannot be mounted yet: distributing files over several replica sets needs DHT2, which is not built yet")
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
		fmt.Fprintf(w, "Brick%d: %s\n", i, b)
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
