package recon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/client"
	jbrserver "github.com/gluon-fs/gluon/xlators/jbr-server"
	protoclient "github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// SetState is a replica set's reconciliation state, for operators.
type SetState struct {
	Set    int          `json:"set"`
	Leader int          `json:"leader"` // brick index in the volume; -1: none
	Term   uint64       `json:"term"`
	Bricks []BrickState `json:"bricks"`
	// Reconciled: every replica holds the same non-zero reconciliation
	// id for Term (set by the last Verify or Run that found them equal).
	Reconciled bool           `json:"reconciled"`
	IDs        map[int]uint64 `json:"reconciliation_ids,omitempty"`
	// Plan is what reconciliation would do from the journal positions the
	// bricks report; PlanError why there is none (no quorum answered).
	Plan      *Plan   `json:"plan,omitempty"`
	PlanError string  `json:"plan_error,omitempty"`
	Last      *Result `json:"last_result,omitempty"`
	// Resyncs are the full resyncs under way, by replica (index in the
	// set; see ResyncPrefix).
	Resyncs map[int]Resync `json:"resyncs,omitempty"`
}

// BrickState is one brick of a SetState.
type BrickState struct {
	client.BrickStatus
	// Journal is the brick's journal on disk; nil if it did not answer.
	Journal *jbrserver.JournalStat `json:"journal,omitempty"`
	// LagBytes estimates the journal bytes of the entries the brick lags
	// by (Lag times the leader's mean record size); -1 when unknown.
	LagBytes int64 `json:"lag_bytes"`
}

// Status reports every replica set of a running volume: its leader and
// term, each brick's journal position and lag (client.Status), whether
// the term is reconciled, the plan reconciliation follows for the
// replicas' positions, and the last Verify or Run result.
func Status(ctx context.Context, cli *clientv3.Client, vol string) ([]SetState, error) {
	st, err := client.Status(ctx, cli, vol)
	if err != nil {
		return nil, err
	}
	if st.Replica < 2 {
		return nil, fmt.Errorf("volume %s is not replicated: nothing to reconcile", vol)
	}
	var out []SetState
	for _, ss := range st.Sets {
		s := SetState{Set: ss.Set, Leader: ss.Leader, Term: ss.Term}
		for _, b := range ss.Bricks {
			s.Bricks = append(s.Bricks, BrickState{BrickStatus: b, LagBytes: -1})
		}
		askJournals(ctx, s.Bricks)
		if ss.Leader >= 0 {
			if lj := s.Bricks[ss.Leader-ss.Bricks[0].Index].Journal; lj != nil && lj.LastIndex >= lj.FirstIndex {
				mean := lj.Bytes / int64(lj.LastIndex-lj.FirstIndex+1)
				for i := range s.Bricks {
					if s.Bricks[i].Lag >= 0 {
						s.Bricks[i].LagBytes = s.Bricks[i].Lag * mean
					}
				}
			}
		}
		if ss.Leader >= 0 {
			if s.IDs, err = IDs(ctx, cli, vol, ss.Set, ss.Term); err != nil {
				return nil, err
			}
			s.Reconciled = Reconciled(s.IDs, len(ss.Bricks))
		}
		if s.Last, err = LastResult(ctx, cli, vol, ss.Set); err != nil {
			return nil, err
		}
		if s.Resyncs, err = Resyncs(ctx, cli, vol, ss.Set); err != nil {
			return nil, err
		}
		if len(s.Resyncs) == 0 {
			s.Resyncs = nil
		}
		s.Plan, err = planFromStatus(s.Bricks, st.Replica/2+1)
		if err != nil {
			s.PlanError = err.Error()
		}
		out = append(out, s)
	}
	return out, nil
}

// journalTimeout bounds asking one brick for its journal.
const journalTimeout = 5 * time.Second

// askJournals asks every online brick for its journal's state.
func askJournals(ctx context.Context, bricks []BrickState) {
	var wg sync.WaitGroup
	for i := range bricks {
		b := &bricks[i]
		if !b.Online || b.JBR == nil {
			continue // not answering status either
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, journalTimeout)
			defer cancel()
			c, err := protoclient.New(protoclient.Options{Addr: b.Addr, Volume: brickPath(b.Brick),
				DialTimeout: journalTimeout, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				return
			}
			defer c.Close()
			out, e := c.Ipc(xl.WithCall(ctx, &xl.Call{}), jbrserver.IpcReconJournal, nil)
			if e != 0 {
				return // an older brick: no journal state
			}
			var js jbrserver.JournalStat
			if json.Unmarshal(out["journal"], &js) == nil {
				b.Journal = &js
			}
		})
	}
	wg.Wait()
}

// planFromStatus runs Decide on the bricks' reported positions: each
// replica's last entry only, so it tells laggards and a divergent last
// entry, not divergence deeper in a tail.
func planFromStatus(ss []BrickState, quorum int) (*Plan, error) {
	rs := make([]Replica, len(ss))
	for i, b := range ss {
		rs[i] = Replica{ID: i}
		if j := b.JBR; j != nil {
			rs[i].Reachable = true
			rs[i].Commit = j.Commit
			if j.LastIndex > 0 {
				rs[i].Log = []Pos{{Term: j.LastTerm, Index: j.LastIndex}}
			}
		}
	}
	return Decide(rs, quorum, nil)
}
