package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Rebalance kinds.
const (
	// KindRebalance spreads the tokens evenly over every set.
	KindRebalance = "rebalance"
	// KindRemove drains one set (Rebalance.Set) before remove-brick
	// commit drops it.
	KindRemove = "remove-brick"
)

// Rebalance states.
const (
	RebalanceRunning   = "running"
	RebalanceStopped   = "stopped"
	RebalanceCompleted = "completed"
	RebalanceFailed    = "failed"
)

const (
	rebalancePrefix = Prefix + "rebalance/"
	workerPrefix    = Prefix + "rebalance-worker/"
)

func rebalanceKey(name string) string { return rebalancePrefix + name }

// Rebalance is the state of a volume's rebalance (or drain of a set for
// remove-brick), kept in etcd so that status can be read from anywhere
// and a worker that dies can be resumed.
type Rebalance struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Set   int    `json:"set"`  // KindRemove: the set drained
	Sets  int    `json:"sets"` // the volume's sets when it started
	State string `json:"state"`
	// Stop asks the worker to stop after the token it is moving.
	Stop bool `json:"stop,omitempty"`

	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`

	TokensTotal int   `json:"tokens_total"` // tokens to move, known once a worker ran
	TokensMoved int   `json:"tokens_moved"`
	Files       int64 `json:"files"`
	Bytes       int64 `json:"bytes"`
	// Elapsed is the time workers spent moving, for the ETA.
	Elapsed time.Duration `json:"elapsed"`
	Worker  string        `json:"worker,omitempty"` // host:pid of the last worker
	Error   string        `json:"error,omitempty"`
}

// ETA estimates the time left from the rate so far; 0 when unknown or
// done.
func (r *Rebalance) ETA() time.Duration {
	left := r.TokensTotal - r.TokensMoved
	if r.TokensMoved == 0 || left <= 0 || r.Elapsed <= 0 {
		return 0
	}
	return time.Duration(float64(r.Elapsed) / float64(r.TokensMoved) * float64(left)).Round(time.Second)
}

// Rebalance returns the volume's rebalance record, nil if none.
func (s *Store) Rebalance(ctx context.Context, name string) (*Rebalance, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	r, _, err := s.rebalance(ctx, name)
	return r, err
}

// rebalance also returns the record's mod revision (0 without one).
func (s *Store) rebalance(ctx context.Context, name string) (*Rebalance, int64, error) {
	resp, err := s.cli.Get(ctx, rebalanceKey(name))
	if err != nil {
		return nil, 0, fmt.Errorf("volume %s: rebalance: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	r := &Rebalance{}
	if err := json.Unmarshal(resp.Kvs[0].Value, r); err != nil {
		return nil, 0, fmt.Errorf("volume %s: corrupt rebalance record in etcd: %w", name, err)
	}
	return r, resp.Kvs[0].ModRevision, nil
}

// StartRebalance records that a rebalance of kind (for KindRemove,
// draining set) is wanted, and returns the record a worker should run.
// A running or stopped record of the same kind and set is resumed (its
// counters kept); one of another kind refuses, until it completes or is
// stopped. A completed or failed record is replaced. It fails for a
// volume with one set, unless it drains nothing.
func (s *Store) StartRebalance(ctx context.Context, name, kind string, set int) (*Rebalance, error) {
	if kind != KindRebalance && kind != KindRemove {
		return nil, fmt.Errorf("volume %s: unknown rebalance kind %q", name, kind)
	}
	var out *Rebalance
	err := s.updateIf(ctx, name, func(v *Volume) ([]clientv3.Cmp, []clientv3.Op, error) {
		n := v.Sets()
		if kind == KindRemove {
			switch {
			case n == 1:
				return nil, nil, fmt.Errorf("volume %s has one replica set; it cannot be removed", name)
			case set != n-1:
				return nil, nil, fmt.Errorf("volume %s: only the last replica set (%d) can be removed, not set %d", name, n-1, set)
			}
		}
		old, rev, err := s.rebalance(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		r := &Rebalance{ID: newID(), Kind: kind, Set: set, Sets: n, State: RebalanceRunning, Started: now, Updated: now}
		if kind == KindRebalance {
			r.Set = 0
		}
		if old != nil && (old.State == RebalanceRunning || old.State == RebalanceStopped) {
			if old.Kind != kind || old.Set != r.Set {
				return nil, nil, fmt.Errorf("volume %s: a %s is %s; stop it first", name, describe(old), old.State)
			}
			if old.Sets == n {
				r = old // resume: same work, counters kept
				r.State, r.Stop, r.Error, r.Updated = RebalanceRunning, false, "", now
			}
		}
		val, err := json.Marshal(r)
		if err != nil {
			return nil, nil, err
		}
		out = r
		return []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(rebalanceKey(name)), "=", rev)},
			[]clientv3.Op{clientv3.OpPut(rebalanceKey(name), string(val))}, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func describe(r *Rebalance) string {
	if r.Kind == KindRemove {
		return fmt.Sprintf("remove-brick of replica set %d", r.Set)
	}
	return "rebalance"
}

// ErrNoRebalance is returned (wrapped) when a volume has no rebalance
// record to act on.
var ErrNoRebalance = errors.New("no rebalance")

// UpdateRebalance applies f to the record with the given ID, with
// compare-and-swap. It fails wrapping ErrNoRebalance if the volume's
// record is gone or another.
func (s *Store) UpdateRebalance(ctx context.Context, name, id string, f func(*Rebalance) error) (*Rebalance, error) {
	for range maxRetries {
		r, rev, err := s.rebalance(ctx, name)
		if err != nil {
			return nil, err
		}
		if r == nil || r.ID != id {
			return nil, fmt.Errorf("volume %s: %w: the record was replaced or removed", name, ErrNoRebalance)
		}
		if err := f(r); err != nil {
			return nil, err
		}
		r.Updated = time.Now().UTC().Truncate(time.Millisecond)
		val, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		t, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(rebalanceKey(name)), "=", rev),
		).Then(clientv3.OpPut(rebalanceKey(name), string(val))).Commit()
		if err != nil {
			return nil, fmt.Errorf("volume %s: rebalance: %w", name, err)
		}
		if t.Succeeded {
			return r, nil
		}
	}
	return nil, fmt.Errorf("volume %s: rebalance: too many concurrent updates", name)
}

// StopRebalance asks the volume's running rebalance of kind to stop
// after the token it is moving; a record no worker runs is marked
// stopped at once (workerAlive tells). It returns the record.
func (s *Store) StopRebalance(ctx context.Context, name, kind string) (*Rebalance, error) {
	r, err := s.Rebalance(ctx, name)
	if err != nil {
		return nil, err
	}
	if r == nil || r.Kind != kind || (r.State != RebalanceRunning && r.State != RebalanceStopped) {
		what := "rebalance"
		if kind == KindRemove {
			what = "remove-brick"
		}
		return nil, fmt.Errorf("volume %s: %w: no %s in progress", name, ErrNoRebalance, what)
	}
	alive, err := s.RebalanceWorker(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.UpdateRebalance(ctx, name, r.ID, func(r *Rebalance) error {
		r.Stop = true
		if alive == "" {
			r.State = RebalanceStopped
		}
		return nil
	})
}

// RebalanceWorker returns the host:pid of the process running the
// volume's rebalance, "" if none.
func (s *Store) RebalanceWorker(ctx context.Context, name string) (string, error) {
	r, err := s.cli.Get(ctx, workerPrefix+name)
	if err != nil {
		return "", fmt.Errorf("volume %s: rebalance worker: %w", name, err)
	}
	if len(r.Kvs) == 0 {
		return "", nil
	}
	return string(r.Kvs[0].Value), nil
}

// ErrWorkerBusy is returned (wrapped) by ClaimRebalance when another
// process runs the volume's rebalance.
var ErrWorkerBusy = errors.New("rebalance already running")

// WorkerClaim is a rebalance worker's leased key: one worker per volume.
// Lost is closed if the lease is lost (etcd unreachable past its TTL).
type WorkerClaim struct {
	s      *Store
	lease  clientv3.LeaseID
	cancel context.CancelFunc
	done   chan struct{}
	Lost   <-chan struct{}
}

// ClaimRebalance makes this process the volume's rebalance worker, under
// a lease of ttl kept alive until Release. It fails wrapping
// ErrWorkerBusy if another live process is the worker; a dead one's
// claim expires with its lease.
func (s *Store) ClaimRebalance(ctx context.Context, name string, ttl time.Duration) (*WorkerClaim, error) {
	host, _ := os.Hostname()
	me := fmt.Sprintf("%s:%d", host, os.Getpid())
	g, err := s.cli.Grant(ctx, int64(math.Ceil(ttl.Seconds())))
	if err != nil {
		return nil, fmt.Errorf("volume %s: rebalance worker: %w", name, err)
	}
	key := workerPrefix + name
	t, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, me, clientv3.WithLease(g.ID))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil || !t.Succeeded {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ConnectTimeout)
		s.cli.Revoke(rctx, g.ID) // best effort: an unused lease expires anyway
		cancel()
		if err != nil {
			return nil, fmt.Errorf("volume %s: rebalance worker: %w", name, err)
		}
		held := "another process"
		if kvs := t.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			held = string(kvs[0].Value)
		}
		return nil, fmt.Errorf("volume %s: %w in %s", name, ErrWorkerBusy, held)
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ka, err := s.cli.KeepAlive(kctx, g.ID)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("volume %s: rebalance worker: %w", name, err)
	}
	lost := make(chan struct{})
	w := &WorkerClaim{s: s, lease: g.ID, cancel: cancel, done: make(chan struct{}), Lost: lost}
	go func() {
		defer close(w.done)
		for range ka { // drain renewals until the lease or kctx ends
		}
		close(lost)
	}()
	return w, nil
}

// Release stops renewing the claim and revokes it.
func (w *WorkerClaim) Release() error {
	w.cancel()
	<-w.done
	ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
	defer cancel()
	_, err := w.s.cli.Revoke(ctx, w.lease)
	return err
}

func newID() string { return xl.NewGFID().String() }
