package recon

import (
	"errors"
	"reflect"
	"testing"
)

// log builds a dense log from index first with the given terms.
func log(first uint64, terms ...uint64) []Pos {
	out := make([]Pos, len(terms))
	for i, t := range terms {
		out[i] = Pos{Term: t, Index: first + uint64(i)}
	}
	return out
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name     string
		replicas []Replica
		acked    []Pos
		want     Plan
		err      error
	}{
		{
			name: "in step: nothing to do",
			replicas: []Replica{
				{ID: 0, Reachable: true, Commit: 3, Log: log(1, 1, 1, 1)},
				{ID: 1, Reachable: true, Commit: 3, Log: log(1, 1, 1, 1)},
				{ID: 2, Reachable: true, Commit: 3, Log: log(1, 1, 1, 1)},
			},
			want: Plan{Authority: 0, Committed: 3},
		},
		{
			name: "follower down for writes returns: shipped what it missed",
			replicas: []Replica{
				{ID: 0, Reachable: true, Commit: 5, Log: log(1, 1, 1, 1, 1, 1)},
				{ID: 1, Reachable: true, Commit: 5, Log: log(1, 1, 1, 1, 1, 1)},
				{ID: 2, Reachable: true, Commit: 2, Log: log(1, 1, 1)},
			},
			want: Plan{Authority: 0, Committed: 5, Catchups: []Catchup{{ID: 2, ShipFrom: 3, ShipTo: 5}}},
		},
		{
			name: "dead leader's unacknowledged tail is rolled back everywhere",
			replicas: []Replica{
				// Old leader 0 of term 1 journaled 4 and 5 alone; 1 leads term 2.
				{ID: 0, Reachable: true, Commit: 3, Log: log(1, 1, 1, 1, 1, 1)},
				{ID: 1, Reachable: true, Commit: 3, Log: log(1, 1, 1, 1, 2)},
				{ID: 2, Reachable: true, Commit: 3, Log: log(1, 1, 1, 1)},
			},
			want: Plan{Authority: 1, Committed: 3,
				Decisions: []Decision{
					{Pos: Pos{1, 4}, Action: RollBack, Holders: []int{0}, Why: "replaced by term 2 in the most advanced log"},
					{Pos: Pos{2, 4}, Action: RollForward, Holders: []int{1}, Why: "in the most advanced log (replica 1)"},
					{Pos: Pos{1, 5}, Action: RollBack, Holders: []int{0}, Why: "absent from the most advanced log"},
				},
				Catchups: []Catchup{{ID: 0, TruncateFrom: 4, ShipFrom: 4, ShipTo: 4}, {ID: 2, ShipFrom: 4, ShipTo: 4}}},
		},
		{
			name: "entries on a minority follower only roll forward when its log is the most advanced",
			replicas: []Replica{
				{ID: 0, Reachable: false, Commit: 2, Log: log(1, 1, 1, 1)}, // dead leader
				{ID: 1, Reachable: true, Commit: 2, Log: log(1, 1, 1, 1)},
				{ID: 2, Reachable: true, Commit: 2, Log: log(1, 1, 1)},
			},
			want: Plan{Authority: 1, Committed: 2,
				Decisions: []Decision{{Pos: Pos{1, 3}, Action: RollForward, Holders: []int{0, 1}, Why: "durable on a quorum"}},
				Catchups:  []Catchup{{ID: 2, ShipFrom: 3, ShipTo: 3}}},
		},
		{
			name: "acknowledged entry on a quorum including the dead leader",
			replicas: []Replica{
				{ID: 0, Reachable: false, Commit: 3, Log: log(1, 1, 1, 1, 1)},
				{ID: 1, Reachable: true, Commit: 2, Log: log(1, 1, 1, 1, 1)},
				{ID: 2, Reachable: true, Commit: 2, Log: log(1, 1, 1)},
			},
			acked: []Pos{{1, 3}, {1, 4}},
			want: Plan{Authority: 1, Committed: 3,
				Decisions: []Decision{{Pos: Pos{1, 4}, Action: RollForward, Holders: []int{0, 1}, Why: "durable on a quorum"}},
				Catchups:  []Catchup{{ID: 2, ShipFrom: 3, ShipTo: 4}}},
		},
		{
			name: "all restart divergent: newest term wins, older tails roll back",
			replicas: []Replica{
				{ID: 0, Reachable: true, Commit: 2, Log: log(1, 1, 1, 3, 3)},
				{ID: 1, Reachable: true, Commit: 2, Log: log(1, 1, 1, 2, 2, 2)},
				{ID: 2, Reachable: true, Commit: 2, Log: log(1, 1, 1, 3)},
			},
			want: Plan{Authority: 0, Committed: 2,
				Decisions: []Decision{
					{Pos: Pos{2, 3}, Action: RollBack, Holders: []int{1}, Why: "replaced by term 3 in the most advanced log"},
					{Pos: Pos{3, 3}, Action: RollForward, Holders: []int{0, 2}, Why: "durable on a quorum"},
					{Pos: Pos{2, 4}, Action: RollBack, Holders: []int{1}, Why: "replaced by term 3 in the most advanced log"},
					{Pos: Pos{3, 4}, Action: RollForward, Holders: []int{0}, Why: "in the most advanced log (replica 0)"},
					{Pos: Pos{2, 5}, Action: RollBack, Holders: []int{1}, Why: "absent from the most advanced log"},
				},
				Catchups: []Catchup{{ID: 1, TruncateFrom: 3, ShipFrom: 3, ShipTo: 4}, {ID: 2, ShipFrom: 4, ShipTo: 4}}},
		},
		{
			name: "acknowledged beats a mere majority count",
			replicas: []Replica{
				{ID: 0, Reachable: true, Commit: 1, Log: log(1, 1, 1)},
				{ID: 1, Reachable: true, Commit: 1, Log: log(1, 1)},
				{ID: 2, Reachable: false},
			},
			acked: []Pos{{1, 2}},
			want: Plan{Authority: 0, Committed: 1,
				Decisions: []Decision{{Pos: Pos{1, 2}, Action: RollForward, Holders: []int{0}, Why: "acknowledged"}},
				Catchups:  []Catchup{{ID: 1, ShipFrom: 2, ShipTo: 2}, {ID: 2, ShipFrom: 1, ShipTo: 2}}},
		},
		{
			name: "pruned range: full resync",
			replicas: []Replica{
				{ID: 0, Reachable: true, FirstIndex: 100, Commit: 120, Log: log(100, 5, 5, 5)},
				{ID: 1, Reachable: true, Commit: 120, Log: log(100, 5, 5, 5)},
				{ID: 2, Reachable: true, Commit: 40, Log: log(39, 2, 2)},
			},
			want: Plan{Authority: 0, Committed: 120, Catchups: []Catchup{{ID: 2, ShipFrom: 41, ShipTo: 102, FullResync: true}}},
		},
		{
			name: "no quorum: nothing decided",
			replicas: []Replica{
				{ID: 0, Reachable: true, Log: log(1, 1)},
				{ID: 1}, {ID: 2},
			},
			err: ErrNoQuorum,
		},
		{
			name: "acknowledged entry missing: reported, not papered over",
			replicas: []Replica{
				{ID: 0, Reachable: true, Log: log(1, 1)},
				{ID: 1, Reachable: true, Log: log(1, 1)},
				{ID: 2},
			},
			acked: []Pos{{1, 2}},
			err:   ErrLost,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decide(tt.replicas, 2, tt.acked)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("plan\n got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestDecideRefusesBadInput(t *testing.T) {
	if _, err := Decide([]Replica{{ID: 0, Reachable: true, Log: []Pos{{1, 1}, {1, 3}}}}, 1, nil); err == nil {
		t.Error("a log with a gap was accepted")
	}
	if _, err := Decide([]Replica{{ID: 0, Reachable: true}}, 2, nil); err == nil {
		t.Error("a quorum above the replica count was accepted")
	}
	// Divergence inside the committed prefix is corruption, not a tail.
	_, err := Decide([]Replica{
		{ID: 0, Reachable: true, Commit: 2, Log: log(1, 1, 2)},
		{ID: 1, Reachable: true, Commit: 2, Log: log(1, 1, 1)},
	}, 2, nil)
	if err == nil {
		t.Error("replicas differing at a committed index were accepted")
	}
}
