package cli

import (
	"context"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/volume"
)

func (a *app) volfileCmd() *cobra.Command {
	var (
		endpoints []string
		brickIdx  int
		clientVol bool
	)
	cmd := &cobra.Command{
		Use:   "volfile VOLUME [--brick I | --client]",
		Short: "Print a volume's translator graph as a GlusterFS volfile",
		Long: `Print the translator graph that brick I of VOLUME serves (--brick), or
that clients mount (--client, the default), in GlusterFS volfile syntax.
Protocol clients name their brick by host and path; they find its port in
the brick's registration in etcd, since a brick listens on a port chosen
when it starts.`,
		Example: `  gluon volfile vol0
  gluon volfile vol0 --brick 0`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := exactArgs("VOLUME")(cmd, args); err != nil {
				return err
			}
			if err := volume.ValidName(args[0]); err != nil {
				return usageError{err}
			}
			if cmd.Flags().Changed("brick") && brickIdx < 0 {
				return usagef("--brick %d: must be >= 0", brickIdx)
			}
			return nil
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), volumeTimeout)
			defer cancel()
			cli, err := dialEtcd(ctx, endpoints)
			if err != nil {
				return err
			}
			defer cli.Close()
			s := volume.NewStore(cli)
			s.Logger = a.log
			v, err := s.Get(ctx, args[0])
			if err != nil {
				return err
			}
			var g *volfile.Graph
			if cmd.Flags().Changed("brick") {
				if brickIdx >= len(v.Bricks) {
					return usagef("--brick %d: volume %s has bricks 0 to %d", brickIdx, v.Name, len(v.Bricks)-1)
				}
				g = volfile.BrickVolfile(v, brickIdx)
			} else if g, err = volfile.ClientVolfile(v); err != nil {
				return err
			}
			out := g.String()
			if !strings.HasSuffix(out, "\n") {
				out += "\n"
			}
			_, err = io.WriteString(a.stdout, out)
			return err
		}),
	}
	etcdFlag(cmd, &endpoints)
	cmd.Flags().IntVar(&brickIdx, "brick", 0, "print brick `I`'s graph")
	cmd.Flags().BoolVar(&clientVol, "client", false, "print the client graph (the default)")
	cmd.MarkFlagsMutuallyExclusive("brick", "client")
	return cmd
}
