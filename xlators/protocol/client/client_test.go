package client_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/localsock"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/probe"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/spy"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/testlog"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// brick is a protocol server on loopback in front of a leaf.
type brick struct {
	t      testing.TB
	srv    *server.Server
	addr   string
	log    *testlog.Buffer
	served chan error
	once   sync.Once
}

func startBrick(t testing.TB, top xl.Xlator, addr string, opts server.Options) *brick {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveBrick(t, top, ln, opts)
}

func serveBrick(t testing.TB, top xl.Xlator, ln net.Listener, opts server.Options) *brick {
	t.Helper()
	if opts.Volume == "" {
		opts.Volume = "vol0"
	}
	b := &brick{t: t, addr: ln.Addr().String(), served: make(chan error, 1)}
	opts.Logger, b.log = testlog.New(t)
	b.srv = server.New(top, opts)
	go func() { b.served <- b.srv.Serve(ln) }()
	t.Cleanup(b.stop)
	return b
}

func (b *brick) stop() {
	b.once.Do(func() {
		b.srv.Close()
		if err := <-b.served; err != nil {
			b.t.Errorf("Serve after Close: %v", err)
		}
	})
}

func newClient(t testing.TB, addr string, opts client.Options) (*client.Client, *testlog.Buffer) {
	t.Helper()
	opts.Addr = addr
	if opts.Volume == "" {
		opts.Volume = "vol0"
	}
	if opts.PingInterval == 0 {
		opts.PingInterval = 100 * time.Millisecond
		opts.PingTimeout = 5 * time.Second
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 2 * time.Second
	}
	var log *testlog.Buffer
	opts.Logger, log = testlog.New(t)
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, log
}

// tcpOnly hides a TCP listener's type, so that the server does not shadow
// it with a local socket.
type tcpOnly struct{ net.Listener }

// A client reaches a brick on its host through the brick's local socket,
// and one that has none over TCP.
func TestLocalSocket(t *testing.T) {
	for _, local := range []bool{true, false} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			if !local {
				ln = tcpOnly{ln}
			}
			b := serveBrick(t, memfs.New(memfs.Options{}), ln, server.Options{})
			if local {
				// Serve opens the local socket in the background.
				eventually(t, "the local socket", func() bool {
					nc, _ := localsock.Dial(context.Background(), addr)
					if nc != nil {
						nc.Close()
					}
					return nc != nil
				})
			}
			c, _ := newClient(t, addr, client.Options{})
			if _, e := c.Getattr(context.Background(), xl.RootGFID); e != 0 {
				t.Fatalf("getattr: %v", e)
			}
			if got := b.log.Contains("client connected", `remote="local pid`); got != local {
				t.Errorf("connected through the local socket: %v, want %v; log:\n%s", got, local, b.log)
			}
		})
	}
}

// eventually retries f until it succeeds, for state that converges
// (reconnection); the bound only keeps a broken build from hanging.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !f(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
	}
}

func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed)
	}
	return b
}

var (
	gDir  = xl.GFID{15: 0x10}
	gFile = xl.GFID{15: 0x11}
	gLink = xl.GFID{15: 0x12}
	gNode = xl.GFID{15: 0x13}
)

// Every op goes through client, TCP and server to a leaf, and must come
// back exactly as the same leaf answers it in process: the twin runs the
// same steps directly. Both stores keep one fixed time, so that their
// timestamps agree too.
func TestEveryOpRoundTrip(t *testing.T) {
	fixed := memfs.Options{Now: func() time.Time { return time.Unix(1e9, 123) }}
	b := startBrick(t, probe.New(memfs.New(fixed)), "127.0.0.1:0", server.Options{})
	remote, _ := newClient(t, b.addr, client.Options{})
	local := probe.New(memfs.New(fixed))
	ctx := xl.WithCall(context.Background(), &xl.Call{
		Uid: 1000, Gid: 100, Groups: []uint32{4, 27, 100}, Pid: 4242,
		Client: [16]byte{0: 0xc1, 15: 0x1d}, Seq: 99, Xdata: xl.Xdata{"gfid-req": gNode[:], "empty": {}},
	})

	type state struct{ fd, dfd xl.Fd }
	type step struct {
		op  xl.Op
		run func(x xl.Xlator, s *state) []any
	}
	root := xl.RootGFID
	steps := []step{
		{xl.OpMkdir, func(x xl.Xlator, s *state) []any { return list(x.Mkdir(ctx, root, "d", gDir, 0o750)) }},
		{xl.OpMkdir, func(x xl.Xlator, s *state) []any { return list(x.Mkdir(ctx, root, "d", gDir, 0o750)) }},
		{xl.OpLookup, func(x xl.Xlator, s *state) []any { return list(x.Lookup(ctx, root, "d")) }},
		{xl.OpLookup, func(x xl.Xlator, s *state) []any { return list(x.Lookup(ctx, root, "missing")) }},
		{xl.OpCreate, func(x xl.Xlator, s *state) []any {
			fd, a, e := x.Create(ctx, gDir, "f", gFile, syscall.O_RDWR, 0o640)
			s.fd = fd
			return list(fd, a, e)
		}},
		{xl.OpWrite, func(x xl.Xlator, s *state) []any { return list(x.Write(ctx, s.fd, pattern(100000, 1), 0)) }},
		{xl.OpWrite, func(x xl.Xlator, s *state) []any { return list(x.Write(ctx, s.fd, nil, 5)) }},
		{xl.OpRead, func(x xl.Xlator, s *state) []any {
			dst := make([]byte, 70000) // short read at EOF
			n, e := x.Read(ctx, s.fd, dst, 50000)
			return list(n, e, dst)
		}},
		{xl.OpRead, func(x xl.Xlator, s *state) []any {
			dst := make([]byte, 10)
			n, e := x.Read(ctx, s.fd, dst, 5)
			return list(n, e, dst)
		}},
		{xl.OpRead, func(x xl.Xlator, s *state) []any { return list(x.Read(ctx, s.fd, make([]byte, 10), 1<<30)) }},
		{xl.OpGetattr, func(x xl.Xlator, s *state) []any { return list(x.Getattr(ctx, gFile)) }},
		{xl.OpGetattr, func(x xl.Xlator, s *state) []any { return list(x.Getattr(ctx, xl.NewGFID())) }},
		{xl.OpSetattr, func(x xl.Xlator, s *state) []any {
			return list(x.Setattr(ctx, gFile, xl.SetattrIn{Valid: xl.SetMode | xl.SetUid | xl.SetMtime, Mode: 0o600, Uid: 7, Mtime: xl.Timespec{Sec: 1e9, Nsec: 5}}))
		}},
		{xl.OpAccess, func(x xl.Xlator, s *state) []any { return list(x.Access(ctx, gFile, 4)) }},
		{xl.OpSymlink, func(x xl.Xlator, s *state) []any { return list(x.Symlink(ctx, gDir, "s", gLink, "f")) }},
		{xl.OpReadlink, func(x xl.Xlator, s *state) []any { return list(x.Readlink(ctx, gLink)) }},
		{xl.OpReadlink, func(x xl.Xlator, s *state) []any { return list(x.Readlink(ctx, gFile)) }},
		{xl.OpMknod, func(x xl.Xlator, s *state) []any {
			return list(x.Mknod(ctx, gDir, "p", gNode, syscall.S_IFIFO|0o600, 0x0801))
		}},
		{xl.OpLink, func(x xl.Xlator, s *state) []any { return list(x.Link(ctx, gFile, root, "hard")) }},
		{xl.OpRename, func(x xl.Xlator, s *state) []any { return list(x.Rename(ctx, gDir, "p", root, "p2", 0)) }},
		{xl.OpRename, func(x xl.Xlator, s *state) []any {
			return list(x.Rename(ctx, root, "p2", root, "hard", xl.RenameNoreplace))
		}},
		{xl.OpUnlink, func(x xl.Xlator, s *state) []any { return list(x.Unlink(ctx, root, "hard")) }},
		{xl.OpTruncate, func(x xl.Xlator, s *state) []any { return list(x.Truncate(ctx, gFile, 12345)) }},
		{xl.OpFallocate, func(x xl.Xlator, s *state) []any { return list(x.Fallocate(ctx, s.fd, 0, 4096, 1<<20)) }},
		{xl.OpFallocate, func(x xl.Xlator, s *state) []any { return list(x.Fallocate(ctx, s.fd, 2, 0, 1)) }},
		{xl.OpLseek, func(x xl.Xlator, s *state) []any { return list(x.Lseek(ctx, s.fd, 10, 4)) }},
		{xl.OpFlush, func(x xl.Xlator, s *state) []any { return list(x.Flush(ctx, s.fd)) }},
		{xl.OpFsync, func(x xl.Xlator, s *state) []any { return list(x.Fsync(ctx, s.fd, true)) }},
		{xl.OpRelease, func(x xl.Xlator, s *state) []any { return list(x.Release(ctx, s.fd)) }},
		{xl.OpOpen, func(x xl.Xlator, s *state) []any { return list(x.Open(ctx, gFile, syscall.O_RDWR|syscall.O_TRUNC)) }},
		{xl.OpOpendir, func(x xl.Xlator, s *state) []any {
			fd, e := x.Opendir(ctx, gDir)
			s.dfd = fd
			return list(fd, e)
		}},
		{xl.OpReaddir, func(x xl.Xlator, s *state) []any { return list(x.Readdir(ctx, s.dfd, 0, 2)) }},
		{xl.OpReaddir, func(x xl.Xlator, s *state) []any { return list(x.Readdir(ctx, s.dfd, 2, 10)) }},
		{xl.OpReaddir, func(x xl.Xlator, s *state) []any { return list(x.Readdir(ctx, s.dfd, 100, 10)) }},
		{xl.OpReleasedir, func(x xl.Xlator, s *state) []any { return list(x.Releasedir(ctx, s.dfd)) }},
		{xl.OpStatfs, func(x xl.Xlator, s *state) []any { return list(x.Statfs(ctx, root)) }},
		{xl.OpSetxattr, func(x xl.Xlator, s *state) []any { return list(x.Setxattr(ctx, gFile, "user.a", []byte("1"), 0)) }},
		{xl.OpSetxattr, func(x xl.Xlator, s *state) []any { return list(x.Setxattr(ctx, gFile, "user.e", []byte{}, 0)) }},
		{xl.OpSetxattr, func(x xl.Xlator, s *state) []any { return list(x.Setxattr(ctx, gFile, "user.a", nil, 1)) }},
		{xl.OpGetxattr, func(x xl.Xlator, s *state) []any { return list(x.Getxattr(ctx, gFile, "user.a")) }},
		{xl.OpGetxattr, func(x xl.Xlator, s *state) []any { return list(x.Getxattr(ctx, gFile, "user.e")) }},
		{xl.OpGetxattr, func(x xl.Xlator, s *state) []any { return list(x.Getxattr(ctx, gFile, "user.none")) }},
		{xl.OpListxattr, func(x xl.Xlator, s *state) []any { return list(x.Listxattr(ctx, gFile)) }},
		{xl.OpRemovexattr, func(x xl.Xlator, s *state) []any { return list(x.Removexattr(ctx, gFile, "user.a")) }},
		{xl.OpListxattr, func(x xl.Xlator, s *state) []any { return list(x.Listxattr(ctx, gFile)) }},
		{xl.OpRmdir, func(x xl.Xlator, s *state) []any { return list(x.Rmdir(ctx, root, "d")) }},
		{xl.OpIpc, func(x xl.Xlator, s *state) []any { return list(x.Ipc(ctx, probe.IpcWhoami, nil)) }},
		{xl.OpIpc, func(x xl.Xlator, s *state) []any {
			return list(x.Ipc(ctx, probe.IpcEcho, xl.Xdata{"k": []byte("v"), "e": {}}))
		}},
		{xl.OpIpc, func(x xl.Xlator, s *state) []any { return list(x.Ipc(ctx, "nobody.knows", nil)) }},
	}

	covered := map[xl.Op]bool{}
	var ls, rs state
	for i, st := range steps {
		covered[st.op] = true
		want := st.run(local, &ls)
		got := st.run(remote, &rs)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("step %d (%v):\n got %v\nwant %v", i, st.op, got, want)
		}
	}
	for op := xl.Op(1); op.Valid(); op++ {
		if !covered[op] {
			t.Errorf("no step exercises %v", op)
		}
	}
	// The caller's identity reached the leaf.
	who, e := remote.Ipc(ctx, probe.IpcWhoami, nil)
	if e != 0 || string(who["uid"]) != "1000" || string(who["groups"]) != "4,27,100" ||
		string(who["seq"]) != "99" || !bytes.Equal(who["x.gfid-req"], gNode[:]) {
		t.Errorf("whoami = %q, %v", who, e)
	}
}

func list(v ...any) []any { return v }

func TestLargeIO(t *testing.T) {
	b := startBrick(t, memfs.New(memfs.Options{}), "127.0.0.1:0", server.Options{MaxFrame: 1 << 20})
	c, _ := newClient(t, b.addr, client.Options{})
	ctx := context.Background()
	fd, _, e := c.Create(ctx, xl.RootGFID, "big", gFile, syscall.O_RDWR, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	data := pattern(1<<20-4096, 3)
	if n, e := c.Write(ctx, fd, data, 0); n != len(data) || e != 0 {
		t.Fatalf("write = %d, %v", n, e)
	}
	dst := make([]byte, len(data))
	if n, e := c.Read(ctx, fd, dst, 0); n != len(data) || e != 0 || !bytes.Equal(dst, data) {
		t.Fatalf("read = %d, %v, equal %v", n, e, bytes.Equal(dst, data))
	}
	// More than the server takes in one frame is refused up front.
	if _, e := c.Write(ctx, fd, make([]byte, 1<<20+1), 0); e != syscall.EINVAL {
		t.Fatalf("oversized write = %v, want EINVAL", e)
	}
	if _, e := c.Getattr(ctx, gFile); e != 0 {
		t.Fatalf("connection unusable after refusing a write: %v", e)
	}
}

// 64 callers must all be in flight on the one connection at once: the
// barrier answers none of them until all have arrived.
func TestConcurrentCalls(t *testing.T) {
	const n = 64
	b := startBrick(t, probe.New(memfs.New(memfs.Options{})), "127.0.0.1:0", server.Options{})
	c, _ := newClient(t, b.addr, client.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, e := c.Ipc(ctx, probe.IpcBarrier, xl.Xdata{"n": []byte(fmt.Sprint(n))}); e != 0 {
				t.Errorf("caller %d: barrier: %v", i, e)
				return
			}
			g := xl.GFID{0: byte(i), 15: 0xff}
			fd, _, e := c.Create(ctx, xl.RootGFID, fmt.Sprint("f", i), g, syscall.O_RDWR, 0o644)
			if e != 0 {
				t.Errorf("caller %d: create: %v", i, e)
				return
			}
			data := pattern(4096+i, i)
			for range 20 {
				if _, e := c.Write(ctx, fd, data, 0); e != 0 {
					t.Errorf("caller %d: write: %v", i, e)
					return
				}
				dst := make([]byte, len(data)+10)
				if m, e := c.Read(ctx, fd, dst, 0); e != 0 || !bytes.Equal(dst[:m], data) {
					t.Errorf("caller %d: read %d bytes, %v, wrong data", i, m, e)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestWrongVolumeIsRejected(t *testing.T) {
	b := startBrick(t, memfs.New(memfs.Options{}), "127.0.0.1:0", server.Options{Volume: "vol0"})
	c, log := newClient(t, b.addr, client.Options{Volume: "other"})
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != syscall.ENOTCONN {
		t.Fatalf("Getattr = %v, want ENOTCONN", e)
	}
	if c.Connected() {
		t.Error("Connected after a rejected handshake")
	}
	eventually(t, "client logs the rejection", func() bool {
		return log.Contains("server rejected", `volume \"other\" is not served here`)
	})
	eventually(t, "server logs the rejection", func() bool {
		return b.log.ContainsLocalPeer("WARN", "handshake rejected")
	})
}

func TestServerRestart(t *testing.T) {
	pb := probe.New(memfs.New(memfs.Options{}))
	b := startBrick(t, pb, "127.0.0.1:0", server.Options{})
	c, _ := newClient(t, b.addr, client.Options{DialTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	if _, e := c.Mkdir(ctx, xl.RootGFID, "d", gDir, 0o755); e != 0 {
		t.Fatal(e)
	}

	inflight := make(chan syscall.Errno)
	go func() {
		_, e := c.Ipc(ctx, probe.IpcBlock, nil)
		inflight <- e
	}()
	<-pb.Blocked
	b.stop()
	if e := <-inflight; e != syscall.ENOTCONN {
		t.Fatalf("call in flight when the server died = %v, want ENOTCONN", e)
	}
	if _, e := c.Getattr(ctx, xl.RootGFID); e != syscall.ENOTCONN {
		t.Fatalf("call while the server is down = %v, want ENOTCONN", e)
	}

	startBrick(t, pb, b.addr, server.Options{})
	eventually(t, "client reconnects", func() bool {
		_, e := c.Lookup(ctx, xl.RootGFID, "d")
		return e == 0
	})
	if !c.Connected() {
		t.Error("not Connected after a successful call")
	}
}

// A client created before its server exists connects once it appears.
func TestConnectsInBackground(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ := newClient(t, addr, client.Options{DialTimeout: 200 * time.Millisecond})
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != syscall.ENOTCONN {
		t.Fatalf("Getattr with no server = %v, want ENOTCONN", e)
	}
	startBrick(t, memfs.New(memfs.Options{}), addr, server.Options{})
	eventually(t, "client connects", func() bool {
		_, e := c.Getattr(context.Background(), xl.RootGFID)
		return e == 0
	})
}

// fakeBrick accepts connections and hands each to serve; it is how tests
// play a server that misbehaves.
func fakeBrick(t *testing.T, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() { serve(nc) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// welcome completes the handshake as a server would.
func welcome(nc net.Conn) error {
	var hb [wire.HeaderSize]byte
	if _, err := io.ReadFull(nc, hb[:]); err != nil {
		return err
	}
	h, err := wire.ParseHeader(hb[:], wire.MinMaxFrame)
	if err != nil {
		return err
	}
	if _, err := io.ReadFull(nc, make([]byte, h.Len)); err != nil {
		return err
	}
	_, err = nc.Write(wire.AppendWelcome(nil, h.ID, &wire.Welcome{MaxFrame: wire.DefaultMaxFrame}))
	return err
}

// A server that handshakes and then stops answering (hung, or cut off by
// the network) is declared dead after PingTimeout, failing the calls in
// flight.
func TestPingTimeout(t *testing.T) {
	addr := fakeBrick(t, func(nc net.Conn) { welcome(nc) })
	c, log := newClient(t, addr, client.Options{PingInterval: 20 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, e := c.Getattr(ctx, xl.RootGFID); e != syscall.ENOTCONN {
		t.Fatalf("Getattr on a silent server = %v, want ENOTCONN", e)
	}
	eventually(t, "the ping timeout is logged", func() bool { return log.Contains("connection lost", "silent") })
}

// A listener that accepts and never answers cannot complete a handshake;
// calls give up after DialTimeout.
func TestHandshakeTimeout(t *testing.T) {
	addr := fakeBrick(t, func(nc net.Conn) { io.Copy(io.Discard, nc) })
	c, log := newClient(t, addr, client.Options{DialTimeout: 200 * time.Millisecond})
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != syscall.ENOTCONN {
		t.Fatalf("Getattr = %v, want ENOTCONN", e)
	}
	eventually(t, "the failed handshake is logged", func() bool { return log.Contains("cannot connect", "handshake") })
}

// A server that sends garbage gets its connection dropped; the call in
// flight fails and the client reconnects.
func TestGarbageFromServer(t *testing.T) {
	addr := fakeBrick(t, func(nc net.Conn) {
		if welcome(nc) == nil {
			nc.Write([]byte("this is not a frame, not at all"))
		}
	})
	c, log := newClient(t, addr, client.Options{})
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != syscall.ENOTCONN {
		t.Fatalf("Getattr = %v, want ENOTCONN", e)
	}
	eventually(t, "the bad frame is logged", func() bool { return log.Contains("connection lost", "bad magic") })
}

func TestCancelReturnsEINTR(t *testing.T) {
	pb := probe.New(memfs.New(memfs.Options{}))
	b := startBrick(t, pb, "127.0.0.1:0", server.Options{})
	c, _ := newClient(t, b.addr, client.Options{})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan syscall.Errno)
	go func() {
		_, e := c.Ipc(ctx, probe.IpcBlock, nil)
		done <- e
	}()
	<-pb.Blocked
	cancel()
	if e := <-done; e != syscall.EINTR {
		t.Fatalf("cancelled call = %v, want EINTR", e)
	}
	if _, e := c.Ipc(ctx, probe.IpcEcho, nil); e != syscall.EINTR {
		t.Fatalf("call with a cancelled ctx = %v, want EINTR", e)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	if _, e := c.Ipc(dctx, probe.IpcBlock, nil); e != syscall.ETIMEDOUT {
		t.Fatalf("call past its deadline = %v, want ETIMEDOUT", e)
	}
	// The late replies are dropped and the connection carries on.
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != 0 {
		t.Fatalf("Getattr after cancellations = %v", e)
	}
}

func TestCloseFailsCalls(t *testing.T) {
	pb := probe.New(memfs.New(memfs.Options{}))
	b := startBrick(t, pb, "127.0.0.1:0", server.Options{})
	c, _ := newClient(t, b.addr, client.Options{})
	done := make(chan syscall.Errno)
	go func() {
		_, e := c.Ipc(context.Background(), probe.IpcBlock, nil)
		done <- e
	}()
	<-pb.Blocked
	c.Close()
	if e := <-done; e != syscall.ENOTCONN {
		t.Fatalf("call in flight at Close = %v, want ENOTCONN", e)
	}
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != syscall.ENOTCONN {
		t.Fatalf("call after Close = %v, want ENOTCONN", e)
	}
	if c.Connected() {
		t.Error("Connected after Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	for _, o := range []client.Options{
		{Volume: "v"},
		{Addr: "127.0.0.1:1"},
		{Addr: "127.0.0.1:1", Volume: "v", DialTimeout: -1},
		{Addr: "127.0.0.1:1", Volume: "v", PingInterval: 20 * time.Second},
	} {
		if c, err := client.New(o); err == nil {
			c.Close()
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// A request marked NoReply returns once it is written; the server serves
// it and answers nothing, not even an error.
func TestNoReply(t *testing.T) {
	b := startBrick(t, memfs.New(memfs.Options{}), "127.0.0.1:0", server.Options{})
	c, _ := newClient(t, b.addr, client.Options{})
	ctx := context.Background()
	nr := client.NoReply(ctx)
	const n = 50
	for i := range n {
		if _, e := c.Mkdir(nr, xl.RootGFID, fmt.Sprint("d", i), xl.NewGFID(), 0o755); e != 0 {
			t.Fatalf("mkdir %d without a reply: %v", i, e)
		}
	}
	if _, e := c.Mkdir(nr, xl.RootGFID, "d0", xl.NewGFID(), 0o755); e != 0 {
		t.Errorf("failing mkdir without a reply: %v, want no error", e)
	}
	for i := range n {
		eventually(t, fmt.Sprint("d", i, " made"), func() bool {
			_, e := c.Lookup(ctx, xl.RootGFID, fmt.Sprint("d", i))
			return e == 0
		})
	}
	// Replies still pair up with their requests after requests that
	// wanted none.
	if _, e := c.Lookup(ctx, xl.RootGFID, "nope"); e != syscall.ENOENT {
		t.Errorf("lookup of a missing name: %v, want ENOENT", e)
	}
}

// A release goes out without waiting for a reply, yet the server serves
// it before the requests sent after it.
func TestReleaseServedInOrder(t *testing.T) {
	sp := spy.New(memfs.New(memfs.Options{}))
	b := startBrick(t, sp, "127.0.0.1:0", server.Options{})
	c, _ := newClient(t, b.addr, client.Options{})
	ctx := context.Background()
	for i := range 100 {
		g := xl.NewGFID()
		fd, _, e := c.Create(ctx, xl.RootGFID, fmt.Sprintf("f%d", i), g, syscall.O_RDWR, 0o644)
		if e != 0 {
			t.Fatal(e)
		}
		dfd, e := c.Opendir(ctx, xl.RootGFID)
		if e != 0 {
			t.Fatal(e)
		}
		if e := c.Release(ctx, fd); e != 0 {
			t.Fatalf("release: %v", e)
		}
		if e := c.Releasedir(ctx, dfd); e != 0 {
			t.Fatalf("releasedir: %v", e)
		}
		if _, e := c.Getattr(ctx, g); e != 0 {
			t.Fatal(e)
		}
		if n, m := sp.Released(fd), sp.Released(dfd); n != 1 || m != 1 {
			t.Fatalf("after a later request was answered: file released %d times, dir %d, want 1 each", n, m)
		}
	}
}
