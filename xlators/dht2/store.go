package dht2

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrConflict is returned by Save when the stored layout is not the one
// the new layout follows (Version-1): someone else saved first.
var ErrConflict = errors.New("dht2: layout changed concurrently")

// ErrNoLayout is returned by Load when no layout was saved yet.
var ErrNoLayout = errors.New("dht2: no layout saved")

// LayoutSource is where a DHT2 client reads and watches its layout.
type LayoutSource interface {
	// Load returns the current layout, or ErrNoLayout.
	Load(ctx context.Context) (*Layout, error)
	// Watch delivers every newer layout until ctx ends, then closes the
	// channel. A slow reader may miss intermediate versions, never the
	// latest.
	Watch(ctx context.Context) <-chan *Layout
}

// LayoutKey is the etcd key holding a volume's layout.
func LayoutKey(volume string) string { return "/gluon/volumes/" + volume + "/dht2/layout" }

// EtcdStore keeps a volume's layout in etcd.
type EtcdStore struct {
	cli *clientv3.Client
	key string
}

var _ LayoutSource = (*EtcdStore)(nil)

// NewEtcdStore returns the layout store of volume.
func NewEtcdStore(cli *clientv3.Client, volume string) *EtcdStore {
	return &EtcdStore{cli: cli, key: LayoutKey(volume)}
}

// Load reads the layout.
func (s *EtcdStore) Load(ctx context.Context) (*Layout, error) {
	l, _, err := s.load(ctx)
	return l, err
}

func (s *EtcdStore) load(ctx context.Context) (*Layout, int64, error) {
	r, err := s.cli.Get(ctx, s.key)
	if err != nil {
		return nil, 0, fmt.Errorf("dht2: load layout %s: %w", s.key, err)
	}
	if len(r.Kvs) == 0 {
		return nil, 0, ErrNoLayout
	}
	l := new(Layout)
	if err := l.UnmarshalBinary(r.Kvs[0].Value); err != nil {
		return nil, 0, fmt.Errorf("dht2: layout %s: %w", s.key, err)
	}
	return l, r.Kvs[0].ModRevision, nil
}

// Save stores l if the stored layout is version l.Version-1 (or none is
// stored and l.Version is 1); otherwise it returns ErrConflict.
func (s *EtcdStore) Save(ctx context.Context, l *Layout) error {
	b, err := l.MarshalBinary()
	if err != nil {
		return err
	}
	cur, rev, err := s.load(ctx)
	switch {
	case errors.Is(err, ErrNoLayout):
		if l.Version != 1 {
			return ErrConflict
		}
	case err != nil:
		return err
	case cur.Version+1 != l.Version:
		return ErrConflict
	}
	r, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(s.key), "=", rev)).
		Then(clientv3.OpPut(s.key, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("dht2: save layout %s: %w", s.key, err)
	}
	if !r.Succeeded {
		return ErrConflict
	}
	return nil
}

// Watch delivers the stored layout, then each one put after it. Each
// watch, the first and any that etcd ends (a lost leader, a compaction),
// starts just after a read of the current layout, so that nothing put
// meanwhile is missed. The goroutine it starts ends with ctx.
func (s *EtcdStore) Watch(ctx context.Context) <-chan *Layout {
	out := make(chan *Layout, 1)
	go func() {
		defer close(out)
		var rev int64 // the last revision seen; 0: from now
		for ctx.Err() == nil {
			if l, r, err := s.load(ctx); err == nil {
				rev = r
				deliver(out, l)
			}
			opts := []clientv3.OpOption{}
			if rev > 0 {
				opts = append(opts, clientv3.WithRev(rev+1))
			}
			for r := range s.cli.Watch(clientv3.WithRequireLeader(ctx), s.key, opts...) {
				if r.Err() != nil {
					break
				}
				for _, ev := range r.Events {
					rev = ev.Kv.ModRevision
					l := new(Layout)
					if ev.Type != clientv3.EventTypePut || l.UnmarshalBinary(ev.Kv.Value) != nil {
						continue
					}
					deliver(out, l)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return out
}

// deliver replaces an undelivered older layout with l.
func deliver(ch chan *Layout, l *Layout) {
	for {
		select {
		case ch <- l:
			return
		default:
		}
		select {
		case old := <-ch:
			if old.Version > l.Version {
				l = old
			}
		default:
		}
	}
}

// MemStore is an in-memory LayoutSource with the same Save rule as
// EtcdStore, for tests and single-process volumes.
type MemStore struct {
	mu   sync.Mutex
	cur  *Layout
	subs map[chan *Layout]struct{}
}

var _ LayoutSource = (*MemStore)(nil)

// NewMemStore returns a store holding l (nil: empty).
func NewMemStore(l *Layout) *MemStore {
	return &MemStore{cur: l, subs: map[chan *Layout]struct{}{}}
}

// Load returns the current layout.
func (m *MemStore) Load(context.Context) (*Layout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return nil, ErrNoLayout
	}
	return m.cur, nil
}

// Save stores l if it follows the current layout.
func (m *MemStore) Save(_ context.Context, l *Layout) error {
	if err := l.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil && l.Version != 1 || m.cur != nil && m.cur.Version+1 != l.Version {
		return ErrConflict
	}
	m.cur = l.Clone()
	for ch := range m.subs {
		deliver(ch, m.cur)
	}
	return nil
}

// Watch delivers later layouts until ctx ends.
func (m *MemStore) Watch(ctx context.Context) <-chan *Layout {
	ch := make(chan *Layout, 1)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	out := make(chan *Layout)
	go func() {
		defer close(out)
		defer func() {
			m.mu.Lock()
			delete(m.subs, ch)
			m.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case l := <-ch:
				select {
				case out <- l:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
