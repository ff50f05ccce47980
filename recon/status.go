package recon

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/client"
)

// SetState is a replica set's reconciliation state, for operators.
type SetState struct {
	Set    int                  `json:"set"`
	Leader int                  `json:"leader"` // brick index in the volume; -1: none
	Term   uint64               `json:"term"`
	Bricks []client.BrickStatus `json:"bricks"`
	// Reconciled: every replica holds the same non-zero reconciliation
	// id for Term (set by the last Verify or Run that found them equal).
	Reconciled bool           `json:"reconciled"`
	IDs        map[int]uint64 `json:"reconciliation_ids,omitempty"`
	// Plan is what reconciliation would do from the journal positions the
	// bricks report; PlanError why there is none (no quorum answered).
	Plan      *Plan   `json:"plan,omitempty"`
	PlanError string  `json:"plan_error,omitempty"`
	Last      *Result `json:"last_result,omitempty"`
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
		s := SetState{Set: ss.Set, Leader: ss.Leader, Term: ss.Term, Bricks: ss.Bricks}
		if ss.Leader >= 0 {
			if s.IDs, err = IDs(ctx, cli, vol, ss.Set, ss.Term); err != nil {
				return nil, err
			}
			s.Reconciled = Reconciled(s.IDs, len(ss.Bricks))
		}
		if s.Last, err = LastResult(ctx, cli, vol, ss.Set); err != nil {
			return nil, err
		}
		s.Plan, err = planFromStatus(ss, st.Replica/2+1)
		if err != nil {
			s.PlanError = err.Error()
		}
		out = append(out, s)
	}
	return out, nil
}

// planFromStatus runs Decide on the bricks' reported positions: each
// replica's last entry only, so it tells laggards and a divergent last
// entry, not divergence deeper in a tail.
func planFromStatus(ss client.SetStatus, quorum int) (*Plan, error) {
	rs := make([]Replica, len(ss.Bricks))
	for i, b := range ss.Bricks {
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
