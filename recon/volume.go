package recon

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/volume"
	jbrserver "github.com/gluon-fs/gluon/xlators/jbr-server"
	"github.com/gluon-fs/gluon/xlators/jbr-server/election"
	protoclient "github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// VolumeOptions tune Verify and Run.
type VolumeOptions struct {
	Logger *slog.Logger // default slog.Default()
	// Set, if not negative, limits the work to that replica set.
	Set int
	// Settle bounds how long a difference seen while the volume is being
	// written may take to go away (followers applying what the leader
	// already has) before it is reported; default 10 s.
	Settle time.Duration
	// BytesPerSec bounds each brick's scan rate; 0: unbounded.
	BytesPerSec int64
	// Progress, if set, is called as bricks are scanned.
	Progress func(set, brick, objects int, bytes int64)
}

// SetReport is what Verify or Run found in one replica set.
type SetReport struct {
	Set int `json:"set"`
	// Leader is the leading brick's index in the volume (-1: none), Term
	// its term.
	Leader int            `json:"leader"`
	Term   uint64         `json:"term"`
	Bricks []BrickReport  `json:"bricks"`
	IDs    map[int]uint64 `json:"reconciliation_ids,omitempty"`
	// Reconciled: every replica holds the same non-zero reconciliation
	// id for Term.
	Reconciled bool   `json:"reconciled"`
	Error      string `json:"error,omitempty"`
}

// BrickReport is one brick of a SetReport.
type BrickReport struct {
	Index   int    `json:"index"`
	Brick   string `json:"brick"`
	Objects int    `json:"objects"`
	Bytes   int64  `json:"bytes"`
	// Found counts the differences seen once the replicas settled,
	// before any repair; Diffs are those left at the end.
	Found int    `json:"found"`
	Diffs []Diff `json:"diffs,omitempty"`
	Moved *Moved `json:"moved,omitempty"`
	Error string `json:"error,omitempty"`
}

// Differs reports whether any replica of any set differs from its
// leader, or could not be compared.
func Differs(sets []SetReport) bool {
	for _, s := range sets {
		if s.Error != "" {
			return true
		}
		for _, b := range s.Bricks {
			if len(b.Diffs) > 0 || b.Error != "" {
				return true
			}
		}
	}
	return false
}

// Verify compares every replica of every replica set of a running volume
// with its set's leader, by GFID: names, types, data (xxhash per chunk),
// mode, owner, size and xattrs. Replicas are read from their own stores
// (jbrserver.ReconKey), so what a follower holds is what is compared.
// It changes nothing but the reconciliation ids in etcd: a replica found
// identical to the leader gets the leader's id for its term.
func Verify(ctx context.Context, cli *clientv3.Client, vol string, opts VolumeOptions) ([]SetReport, error) {
	return walkVolume(ctx, cli, vol, opts, false)
}

// Run reconciles a running volume now: every replica that differs from
// its set's leader after the replicas settle is repaired from the
// leader's store (what is missing made, what is extra removed, differing
// chunks and metadata copied). The reports say what moved.
func Run(ctx context.Context, cli *clientv3.Client, vol string, opts VolumeOptions) ([]SetReport, error) {
	return walkVolume(ctx, cli, vol, opts, true)
}

func walkVolume(ctx context.Context, cli *clientv3.Client, vol string, opts VolumeOptions, repair bool) ([]SetReport, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Settle == 0 {
		opts.Settle = 10 * time.Second
	}
	st, err := client.Status(ctx, cli, vol)
	if err != nil {
		return nil, err
	}
	if st.Replica < 2 {
		return nil, fmt.Errorf("volume %s is not replicated: nothing to reconcile", vol)
	}
	if opts.Set >= len(st.Sets) {
		return nil, fmt.Errorf("volume %s has %d replica sets: no set %d", vol, len(st.Sets), opts.Set)
	}
	var out []SetReport
	for _, ss := range st.Sets {
		if opts.Set >= 0 && ss.Set != opts.Set {
			continue
		}
		r := reconcileSet(ctx, cli, vol, ss, opts, repair)
		out = append(out, r)
	}
	return out, nil
}

// reconcileSet verifies, and repairs if asked, one replica set.
func reconcileSet(ctx context.Context, cli *clientv3.Client, vol string, ss client.SetStatus, opts VolumeOptions, repair bool) SetReport {
	rep := SetReport{Set: ss.Set, Leader: ss.Leader, Term: ss.Term}
	for _, b := range ss.Bricks {
		rep.Bricks = append(rep.Bricks, BrickReport{Index: b.Index, Brick: b.Brick})
	}
	if ss.Leader < 0 {
		rep.Error = "no leader: nothing to compare with"
		return rep
	}
	first := ss.Bricks[0].Index
	xs := make([]xl.Xlator, len(ss.Bricks))
	for i, b := range ss.Bricks {
		if !b.Online {
			rep.Bricks[i].Error = "offline"
			continue
		}
		c, err := protoclient.New(protoclient.Options{Addr: b.Addr, Volume: brickPath(b.Brick), Logger: opts.Logger})
		if err != nil {
			rep.Bricks[i].Error = err.Error()
			continue
		}
		defer c.Close()
		xs[i] = c
	}
	li := ss.Leader - first
	if xs[li] == nil {
		rep.Error = fmt.Sprintf("leader brick %d unreachable: %s", ss.Leader, rep.Bricks[li].Error)
		return rep
	}
	rctx := jbrserver.ReconContext(xl.WithCall(ctx, &xl.Call{}))
	scanAll := func() []*Tree {
		trees := make([]*Tree, len(xs))
		var wg sync.WaitGroup
		for i, x := range xs {
			if x == nil {
				continue
			}
			wg.Go(func() {
				so := ScanOptions{BytesPerSec: opts.BytesPerSec}
				if opts.Progress != nil {
					so.Progress = func(n int, b int64) { opts.Progress(ss.Set, ss.Bricks[i].Index, n, b) }
				}
				t, err := Scan(rctx, x, so)
				if err != nil {
					rep.Bricks[i].Error = "scan: " + err.Error()
					return
				}
				trees[i] = t
				rep.Bricks[i].Objects, rep.Bricks[i].Bytes = len(t.Objects), t.Bytes
			})
		}
		wg.Wait()
		return trees
	}
	compare := func(trees []*Tree) bool {
		differ := false
		for i, t := range trees {
			rep.Bricks[i].Diffs = nil
			if i == li || t == nil || trees[li] == nil {
				continue
			}
			rep.Bricks[i].Diffs = Compare(trees[li], t)
			differ = differ || len(rep.Bricks[i].Diffs) > 0
		}
		return differ
	}
	trees := scanAll()
	// Differences while followers still apply what the leader has are
	// not divergence: let them settle and look again, until they go or
	// persist on settled replicas.
	deadline := time.Now().Add(opts.Settle)
	for compare(trees) && time.Now().Before(deadline) {
		pending, err := settle(ctx, cli, vol, ss.Set, deadline)
		if err != nil {
			break
		}
		trees = scanAll()
		if !compare(trees) || !pending {
			break
		}
	}
	found := 0
	for i := range rep.Bricks {
		rep.Bricks[i].Found = len(rep.Bricks[i].Diffs)
		found += rep.Bricks[i].Found
	}
	suspect := suspectLeader(trees, li)
	for g := range suspect {
		o := trees[li].Objects[g]
		opts.Logger.Error("recon: the leader's copy differs from a majority of replicas that agree: not repaired; the leader's store may be damaged",
			"set", ss.Set, "brick", ss.Leader, "path", o.Path, "gfid", g)
	}
	if repair && trees[li] != nil {
		for i, t := range trees {
			if i == li || t == nil || len(rep.Bricks[i].Diffs) == 0 {
				continue
			}
			for _, d := range rep.Bricks[i].Diffs {
				opts.Logger.Warn("recon: replica differs from its leader", "set", ss.Set, "brick", ss.Bricks[i].Index, "diff", d.String())
			}
			m, err := Repair(rctx, xs[li], xs[i], trees[li], t, RepairOptions{Logger: opts.Logger, Keep: suspect})
			rep.Bricks[i].Moved = &m
			if err != nil {
				rep.Bricks[i].Error = "repair: " + err.Error()
			}
		}
		trees = scanAll()
		compare(trees)
	}
	for i := range rep.Bricks {
		for k, d := range rep.Bricks[i].Diffs {
			if suspect[d.GFID] && (d.Kind == DiffData || d.Kind == DiffMeta) {
				rep.Bricks[i].Diffs[k].What += "; the leader's copy differs from a majority of replicas: left for an operator"
			}
		}
	}
	switch leader, term, _, err := election.Leader(ctx, cli, election.Key(vol, ss.Set)); {
	case trees[li] == nil:
		rep.Error = fmt.Sprintf("leader brick %d: %s", ss.Leader, rep.Bricks[li].Error)
	case err != nil:
		rep.Error = err.Error()
	case leader != li || term != ss.Term:
		// The reference may be a deposed leader's store: compare again.
		rep.Error = fmt.Sprintf("the leader changed during the comparison (brick %d, term %d); run again", first+leader, term)
	default:
		ids, reconciled, err := recordIDs(ctx, cli, vol, ss.Set, ss.Term, li, rep.Bricks)
		if err != nil {
			rep.Error = err.Error()
		}
		rep.IDs, rep.Reconciled = ids, reconciled
	}
	kind := "verify"
	if repair {
		kind = "run"
	}
	if err := saveResult(ctx, cli, vol, &rep, kind, found); err != nil && rep.Error == "" {
		rep.Error = err.Error()
	}
	return rep
}

// suspectLeader lists the objects whose copy on the leader (trees[li])
// differs from the copies a majority of all replicas hold alike: silent
// damage on the leader, which repairing from the leader would spread.
func suspectLeader(trees []*Tree, li int) map[xl.GFID]bool {
	if trees[li] == nil {
		return nil
	}
	majority := len(trees)/2 + 1
	out := map[xl.GFID]bool{}
	for g, lo := range trees[li].Objects {
		for i, t := range trees {
			o := t.object(g)
			if i == li || o == nil || Same(lo, o) {
				continue
			}
			alike := 0
			for _, u := range trees {
				if Same(o, u.object(g)) {
					alike++
				}
			}
			if alike >= majority {
				out[g] = true
				break
			}
		}
	}
	return out
}

// settle waits until every online brick of a set has applied what its
// leader had committed, or until deadline; pending says whether any had
// not at first.
func settle(ctx context.Context, cli *clientv3.Client, vol string, set int, deadline time.Time) (pending bool, err error) {
	for time.Now().Before(deadline) {
		st, err := client.Status(ctx, cli, vol)
		if err != nil {
			return pending, err
		}
		if set >= len(st.Sets) {
			return pending, errors.New("the volume changed")
		}
		ss := st.Sets[set]
		done := ss.Leader >= 0
		for _, b := range ss.Bricks {
			if b.Online && b.Lag != 0 {
				done = false
			}
		}
		if done {
			return pending, nil
		}
		pending = true
		select {
		case <-ctx.Done():
			return pending, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return pending, nil
}

// brickPath is the PATH of a status's HOST:PATH, which is what a brick
// serves its store as. (The first colon ends the host: a path may hold
// colons.)
func brickPath(hostPath string) string {
	b, err := volume.ParseBrick(hostPath)
	if err != nil {
		return hostPath // the brick refuses the name, and says so
	}
	return b.Path
}

// IDPrefix is where reconciliation ids live in etcd:
// IDPrefix<volume>/<set>/<term>/<replica> holds a decimal id.
const IDPrefix = "/gluon/recon/"

func idKey(vol string, set int, term uint64) string {
	return fmt.Sprintf("%s%s/%d/%020d/", IDPrefix, vol, set, term)
}

// IDs reads a term's reconciliation ids, by replica (index in the set).
func IDs(ctx context.Context, cli *clientv3.Client, vol string, set int, term uint64) (map[int]uint64, error) {
	resp, err := cli.Get(ctx, idKey(vol, set, term), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[int]uint64{}
	for _, kv := range resp.Kvs {
		r, err1 := strconv.Atoi(strings.TrimPrefix(string(kv.Key), idKey(vol, set, term)))
		id, err2 := strconv.ParseUint(string(kv.Value), 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("recon: bad reconciliation id %q = %q", kv.Key, kv.Value)
		}
		out[r] = id
	}
	return out, nil
}

// Reconciled reports whether a term is reconciled: every one of replicas
// holds the same non-zero id (GlusterFS's NSR design).
func Reconciled(ids map[int]uint64, replicas int) bool {
	if replicas == 0 {
		return false
	}
	first := ids[0]
	for r := range replicas {
		if ids[r] == 0 || ids[r] != first {
			return false
		}
	}
	return true
}

// recordIDs records what a comparison showed: the replicas found
// identical to the leader share its id for the term; when that set
// changed, it gets a new id, so that a replica left out keeps an old one
// and stays marked out of date.
func recordIDs(ctx context.Context, cli *clientv3.Client, vol string, set int, term uint64, leader int, bricks []BrickReport) (map[int]uint64, bool, error) {
	ids, err := IDs(ctx, cli, vol, set, term)
	if err != nil {
		return nil, false, err
	}
	same := []int{leader}
	for i, b := range bricks {
		if i != leader && b.Error == "" && len(b.Diffs) == 0 {
			same = append(same, i)
		}
	}
	// A replica that held the leader's id and no longer matches must
	// lose it: the matching ones move to a new id.
	id := ids[leader]
	for r, v := range ids {
		if v == id && !slices.Contains(same, r) {
			id = 0
		}
	}
	if id == 0 {
		var b [8]byte
		for id == 0 {
			rand.Read(b[:])
			id = binary.LittleEndian.Uint64(b[:])
		}
	}
	var ops []clientv3.Op
	for _, r := range same {
		if ids[r] != id {
			ops = append(ops, clientv3.OpPut(idKey(vol, set, term)+strconv.Itoa(r), strconv.FormatUint(id, 10)))
			ids[r] = id
		}
	}
	if len(ops) > 0 {
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return nil, false, err
		}
	}
	return ids, Reconciled(ids, len(bricks)), nil
}

// ResultPrefix is where the last Verify or Run of each replica set is
// kept in etcd: ResultPrefix<volume>/<set> holds a JSON Result.
const ResultPrefix = "/gluon/recon-result/"

// Result is the outcome of the last Verify or Run of a replica set.
type Result struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // "verify" or "run"
	Objects int       `json:"objects"`
	// Differences counts the differences left at the end; Found those
	// seen before any repair.
	Differences int    `json:"differences"`
	Found       int    `json:"found"`
	Repaired    Moved  `json:"repaired"`
	Error       string `json:"error,omitempty"`
}

func resultKey(vol string, set int) string { return fmt.Sprintf("%s%s/%d", ResultPrefix, vol, set) }

// saveResult records a set's outcome for Status.
func saveResult(ctx context.Context, cli *clientv3.Client, vol string, r *SetReport, kind string, found int) error {
	res := Result{Time: time.Now().UTC(), Kind: kind, Found: found, Error: r.Error}
	for _, b := range r.Bricks {
		res.Objects = max(res.Objects, b.Objects)
		res.Differences += len(b.Diffs)
		if b.Moved != nil {
			res.Repaired = res.Repaired.Add(*b.Moved)
		}
		if b.Error != "" && res.Error == "" {
			res.Error = fmt.Sprintf("brick %d: %s", b.Index, b.Error)
		}
	}
	v, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = cli.Put(ctx, resultKey(vol, r.Set), string(v))
	return err
}

// LastResult reads a set's last Result; nil if it was never verified.
func LastResult(ctx context.Context, cli *clientv3.Client, vol string, set int) (*Result, error) {
	resp, err := cli.Get(ctx, resultKey(vol, set))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return nil, fmt.Errorf("recon: bad result under %s: %w", resultKey(vol, set), err)
	}
	return &r, nil
}
