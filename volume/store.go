package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Prefix is the root of every key gluon keeps in etcd.
const Prefix = "/gluon/"

const (
	volumesPrefix = Prefix + "volumes/"
	bricksPrefix  = Prefix + "bricks/"
)

// ConnectTimeout bounds Connect's reachability check.
const ConnectTimeout = 5 * time.Second

// maxRetries bounds compare-and-swap retries under concurrent updates.
const maxRetries = 16

// Connect returns an etcd client for endpoints once etcd has answered a
// linearizable read, or an error "etcd unreachable at E: ..." within
// ConnectTimeout (sooner if ctx ends). The caller closes the client.
func Connect(ctx context.Context, endpoints []string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	where := strings.Join(endpoints, ",")
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: ConnectTimeout,
		Logger:      zap.NewNop(), // errors come back as values
	})
	if err != nil {
		return nil, fmt.Errorf("etcd unreachable at %s: %w", where, err)
	}
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	if _, err := cli.Get(ctx, Prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v", ConnectTimeout)
		}
		return nil, fmt.Errorf("etcd unreachable at %s: %w", where, err)
	}
	return cli, nil
}

// Store reads and writes volume definitions. It is safe for concurrent use
// and from several processes: every update is a compare-and-swap.
type Store struct {
	cli *clientv3.Client
	// Logger receives warnings from background work (lease renewal,
	// watches); nil means slog.Default().
	Logger *slog.Logger
}

// NewStore returns a Store on cli. The caller keeps ownership of cli.
func NewStore(cli *clientv3.Client) *Store {
	return &Store{cli: cli}
}

func volumeKey(name string) string { return volumesPrefix + name }

func bricksKey(name string) string { return bricksPrefix + name + "/" }

func brickKey(name string, index int) string { return fmt.Sprintf("%s%d", bricksKey(name), index) }

// Create stores a new volume. It fills in v.ID (when empty), v.Created
// (when zero) and v.State ("created"), validates v, and fails with "volume
// X already exists" if the name is taken, or if one of its bricks belongs
// to another volume.
func (s *Store) Create(ctx context.Context, v *Volume) error {
	if v.State != "" && v.State != StateCreated {
		return fmt.Errorf("volume %s: a new volume cannot be %q", v.Name, v.State)
	}
	v.State = StateCreated
	if v.ID == "" {
		v.ID = xl.NewGFID().String()
	}
	if v.Created.IsZero() {
		v.Created = time.Now().UTC().Truncate(time.Millisecond)
	}
	if err := v.Validate(); err != nil {
		return err
	}
	val, err := json.Marshal(v)
	if err != nil {
		return err
	}
	key := volumeKey(v.Name)
	for range maxRetries {
		// A brick may belong to one volume only. Check against every
		// volume as of rev, and commit only if no volume changed since.
		all, rev, err := s.list(ctx)
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.Name == v.Name {
				return fmt.Errorf("volume %s already exists", v.Name)
			}
			if err := brickConflict(v, o); err != nil {
				return err
			}
		}
		r, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.ModRevision(volumesPrefix), "<", rev+1).WithPrefix(),
		).Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return fmt.Errorf("volume %s: create: %w", v.Name, err)
		}
		if r.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("volume %s: create: too many concurrent updates", v.Name)
}

// brickConflict is the error for a brick of v that is, or overlaps, a
// brick of volume o, or nil: a brick belongs to one volume only.
func brickConflict(v, o *Volume) error {
	for _, b := range v.Bricks {
		for _, ob := range o.Bricks {
			switch {
			case b == ob:
				return fmt.Errorf("volume %s: brick %s is already part of volume %s", v.Name, b, o.Name)
			case b.Host == ob.Host && (nested(b.Path, ob.Path) || nested(ob.Path, b.Path)):
				return fmt.Errorf("volume %s: brick %s overlaps brick %s of volume %s", v.Name, b, ob, o.Name)
			}
		}
	}
	return nil
}

// Get returns the named volume; the error wraps ErrNotFound if there is
// none.
func (s *Store) Get(ctx context.Context, name string) (*Volume, error) {
	v, _, err := s.get(ctx, name)
	return v, err
}

// get also returns the record's mod revision, for compare-and-swap.
func (s *Store) get(ctx context.Context, name string) (*Volume, int64, error) {
	if err := ValidName(name); err != nil {
		return nil, 0, err
	}
	r, err := s.cli.Get(ctx, volumeKey(name))
	if err != nil {
		return nil, 0, fmt.Errorf("volume %s: %w", name, err)
	}
	if len(r.Kvs) == 0 {
		return nil, 0, fmt.Errorf("volume %s %w", name, ErrNotFound)
	}
	v, err := decode(r.Kvs[0].Value, name)
	if err != nil {
		return nil, 0, err
	}
	return v, r.Kvs[0].ModRevision, nil
}

func decode(val []byte, name string) (*Volume, error) {
	v := &Volume{}
	if err := json.Unmarshal(val, v); err != nil {
		return nil, fmt.Errorf("volume %s: corrupt record in etcd: %w", name, err)
	}
	if v.Name != name {
		return nil, fmt.Errorf("volume %s: corrupt record in etcd: it names volume %q", name, v.Name)
	}
	return v, nil
}

// List returns every volume, sorted by name.
func (s *Store) List(ctx context.Context) ([]*Volume, error) {
	vs, _, err := s.list(ctx)
	return vs, err
}

func (s *Store) list(ctx context.Context) ([]*Volume, int64, error) {
	r, err := s.cli.Get(ctx, volumesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("list volumes: %w", err)
	}
	vs := make([]*Volume, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		name := strings.TrimPrefix(string(kv.Key), volumesPrefix)
		if strings.Contains(name, "/") {
			continue // a key of the volume's own, such as its DHT2 layout
		}
		v, err := decode(kv.Value, name)
		if err != nil {
			return nil, 0, err
		}
		vs = append(vs, v)
	}
	return vs, r.Header.Revision, nil
}

// SetState starts ("started") or stops ("stopped") a volume. Starting a
// started volume or stopping one that is not started is an error.
func (s *Store) SetState(ctx context.Context, name, state string) error {
	if state != StateStarted && state != StateStopped {
		return fmt.Errorf("volume %s: cannot set state %q (want %q or %q)", name, state, StateStarted, StateStopped)
	}
	return s.update(ctx, name, func(v *Volume) ([]clientv3.Op, error) {
		switch {
		case state == StateStarted && v.State == StateStarted:
			return nil, fmt.Errorf("volume %s is already started", name)
		case state == StateStopped && v.State != StateStarted:
			return nil, fmt.Errorf("volume %s is not started", name)
		}
		v.State = state
		val, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return []clientv3.Op{clientv3.OpPut(volumeKey(name), string(val))}, nil
	})
}

// Delete removes a volume that is created or stopped, with its brick
// registrations, rebalance record and the keys under its own (its DHT2
// layout). Data on the bricks is left alone.
func (s *Store) Delete(ctx context.Context, name string) error {
	return s.update(ctx, name, func(v *Volume) ([]clientv3.Op, error) {
		if v.State == StateStarted {
			return nil, fmt.Errorf("volume %s is started; stop it first", name)
		}
		return []clientv3.Op{
			clientv3.OpDelete(volumeKey(name)),
			clientv3.OpDelete(bricksKey(name), clientv3.WithPrefix()),
			clientv3.OpDelete(rebalanceKey(name)),
			clientv3.OpDelete(volumeKey(name)+"/", clientv3.WithPrefix()),
		}, nil
	})
}

// update applies f's ops if the volume has not changed since f saw it,
// retrying on concurrent updates.
func (s *Store) update(ctx context.Context, name string, f func(*Volume) ([]clientv3.Op, error)) error {
	return s.updateIf(ctx, name, func(v *Volume) ([]clientv3.Cmp, []clientv3.Op, error) {
		ops, err := f(v)
		return nil, ops, err
	})
}

// updateIf is update with f's own conditions on other keys besides.
func (s *Store) updateIf(ctx context.Context, name string, f func(*Volume) ([]clientv3.Cmp, []clientv3.Op, error)) error {
	for range maxRetries {
		v, rev, err := s.get(ctx, name)
		if err != nil {
			return err
		}
		cmps, ops, err := f(v)
		if err != nil {
			return err
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(volumeKey(name)), "=", rev))
		r, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
		if r.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("volume %s: too many concurrent updates", name)
}

// Client returns the etcd client the store uses.
func (s *Store) Client() *clientv3.Client { return s.cli }
