package rebalance

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/internal/etcdtest"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/dht2"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTarget(t *testing.T) {
	cur := dht2.Even(3)
	// add-brick: the layout does not know the fourth set yet.
	to, err := Target(cur, volume.KindRebalance, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cur.Moves(to)); n != dht2.Tokens/4 {
		t.Errorf("3 -> 4 sets moves %d tokens, want %d", n, dht2.Tokens/4)
	}
	for s, n := range to.Counts() {
		if n < dht2.Tokens/4 || n > dht2.Tokens/4+1 {
			t.Errorf("set %d owns %d tokens after rebalance", s, n)
		}
	}
	// remove-brick: the drained set owns nothing, the others share.
	to, err = Target(cur, volume.KindRemove, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if c := to.Counts(); c[2] != 0 || c[0]+c[1] != dht2.Tokens || c[0]-c[1] > 1 || c[1]-c[0] > 1 {
		t.Errorf("drained counts %v", c)
	}
	if _, err := Target(cur, volume.KindRebalance, 0, 2); err == nil {
		t.Error("a layout of more sets than the volume accepted")
	}
	if _, err := Target(cur, volume.KindRemove, 3, 3); err == nil {
		t.Error("drain of a set the volume lacks accepted")
	}
	// Already even: nothing to move.
	to, _ = Target(cur, volume.KindRebalance, 0, 3)
	if n := len(cur.Moves(to)); n != 0 {
		t.Errorf("an even layout moves %d tokens", n)
	}
}

func TestCommitRemove(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := context.Background()
	s := volume.NewStore(cli)
	var bricks []volume.Brick
	for _, p := range []string{"/a", "/b", "/c"} {
		bricks = append(bricks, volume.Brick{Host: "h", Path: p})
	}
	if err := s.Create(ctx, &volume.Volume{Name: "v", Replica: 1, Bricks: bricks}); err != nil {
		t.Fatal(err)
	}
	layouts := dht2.NewEtcdStore(cli, "v")
	l := dht2.Even(3)
	if err := layouts.Save(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := CommitRemove(ctx, cli, "v", bricks[2:]); err == nil || !strings.Contains(err.Error(), "still homes 21845 tokens") {
		t.Fatalf("commit of an undrained set: %v", err)
	}
	// Drain as a worker would, here in two saves.
	to := l.Drained(2)
	lw := &layoutWriter{cli: cli, key: dht2.LayoutKey("v")}
	if _, err := lw.load(ctx); err != nil {
		t.Fatal(err)
	}
	moves := l.Moves(to)
	for _, part := range [][]uint16{moves[:100], moves[100:]} {
		n := withMoves(l, to, part)
		if err := lw.save(ctx, n); err != nil {
			t.Fatal(err)
		}
		l = n
	}
	if err := lw.save(ctx, withMoves(l, to, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := layouts.Load(ctx); err != nil {
		t.Fatal(err)
	}
	l, _ = layouts.Load(ctx)
	// Another writer makes the worker's next save fail.
	if err := layouts.Save(ctx, withMoves(l, to, nil)); err != nil {
		t.Fatal(err)
	}
	if err := lw.save(ctx, withMoves(l, to, nil)); !errors.Is(err, dht2.ErrConflict) {
		t.Errorf("save after another writer: %v", err)
	}
	l, _ = layouts.Load(ctx)
	v, err := CommitRemove(ctx, cli, "v", bricks[2:])
	if err != nil {
		t.Fatal(err)
	}
	if v.Sets() != 2 {
		t.Errorf("%d sets after commit", v.Sets())
	}
	got, err := layouts.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sets != 2 || got.Version != l.Version+1 {
		t.Errorf("layout after commit: %d sets, version %d (drained: %d)", got.Sets, got.Version, l.Version)
	}
}
