package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/client"
)

func (a *app) volumeStatusCmd(
	withEtcd func(func(context.Context, *clientv3.Client, []string) error) func(*cobra.Command, []string) error,
	nameArg cobra.PositionalArgs,
) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status NAME [--json]",
		Short: "Show a volume's bricks, leaders and journal positions",
		Long: `Show each brick of volume NAME: whether it is online (its daemon holds
a live lease in etcd), where it serves, and its pid. For a replicated
volume, also each replica set's leader and term (from its election in
etcd), and each online brick's replication state, asked of the brick:
its role, the term it is in, the last index in its journal, the commit
index it knows and the index it has applied, and its lag: how many
entries the leader has committed that it has not applied.

--json prints the same as one JSON object.`,
		Example: `  gluon volume status vol0
  gluon volume status vol0 --json | jq '.sets[0].leader'`,
		Args: nameArg,
		RunE: withEtcd(func(ctx context.Context, cli *clientv3.Client, args []string) error {
			st, err := client.Status(ctx, cli, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, st)
			}
			return writeStatus(a.stdout, st)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// writeStatus prints a volume's status as tables, one per replica set.
func writeStatus(w io.Writer, st *client.VolumeStatus) error {
	fmt.Fprintf(w, "Volume %s is %s\n", st.Name, st.State)
	for _, set := range st.Sets {
		if st.Replica > 1 {
			if set.Leader >= 0 {
				fmt.Fprintf(w, "\nReplica set %d: leader brick %d, term %d\n", set.Set, set.Leader, set.Term)
			} else {
				fmt.Fprintf(w, "\nReplica set %d: no leader\n", set.Set)
			}
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if st.Replica > 1 {
			fmt.Fprintln(tw, "BRICK\tONLINE\tADDRESS\tPID\tROLE\tTERM\tLAST\tCOMMIT\tAPPLIED\tLAG")
		} else {
			fmt.Fprintln(tw, "BRICK\tONLINE\tADDRESS\tPID")
		}
		for _, b := range set.Bricks {
			online, addr, pid := "N", "-", "-"
			if b.Online {
				online, addr, pid = "Y", b.Addr, strconv.Itoa(b.Pid)
			}
			fmt.Fprintf(tw, "%d %s\t%s\t%s\t%s", b.Index, b.Brick, online, addr, pid)
			if st.Replica > 1 {
				if j := b.JBR; j != nil {
					lag := "-"
					if b.Lag >= 0 {
						lag = strconv.FormatInt(b.Lag, 10)
					}
					fmt.Fprintf(tw, "\t%s\t%d\t%d\t%d\t%d\t%s", j.Role, j.Term, j.LastIndex, j.Commit, j.Applied, lag)
				} else {
					fmt.Fprint(tw, "\t-\t-\t-\t-\t-\t-")
				}
			}
			fmt.Fprintln(tw)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, b := range set.Bricks {
			if b.Error != "" {
				fmt.Fprintf(w, "brick %d: %s\n", b.Index, b.Error)
			}
		}
	}
	return nil
}
