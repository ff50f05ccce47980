package client_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/brick"
	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/internal/etcdtest"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// runBrick serves brick 0 of v0 until the test ends.
func runBrick(t *testing.T, endpoints []string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- brick.Run(ctx, brick.Config{Etcd: endpoints, Volume: "v0", Index: 0, Listen: "127.0.0.1:0", Logger: quiet()})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("brick: %v", err)
		}
	})
}

// TestOpenWaitsForBricks: Open started before the brick returns once it is
// online, and the graph reaches the brick's directory.
func TestOpenWaitsForBricks(t *testing.T) {
	cli := etcdtest.Start(t)
	s := volume.NewStore(cli)
	dir := t.TempDir()
	ctx := context.Background()
	v := &volume.Volume{Name: "v0", Replica: 1, Bricks: []volume.Brick{{Host: "127.0.0.1", Path: dir}}}
	if err := s.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx, "v0", volume.StateStarted); err != nil {
		t.Fatal(err)
	}

	type opened struct {
		v   *client.Volume
		err error
	}
	ch := make(chan opened, 1)
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	go func() {
		v, err := client.Open(octx, cli, "v0", client.Options{Logger: quiet()})
		ch <- opened{v, err}
	}()
	runBrick(t, cli.Endpoints())
	o := <-ch
	if o.err != nil {
		t.Fatal(o.err)
	}
	defer o.v.Close()
	if o.v.Info.Name != "v0" || o.v.Graph.String() == "" {
		t.Errorf("opened %+v", o.v.Info)
	}
	_, a, e := o.v.Top.Create(ctx, xl.RootGFID, "f", xl.NewGFID(), syscall.O_RDWR, 0o644)
	if e != 0 {
		t.Fatalf("create through the client graph: %v", e)
	}
	if a.Mode&syscall.S_IFMT != syscall.S_IFREG {
		t.Errorf("created mode %o", a.Mode)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); err != nil {
		t.Errorf("file not in the brick directory: %v", err)
	}
}

// openDeadline bounds the Opens of offline bricks.
const openDeadline = 3 * time.Second

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("missing", func(t *testing.T) {
		cli := etcdtest.Start(t)
		_, err := client.Open(ctx, cli, "nosuch", client.Options{Logger: quiet()})
		if !errors.Is(err, volume.ErrNotFound) {
			t.Errorf("Open(nosuch) = %v, want ErrNotFound", err)
		}
	})
	t.Run("not started", func(t *testing.T) {
		cli := etcdtest.Start(t)
		s := volume.NewStore(cli)
		v := &volume.Volume{Name: "v0", Replica: 1, Bricks: []volume.Brick{{Host: "127.0.0.1", Path: t.TempDir()}}}
		if err := s.Create(ctx, v); err != nil {
			t.Fatal(err)
		}
		_, err := client.Open(ctx, cli, "v0", client.Options{Logger: quiet()})
		if err == nil || !strings.Contains(err.Error(), "not started") {
			t.Errorf("Open(created volume) = %v, want not started", err)
		}
	})
	t.Run("brick offline", func(t *testing.T) {
		cli := etcdtest.Start(t)
		s := volume.NewStore(cli)
		v := &volume.Volume{Name: "v0", Replica: 1, Bricks: []volume.Brick{{Host: "127.0.0.1", Path: "/srv/b0"}}}
		if err := s.Create(ctx, v); err != nil {
			t.Fatal(err)
		}
		if err := s.SetState(ctx, "v0", volume.StateStarted); err != nil {
			t.Fatal(err)
		}
		// The deadline must outlast reading the volume and building the
		// graph even when etcd stalls on a loaded machine: it is the wait
		// for the brick that must run out.
		octx, cancel := context.WithTimeout(ctx, openDeadline)
		defer cancel()
		_, err := client.Open(octx, cli, "v0", client.Options{Logger: quiet()})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "127.0.0.1:/srv/b0") {
			t.Errorf("Open with the brick offline = %v, want a deadline error naming the brick", err)
		}
	})
	t.Run("replica set offline", func(t *testing.T) {
		cli := etcdtest.Start(t)
		s := volume.NewStore(cli)
		v := &volume.Volume{Name: "v0", Replica: 3, Bricks: []volume.Brick{
			{Host: "127.0.0.1", Path: "/srv/b0"}, {Host: "127.0.0.1", Path: "/srv/b1"}, {Host: "127.0.0.1", Path: "/srv/b2"}}}
		if err := s.Create(ctx, v); err != nil {
			t.Fatal(err)
		}
		if err := s.SetState(ctx, "v0", volume.StateStarted); err != nil {
			t.Fatal(err)
		}
		octx, cancel := context.WithTimeout(ctx, openDeadline)
		defer cancel()
		start := time.Now()
		_, err := client.Open(octx, cli, "v0", client.Options{Logger: quiet()})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "brick 2 (127.0.0.1:/srv/b2)") {
			t.Errorf("Open with the replica set offline = %v, want a deadline error naming the bricks", err)
		}
		if d := time.Since(start); d > openDeadline+15*time.Second {
			t.Errorf("Open took %v past its %v deadline", d, openDeadline)
		}
	})
}
