package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrBrickBusy is returned (wrapped) by Register when another process
// holds the brick's registration.
var ErrBrickBusy = errors.New("already registered")

// brickRecord is the value of a brick's liveness key.
type brickRecord struct {
	Addr     string    `json:"addr"`
	Host     string    `json:"host"`
	Path     string    `json:"path"`
	Pid      int       `json:"pid"`
	Started  time.Time `json:"started"`
	VolumeID string    `json:"volume_id"`
}

// BrickStatus is one brick of a volume as Status sees it.
type BrickStatus struct {
	Index   int
	Brick   Brick
	Online  bool
	Addr    string    // host:port serving the brick, when online
	Pid     int       // brick daemon's pid on Brick.Host, when online
	Started time.Time // when the daemon registered, when online
}

// Registration is a running brick's liveness key. It keeps the key's lease
// alive and, if the lease is lost (etcd unreachable for longer than the
// TTL), registers again once etcd is back.
type Registration struct {
	s     *Store
	vol   string
	index int
	addr  string
	ttl   time.Duration
	rec   brickRecord

	cancel    context.CancelFunc
	done      chan struct{}
	lease     clientv3.LeaseID // owned by keep until done is closed
	closeOnce sync.Once
	closeErr  error
}

// Register publishes that brick brickIndex of volume vol is served at addr,
// under a lease of ttl that a background goroutine keeps alive until
// Close. It fails, wrapping ErrBrickBusy, if another process has the brick
// registered.
func (s *Store) Register(ctx context.Context, vol string, brickIndex int, addr string, ttl time.Duration) (*Registration, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("volume %s: brick %d: lease TTL %v, want > 0", vol, brickIndex, ttl)
	}
	if addr == "" {
		return nil, fmt.Errorf("volume %s: brick %d: empty address", vol, brickIndex)
	}
	r := &Registration{
		s: s, vol: vol, index: brickIndex, addr: addr, ttl: ttl,
		rec:  brickRecord{Addr: addr, Pid: os.Getpid(), Started: time.Now().UTC()},
		done: make(chan struct{}),
	}
	lease, err := r.claim(ctx)
	if err != nil {
		return nil, err
	}
	r.lease = lease
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	go r.keep(kctx)
	return r, nil
}

// claim grants a lease and creates the brick's key under it, if the key is
// free and the volume unchanged since it was read.
func (r *Registration) claim(ctx context.Context) (clientv3.LeaseID, error) {
	s, key := r.s, brickKey(r.vol, r.index)
	var last error // the lease lost to the last etcd stall, if any
	for range maxRetries {
		v, rev, err := s.get(ctx, r.vol)
		if err != nil {
			return 0, err
		}
		if r.index < 0 || r.index >= len(v.Bricks) {
			return 0, fmt.Errorf("volume %s has no brick %d (it has %d)", r.vol, r.index, len(v.Bricks))
		}
		b := v.Bricks[r.index]
		rec := r.rec
		rec.Host, rec.Path, rec.VolumeID = b.Host, b.Path, v.ID
		val, err := json.Marshal(rec)
		if err != nil {
			return 0, err
		}
		g, err := s.cli.Grant(ctx, int64(math.Ceil(r.ttl.Seconds())))
		if err != nil {
			return 0, fmt.Errorf("volume %s: brick %s: grant lease: %w", r.vol, b, err)
		}
		t, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(volumeKey(r.vol)), "=", rev),
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		).Then(
			clientv3.OpPut(key, string(val), clientv3.WithLease(g.ID)),
		).Else(
			clientv3.OpGet(key),
		).Commit()
		if err == nil && t.Succeeded {
			return g.ID, nil
		}
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// etcd stalled past the TTL between the grant and the put: the
			// lease is gone, not the brick; grant another.
			last = err
			continue
		}
		_ = r.revoke(ctx, g.ID) // best effort: an unused lease expires anyway
		if err != nil {
			return 0, fmt.Errorf("volume %s: brick %s: register: %w", r.vol, b, err)
		}
		if kvs := t.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			var held brickRecord
			if json.Unmarshal(kvs[0].Value, &held) != nil {
				return 0, fmt.Errorf("volume %s: brick %s: %w (unreadable record)", r.vol, b, ErrBrickBusy)
			}
			return 0, fmt.Errorf("volume %s: brick %s: %w by pid %d on %s at %s (a dead daemon's registration expires within its lease TTL)",
				r.vol, b, ErrBrickBusy, held.Pid, held.Host, held.Addr)
		}
		// The volume changed under us: read it again.
	}
	if last != nil {
		return 0, fmt.Errorf("volume %s: brick %d: register: %w", r.vol, r.index, last)
	}
	return 0, fmt.Errorf("volume %s: brick %d: register: too many concurrent updates", r.vol, r.index)
}

func (r *Registration) revoke(ctx context.Context, id clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ConnectTimeout)
	defer cancel()
	_, err := r.s.cli.Revoke(ctx, id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return nil // expired already: the key is gone either way
	}
	return err
}

// keep renews the lease until ctx ends, and claims the key again if the
// lease expires.
func (r *Registration) keep(ctx context.Context) {
	defer close(r.done)
	log := r.s.logger().With("volume", r.vol, "brick", r.index, "addr", r.addr)
	for {
		if ch, err := r.s.cli.KeepAlive(ctx, r.lease); err == nil {
			for range ch { // drain renewals until the lease or ctx ends
			}
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("brick registration lost; registering again")
		backoff := 100 * time.Millisecond
		for {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			lease, err := r.claim(ctx)
			if err == nil {
				r.lease = lease
				log.Info("brick registered again")
				break
			}
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrNotFound) {
				log.Warn("volume deleted; not registering again")
				<-ctx.Done()
				return
			}
			log.Warn("brick registration", "err", err)
			backoff = min(2*backoff, r.ttl)
		}
	}
}

// Close stops renewing and revokes the lease, which deletes the brick's
// key at once. It is safe to call more than once.
func (r *Registration) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		if err := r.revoke(context.Background(), r.lease); err != nil {
			r.closeErr = fmt.Errorf("volume %s: brick %d: deregister: %w", r.vol, r.index, err)
		}
	})
	return r.closeErr
}

// Status reports every brick of vol, in brick order.
func (s *Store) Status(ctx context.Context, vol string) ([]BrickStatus, error) {
	st, _, err := s.snapshot(ctx, vol)
	return st, err
}

// snapshot reads the volume and its registrations at one revision. For a
// missing volume it returns the revision and an error wrapping ErrNotFound.
func (s *Store) snapshot(ctx context.Context, vol string) ([]BrickStatus, int64, error) {
	if err := ValidName(vol); err != nil {
		return nil, 0, err
	}
	t, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(volumeKey(vol)),
		clientv3.OpGet(bricksKey(vol), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, 0, fmt.Errorf("volume %s: status: %w", vol, err)
	}
	rev := t.Header.Revision
	vkvs := t.Responses[0].GetResponseRange().Kvs
	if len(vkvs) == 0 {
		return nil, rev, fmt.Errorf("volume %s %w", vol, ErrNotFound)
	}
	v, err := decode(vkvs[0].Value, vol)
	if err != nil {
		return nil, rev, err
	}
	st := make([]BrickStatus, len(v.Bricks))
	for i, b := range v.Bricks {
		st[i] = BrickStatus{Index: i, Brick: b}
	}
	for _, kv := range t.Responses[1].GetResponseRange().Kvs {
		i, err := strconv.Atoi(strings.TrimPrefix(string(kv.Key), bricksKey(vol)))
		if err != nil || i < 0 || i >= len(st) {
			continue
		}
		var rec brickRecord
		// A record from a deleted namesake volume, or for a brick that
		// has since been replaced, does not make this brick online.
		if json.Unmarshal(kv.Value, &rec) != nil || rec.VolumeID != v.ID || rec.Host != st[i].Brick.Host || rec.Path != st[i].Brick.Path {
			continue
		}
		st[i].Online, st[i].Addr, st[i].Pid, st[i].Started = true, rec.Addr, rec.Pid, rec.Started
	}
	return st, rev, nil
}

// WatchBricks sends vol's brick status now and after every change, until
// ctx ends; then it closes the channel. A reader that falls behind gets
// the latest status only. While the volume does not exist it sends an
// empty status once. Errors from etcd are retried. For an invalid volume
// name the channel is closed at once.
func (s *Store) WatchBricks(ctx context.Context, vol string) <-chan []BrickStatus {
	ch := make(chan []BrickStatus, 1)
	if ValidName(vol) != nil {
		close(ch)
		return ch
	}
	read := func(ctx context.Context) ([]BrickStatus, int64, error) {
		st, rev, err := s.snapshot(ctx, vol)
		if errors.Is(err, ErrNotFound) {
			err = nil
		}
		return st, rev, err
	}
	go follow(ctx, s, ch, read, slices.Equal, volumeKey(vol), bricksKey(vol))
	return ch
}

// WatchVolume sends vol's definition now and after every change, until ctx
// ends; then it closes the channel. It sends nil while the volume does not
// exist. A reader that falls behind gets the latest definition only.
// Errors from etcd are retried. For an invalid volume name the channel is
// closed at once.
func (s *Store) WatchVolume(ctx context.Context, vol string) <-chan *Volume {
	ch := make(chan *Volume, 1)
	if ValidName(vol) != nil {
		close(ch)
		return ch
	}
	read := func(ctx context.Context) (*Volume, int64, error) {
		r, err := s.cli.Get(ctx, volumeKey(vol))
		if err != nil {
			return nil, 0, err
		}
		if len(r.Kvs) == 0 {
			return nil, r.Header.Revision, nil
		}
		v, err := decode(r.Kvs[0].Value, vol)
		return v, r.Header.Revision, err
	}
	same := func(a, b *Volume) bool { return reflect.DeepEqual(a, b) }
	go follow(ctx, s, ch, read, same, volumeKey(vol))
	return ch
}

// follow publishes read's result on ch, then waits for a change to keys
// (each key ending in "/" is a prefix) and reads again, until ctx ends.
// Results equal to the last one sent are dropped; an unread result is
// replaced by a newer one.
func follow[T any](ctx context.Context, s *Store, ch chan T, read func(context.Context) (T, int64, error), equal func(a, b T) bool, keys ...string) {
	defer close(ch)
	var last T
	sent := false
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		v, rev, err := read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.logger().Warn("etcd watch", "keys", keys, "err", err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if !sent || !equal(v, last) {
			select { // replace a value the reader has not taken yet
			case <-ch:
			default:
			}
			ch <- v
			last, sent = v, true
		}
		s.awaitChange(ctx, rev, keys)
	}
}

// watchDrainTimeout bounds how long awaitChange waits for its watches'
// channels to close after cancelling them. etcd's client closes them
// once its watch stream sees the cancellation, which a stream stuck
// reconnecting to an unreachable etcd may not do for a long time; the
// draining goroutines then end when the client is closed.
const watchDrainTimeout = 5 * time.Second

// awaitChange returns after the first change to keys after rev, or when a
// watch breaks.
func (s *Store) awaitChange(ctx context.Context, rev int64, keys []string) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	var wg sync.WaitGroup
	defer func() {
		cancel()
		drained := make(chan struct{})
		go func() {
			wg.Wait()
			close(drained)
		}()
		t := time.NewTimer(watchDrainTimeout)
		defer t.Stop()
		select {
		case <-drained:
		case <-t.C:
			s.logger().Warn("etcd watches not closed after cancelling them; leaving them to the etcd client", "keys", keys)
		}
	}()
	changed := make(chan struct{}, len(keys))
	for _, k := range keys {
		opts := []clientv3.OpOption{clientv3.WithRev(rev + 1)}
		if strings.HasSuffix(k, "/") {
			opts = append(opts, clientv3.WithPrefix())
		}
		wch := s.cli.Watch(wctx, k, opts...)
		wg.Go(func() {
			signalled := false
			for r := range wch { // drain until cancel closes it
				// Progress notifications carry no events; anything else
				// (events, compaction, cancellation) means read again.
				if !signalled && (r.Err() != nil || len(r.Events) > 0) {
					changed <- struct{}{}
					signalled = true
				}
			}
			if !signalled {
				changed <- struct{}{}
			}
		})
	}
	select {
	case <-changed:
	case <-ctx.Done():
	}
}

func (s *Store) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}
