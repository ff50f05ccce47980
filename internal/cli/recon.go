package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gluon-fs/gluon/recon"
)

func (a *app) reconCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recon COMMAND",
		Short: "Inspect bricks' journals, to reconcile replicas",
		Long: `Read the journals that bricks of replicated volumes keep (every write, in
the order their replica set's leader gave it), to see what a brick holds
and how replicas diverged.`,
		Example: `  gluon recon dump /data/brick0
  gluon recon dump /data/brick0 --term 12 --json`,
		RunE: groupRun,
	}
	cmd.AddCommand(a.reconDumpCmd())
	return cmd
}

func (a *app) reconDumpCmd() *cobra.Command {
	var (
		term   uint64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "dump BRICK-DIR|JOURNAL-FILE [--term T] [--json]",
		Short: "Print a brick's journal records",
		Long: `Print the records of a brick's journal: BRICK-DIR is a brick directory
(its journal is BRICK-DIR/.gluon/journal) or a journal directory;
JOURNAL-FILE is one of the journal's segment files (term-TERM-FIRST.log),
whose records alone are printed.

Each record shows its place in the replica set's log (TERM, INDEX), its
place in this brick's journal (JOURNAL term/index), the operation, the
object it acts on (TARGET, a GFID), its details (names, the object made,
offsets and lengths, mode and flags), the request id that deduplicates
retries (CLIENT/SEQ) and its state: synced (applied and on disk),
applied, logged (not applied: uncommitted, or interrupted by a crash) or
replaced (a later record took its place in the log: a deposed leader's
write, never applied).

The journal is read from a copy, so a running brick need not stop and its
journal is never changed. --term T prints the entries of log term T only.
--json prints one JSON object: the journal's summary and its entries.`,
		Example: `  gluon recon dump /data/gluon/vol0
  gluon recon dump /data/gluon/vol0/.gluon/journal/term-0000000000000007-0000000000000004.log
  gluon recon dump /data/gluon/vol0 --term 7 --json`,
		Args: exactArgs("BRICK-DIR|JOURNAL-FILE"),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("term") && term == 0 {
				return usagef("--term 0: terms start at 1")
			}
			return nil
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			j, err := recon.Open(args[0], recon.Options{Logger: a.log})
			if err != nil {
				return err
			}
			defer j.Close()
			f := recon.Filter{Term: term}
			if asJSON {
				return dumpJSON(a.stdout, j, f)
			}
			return dumpText(a.stdout, j, f)
		}),
	}
	cmd.Flags().Uint64Var(&term, "term", 0, "print only the entries of log term `T`")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func dumpText(w io.Writer, j *recon.Journal, f recon.Filter) error {
	info := j.Info()
	fmt.Fprintf(w, "journal %s: term %d, records %d to %d, applied to %d, synced to %d\n",
		info.Path, info.Term, info.FirstIndex, info.LastIndex, info.Applied, info.Synced)
	if s := j.Segment; s != nil {
		fmt.Fprintf(w, "segment %s: journal term %d, records from %d\n", s.File, s.Term, s.First)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TERM\tINDEX\tJOURNAL\tOP\tTARGET\tDETAIL\tREQUEST\tSTATE")
	n := 0
	err := j.Entries(f, func(e *recon.Entry) error {
		n++
		_, err := fmt.Fprintf(tw, "%d\t%d\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", e.Term, e.Index, e.JournalTerm, e.JournalIndex,
			e.Op, dash(e.Target), dash(detail(e)), dash(e.Request), e.State)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%d records\n", n)
	return err
}

// detail renders an entry's arguments as key=value pairs.
func detail(e *recon.Entry) string {
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+v) }
	if e.Name != "" {
		add("name", strconv.Quote(e.Name))
	}
	if e.Name2 != "" {
		add("name2", strconv.Quote(e.Name2))
	}
	if e.Object != "" {
		add("object", e.Object)
	}
	if e.Offset != 0 {
		add("off", strconv.FormatInt(e.Offset, 10))
	}
	if e.Length != 0 || e.Op == "Write" || e.Op == "Truncate" {
		add("len", strconv.FormatInt(e.Length, 10))
	}
	if e.Mode != 0 {
		add("mode", fmt.Sprintf("%#o", e.Mode))
	}
	if e.Flags != 0 {
		add("flags", fmt.Sprintf("%#x", e.Flags))
	}
	if e.Uid != 0 || e.Gid != 0 {
		add("uid", strconv.FormatUint(uint64(e.Uid), 10))
		add("gid", strconv.FormatUint(uint64(e.Gid), 10))
	}
	return strings.Join(parts, " ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// dumpJSON streams {"journal": ..., "entries": [...]}, so that a long
// journal is not held in memory.
func dumpJSON(w io.Writer, j *recon.Journal, f recon.Filter) error {
	info, err := json.Marshal(j.Info())
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "{\"info\":%s,\"entries\":[", info); err != nil {
		return err
	}
	sep := "\n"
	err = j.Entries(f, func(e *recon.Entry) error {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s%s", sep, b)
		sep = ",\n"
		return err
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n]}\n")
	return err
}
