package recon

import (
	"context"
	"fmt"

	"github.com/gluon-fs/gluon/xlators/fdl"
	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	jbrserver "github.com/gluon-fs/gluon/xlators/jbr-server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// ReplayOptions tune Replay.
type ReplayOptions struct {
	// Uncommitted also applies the entries of a replicated journal past
	// the highest commit index it records: entries its leader may never
	// have committed, which reconciliation could still roll back.
	Uncommitted bool
	// Progress, if set, is called after each entry applied.
	Progress func(applied int)
}

// ReplayStats says what Replay did.
type ReplayStats struct {
	Applied int `json:"applied"`
	// Skipped counts the records not applied: replaced (a deposed
	// leader's), leaders' no-ops and other internal records, and
	// uncommitted entries unless asked for.
	Skipped     int `json:"skipped"`
	Uncommitted int `json:"uncommitted"`
	// Failed counts the entries the store refused (logged by the caller
	// through fail); a replay goes on past them, as a restart would.
	Failed int `json:"failed"`
}

// Replay applies the journal's entries, in log order, to the store x (a
// bare store: GlusterFS's gf_recon), each as its original caller, the
// way a restart replays them (fdl.Reapply): idempotently where it can (a
// create is known done by its name, so not once a later rename moved it).
// fail is told about each entry the store refused.
func (j *Journal) Replay(ctx context.Context, x xl.Xlator, opts ReplayOptions, fail func(e *Entry, errno error)) (ReplayStats, error) {
	var st ReplayStats
	replaced, err := j.replaced()
	if err != nil {
		return st, err
	}
	var commit uint64
	replicated := false
	err = j.j.Iterate(0, 0, func(rec *journal.Record) error {
		if _, _, c, ok := jbrserver.Position(rec); ok {
			replicated = true
			commit = max(commit, c)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	err = j.j.Iterate(0, 0, func(rec *journal.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if replaced[rec.Index] || rec.Fop.Op == xl.OpIpc || !rec.Fop.Mutates() {
			st.Skipped++
			return nil
		}
		if _, index, _, ok := jbrserver.Position(rec); replicated && (!ok || index > commit) {
			st.Uncommitted++
			if !opts.Uncommitted {
				st.Skipped++
				return nil
			}
		}
		if r := fdl.Reapply(ctx, x, rec.Call, rec.Fop); r.Errno != 0 {
			st.Failed++
			if fail != nil {
				fail(describe(rec), r.Errno)
			}
			return nil
		}
		st.Applied++
		if opts.Progress != nil {
			opts.Progress(st.Applied)
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("replaying %s: %w", j.Path, err)
	}
	return st, nil
}
