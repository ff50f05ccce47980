package server_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/spy"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/testlog"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// serve starts a server in front of top.
func serve(t *testing.T, top xl.Xlator) (*server.Server, string, *testlog.Buffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger, log := testlog.New(t)
	srv := server.New(top, server.Options{Volume: "vol0", Logger: logger, MaxFrame: maxFrame})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String(), log
}

func newClient(t *testing.T, addr string) (*client.Client, *testlog.Buffer) {
	t.Helper()
	logger, log := testlog.New(t)
	c, err := client.New(client.Options{Addr: addr, Volume: "vol0", Logger: logger,
		PingInterval: 100 * time.Millisecond, PingTimeout: 5 * time.Second, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, log
}

// eventually retries f until it holds; the bound only keeps a broken
// build from hanging.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !f(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
	}
}

// call sends one request on a raw connection and returns its reply,
// answering nothing else meanwhile.
func (r *raw) call(id uint64, f *xl.Fop) xl.Result {
	r.t.Helper()
	r.send(request(id, f))
	for {
		h, p, err := r.read()
		if err != nil {
			r.t.Fatal(err)
		}
		if h.Type != wire.TypeReply {
			continue
		}
		var res xl.Result
		if err := wire.DecodeResult(p[:h.MetaLen()], p[h.MetaLen():], &res); err != nil {
			r.t.Fatal(err)
		}
		if h.ID != id {
			r.t.Fatalf("reply to %d, want %d", h.ID, id)
		}
		return res
	}
}

// However a connection ends, the brick gets back every fd its client
// left open, once; fds the client released are not released again.
func TestConnectionEndReleasesFds(t *testing.T) {
	garbage := bytes.Repeat([]byte{0xff}, wire.HeaderSize)
	for _, tc := range []struct {
		name string
		idle time.Duration
		end  func(r *raw, srv *server.Server)
	}{
		{"client hangs up", 0, func(r *raw, _ *server.Server) { r.nc.Close() }},
		{"malformed frame", 0, func(r *raw, _ *server.Server) { r.send(garbage); r.expectHangup() }},
		{"ping timeout", 50 * time.Millisecond, func(r *raw, _ *server.Server) { r.expectHangup() }},
		{"server close", 0, func(_ *raw, srv *server.Server) { srv.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := spy.New(memfs.New(memfs.Options{}))
			srv, addr, _ := serve(t, sp)
			r := dial(t, addr)
			h := goodHello()
			if tc.idle > 0 {
				h.PingTimeout = tc.idle
			}
			r.hello(h)
			created := r.call(1, &xl.Fop{Op: xl.OpCreate, GFID: xl.RootGFID, Name: "f", GFID2: xl.NewGFID(), Flags: syscall.O_RDWR, Mode: 0o644})
			dir := r.call(2, &xl.Fop{Op: xl.OpOpendir, GFID: xl.RootGFID})
			closed := r.call(3, &xl.Fop{Op: xl.OpOpen, GFID: created.Attr.GFID, Flags: syscall.O_RDONLY})
			if created.Errno != 0 || dir.Errno != 0 || closed.Errno != 0 {
				t.Fatalf("create %v, opendir %v, open %v", created.Errno, dir.Errno, closed.Errno)
			}
			if e := r.call(4, &xl.Fop{Op: xl.OpRelease, Fd: closed.Fd}).Errno; e != 0 {
				t.Fatalf("release: %v", e)
			}
			tc.end(r, srv)
			eventually(t, "the open fds are released", func() bool {
				return sp.Released(created.Fd) == 1 && sp.Released(dir.Fd) == 1
			})
			if tc.name == "server close" {
				return
			}
			// The server's own Close waits for the releases, so after it the
			// counts are final.
			srv.Close()
			if n, m, k := sp.Released(created.Fd), sp.Released(dir.Fd), sp.Released(closed.Fd); n != 1 || m != 1 || k != 1 {
				t.Errorf("releases: created fd %d, dir fd %d, released fd %d; want 1 each", n, m, k)
			}
		})
	}
}

// A client that reconnected releases its old fds through the new
// connection, possibly before the server noticed that the old one died:
// the brick must not get a second release when it does.
func TestReleaseThroughAnotherConnection(t *testing.T) {
	sp := spy.New(memfs.New(memfs.Options{}))
	srv, addr, _ := serve(t, sp)
	old, cur := dial(t, addr), dial(t, addr)
	old.hello(goodHello())
	cur.hello(goodHello())
	dir := old.call(1, &xl.Fop{Op: xl.OpOpendir, GFID: xl.RootGFID})
	if dir.Errno != 0 {
		t.Fatal(dir.Errno)
	}
	if e := cur.call(1, &xl.Fop{Op: xl.OpReleasedir, Fd: dir.Fd}).Errno; e != 0 {
		t.Fatal(e)
	}
	old.nc.Close()
	srv.Close()
	if n := sp.Released(dir.Fd); n != 1 {
		t.Errorf("released %d times, want 1", n)
	}
}

// proxy forwards TCP connections to a server and can cut them all, as a
// network failure would.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{in, out}, {out, in}} {
				p.wg.Go(func() {
					io.Copy(pair[0], pair[1])
					pair[0].Close()
					pair[1].Close()
				})
			}
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// cut drops every connection through the proxy.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, nc := range p.conns {
		nc.Close()
	}
	p.conns = nil
}

// A client whose connection drops and comes back goes on reading and
// writing through the fds it opened before, although the brick released
// them when the old connection died.
func TestFdsSurviveReconnection(t *testing.T) {
	store, err := posix.New(t.TempDir(), posix.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	sp := spy.New(store)
	_, addr, _ := serve(t, sp)
	p := newProxy(t, addr)
	c, _ := newClient(t, p.addr())
	ctx := context.Background()

	g := xl.NewGFID()
	fd, _, e := c.Create(ctx, xl.RootGFID, "f", g, syscall.O_RDWR, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	if _, e := c.Write(ctx, fd, []byte("hello"), 0); e != 0 {
		t.Fatal(e)
	}
	dfd, e := c.Opendir(ctx, xl.RootGFID)
	if e != 0 {
		t.Fatal(e)
	}
	done, e := c.Open(ctx, g, syscall.O_RDONLY)
	if e != 0 {
		t.Fatal(e)
	}
	if e := c.Release(ctx, done); e != 0 {
		t.Fatal(e)
	}

	p.cut()
	eventually(t, "the dead connection's fds are released", func() bool {
		return sp.Released(fd) == 1 && sp.Released(dfd) == 1
	})
	if n := sp.Released(done); n != 1 {
		t.Errorf("an fd the client released was released %d times", n)
	}

	eventually(t, "the client reconnects and writes through its old fd", func() bool {
		_, e := c.Write(ctx, fd, []byte(", world"), 5)
		return e == 0
	})
	buf := make([]byte, 64)
	n, e := c.Read(ctx, fd, buf, 0)
	if e != 0 || string(buf[:n]) != "hello, world" {
		t.Fatalf("read through the old fd: %q, %v", buf[:n], e)
	}
	ents, e := c.Readdir(ctx, dfd, 0, 100)
	if e != 0 || !slices.ContainsFunc(ents, func(d xl.Dirent) bool { return d.Name == "f" }) {
		t.Fatalf("readdir through the old fd: %+v, %v", ents, e)
	}
	if e := c.Release(ctx, fd); e != 0 {
		t.Fatalf("release of an fd from before the reconnection: %v", e)
	}
	if e := c.Releasedir(ctx, dfd); e != 0 {
		t.Fatalf("releasedir of an fd from before the reconnection: %v", e)
	}
}

// A file unlinked while open lives until its last release; when its only
// opener goes away without releasing it, it must go all the same.
func TestVanishedOpenerFreesUnlinkedFile(t *testing.T) {
	store, err := posix.New(t.TempDir(), posix.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	_, addr, _ := serve(t, store)
	c, _ := newClient(t, addr)
	ctx := context.Background()

	g := xl.NewGFID()
	fd, _, e := c.Create(ctx, xl.RootGFID, "doomed", g, syscall.O_RDWR, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	if _, e := c.Write(ctx, fd, make([]byte, 64<<10), 0); e != 0 {
		t.Fatal(e)
	}
	if e := c.Unlink(ctx, xl.RootGFID, "doomed"); e != 0 {
		t.Fatal(e)
	}
	if _, e := store.Getattr(ctx, g); e != 0 {
		t.Fatalf("an unlinked file still open: getattr = %v", e)
	}
	c.Close()
	eventually(t, "the unlinked file goes with its opener", func() bool {
		_, e := store.Getattr(ctx, g)
		return e == syscall.ESTALE
	})
}
