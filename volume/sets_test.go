package volume

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestAddRemoveSets(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	v := &Volume{Name: "v", Replica: 2, Bricks: bricks(t, "h:/a0", "h:/a1", "h:/b0", "h:/b1")}
	if err := s.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, &Volume{Name: "w", Replica: 1, Bricks: bricks(t, "h:/w")}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		add  []string
		want string
	}{
		{[]string{"h:/c0"}, "not a multiple of replica count 2"},
		{[]string{"h:/c0", "h:/a0"}, "listed twice"},
		{[]string{"h:/c0", "h:/w"}, "already part of volume w"},
		{[]string{"h:/c0", "h:/w/x"}, "overlaps brick h:/w of volume w"},
	} {
		if _, err := s.AddBricks(ctx, "v", bricks(t, c.add...)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddBricks(%v) = %v, want %q", c.add, err, c.want)
		}
	}
	if _, err := s.AddBricks(ctx, "nope", bricks(t, "h:/c0")); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddBricks to a missing volume: %v", err)
	}
	nv, err := s.AddBricks(ctx, "v", bricks(t, "h:/c0", "h:/c1"))
	if err != nil {
		t.Fatal(err)
	}
	if nv.Sets() != 3 {
		t.Fatalf("after AddBricks: %d sets, want 3", nv.Sets())
	}
	if got, _ := s.Get(ctx, "v"); got.Sets() != 3 || got.SetBricks(2)[1].Path != "/c1" {
		t.Fatalf("stored volume: %+v", got)
	}

	if set, err := nv.SetOf(bricks(t, "h:/c1", "h:/c0")); err != nil || set != 2 {
		t.Errorf("SetOf(c1, c0) = %d, %v", set, err)
	}
	for _, c := range []struct {
		b    []string
		want string
	}{
		{[]string{"h:/c0"}, "a replica set of this volume has 2"},
		{[]string{"h:/c0", "h:/b0"}, "different replica sets"},
		{[]string{"h:/c0", "h:/zz"}, "no brick h:/zz"},
		{[]string{"h:/c0", "h:/c0"}, "given twice"},
	} {
		if _, err := nv.SetOf(bricks(t, c.b...)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SetOf(%v) = %v, want %q", c.b, err, c.want)
		}
	}

	// While set 2 drains, no set can be added.
	if _, err := s.StartRebalance(ctx, "v", KindRemove, 1); err == nil || !strings.Contains(err.Error(), "only the last replica set (2)") {
		t.Errorf("remove of a middle set: %v", err)
	}
	r, err := s.StartRebalance(ctx, "v", KindRemove, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBricks(ctx, "v", bricks(t, "h:/d0", "h:/d1")); err == nil || !strings.Contains(err.Error(), "being removed") {
		t.Errorf("AddBricks while removing: %v", err)
	}
	if _, err := s.StartRebalance(ctx, "v", KindRebalance, 0); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("rebalance while removing: %v", err)
	}

	refuse := func(*Volume) ([]clientv3.Cmp, []clientv3.Op, error) {
		return nil, nil, errors.New("still holds tokens")
	}
	if _, err := s.RemoveSet(ctx, "v", 2, refuse); err == nil || err.Error() != "still holds tokens" {
		t.Errorf("RemoveSet refused by its guard: %v", err)
	}
	ok := func(*Volume) ([]clientv3.Cmp, []clientv3.Op, error) { return nil, nil, nil }
	if _, err := s.RemoveSet(ctx, "v", 1, ok); err == nil || !strings.Contains(err.Error(), "only the last") {
		t.Errorf("RemoveSet(1): %v", err)
	}
	nv, err = s.RemoveSet(ctx, "v", 2, ok)
	if err != nil {
		t.Fatal(err)
	}
	if nv.Sets() != 2 || len(nv.Bricks) != 4 {
		t.Fatalf("after RemoveSet: %+v", nv)
	}
	if got, _ := s.Rebalance(ctx, "v"); got != nil {
		t.Errorf("remove-brick record %+v left after the set went (was %s)", got, r.ID)
	}
	if _, err := s.RemoveSet(ctx, "w", 0, ok); err == nil || !strings.Contains(err.Error(), "one replica set") {
		t.Errorf("RemoveSet of the only set: %v", err)
	}
}

func TestRebalanceRecord(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if err := s.Create(ctx, &Volume{Name: "v", Replica: 1, Bricks: bricks(t, "h:/a", "h:/b")}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Rebalance(ctx, "v"); err != nil || r != nil {
		t.Fatalf("Rebalance before start = %+v, %v", r, err)
	}
	if _, err := s.StopRebalance(ctx, "v", KindRebalance); !errors.Is(err, ErrNoRebalance) {
		t.Fatalf("stop without a rebalance: %v", err)
	}
	r, err := s.StartRebalance(ctx, "v", KindRebalance, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != RebalanceRunning || r.Sets != 2 {
		t.Fatalf("started %+v", r)
	}
	r, err = s.UpdateRebalance(ctx, "v", r.ID, func(r *Rebalance) error {
		r.TokensTotal, r.TokensMoved, r.Elapsed = 100, 25, 10*time.Second
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if eta := r.ETA(); eta != 30*time.Second {
		t.Errorf("ETA = %v, want 30s", eta)
	}

	w, err := s.ClaimRebalance(ctx, "v", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimRebalance(ctx, "v", 5*time.Second); !errors.Is(err, ErrWorkerBusy) {
		t.Errorf("second claim: %v", err)
	}
	// With a live worker, stop only asks.
	if r, err = s.StopRebalance(ctx, "v", KindRebalance); err != nil || !r.Stop || r.State != RebalanceRunning {
		t.Fatalf("stop with a worker = %+v, %v", r, err)
	}
	if err := w.Release(); err != nil {
		t.Fatal(err)
	}
	if who, err := s.RebalanceWorker(ctx, "v"); err != nil || who != "" {
		t.Fatalf("worker after release = %q, %v", who, err)
	}
	if r, err = s.StopRebalance(ctx, "v", KindRebalance); err != nil || r.State != RebalanceStopped {
		t.Fatalf("stop without a worker = %+v, %v", r, err)
	}
	// Starting again resumes the record, counters kept.
	r2, err := s.StartRebalance(ctx, "v", KindRebalance, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r2.ID != r.ID || r2.TokensMoved != 25 || r2.Stop || r2.State != RebalanceRunning {
		t.Fatalf("resumed %+v, want the record %+v running", r2, r)
	}
	if _, err := s.UpdateRebalance(ctx, "v", "other", func(*Rebalance) error { return nil }); !errors.Is(err, ErrNoRebalance) {
		t.Errorf("update of a replaced record: %v", err)
	}
	if _, err := s.StartRebalance(ctx, "v", "sideways", 0); err == nil {
		t.Error("unknown kind accepted")
	}
	if err := s.Delete(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Rebalance(ctx, "v"); err != nil || r != nil {
		t.Fatalf("record after delete = %+v, %v", r, err)
	}
}

// Keys under a volume's own (its DHT2 layout) are not volumes, and go
// with it.
func TestVolumeSubkeys(t *testing.T) {
	s, cli := newStore(t)
	ctx := context.Background()
	if err := s.Create(ctx, &Volume{Name: "v", Replica: 1, Bricks: bricks(t, "h:/a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/gluon/volumes/v/dht2/layout", "\x00binary"); err != nil {
		t.Fatal(err)
	}
	if vs, err := s.List(ctx); err != nil || len(vs) != 1 {
		t.Fatalf("List = %v, %v", vs, err)
	}
	if err := s.Delete(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if r, err := cli.Get(ctx, "/gluon/volumes/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || r.Count != 0 {
		t.Fatalf("after Delete: %v keys left, %v", r.Count, err)
	}
}
