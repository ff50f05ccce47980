package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/brick"
	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/conformance"
	"github.com/gluon-fs/gluon/internal/etcdtest"
	"github.com/gluon-fs/gluon/volume"
)

// TestConformanceFUSE runs the POSIX conformance suite through the kernel
// on the volume the real "gluon up" mounts: replicated three ways.
func TestConformanceFUSE(t *testing.T) {
	t.Parallel()
	// The suite's unprivileged user must reach the mount point: t.TempDir's
	// parent is mode 0700.
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	u := startUp(t, "--dir", dir)
	conformance.Run(t, func(t *testing.T) conformance.FS {
		return conformance.OSFS(u.mnt)
	}, conformance.LargeXattrs)
	if code := u.stop(); code != 0 {
		t.Errorf("gluon up exited %d", code)
	}
}

// TestConformanceProtocol runs the suite through the client graph and the
// protocol, without FUSE, against a single-brick volume served by a real
// brick daemon (in this process).
func TestConformanceProtocol(t *testing.T) {
	t.Parallel()
	cli := etcdtest.Start(t)
	ctx := context.Background()
	store := volume.NewStore(cli)
	v := &volume.Volume{Name: "cv", Replica: 1, Bricks: []volume.Brick{{Host: "127.0.0.1", Path: t.TempDir()}}}
	if err := store.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := store.SetState(ctx, "cv", volume.StateStarted); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bctx, stopBrick := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- brick.Run(bctx, brick.Config{Etcd: cli.Endpoints(), Volume: "cv", Index: 0, Listen: "127.0.0.1:0", Logger: log})
	}()
	t.Cleanup(func() {
		stopBrick()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("brick: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("brick did not stop within a minute")
		}
	})
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	vol, err := client.Open(octx, cli, "cv", client.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vol.Close() })
	conformance.Run(t, func(t *testing.T) conformance.FS {
		return conformance.XlFS(vol.Top)
	}, conformance.LargeXattrs)
}
