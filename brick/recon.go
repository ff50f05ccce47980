package brick

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/internal/promgroup"
	"github.com/gluon-fs/gluon/internal/tick"
	"github.com/gluon-fs/gluon/recon"
	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	jbrserver "github.com/gluon-fs/gluon/xlators/jbr-server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Reconciliation in the brick daemon.
//
// Every brick of a replicated volume runs a reconciler beside its
// graph. On the leader of its set it scrubs the set every
// recon.scrub-interval at recon.scrub-rate (recon.Run: compare every
// replica with this one by checksum and repair what differs), and drives
// the full resync of followers whose needed entries its journal pruned:
// it marks them in etcd (recon.ResyncPrefix), and once a follower has
// fast-forwarded its log it repairs the follower's store and clears the
// mark. On a follower it marks a recovering leader that asked for
// entries its journal pruned, and when marked itself for a fast-forward
// it has Run restart the brick's graph with the log moved on
// (jbrserver.FastForward). While marked, its jbr-server neither votes
// nor serves (jbrserver.IpcResync), until the mark is cleared. A brick
// elected while marked restarts too, leaving the election to a brick
// holding the set's store.

// reconTick is how often the reconciler looks at its jbr-server and at
// the resync marks: a few local calls and an etcd read.
const reconTick = time.Second

// reconMetrics count what the scrubs and resyncs of one brick did.
type reconMetrics struct {
	group                        *promgroup.Group
	rounds, found, repaired, res prometheus.Counter
}

func newReconMetrics(reg prometheus.Registerer, log *slog.Logger, vol string, index int) *reconMetrics {
	labels := prometheus.Labels{"volume": vol, "brick": strconv.Itoa(index)}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "recon", Name: name, Help: help, ConstLabels: labels})
	}
	m := &reconMetrics{
		rounds:   counter("scrub_rounds_total", "Scrub rounds this brick ran as its set's leader."),
		found:    counter("scrub_found_total", "Differences scrubs found between a replica and its leader."),
		repaired: counter("scrub_repaired_total", "Objects scrubs repaired (made, removed, data or metadata fixed)."),
		res:      counter("resyncs_total", "Followers this brick, as leader, resynced in full."),
	}
	m.group = promgroup.Register(reg, log, m.rounds, m.found, m.repaired, m.res)
	return m
}

// reconciler is one brick's reconciliation duties; run owns it.
type reconciler struct {
	cli        *clientv3.Client
	store      *volume.Store
	vol        string
	set, self  int // replica set, and this brick's index in it
	replicas   int
	top        xl.Xlator
	log        *slog.Logger
	m          *reconMetrics
	lastScrub  time.Time
	fastFwd    chan<- recon.Resync // to Run: restart fast-forwarded
	resyncOpts recon.VolumeOptions
}

// run works until ctx ends, or until it has asked Run for a fast-forward.
func (r *reconciler) run(ctx context.Context) {
	r.lastScrub = time.Now()
	step := func() bool {
		err := r.step(ctx)
		if errors.Is(err, errFastForward) || ctx.Err() != nil {
			return false
		}
		if err != nil {
			r.log.Warn("recon: reconciler", "err", err)
		}
		return true
	}
	// At once, too: a brick restarted for a resync must stop voting soon.
	if step() {
		tick.Every(ctx, reconTick, step)
	}
}

var errFastForward = errors.New("fast-forward asked")

// restart asks Run to restart the brick's graph for mk; run stops on the
// error it returns, so it asks once.
func (r *reconciler) restart(mk recon.Resync) error {
	select {
	case r.fastFwd <- mk:
	default:
	}
	return errFastForward
}

func (r *reconciler) step(ctx context.Context) error {
	st, err := r.status(ctx)
	if err != nil {
		return err
	}
	marks, err := recon.Resyncs(ctx, r.cli, r.vol, r.set)
	if err != nil {
		return err
	}
	mk, marked := marks[r.self]
	if marked != st.Resyncing {
		// Marked, it must neither vote nor serve with a store being
		// repaired; cleared, it counts again without a restart.
		if err := r.setResyncing(ctx, marked); err != nil {
			return err
		}
	}
	if marked && st.Role != "follower" {
		// Elected while being resynced: its store is not the set's, and a
		// log behind the others cannot even finish recovering. Restart,
		// which leaves the election and joins it again at the back, so
		// another brick leads (fast-forwarding first if that was asked).
		r.log.Warn("recon: elected while being resynced; restarting to hand leadership over", "role", st.Role, "resync", mk.State)
		return r.restart(mk)
	}
	js, err := r.journal(ctx)
	if err != nil {
		return err
	}
	if err := r.mark(ctx, marks, js.NeedsResync); err != nil {
		return err
	}
	switch st.Role {
	case "follower":
		if !marked || mk.State != recon.ResyncFastForward {
			return nil
		}
		if st.LastIndex >= mk.Index {
			mk.State = recon.ResyncRepair
			return recon.MarkResync(ctx, r.cli, r.vol, r.set, r.self, mk)
		}
		r.log.Warn("recon: restarting to fast-forward the log for a full resync", "term", mk.Term, "index", mk.Index, "last_index", st.LastIndex)
		return r.restart(mk)
	case "leader":
		return r.lead(ctx, marks, js.NeedsResync)
	}
	return nil
}

// mark records in etcd the peers this brick's journal cannot catch up:
// a leader's lagging followers, or a recovering leader that asked a
// follower for what it pruned.
func (r *reconciler) mark(ctx context.Context, marks map[int]recon.Resync, stuck []jbrserver.Resync) error {
	for _, n := range stuck {
		if mk, ok := marks[n.Replica]; ok && mk.State == recon.ResyncFastForward {
			continue // it has yet to restart
		}
		r.log.Warn("recon: a replica needs entries this journal pruned: resyncing it in full",
			"replica", n.Replica, "after", n.After, "fast_forward_to", n.Index)
		mk := recon.Resync{State: recon.ResyncFastForward, Term: n.Term, Index: n.Index, Since: time.Now().UTC()}
		if err := recon.MarkResync(ctx, r.cli, r.vol, r.set, n.Replica, mk); err != nil {
			return err
		}
	}
	return nil
}

// lead repairs the followers that have fast-forwarded, and scrubs when
// it is time.
func (r *reconciler) lead(ctx context.Context, marks map[int]recon.Resync, stuck []jbrserver.Resync) error {
	var repair []int
	for rep, mk := range marks {
		behind := slices.ContainsFunc(stuck, func(n jbrserver.Resync) bool { return n.Replica == rep })
		if mk.State == recon.ResyncRepair && !behind {
			repair = append(repair, rep)
		}
	}
	if len(repair) > 0 {
		return r.repair(ctx, repair)
	}
	// recon.scrub-interval and recon.scrub-rate may change while the
	// brick runs.
	v, err := r.store.Get(ctx, r.vol)
	if err != nil {
		return err
	}
	if rate, interval := recon.ScrubSettings(v); time.Since(r.lastScrub) >= interval {
		return r.scrub(ctx, rate)
	}
	return nil
}

// repair resyncs the stores of fast-forwarded followers from this one.
func (r *reconciler) repair(ctx context.Context, reps []int) error {
	start := time.Now()
	sets, err := recon.Run(ctx, r.cli, r.vol, r.resyncOpts)
	if err != nil {
		return err
	}
	if len(sets) != 1 || sets[0].Error != "" {
		return fmt.Errorf("full resync of set %d: %+v", r.set, sets)
	}
	for _, b := range sets[0].Bricks {
		rep := b.Index - r.set*r.replicas
		if !slices.Contains(reps, rep) {
			continue
		}
		if b.Error != "" || len(b.Diffs) > 0 {
			r.log.Warn("recon: full resync incomplete; trying again", "replica", rep, "err", b.Error, "left", len(b.Diffs))
			continue
		}
		if err := recon.ClearResync(ctx, r.cli, r.vol, r.set, rep); err != nil {
			return err
		}
		r.m.res.Inc()
		var moved recon.Moved
		if b.Moved != nil {
			moved = *b.Moved
		}
		r.log.Warn("recon: full resync done", "replica", rep, "objects", b.Objects, "found", b.Found,
			"moved", moved, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// scrub compares every replica of the set with this leader's store, at
// rate bytes per second, and repairs what differs.
func (r *reconciler) scrub(ctx context.Context, rate int64) error {
	opts := r.resyncOpts
	opts.BytesPerSec = rate
	sets, err := recon.Run(ctx, r.cli, r.vol, opts)
	r.lastScrub = time.Now() // the interval runs from the end of a round
	if err != nil {
		return err
	}
	r.m.rounds.Inc()
	for _, s := range sets {
		if s.Error != "" {
			r.log.Warn("recon scrub: set not scrubbed", "err", s.Error)
		}
		for _, b := range s.Bricks {
			if b.Found == 0 && b.Error == "" && len(b.Diffs) == 0 {
				continue
			}
			var moved recon.Moved
			if b.Moved != nil {
				moved = *b.Moved
			}
			r.m.found.Add(float64(b.Found))
			r.m.repaired.Add(float64(moved.Created + moved.Removed + moved.Data + moved.Meta))
			r.log.Warn("recon scrub: a replica differed from its leader", "brick", b.Brick, "found", b.Found,
				"repaired", moved, "left", len(b.Diffs), "err", b.Error)
			for _, d := range b.Diffs {
				r.log.Warn("recon scrub: difference left", "brick", b.Brick, "diff", d.String())
			}
		}
	}
	return nil
}

func (r *reconciler) setResyncing(ctx context.Context, on bool) error {
	x := xl.Xdata{"resync": []byte(strconv.FormatBool(on))}
	if _, e := r.top.Ipc(xl.WithCall(ctx, &xl.Call{}), jbrserver.IpcResync, x); e != 0 {
		return fmt.Errorf("telling the jbr-server of its resync: %w", e)
	}
	return nil
}

func (r *reconciler) status(ctx context.Context) (*jbrserver.Status, error) {
	return ipcJSON[jbrserver.Status](ctx, r.top, jbrserver.IpcStatus, "status")
}

func (r *reconciler) journal(ctx context.Context) (*jbrserver.JournalStat, error) {
	return ipcJSON[jbrserver.JournalStat](ctx, r.top, jbrserver.IpcReconJournal, "journal")
}

// ipcJSON asks top for op and decodes the JSON it returns under key.
func ipcJSON[T any](ctx context.Context, top xl.Xlator, op xl.IpcOp, key string) (*T, error) {
	out, e := top.Ipc(xl.WithCall(ctx, &xl.Call{}), op, nil)
	if e != 0 {
		return nil, fmt.Errorf("asking the jbr-server its %s: %w", key, e)
	}
	var v T
	if err := json.Unmarshal(out[key], &v); err != nil {
		return nil, fmt.Errorf("jbr-server %s: %w", key, err)
	}
	return &v, nil
}

// fastForward moves the log in a stopped brick's journal on to where
// the leader said, and marks the brick for the repair of its store. A
// brick restarted only to step down has nothing to do.
func fastForward(ctx context.Context, cli *clientv3.Client, v *volume.Volume, index int, mk recon.Resync, log *slog.Logger) error {
	if mk.State != recon.ResyncFastForward {
		return nil // only stepping down: the mark stays for the leader
	}
	dir := filepath.Join(v.Bricks[index].Path, volfile.JournalDir)
	jo := journal.Options{Logger: log}
	if n, err := strconv.ParseInt(v.Option(volume.OptJournalMaxSize), 10, 64); err == nil && n > 0 {
		jo.SegmentSize = min(journal.DefaultSegmentSize, max(n/4, 1<<20)) // as volfile opens it
	}
	j, err := journal.Open(dir, jo)
	if err != nil {
		return err
	}
	if err := jbrserver.FastForward(j, mk.Term, mk.Index); err != nil {
		j.Close()
		return err
	}
	if err := j.Close(); err != nil {
		return err
	}
	log.Warn("recon: log fast-forwarded; the leader repairs the store", "term", mk.Term, "index", mk.Index)
	mk.State = recon.ResyncRepair
	return recon.MarkResync(ctx, cli, v.Name, index/v.Replica, index%v.Replica, mk)
}
