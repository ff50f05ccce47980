package volfile

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/internal/etcdtest"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// serveDir serves a posix store of dir as export on a loopback port until
// the test ends, and returns the address.
func serveDir(t *testing.T, dir, export string) string {
	t.Helper()
	st, err := posix.New(dir, posix.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(st, server.Options{Volume: export, Logger: slog.New(slog.DiscardHandler)})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		st.Close()
	})
	return ln.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A protocol/client without remote-port connects to wherever its brick is
// registered in etcd, and follows the brick when it comes back elsewhere.
func TestClientFindsBrickInEtcd(t *testing.T) {
	cli := etcdtest.Start(t)
	store := volume.NewStore(cli)
	ctx := context.Background()
	const export = "/bricks/b0"
	// Without write-behind the graph is the protocol client alone.
	v := &volume.Volume{Name: "v", Replica: 1, Bricks: []volume.Brick{{Host: "127.0.0.1", Path: export}},
		Options: map[string]string{volume.OptWriteBehind: "off"}}
	if err := store.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	g, err := ClientVolfile(v)
	if err != nil {
		t.Fatal(err)
	}
	g.Top().Options = append(g.Top().Options, Option{Key: "dial-timeout", Value: "300ms"})
	top, closeAll, err := Build(ctx, g, DefaultRegistry(Env{Etcd: cli, Logger: slog.New(slog.DiscardHandler)}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	conn := top.(interface{ Connected() bool })

	// Not registered yet: a call waits the dial timeout, then gives up.
	if _, e := top.Getattr(ctx, xl.RootGFID); e != syscall.ENOTCONN {
		t.Fatalf("Getattr before the brick registered: %v, want ENOTCONN", e)
	}
	if conn.Connected() {
		t.Fatal("connected before the brick registered")
	}

	dirA, dirB := t.TempDir(), t.TempDir()
	reg, err := store.Register(ctx, "v", 0, serveDir(t, dirA, export), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client to connect", conn.Connected)
	if _, _, e := top.Create(ctx, xl.RootGFID, "a", xl.NewGFID(), syscall.O_RDWR, 0o644); e != 0 {
		t.Fatalf("Create: %v", e)
	}
	if _, err := os.Stat(filepath.Join(dirA, "a")); err != nil {
		t.Fatal(err)
	}

	// The brick restarts at another address.
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	reg, err = store.Register(ctx, "v", 0, serveDir(t, dirB, export), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	waitFor(t, "the client to follow the brick", func() bool {
		_, e := top.Lookup(ctx, xl.RootGFID, "a")
		return e == syscall.ENOENT // dirB has no "a"
	})
	if _, _, e := top.Create(ctx, xl.RootGFID, "b", xl.NewGFID(), syscall.O_RDWR, 0o644); e != 0 {
		t.Fatalf("Create after the move: %v", e)
	}
	if _, err := os.Stat(filepath.Join(dirB, "b")); err != nil {
		t.Fatal(err)
	}

	if err := closeAll(); err != nil {
		t.Fatal(err)
	}
	if _, e := top.Getattr(ctx, xl.RootGFID); e != syscall.ENOTCONN {
		t.Fatalf("Getattr after Close: %v, want ENOTCONN", e)
	}
}
