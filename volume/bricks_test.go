package volume

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// waitFor polls cond until it holds; the bound only keeps a broken test
// from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func createVolume(t *testing.T, s *Store, name string, specs ...string) *Volume {
	t.Helper()
	v := &Volume{Name: name, Replica: 1, Bricks: bricks(t, specs...)}
	if err := s.Create(context.Background(), v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRegisterStatus(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	createVolume(t, s, "v", "h1:/b0", "h2:/b1")

	st, err := s.Status(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Online || st[1].Online || st[1].Brick != (Brick{"h2", "/b1"}) || st[1].Index != 1 {
		t.Fatalf("Status before registration = %+v", st)
	}

	r, err := s.Register(ctx, "v", 1, "10.0.0.2:49152", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st, err = s.Status(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Online || !st[1].Online || st[1].Addr != "10.0.0.2:49152" || st[1].Pid != os.Getpid() || st[1].Started.IsZero() {
		t.Fatalf("Status after registration = %+v", st)
	}

	// A second daemon for the same brick is refused.
	_, err = s.Register(ctx, "v", 1, "10.0.0.2:49153", 10*time.Second)
	if !errors.Is(err, ErrBrickBusy) || !strings.Contains(err.Error(), "10.0.0.2:49152") {
		t.Fatalf("duplicate Register = %v", err)
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	st, err = s.Status(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if st[1].Online {
		t.Fatalf("Status after Close = %+v", st)
	}

	// Closing frees the brick for the next daemon.
	r, err = s.Register(ctx, "v", 1, "10.0.0.2:49153", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

func TestRegisterErrors(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	createVolume(t, s, "v", "h1:/b0")
	for _, c := range []struct {
		vol   string
		index int
		addr  string
		ttl   time.Duration
		want  string
	}{
		{"v", 1, "a:1", time.Second, "volume v has no brick 1 (it has 1)"},
		{"v", -1, "a:1", time.Second, "has no brick -1"},
		{"nope", 0, "a:1", time.Second, "volume nope does not exist"},
		{"v", 0, "", time.Second, "empty address"},
		{"v", 0, "a:1", 0, "lease TTL"},
	} {
		r, err := s.Register(ctx, c.vol, c.index, c.addr, c.ttl)
		if err == nil {
			r.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Register(%q, %d, %q, %v) = %v, want %q", c.vol, c.index, c.addr, c.ttl, err, c.want)
		}
	}
}

// A brick whose lease was lost (etcd partitioned away past the TTL; here
// the lease is revoked behind its back) registers again by itself.
func TestRegisterRenewsLostLease(t *testing.T) {
	s, cli := newStore(t)
	ctx := context.Background()
	createVolume(t, s, "v", "h1:/b0")
	r, err := s.Register(ctx, "v", 0, "a:1", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	g, err := cli.Get(ctx, brickKey("v", 0))
	if err != nil || len(g.Kvs) != 1 {
		t.Fatalf("brick key: %v, %v", g, err)
	}
	old := clientv3.LeaseID(g.Kvs[0].Lease)
	if _, err := cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "re-registration under a new lease", func() bool {
		g, err := cli.Get(ctx, brickKey("v", 0))
		return err == nil && len(g.Kvs) == 1 && clientv3.LeaseID(g.Kvs[0].Lease) != old
	})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if g, err := cli.Get(ctx, brickKey("v", 0)); err != nil || len(g.Kvs) != 0 {
		t.Fatalf("brick key after Close: %v, %v", g, err)
	}
}

// Registrations left by a deleted volume of the same name, or naming a
// different brick, do not count.
func TestStatusIgnoresForeignRecords(t *testing.T) {
	s, cli := newStore(t)
	ctx := context.Background()
	createVolume(t, s, "v", "h1:/b0", "h1:/b1")
	for _, rec := range []string{
		`{"addr":"a:1","host":"h1","path":"/b0","pid":1,"volume_id":"other"}`,
		`not json`,
	} {
		if _, err := cli.Put(ctx, brickKey("v", 0), rec); err != nil {
			t.Fatal(err)
		}
		if st, err := s.Status(ctx, "v"); err != nil || st[0].Online {
			t.Fatalf("Status with record %s = %+v, %v", rec, st, err)
		}
	}
	if _, err := cli.Put(ctx, bricksKey("v")+"junk", "{}"); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Status(ctx, "v"); err != nil || len(st) != 2 {
		t.Fatalf("Status with a junk key = %+v, %v", st, err)
	}
}

func TestDeleteDropsRegistrations(t *testing.T) {
	s, cli := newStore(t)
	ctx := context.Background()
	createVolume(t, s, "v", "h1:/b0")
	r, err := s.Register(ctx, "v", 0, "a:1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	g, err := cli.Get(ctx, bricksKey("v"), clientv3.WithPrefix())
	if err != nil || len(g.Kvs) != 0 {
		t.Fatalf("registrations after Delete: %v, %v", g.Kvs, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close after Delete = %v", err)
	}
}

func TestWatchBricks(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	createVolume(t, s, "v", "h1:/b0", "h2:/b1")
	ch := s.WatchBricks(ctx, "v")

	// next waits for a status satisfying cond, skipping intermediate ones.
	next := func(what string, cond func([]BrickStatus) bool) []BrickStatus {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case st, ok := <-ch:
				if !ok {
					t.Fatalf("watch closed waiting for %s", what)
				}
				if cond(st) {
					return st
				}
			case <-timeout:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	next("initial status", func(st []BrickStatus) bool { return len(st) == 2 && !st[0].Online && !st[1].Online })
	r, err := s.Register(ctx, "v", 0, "a:1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st := next("brick 0 online", func(st []BrickStatus) bool { return len(st) == 2 && st[0].Online })
	if st[0].Addr != "a:1" {
		t.Fatalf("watched status %+v", st)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	next("brick 0 offline", func(st []BrickStatus) bool { return len(st) == 2 && !st[0].Online })
	if err := s.Delete(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	next("volume gone", func(st []BrickStatus) bool { return len(st) == 0 })
	createVolume(t, s, "v", "h3:/b")
	next("volume back", func(st []BrickStatus) bool { return len(st) == 1 && st[0].Brick.Host == "h3" })

	cancel()
	for range ch { // must close
	}
}

func TestWatchVolume(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.WatchVolume(ctx, "v")
	recv := func(what string) *Volume {
		t.Helper()
		select {
		case v, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed waiting for %s", what)
			}
			return v
		case <-time.After(20 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
		return nil
	}
	if v := recv("absent volume"); v != nil {
		t.Fatalf("got %+v for a missing volume", v)
	}
	createVolume(t, s, "v", "h:/b")
	if v := recv("created"); v == nil || v.State != StateCreated {
		t.Fatalf("got %+v, want the created volume", v)
	}
	if err := s.SetState(ctx, "v", StateStarted); err != nil {
		t.Fatal(err)
	}
	if v := recv("started"); v == nil || v.State != StateStarted {
		t.Fatalf("got %+v, want it started", v)
	}
	// Brick registrations are not volume changes.
	r, err := s.Register(ctx, "v", 0, "a:1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := s.SetState(ctx, "v", StateStopped); err != nil {
		t.Fatal(err)
	}
	if v := recv("stopped"); v == nil || v.State != StateStopped {
		t.Fatalf("got %+v, want it stopped", v)
	}
	if err := s.Delete(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if v := recv("deleted"); v != nil {
		t.Fatalf("got %+v after Delete", v)
	}
	cancel()
	for range ch {
	}
}

func TestWatchInvalidName(t *testing.T) {
	s, _ := newStore(t)
	if _, ok := <-s.WatchBricks(context.Background(), "bad/name"); ok {
		t.Fatal("WatchBricks sent for an invalid name")
	}
	if _, ok := <-s.WatchVolume(context.Background(), "bad/name"); ok {
		t.Fatal("WatchVolume sent for an invalid name")
	}
}
