package brick

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/internal/etcdtest"
	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	cli   *clientv3.Client
	store *volume.Store
	etcd  []string
}

func newEnv(t *testing.T) *env {
	cli := etcdtest.Start(t)
	return &env{cli: cli, store: volume.NewStore(cli), etcd: cli.Endpoints()}
}

func (e *env) create(t *testing.T, name string, dirs ...string) *volume.Volume {
	t.Helper()
	return e.createReplica(t, name, 1, nil, dirs...)
}

func (e *env) createReplica(t *testing.T, name string, replica int, opts map[string]string, dirs ...string) *volume.Volume {
	t.Helper()
	v := &volume.Volume{Name: name, Replica: replica, Options: opts}
	for _, d := range dirs {
		v.Bricks = append(v.Bricks, volume.Brick{Host: "127.0.0.1", Path: d})
	}
	if err := e.store.Create(context.Background(), v); err != nil {
		t.Fatal(err)
	}
	return v
}

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// runner is Run in a goroutine.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned err
	err    error
}

// stopTimeout bounds how long Run may take to return once cancelled.
const stopTimeout = time.Minute

// stop cancels Run and returns its result. A Run that does not return
// fails the test with every goroutine's stack, rather than hanging it.
func (r *runner) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(stopTimeout):
		buf := make([]byte, 1<<20)
		t.Fatalf("Run did not return %v after cancel; goroutines:\n%s", stopTimeout, buf[:runtime.Stack(buf, true)])
		return nil
	}
}

// wait returns Run's result once it returns by itself.
func (r *runner) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func (e *env) run(t *testing.T, vol string, index int) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = Run(ctx, Config{Etcd: e.etcd, Volume: vol, Index: index, Listen: "127.0.0.1:0", Logger: quiet(), LeaseTTL: 2 * time.Second})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// online waits until brick index of vol is online; Run must not return.
func (e *env) online(t *testing.T, vol string, index int, r *runner) volume.BrickStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		st, err := e.store.Status(ctx, vol)
		if err != nil {
			t.Fatal(err)
		}
		if st[index].Online {
			return st[index]
		}
		select {
		case <-r.done:
			t.Fatalf("Run returned %v before coming online", r.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("brick %s[%d] not online", vol, index)
	return volume.BrickStatus{}
}

func (e *env) offline(t *testing.T, vol string, index int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.store.Status(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	if st[index].Online {
		t.Fatalf("brick %s[%d] still online after Run returned: %+v", vol, index, st[index])
	}
}

// A brick serves real file operations to a client built from the client
// volfile, and leaves the volume's status when cancelled.
func TestRunServes(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	v := e.create(t, "gv", dir)
	r := e.run(t, "gv", 0)
	st := e.online(t, "gv", 0, r)
	if st.Pid != os.Getpid() || !strings.HasPrefix(st.Addr, "127.0.0.1:") {
		t.Fatalf("status %+v", st)
	}

	g, err := volfile.ClientVolfile(v)
	if err != nil {
		t.Fatal(err)
	}
	// Fail fast once the brick is gone; the client's reconnect warnings are expected.
	// Nodes[0] is the protocol client (write-behind may sit above it).
	g.Nodes[0].Options = append(g.Nodes[0].Options, volfile.Option{Key: "dial-timeout", Value: "1"})
	top, closeClient, err := volfile.Build(context.Background(), g, volfile.DefaultRegistry(volfile.Env{Etcd: e.cli, Logger: slog.New(slog.DiscardHandler)}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeClient()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := []byte("hello, brick\n")
	fd, attr, errno := top.Create(ctx, xl.RootGFID, "f", xl.NewGFID(), syscall.O_RDWR, 0o644)
	if errno != 0 {
		t.Fatalf("Create: %v", errno)
	}
	if n, errno := top.Write(ctx, fd, data, 0); errno != 0 || n != len(data) {
		t.Fatalf("Write = %d, %v", n, errno)
	}
	buf := make([]byte, 64)
	if n, errno := top.Read(ctx, fd, buf, 0); errno != 0 || !bytes.Equal(buf[:n], data) {
		t.Fatalf("Read = %q, %v", buf[:n], errno)
	}
	if errno := top.Release(ctx, fd); errno != 0 {
		t.Fatalf("Release: %v", errno)
	}
	got, errno := top.Lookup(ctx, xl.RootGFID, "f")
	if errno != 0 || got.GFID != attr.GFID || got.Size != uint64(len(data)) {
		t.Fatalf("Lookup = %+v, %v; want gfid %v size %d", got, errno, attr.GFID, len(data))
	}
	// The data is a plain file in the brick directory.
	if onDisk, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("brick file = %q, %v", onDisk, err)
	}

	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	e.offline(t, "gv", 0)
	// With the brick gone the client fails cleanly.
	if _, errno := top.Getattr(ctx, xl.RootGFID); errno == 0 {
		t.Fatal("Getattr succeeded with the brick stopped")
	}
}

// Stopping or deleting the volume stops its bricks.
func TestRunStopsWithVolume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create(t, "gv", t.TempDir())
	if err := e.store.SetState(ctx, "gv", volume.StateStarted); err != nil {
		t.Fatal(err)
	}
	r := e.run(t, "gv", 0)
	e.online(t, "gv", 0, r)
	if err := e.store.SetState(ctx, "gv", volume.StateStopped); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t); err != nil {
		t.Fatalf("Run = %v after volume stop, want nil", err)
	}
	e.offline(t, "gv", 0)

	// A stopped volume's brick does not start.
	err := Run(ctx, Config{Etcd: e.etcd, Volume: "gv", Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "volume gv is stopped") {
		t.Fatalf("Run on a stopped volume = %v", err)
	}

	e.create(t, "gv2", t.TempDir())
	r = e.run(t, "gv2", 0)
	e.online(t, "gv2", 0, r)
	if err := e.store.Delete(ctx, "gv2"); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t); err != nil {
		t.Fatalf("Run = %v after volume delete, want nil", err)
	}
}

func TestRunEtcdDown(t *testing.T) {
	t.Parallel() // waits out volume.ConnectTimeout
	// Nothing listens on port 1 of the loopback.
	err := Run(context.Background(), Config{Etcd: []string{"127.0.0.1:1"}, Volume: "gv", Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "etcd unreachable at 127.0.0.1:1") {
		t.Fatalf("Run = %v", err)
	}
}

func TestRunErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.create(t, "missingdir", "/nonexistent/brick")
	e.create(t, "filebrick", file)
	e.create(t, "ok", t.TempDir())

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Volume: "nope"}, "volume nope does not exist"},
		{Config{Volume: "ok", Index: 1}, "volume ok has no brick 1 (it has 1)"},
		{Config{Volume: "ok", Index: -1}, "has no brick -1"},
		{Config{Volume: "missingdir"}, "brick 127.0.0.1:/nonexistent/brick: "},
		{Config{Volume: "filebrick"}, "brick 127.0.0.1:" + file + ": "},
		{Config{Volume: "ok", Listen: busy.Addr().String()}, "address already in use"},
		{Config{Volume: "ok", LeaseTTL: -time.Second}, "negative lease TTL"},
		{Config{}, "no etcd endpoints"},
	} {
		cfg := c.cfg
		if cfg.Volume != "" {
			cfg.Etcd = e.etcd
		}
		cfg.Logger = quiet()
		err := Run(ctx, cfg)
		t.Logf("Run(%+v): %v", c.cfg, err)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Run(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
	// Nothing was left registered by the failures.
	st, err := e.store.Status(ctx, "ok")
	if err != nil || st[0].Online {
		t.Fatalf("status after failed runs: %+v, %v", st, err)
	}
}

// A second daemon for a brick that is being served gives up with a clear
// error once the first one's registration has clearly not expired.
func TestRunDuplicate(t *testing.T) {
	e := newEnv(t)
	e.create(t, "gv", t.TempDir())
	r := e.run(t, "gv", 0)
	first := e.online(t, "gv", 0, r)
	err := Run(context.Background(), Config{Etcd: e.etcd, Volume: "gv", Listen: "127.0.0.1:0", Logger: quiet(), LeaseTTL: time.Second})
	if !errors.Is(err, volume.ErrBrickBusy) || !strings.Contains(err.Error(), first.Addr) {
		t.Fatalf("second Run = %v, want busy at %s", err, first.Addr)
	}
	// The first brick is untouched.
	if st := e.online(t, "gv", 0, r); st.Addr != first.Addr {
		t.Fatalf("status after duplicate: %+v", st)
	}
}

func TestAdvertised(t *testing.T) {
	for _, c := range []struct {
		addr *net.TCPAddr
		host string
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4zero, Port: 7}, "srv1", "srv1:7"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 7}, "srv1", "srv1:7"},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 7}, "srv1", "10.0.0.1:7"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 7}, "srv1", "[::1]:7"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 7}, "fe80::1", "[fe80::1]:7"},
	} {
		if got := advertised(c.addr, c.host); got != c.want {
			t.Errorf("advertised(%v, %q) = %q, want %q", c.addr, c.host, got, c.want)
		}
	}
}
