package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/recon"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/posix"
)

func (a *app) reconCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recon COMMAND",
		Short: "See and drive the reconciliation of replicas",
		Long: `Reconcile the replicas of replicated volumes: see where each replica of
each set stands (status), compare replicas object by object (verify),
repair those that differ from their leader (run), keep doing so in the
background (scrub), and read or replay
the journals bricks keep (dump, replay).`,
		Example: `  gluon recon status vol0
  gluon recon verify vol0
  gluon recon run vol0 --set 1
  gluon recon scrub vol0
  gluon recon dump /data/brick0 --term 12 --json
  gluon recon replay /data/brick0 --into /tmp/restore`,
		RunE: groupRun,
	}
	r := &reconCLI{app: a}
	cmd.PersistentFlags().StringSliceVar(&r.etcd, "etcd", etcdEndpoints(),
		"etcd endpoints, comma-separated; $GLUON_ETCD sets the default")
	cmd.AddCommand(a.reconDumpCmd(), r.reconStatusCmd(), r.reconVerifyCmd(), r.reconRunCmd(), r.reconScrubCmd(), r.reconReplayCmd())
	return cmd
}

// reconCLI is the recon commands that reach a cluster: they share the
// --etcd flag.
type reconCLI struct {
	*app
	etcd []string
}

// reconTimeout bounds status; verify and run take as long as the data
// needs, until interrupted.
const reconTimeout = 30 * time.Second

// withReconEtcd runs fn with an etcd client.
func (a *reconCLI) withReconEtcd(ctx context.Context, fn func(ctx context.Context, cli *clientv3.Client) error) error {
	dctx, cancel := context.WithTimeout(ctx, reconTimeout)
	cli, err := dialEtcd(dctx, a.etcd)
	cancel()
	if err != nil {
		return err
	}
	defer cli.Close()
	return fn(ctx, cli)
}

func volumeArg(cmd *cobra.Command, args []string) error {
	if err := exactArgs("VOLUME")(cmd, args); err != nil {
		return err
	}
	if err := volume.ValidName(args[0]); err != nil {
		return usageError{err}
	}
	return nil
}

func (a *reconCLI) reconStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status VOLUME [--json]",
		Short: "Show where each replica stands",
		Long: `Show, for each replica set of VOLUME: its leader and term; each brick's
journal position (last term and index, commit, applied), its lag in
entries behind the leader's commit (and, estimated from the leader's
mean record size, in bytes), and its journal's size on disk and range of
records; what reconciliation would do from
those positions (ship entries to a laggard, drop a divergent tail, or
resync a replica in full) and the full resyncs under way; whether the
term is reconciled (every
replica holds the same non-zero reconciliation id in etcd, which verify
and run set); and the result of the last verify or run.`,
		Example: `  gluon recon status vol0
  gluon recon status vol0 --json | jq '.[0].reconciled'`,
		Args: volumeArg,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), reconTimeout)
			defer cancel()
			return a.withReconEtcd(ctx, func(ctx context.Context, cli *clientv3.Client) error {
				sets, err := recon.Status(ctx, cli, args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.stdout, sets)
				}
				return writeReconStatus(a.stdout, args[0], sets)
			})
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeReconStatus(w io.Writer, vol string, sets []recon.SetState) error {
	for i, s := range sets {
		if i > 0 {
			fmt.Fprintln(w)
		}
		rec := "no"
		if s.Reconciled {
			rec = "yes"
		}
		if s.Leader >= 0 {
			fmt.Fprintf(w, "Volume %s, replica set %d: leader brick %d, term %d, reconciled: %s\n", vol, s.Set, s.Leader, s.Term, rec)
		} else {
			fmt.Fprintf(w, "Volume %s, replica set %d: no leader\n", vol, s.Set)
		}
		needs := map[int]string{}
		if s.Plan != nil {
			for _, c := range s.Plan.Catchups {
				needs[c.ID] = catchupText(c)
			}
		}
		for rep, r := range s.Resyncs {
			needs[rep] = fmt.Sprintf("full resync: %s to %d/%d", r.State, r.Term, r.Index)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BRICK\tONLINE\tROLE\tLAST\tCOMMIT\tAPPLIED\tLAG\tJOURNAL\tRECON ID\tNEEDS")
		for k, b := range s.Bricks {
			online, role, last, commit, applied, lag := "N", "-", "-", "-", "-", "-"
			if b.Online {
				online = "Y"
			}
			if j := b.JBR; j != nil {
				role = j.Role
				last = fmt.Sprintf("%d/%d", j.LastTerm, j.LastIndex)
				commit, applied = strconv.FormatUint(j.Commit, 10), strconv.FormatUint(j.Applied, 10)
			} else if b.Error != "" {
				role = "? " + b.Error
			}
			if b.Lag >= 0 {
				lag = strconv.FormatInt(b.Lag, 10)
				if b.Lag > 0 && b.LagBytes >= 0 {
					lag += " (~" + byteSize(b.LagBytes) + ")"
				}
			}
			journal := "-"
			if j := b.Journal; j != nil {
				journal = fmt.Sprintf("%s, %d-%d", byteSize(j.Bytes), j.FirstIndex, j.LastIndex)
			}
			id := "-"
			if v := s.IDs[k]; v != 0 {
				id = fmt.Sprintf("%016x", v)
			}
			fmt.Fprintf(tw, "%d %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Index, b.Brick, online, role, last, commit, applied, lag, journal, id, dash(needs[k]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if s.PlanError != "" {
			fmt.Fprintf(w, "plan: %s\n", s.PlanError)
		}
		if r := s.Last; r != nil {
			fmt.Fprintf(w, "last %s: %s, %d objects, %d differences found, %d left, repaired %s",
				r.Kind, r.Time.Format(time.RFC3339), r.Objects, r.Found, r.Differences, movedText(r.Repaired))
			if r.Error != "" {
				fmt.Fprintf(w, ", error: %s", r.Error)
			}
			fmt.Fprintln(w)
		} else {
			fmt.Fprintln(w, "never verified")
		}
	}
	return nil
}

func catchupText(c recon.Catchup) string {
	var parts []string
	if c.TruncateFrom != 0 {
		parts = append(parts, fmt.Sprintf("drop tail from %d", c.TruncateFrom))
	}
	switch {
	case c.FullResync:
		parts = append(parts, "full resync")
	case c.ShipFrom != 0:
		parts = append(parts, fmt.Sprintf("entries %d-%d", c.ShipFrom, c.ShipTo))
	}
	return strings.Join(parts, ", ")
}

func movedText(m recon.Moved) string {
	if m.Zero() {
		return "nothing"
	}
	return fmt.Sprintf("%d made, %d removed, %d data (%s), %d metadata", m.Created, m.Removed, m.Data, byteSize(m.Bytes), m.Meta)
}

// errDiffer makes verify exit non-zero.
var errDiffer = errors.New("replicas differ")

func (a *reconCLI) reconVerifyCmd() *cobra.Command {
	var f walkFlags
	cmd := &cobra.Command{
		Use:   "verify VOLUME [--set N] [--json]",
		Short: "Compare the replicas of every set; exit 1 if any differ",
		Long: `Compare every replica of each replica set of VOLUME with its set's
leader, object by object (by GFID): names, types, data (an xxhash per
MiB), mode, owner, size, symlink targets and xattrs. Each replica is read
from its own store, so a follower's copy is what is compared. Differences
seen while followers still apply what their leader holds are given time
to settle first. A replica found identical is recorded in etcd as
reconciled with its leader for the leader's term.

Prints the differences and exits 1 if any remain (or a replica could not
be compared), 0 if every replica is identical. Nothing is repaired; see
'gluon recon run'.`,
		Example: `  gluon recon verify vol0
  gluon recon verify vol0 --set 2 --json`,
		Args: volumeArg,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			return a.reconWalk(cmd.Context(), args[0], f, false)
		}),
	}
	f.add(cmd)
	return cmd
}

func (a *reconCLI) reconRunCmd() *cobra.Command {
	var f walkFlags
	cmd := &cobra.Command{
		Use:   "run VOLUME [--set N] [--json]",
		Short: "Repair replicas that differ from their leader, now",
		Long: `Compare every replica of each replica set of VOLUME (or of set N) with
its leader, as verify does, and repair each one that differs from the
leader's store: entries it lacks are made with the same GFIDs, entries
the leader lacks are removed, data chunks whose checksum differs are
copied, and modes, owners, sizes and xattrs are set. Prints what moved,
and exits 1 if a difference remains.

Entries the replicas' journals hold are reconciled by replication
itself, when a leader is elected and when a replica returns; run is for
what diverged beyond the journals: a store changed or damaged behind
gluon's back, or a replica whose journal range is gone.`,
		Example: `  gluon recon run vol0
  gluon recon run vol0 --set 1 --json`,
		Args: volumeArg,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			return a.reconWalk(cmd.Context(), args[0], f, true)
		}),
	}
	f.add(cmd)
	return cmd
}

// walkFlags are the flags verify and run share.
type walkFlags struct {
	asJSON bool
	set    int
	rate   int64
}

func (f *walkFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print JSON")
	cmd.Flags().IntVar(&f.set, "set", -1, "only replica set `N`")
	cmd.Flags().Int64Var(&f.rate, "rate", 0, "read at most `BYTES` per second per brick (0: unbounded)")
}

// reconWalk runs verify or run and prints the reports.
func (a *reconCLI) reconWalk(ctx context.Context, vol string, f walkFlags, repair bool) error {
	if f.set < -1 {
		return usagef("--set %d: sets are numbered from 0", f.set)
	}
	if f.rate < 0 {
		return usagef("--rate %d: must not be negative", f.rate)
	}
	var sets []recon.SetReport
	err := a.withReconEtcd(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		opts := recon.VolumeOptions{Logger: a.log, Set: f.set, BytesPerSec: f.rate}
		p := newProgress(a.stderr)
		defer p.done()
		opts.Progress = p.update
		var err error
		if repair {
			sets, err = recon.Run(ctx, cli, vol, opts)
		} else {
			sets, err = recon.Verify(ctx, cli, vol, opts)
		}
		return err
	})
	if err != nil {
		return err
	}
	if f.asJSON {
		err = writeJSON(a.stdout, sets)
	} else {
		err = writeReports(a.stdout, vol, sets)
	}
	if err != nil {
		return err
	}
	if recon.Differs(sets) {
		return errDiffer
	}
	return nil
}

func writeReports(w io.Writer, vol string, sets []recon.SetReport) error {
	for _, s := range sets {
		fmt.Fprintf(w, "Volume %s, replica set %d: leader brick %d, term %d\n", vol, s.Set, s.Leader, s.Term)
		if s.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", s.Error)
		}
		for _, b := range s.Bricks {
			state := "identical"
			switch {
			case b.Index == s.Leader:
				state = "leader"
			case b.Error != "":
				state = "error: " + b.Error
			case len(b.Diffs) > 0:
				state = fmt.Sprintf("%d differences", len(b.Diffs))
			}
			fmt.Fprintf(w, "  brick %d %s: %d objects, %s read, %s\n", b.Index, b.Brick, b.Objects, byteSize(b.Bytes), state)
			if b.Moved != nil {
				fmt.Fprintf(w, "    repaired: %s\n", movedText(*b.Moved))
			}
			for _, d := range b.Diffs {
				fmt.Fprintf(w, "    %s\n", d)
			}
		}
		rec := "no"
		if s.Reconciled {
			rec = "yes"
		}
		fmt.Fprintf(w, "  reconciled: %s\n", rec)
	}
	return nil
}

// statusLine is one line redrawn on a terminal, at most every 100ms;
// elsewhere it is silent, so that logs and pipes get only the report.
type statusLine struct {
	w     io.Writer
	tty   bool
	drawn time.Time
}

func newStatusLine(w io.Writer) statusLine { return statusLine{w: w, tty: isTerminal(w)} }

// due reports whether to draw now, and if so counts it as drawn.
func (l *statusLine) due() bool {
	if !l.tty || time.Since(l.drawn) < 100*time.Millisecond {
		return false
	}
	l.drawn = time.Now()
	return true
}

func (l *statusLine) draw(format string, args ...any) {
	fmt.Fprintf(l.w, "\r\033[K"+format, args...)
}

// done clears the line, if it was drawn.
func (l *statusLine) done() {
	if !l.drawn.IsZero() {
		fmt.Fprint(l.w, "\r\033[K")
	}
}

// progress is the status line of verify and run, summed over bricks.
type progress struct {
	mu   sync.Mutex
	line statusLine
	per  map[[2]int][2]int64 // (set, brick) -> objects, bytes
}

func newProgress(w io.Writer) *progress {
	return &progress{line: newStatusLine(w), per: map[[2]int][2]int64{}}
}

func (p *progress) update(set, brick, objects int, bytes int64) {
	if !p.line.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.per[[2]int{set, brick}] = [2]int64{int64(objects), bytes}
	if !p.line.due() {
		return
	}
	var objs, total int64
	for _, v := range p.per {
		objs += v[0]
		total += v[1]
	}
	p.line.draw("scanning %d bricks: %d objects, %s", len(p.per), objs, byteSize(total))
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line.done()
}

func (a *reconCLI) reconScrubCmd() *cobra.Command {
	var (
		once   bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "scrub VOLUME [--once] [--json]",
		Short: "Find and repair silent divergence, in the background",
		Long: `Run the background scrub of VOLUME until interrupted: every
recon.scrub-interval (a volume option, default 1h) compare every replica
of every set with its leader, data and metadata per GFID by checksum,
reading each brick at most recon.scrub-rate bytes per second (default
16 MiB/s), and repair what differs from the leader, as run does. Each
finding is logged; each round logs what it found and repaired so far,
and its result shows in 'gluon recon status'. The options are read again
every round ('gluon volume set VOLUME recon.scrub-rate 0' lifts the
bound).

--once runs one round and prints its counts; it exits 1 if a difference
remains.`,
		Example: `  gluon recon scrub vol0
  gluon volume set vol0 recon.scrub-interval 10m && gluon recon scrub vol0
  gluon recon scrub vol0 --once --json`,
		Args: volumeArg,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			var st recon.ScrubStats
			err := a.withReconEtcd(cmd.Context(), func(ctx context.Context, cli *clientv3.Client) error {
				var err error
				st, err = recon.Scrub(ctx, cli, args[0], recon.ScrubOptions{Logger: a.log, Once: once})
				return err
			})
			if err != nil && !(errors.Is(err, context.Canceled) && !once) {
				return err
			}
			if asJSON {
				err = writeJSON(a.stdout, st)
			} else {
				_, err = fmt.Fprintf(a.stdout, "scrub of %s: %d rounds, %d differences found, repaired %s, %d left\n",
					args[0], st.Rounds, st.Found, movedText(st.Repaired), st.Left)
			}
			if err != nil {
				return err
			}
			if st.Left > 0 {
				return errDiffer
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&once, "once", false, "run one round and exit")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *reconCLI) reconReplayCmd() *cobra.Command {
	var (
		into        string
		uncommitted bool
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "replay BRICK-DIR|JOURNAL --into DIR [--uncommitted] [--json]",
		Short: "Apply a journal to a bare store, offline",
		Long: `Apply the entries of a brick's journal, in log order, to the store in
DIR (a directory, made if missing; a new one holds a bare store), as
GlusterFS's gf_recon did: to rebuild a store from its journal, or to see
what a journal holds as files. Entries are applied as their original
callers, the way a restart replays them. A deposed leader's replaced
entries and leaders' no-ops are skipped, and so are the entries past the
highest commit index the journal records (entries reconciliation could
still roll back) unless --uncommitted. The journal is read from a copy.`,
		Example: `  gluon recon replay /data/brick0 --into /tmp/restore
  gluon recon replay /data/brick0/.gluon/journal --into /tmp/r --uncommitted --json`,
		Args: exactArgs("BRICK-DIR|JOURNAL"),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if into == "" {
				return usagef("replay: --into DIR is required")
			}
			return nil
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(into, 0o755); err != nil {
				return err
			}
			j, err := recon.Open(args[0], recon.Options{Logger: a.log})
			if err != nil {
				return err
			}
			defer j.Close()
			s, err := posix.New(into, posix.Options{Logger: a.log})
			if err != nil {
				return err
			}
			defer s.Close()
			line := newStatusLine(a.stderr)
			opts := recon.ReplayOptions{Uncommitted: uncommitted}
			if line.tty {
				opts.Progress = func(n int) {
					if line.due() {
						line.draw("applied %d entries", n)
					}
				}
			}
			st, err := j.Replay(cmd.Context(), s, opts, func(e *recon.Entry, err error) {
				a.log.Warn("recon replay: the store refused an entry", "term", e.Term, "index", e.Index, "op", e.Op, "err", err)
			})
			line.done()
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(a.stdout, st); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "replayed %s into %s: %d entries applied, %d skipped (%d uncommitted), %d refused\n",
					j.Path, into, st.Applied, st.Skipped, st.Uncommitted, st.Failed)
			}
			if st.Failed > 0 {
				return fmt.Errorf("%d entries refused by the store", st.Failed)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&into, "into", "", "the store `DIR` to apply the journal to")
	cmd.Flags().BoolVar(&uncommitted, "uncommitted", false, "also apply entries past the highest known commit")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
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
