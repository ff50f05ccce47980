package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
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

// TestConformanceFUSEDistributed runs the suite through the kernel on a
// volume distributed by DHT2 over three sets (gluon up --distribute 3).
// The sets are single bricks: replication is TestConformanceFUSE's
// subject, and three replica sets of three would triple the bricks for
// nothing more of DHT2's. Directories are spread over the sets, so the
// suite's renames and hard links between directories cross sets.
func TestConformanceFUSEDistributed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	u := startUp(t, "--dir", dir, "--replica", "1", "--distribute", "3")
	conformance.Run(t, func(t *testing.T) conformance.FS {
		return conformance.OSFS(u.mnt)
	}, conformance.LargeXattrs)
	t.Run("CrossSet", func(t *testing.T) { crossSet(t, u.mnt, brickDirs(dir, 3)) })
	if code := u.stop(); code != 0 {
		t.Errorf("gluon up exited %d", code)
	}
}

// crossSet renames and hard-links files between directories that live
// on different sets, and checks what the mount shows.
func crossSet(t *testing.T, mnt string, bricks []string) {
	// Make directories until two land on different sets. A directory's
	// files live on its set: find the brick holding a file written in it.
	home := func(d string) int {
		mark := []byte("marker of " + d)
		if err := os.WriteFile(filepath.Join(mnt, d, "marker"), mark, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(mnt, d, "marker"))
		at := -1
		for i, b := range bricks {
			filepath.WalkDir(b, func(p string, e fs.DirEntry, err error) error {
				if err != nil || !e.Type().IsRegular() || filepath.Base(p) != "marker" {
					return nil
				}
				if got, _ := os.ReadFile(p); string(got) == string(mark) {
					at = i
				}
				return nil
			})
		}
		return at
	}
	var dirs []string
	sets := map[int]bool{}
	for i := 0; len(dirs) < 2 && i < 64; i++ {
		d := fmt.Sprintf("xset%d", i)
		if err := os.Mkdir(filepath.Join(mnt, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if h := home(d); h >= 0 && !sets[h] {
			sets[h] = true
			dirs = append(dirs, d)
		}
	}
	if len(dirs) < 2 {
		t.Fatalf("64 directories, all on one set of %d", len(bricks))
	}
	a, b := filepath.Join(mnt, dirs[0]), filepath.Join(mnt, dirs[1])
	data := []byte("crosses sets\n")
	if err := os.WriteFile(filepath.Join(a, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(a, "f"), filepath.Join(b, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(a, "f"), filepath.Join(b, "moved")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a, "f")); !os.IsNotExist(err) {
		t.Errorf("renamed file still at its old name: %v", err)
	}
	for _, name := range []string{"link", "moved"} {
		got, err := os.ReadFile(filepath.Join(b, name))
		if err != nil || string(got) != string(data) {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
	st, err := os.Stat(filepath.Join(b, "moved"))
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Sys().(*syscall.Stat_t).Nlink; n != 2 {
		t.Errorf("nlink %d after a cross-set link and rename, want 2", n)
	}
	ents, err := os.ReadDir(b)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"link", "moved"}) {
		t.Errorf("%s lists %q, want [link moved]", dirs[1], names)
	}
	// A directory moves between sets too, with what it holds.
	if err := os.Rename(b, filepath.Join(a, "sub")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(a, "sub", "moved")); err != nil || string(got) != string(data) {
		t.Errorf("file under a renamed directory: %q, %v", got, err)
	}
	if err := os.RemoveAll(a); err != nil {
		t.Fatal(err)
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
