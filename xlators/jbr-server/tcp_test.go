package jbrserver

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// tcpBrick is a brick as deployed: posix store, journal, jbr-server, a
// protocol server on loopback, and protocol clients to its peers.
type tcpBrick struct {
	dir    string
	store  *posix.Store
	j      *journal.Journal
	el     *FakeElector
	srv    *Server
	ps     *server.Server
	peers  []*client.Client
	served chan error
}

// tcpCluster is n bricks as deployed, on loopback.
type tcpCluster struct {
	t      testing.TB
	lns    []net.Listener
	bricks []*tcpBrick
	log    *slog.Logger
}

// newTCPCluster starts n bricks with opts as the common options; it
// stops them when the test ends.
func newTCPCluster(t testing.TB, n int, opts Options) *tcpCluster {
	c := &tcpCluster{t: t, log: testLogger(t)}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.lns = append(c.lns, ln)
	}
	root := t.TempDir()
	t.Cleanup(c.close)
	for i := range n {
		b := &tcpBrick{dir: filepath.Join(root, fmt.Sprint("brick", i)), served: make(chan error, 1)}
		c.bricks = append(c.bricks, b)
		if err := os.Mkdir(b.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if b.store, err = posix.New(b.dir, posix.Options{Logger: c.log}); err != nil {
			t.Fatal(err)
		}
		if b.j, err = journal.Open(filepath.Join(root, fmt.Sprint("journal", i)), journal.Options{Logger: c.log}); err != nil {
			t.Fatal(err)
		}
		peers := map[int]xl.Xlator{}
		for p := range n {
			if p != i {
				pc := c.client(p)
				b.peers = append(b.peers, pc)
				peers[p] = pc
			}
		}
		b.el = NewFakeElector()
		o := opts
		o.Volume, o.Self, o.Replicas, o.Peers, o.Journal, o.Elector = "v", i, n, peers, b.j, b.el
		o.Logger = c.log.With("node", i)
		if b.srv, err = New(b.store, o); err != nil {
			t.Fatal(err)
		}
		b.ps = server.New(b.srv, server.Options{Volume: "v", Logger: c.log})
		go func() { b.served <- b.ps.Serve(c.lns[i]) }()
	}
	return c
}

// client connects to brick i.
func (c *tcpCluster) client(i int) *client.Client {
	pc, err := client.New(client.Options{Addr: c.lns[i].Addr().String(), Volume: "v", Logger: c.log,
		PingInterval: 200 * time.Millisecond, PingTimeout: time.Second, DialTimeout: time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	return pc
}

func (c *tcpCluster) stopServing(b *tcpBrick) {
	if b.ps != nil {
		b.ps.Close()
		<-b.served
		b.ps = nil
	}
}

func (c *tcpCluster) close() {
	for _, b := range c.bricks {
		if b.srv != nil {
			b.srv.Close()
		}
		c.stopServing(b)
		for _, pc := range b.peers {
			pc.Close()
		}
		if b.j != nil {
			b.j.Close()
		}
		if b.store != nil {
			b.store.Close()
		}
	}
	for _, ln := range c.lns {
		ln.Close()
	}
}

// elect makes brick i lead term and returns a client of it once it
// answers as leader and takes writes (its peers are connected).
func (c *tcpCluster) elect(i int, term uint64) *client.Client {
	for j, b := range c.bricks {
		if j == i {
			b.el.Elect(i, term)
		} else {
			b.el.Observe(i, term)
		}
	}
	mount := c.client(i)
	c.t.Cleanup(func() { mount.Close() })
	waitFor(c.t, fmt.Sprint("brick ", i, " to lead"), func() bool {
		x, e := mount.Ipc(newCaller().next(), IpcLeader, nil)
		l, _, err := ParseLeader(x)
		if e != 0 || err != nil || l != i {
			return false
		}
		for _, pc := range c.bricks[i].peers {
			if !pc.Connected() {
				return false
			}
		}
		return true
	})
	return mount
}

// Three bricks replicate over real protocol connections; the leader is
// found through the protocol, followers refuse with EREMOTE, and a
// leader whose peer's connection is down refuses writes when the quorum
// needs it.
func TestOverTCP(t *testing.T) {
	c := newTCPCluster(t, 3, Options{Quorum: 3, Heartbeat: 20 * time.Millisecond, RequestTimeout: 3 * time.Second})
	bricks := c.bricks
	mount := c.elect(0, 3)
	follower := c.client(1)
	defer follower.Close()
	cl := newCaller()
	var fd xl.Fd
	waitFor(t, "the first write", func() bool {
		var e syscall.Errno
		fd, _, e = mount.Create(cl.next(), xl.RootGFID, "f", xl.NewGFID(), syscall.O_RDWR, 0o644)
		return e != syscall.EROFS // peers still connecting
	})
	write(t, mount, cl, fd, "over tcp", 0)
	waitFor(t, "every brick to apply", func() bool {
		for _, b := range bricks {
			if got, _ := os.ReadFile(filepath.Join(b.dir, "f")); string(got) != "over tcp" {
				return false
			}
		}
		return true
	})
	buf := make([]byte, 16)
	if n, e := mount.Read(cl.next(), fd, buf, 0); e != 0 || string(buf[:n]) != "over tcp" {
		t.Fatalf("read through the leader: %q %v", buf[:n], e)
	}
	if _, e := follower.Write(cl.next(), fd, []byte("x"), 0); e != syscall.EREMOTE {
		t.Fatalf("write through a follower: %v, want EREMOTE", e)
	}
	x, e := follower.Ipc(cl.next(), IpcStatus, nil)
	if e != 0 || len(x["status"]) == 0 {
		t.Fatalf("status through the protocol: %v", e)
	}

	// Brick 2 stops serving: the leader's connection to it goes, and
	// with a quorum of all three it refuses writes at once.
	c.stopServing(bricks[2])
	waitFor(t, "the leader to see brick 2 gone", func() bool { return !bricks[0].peers[1].Connected() })
	if _, e := mount.Write(cl.next(), fd, []byte("x"), 0); e != syscall.EROFS {
		t.Fatalf("write with a peer gone: %v, want EROFS", e)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
