package jbrclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/xlators/jbr-server/election"
)

// etcdTimeout bounds one read of the election key.
const etcdTimeout = 5 * time.Second

// EtcdLeader is a LeaderSource that follows a replica set's election key
// in etcd (see package election).
type EtcdLeader struct {
	cli     *clientv3.Client
	key     string
	log     *slog.Logger
	changed chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu     sync.Mutex
	leader int
	term   uint64
	ok     bool
}

var _ LeaderSource = (*EtcdLeader)(nil)

// WatchEtcd reads the leader of the election key (election.Key) with ctx,
// then follows it until Close: a watch on the key's prefix, and a fresh
// read of the leader on each event. When the watch fails (etcd restarts,
// the member loses its quorum, the revision is compacted) it is set up
// again and the leader read again, so no change is missed. It stops when
// cli is closed.
func WatchEtcd(ctx context.Context, cli *clientv3.Client, key string, logger *slog.Logger) (*EtcdLeader, error) {
	if cli == nil || key == "" {
		return nil, errors.New("jbr-client: need an etcd client and an election key")
	}
	if logger == nil {
		logger = slog.Default()
	}
	l := &EtcdLeader{cli: cli, key: key, log: logger.With("xlator", "jbr-client", "election", key),
		changed: make(chan struct{}, 1)}
	if err := l.refresh(ctx); err != nil {
		return nil, fmt.Errorf("jbr-client: read the leader of %s: %w", key, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.run(wctx)
	}()
	return l, nil
}

// Leader implements LeaderSource.
func (l *EtcdLeader) Leader() (index int, term uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leader, l.term, l.ok
}

// Changed implements LeaderSource.
func (l *EtcdLeader) Changed() <-chan struct{} { return l.changed }

// Close stops following the key and waits for that to end.
func (l *EtcdLeader) Close() error {
	l.cancel()
	l.wg.Wait()
	return nil
}

// run watches until ctx ends or the etcd client is closed.
func (l *EtcdLeader) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		healthy, err := l.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		if l.cli.Ctx().Err() != nil {
			l.log.Warn("etcd client closed; no longer following the leader")
			return
		}
		if healthy {
			backoff = 100 * time.Millisecond
		}
		l.log.Warn("watch on the election key ended; watching again", "err", err, "after", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, etcdTimeout)
	}
}

// watch follows the key until the watch fails. The leader is read again
// once the watch is in place, so a change between the last read and the
// watch is not missed. healthy says the watch got that far.
func (l *EtcdLeader) watch(ctx context.Context) (healthy bool, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range l.cli.Watch(wctx, l.key, clientv3.WithPrefix(), clientv3.WithCreatedNotify()) {
		if err := resp.Err(); err != nil {
			return healthy, err
		}
		if resp.IsProgressNotify() {
			continue
		}
		if err := l.refresh(ctx); err != nil {
			return healthy, err
		}
		healthy = true
	}
	return healthy, errors.New("watch closed")
}

// refresh reads the leader and reports a change.
func (l *EtcdLeader) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	leader, term, ok, err := election.Leader(ctx, l.cli, l.key)
	if err != nil {
		return err
	}
	l.mu.Lock()
	same := ok == l.ok && leader == l.leader && term == l.term
	l.leader, l.term, l.ok = leader, term, ok
	l.mu.Unlock()
	if same {
		return nil
	}
	l.log.Debug("election key changed", "leader", leader, "term", term, "ok", ok)
	select {
	case l.changed <- struct{}{}:
	default: // a change is already pending; the reader sees the latest
	}
	return nil
}
