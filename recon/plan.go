package recon

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Pos is an entry's place in a replica set's log.
type Pos struct {
	Term  uint64 `json:"term"`
	Index uint64 `json:"index"`
}

func (p Pos) String() string { return fmt.Sprintf("%d/%d", p.Term, p.Index) }

// Replica is what reconciliation knows of one replica's journal.
type Replica struct {
	ID int `json:"id"`
	// Reachable: the replica answered. An unreachable replica is planned
	// for (it will need what it misses) but decides nothing.
	Reachable bool `json:"reachable"`
	// FirstIndex is the oldest log index its journal still holds; the
	// entries before it were pruned (applied and synced). 0 or 1: none.
	FirstIndex uint64 `json:"first_index"`
	// Commit is the highest index it knows committed.
	Commit uint64 `json:"commit"`
	// Log is its entries' places from some index on, in index order and
	// dense; the last one is its last entry. Entries before Log[0] are
	// taken to agree with every other replica (they are at most Commit).
	Log []Pos `json:"log"`
}

// Last is the replica's last entry (zero when its log is empty).
func (r *Replica) Last() Pos {
	if len(r.Log) == 0 {
		return Pos{}
	}
	return r.Log[len(r.Log)-1]
}

// at returns the term of the replica's entry at index, if it holds it.
func (r *Replica) at(index uint64) (uint64, bool) {
	if len(r.Log) == 0 || index < r.Log[0].Index || index > r.Last().Index {
		return 0, false
	}
	return r.Log[index-r.Log[0].Index].Term, true
}

// Action is what happens to one entry.
type Action string

const (
	// RollForward: the entry stays and commits on every replica.
	RollForward Action = "roll-forward"
	// RollBack: the entry is dropped wherever it is held (replaced by the
	// authoritative log's entry for its index, if any); never applied.
	RollBack Action = "roll-back"
)

// Decision is the outcome for one entry after the last known committed.
type Decision struct {
	Pos    Pos    `json:"pos"`
	Action Action `json:"action"`
	// Holders are the replicas that hold the entry.
	Holders []int  `json:"holders"`
	Why     string `json:"why"`
}

// Catchup is what one replica needs.
type Catchup struct {
	ID int `json:"id"`
	// TruncateFrom, when not zero, is the first index of a divergent tail
	// the replica must drop (its entries there are rolled back).
	TruncateFrom uint64 `json:"truncate_from,omitempty"`
	// ShipFrom and ShipTo bound the authoritative entries it must be
	// sent; ShipFrom zero when it lacks none.
	ShipFrom uint64 `json:"ship_from,omitempty"`
	ShipTo   uint64 `json:"ship_to,omitempty"`
	// FullResync: the authority no longer holds the entries it needs
	// (pruned): its store must be compared and copied whole, and it may
	// neither vote nor serve until done.
	FullResync bool `json:"full_resync,omitempty"`
}

// Plan is the reconciliation of one replica set.
type Plan struct {
	// Authority is the replica whose log is kept: the most advanced
	// (last term, then last index) among those reachable.
	Authority int `json:"authority"`
	// Committed is the highest index any replica knows committed: every
	// entry up to it stays, whatever else happens.
	Committed uint64     `json:"committed"`
	Decisions []Decision `json:"decisions,omitempty"`
	Catchups  []Catchup  `json:"catchups,omitempty"`
}

// Errors from Decide.
var (
	// ErrNoQuorum: fewer replicas answered than a quorum. Nothing may be
	// decided, and writes stay refused, until a quorum is back: the
	// replicas that did not answer may hold acknowledged entries.
	ErrNoQuorum = errors.New("recon: no quorum of replicas reachable")
	// ErrLost: an acknowledged entry is absent from the authoritative
	// log. With quorum-durable acknowledgements this cannot happen; it
	// means more replicas lost their journals than the quorum tolerates.
	ErrLost = errors.New("recon: acknowledged entry absent from every reachable log")
)

// Decide plans the reconciliation of one replica set, without I/O.
//
// The rule, GlusterFS's NSR design (roll forward what may have been
// acknowledged, roll back what cannot have been) made exact the Raft way:
// any quorum of replicas intersects every write quorum, so among a quorum
// the most advanced log (highest last term, then highest last index)
// holds every acknowledged entry. That log is kept. Its entries after the
// last known committed one roll forward: those held by a quorum, or
// acknowledged (acked lists the entries replies were sent for, when
// known), because they must; the others because a leader's log is never
// rewritten and a no-op of the new term commits them. An entry not in it,
// whose index it holds with another term or not at all, rolls back: it
// was never acknowledged, since it is absent from a quorum. A replica
// whose log diverges drops its tail from the first disagreeing index, and
// each replica is shipped what it lacks, or resynced in full when the
// authority has pruned it.
func Decide(replicas []Replica, quorum int, acked []Pos) (*Plan, error) {
	if quorum <= 0 || quorum > len(replicas) {
		return nil, fmt.Errorf("recon: quorum %d with %d replicas", quorum, len(replicas))
	}
	var up []*Replica
	for i := range replicas {
		r := &replicas[i]
		if err := checkLog(r); err != nil {
			return nil, err
		}
		if r.Reachable {
			up = append(up, r)
		}
	}
	if len(up) < quorum {
		return nil, fmt.Errorf("%w: %d of %d answered, %d needed", ErrNoQuorum, len(up), len(replicas), quorum)
	}
	auth := slices.MaxFunc(up, func(a, b *Replica) int {
		la, lb := a.Last(), b.Last()
		// Ties go to the lower ID, so the plan is deterministic.
		return cmp.Or(cmp.Compare(la.Term, lb.Term), cmp.Compare(la.Index, lb.Index), cmp.Compare(b.ID, a.ID))
	})
	p := &Plan{Authority: auth.ID}
	for _, r := range replicas {
		p.Committed = max(p.Committed, r.Commit)
	}
	for _, a := range acked {
		if t, ok := auth.at(a.Index); ok && t != a.Term || !ok && a.Index > auth.Last().Index {
			return nil, fmt.Errorf("%w: %v (replica %d is the most advanced)", ErrLost, a, auth.ID)
		}
	}
	isAcked := map[Pos]bool{}
	for _, a := range acked {
		isAcked[a] = true
	}

	// Every entry after the committed prefix, on any replica.
	type key = Pos
	holders := map[key][]int{}
	for _, r := range replicas {
		for _, e := range r.Log {
			if e.Index > p.Committed {
				holders[e] = append(holders[e], r.ID)
			}
		}
	}
	keys := make([]Pos, 0, len(holders))
	for k := range holders {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b Pos) int { return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.Term, b.Term)) })
	for _, k := range keys {
		d := Decision{Pos: k, Holders: holders[k]}
		t, ok := auth.at(k.Index)
		switch {
		case ok && t == k.Term && len(d.Holders) >= quorum:
			d.Action, d.Why = RollForward, "durable on a quorum"
		case ok && t == k.Term && isAcked[k]:
			d.Action, d.Why = RollForward, "acknowledged"
		case ok && t == k.Term:
			d.Action, d.Why = RollForward, fmt.Sprintf("in the most advanced log (replica %d)", auth.ID)
		case ok:
			d.Action, d.Why = RollBack, fmt.Sprintf("replaced by term %d in the most advanced log", t)
		default:
			d.Action, d.Why = RollBack, "absent from the most advanced log"
		}
		p.Decisions = append(p.Decisions, d)
	}

	authFirst := max(auth.FirstIndex, 1)
	last := auth.Last().Index
	for i := range replicas {
		r := &replicas[i]
		if r.ID == auth.ID {
			continue
		}
		rp := Catchup{ID: r.ID}
		// The first index where r disagrees with the authority, or the
		// one after its last entry.
		next := r.Last().Index + 1
		for _, e := range r.Log {
			if len(auth.Log) > 0 && e.Index < auth.Log[0].Index {
				continue // pruned by the authority: beyond comparing
			}
			if t, ok := auth.at(e.Index); !ok || t != e.Term {
				if e.Index <= p.Committed {
					return nil, fmt.Errorf("recon: replica %d holds %v, which differs from replica %d at committed index %d",
						r.ID, e, auth.ID, e.Index)
				}
				rp.TruncateFrom, next = e.Index, e.Index
				break
			}
		}
		if next <= last {
			rp.ShipFrom, rp.ShipTo = next, last
			rp.FullResync = next < authFirst
		}
		if rp != (Catchup{ID: r.ID}) {
			p.Catchups = append(p.Catchups, rp)
		}
	}
	return p, nil
}

// checkLog refuses a log that is not dense and in order.
func checkLog(r *Replica) error {
	for i := 1; i < len(r.Log); i++ {
		if r.Log[i].Index != r.Log[i-1].Index+1 || r.Log[i].Term < r.Log[i-1].Term {
			return fmt.Errorf("recon: replica %d: log not dense and ordered at %v after %v", r.ID, r.Log[i], r.Log[i-1])
		}
	}
	return nil
}
