package volume

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SetBricks returns the bricks of replica set i.
func (v *Volume) SetBricks(i int) []Brick {
	return v.Bricks[i*v.Replica : (i+1)*v.Replica]
}

// SetOf returns the replica set whose bricks are exactly bricks, in any
// order, or an error saying what is wrong with them.
func (v *Volume) SetOf(bricks []Brick) (int, error) {
	if len(bricks) != v.Replica {
		return 0, fmt.Errorf("volume %s: %d bricks given: a replica set of this volume has %d", v.Name, len(bricks), v.Replica)
	}
	set := -1
	for _, b := range bricks {
		i := -1
		for j, o := range v.Bricks {
			if o == b {
				i = j
			}
		}
		switch {
		case i < 0:
			return 0, fmt.Errorf("volume %s has no brick %s", v.Name, b)
		case set >= 0 && i/v.Replica != set:
			return 0, fmt.Errorf("volume %s: bricks %s and %s are in different replica sets; give one whole set", v.Name, bricks[0], b)
		}
		set = i / v.Replica
	}
	for i, b := range bricks {
		for _, o := range bricks[:i] {
			if o == b {
				return 0, fmt.Errorf("volume %s: brick %s given twice", v.Name, b)
			}
		}
	}
	return set, nil
}

// AddBricks appends whole replica sets to the named volume: len(bricks)
// must be a multiple of its replica count, and no brick may belong to
// this or another volume. It fails while a set is being removed. It
// returns the volume as stored. The new sets hold no files until a
// rebalance moves tokens to them.
func (s *Store) AddBricks(ctx context.Context, name string, bricks []Brick) (*Volume, error) {
	if len(bricks) == 0 {
		return nil, fmt.Errorf("volume %s: no bricks to add", name)
	}
	for range maxRetries {
		all, rev, err := s.list(ctx)
		if err != nil {
			return nil, err
		}
		var v *Volume
		for _, o := range all {
			if o.Name == name {
				v = o
			}
		}
		if v == nil {
			return nil, fmt.Errorf("volume %s %w", name, ErrNotFound)
		}
		if len(bricks)%v.Replica != 0 {
			return nil, fmt.Errorf("volume %s: %d bricks is not a multiple of replica count %d (add whole replica sets)", name, len(bricks), v.Replica)
		}
		rb, rrev, err := s.rebalance(ctx, name)
		if err != nil {
			return nil, err
		}
		if rb != nil && rb.Kind == KindRemove {
			return nil, fmt.Errorf("volume %s: replica set %d is being removed; commit or stop that first (gluon volume remove-brick %s ... commit|stop)", name, rb.Set, name)
		}
		nv := *v
		nv.Bricks = append(v.Bricks[:len(v.Bricks):len(v.Bricks)], bricks...)
		if err := nv.Validate(); err != nil {
			return nil, err
		}
		add := &Volume{Name: name, Bricks: bricks}
		for _, o := range all {
			if o.Name == name {
				continue
			}
			if err := brickConflict(add, o); err != nil {
				return nil, err
			}
		}
		val, err := json.Marshal(&nv)
		if err != nil {
			return nil, err
		}
		r, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(volumesPrefix), "<", rev+1).WithPrefix(),
			clientv3.Compare(clientv3.ModRevision(rebalanceKey(name)), "=", rrev),
		).Then(clientv3.OpPut(volumeKey(name), string(val))).Commit()
		if err != nil {
			return nil, fmt.Errorf("volume %s: add bricks: %w", name, err)
		}
		if r.Succeeded {
			return &nv, nil
		}
	}
	return nil, fmt.Errorf("volume %s: add bricks: too many concurrent updates", name)
}

// RemoveSet drops replica set set, which must be the volume's last, once
// guard approves: guard sees the volume and returns conditions on other
// keys (the layout's) and operations to commit with the removal, or an
// error to refuse it. A volume keeps at least one set. The remove-brick
// record, if any, is deleted with it. Only the last set can go: sets are
// numbered, and the bricks of the sets after a removed one would have to
// be renumbered under their running daemons.
func (s *Store) RemoveSet(ctx context.Context, name string, set int, guard func(*Volume) ([]clientv3.Cmp, []clientv3.Op, error)) (*Volume, error) {
	var out *Volume
	err := s.updateIf(ctx, name, func(v *Volume) ([]clientv3.Cmp, []clientv3.Op, error) {
		n := v.Sets()
		switch {
		case set < 0 || set >= n:
			return nil, nil, fmt.Errorf("volume %s has no replica set %d (it has %d)", name, set, n)
		case n == 1:
			return nil, nil, fmt.Errorf("volume %s has one replica set; it cannot be removed (delete the volume instead)", name)
		case set != n-1:
			return nil, nil, fmt.Errorf("volume %s: only the last replica set (%d) can be removed, not set %d", name, n-1, set)
		}
		cmps, ops, err := guard(v)
		if err != nil {
			return nil, nil, err
		}
		nv := *v
		nv.Bricks = v.Bricks[: set*v.Replica : set*v.Replica]
		val, err := json.Marshal(&nv)
		if err != nil {
			return nil, nil, err
		}
		out = &nv
		ops = append(ops,
			clientv3.OpPut(volumeKey(name), string(val)),
			clientv3.OpDelete(rebalanceKey(name)),
		)
		for i := set * v.Replica; i < len(v.Bricks); i++ {
			ops = append(ops, clientv3.OpDelete(brickKey(name, i)))
		}
		return cmps, ops, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
