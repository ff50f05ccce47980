package jbrserver

import (
	"fmt"
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

// Three bricks replicate over real protocol connections; the leader is
// found through the protocol, followers refuse with EREMOTE, and a
// leader whose peer's connection is down refuses writes when the quorum
// needs it.
func TestOverTCP(t *testing.T) {
	log := testLogger(t)
	const n = 3
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	newClient := func(i int) *client.Client {
		c, err := client.New(client.Options{Addr: lns[i].Addr().String(), Volume: "v", Logger: log,
			PingInterval: 200 * time.Millisecond, PingTimeout: time.Second, DialTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	root := t.TempDir()
	bricks := make([]*tcpBrick, n)
	for i := range bricks {
		b := &tcpBrick{dir: filepath.Join(root, fmt.Sprint("brick", i)), served: make(chan error, 1)}
		bricks[i] = b
		if err := os.Mkdir(b.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if b.store, err = posix.New(b.dir, posix.Options{Logger: log}); err != nil {
			t.Fatal(err)
		}
		if b.j, err = journal.Open(filepath.Join(root, fmt.Sprint("journal", i)), journal.Options{Logger: log, SegmentSize: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		peers := map[int]xl.Xlator{}
		for p := range n {
			if p != i {
				c := newClient(p)
				b.peers = append(b.peers, c)
				peers[p] = c
			}
		}
		b.el = NewFakeElector()
		b.srv, err = New(b.store, Options{Volume: "v", Self: i, Replicas: n, Quorum: 3, Peers: peers, Journal: b.j,
			Elector: b.el, Logger: log.With("node", i), Heartbeat: 20 * time.Millisecond, RequestTimeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		b.ps = server.New(b.srv, server.Options{Volume: "v", Logger: log})
		go func() { b.served <- b.ps.Serve(lns[i]) }()
	}
	stopServing := func(b *tcpBrick) {
		if b.ps != nil {
			b.ps.Close()
			<-b.served
			b.ps = nil
		}
	}
	defer func() {
		for _, b := range bricks {
			b.srv.Close()
			stopServing(b)
			for _, c := range b.peers {
				c.Close()
			}
			b.j.Close()
			b.store.Close()
		}
	}()

	bricks[0].el.Elect(0, 3)
	bricks[1].el.Observe(0, 3)
	bricks[2].el.Observe(0, 3)
	mount := newClient(0) // a client of the leader
	defer mount.Close()
	follower := newClient(1)
	defer follower.Close()
	waitFor(t, "brick 0 to lead", func() bool {
		x, e := mount.Ipc(newCaller().next(), IpcLeader, nil)
		l, _, err := ParseLeader(x)
		return e == 0 && err == nil && l == 0
	})
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
	stopServing(bricks[2])
	waitFor(t, "the leader to see brick 2 gone", func() bool { return !bricks[0].peers[1].Connected() })
	if _, e := mount.Write(cl.next(), fd, []byte("x"), 0); e != syscall.EROFS {
		t.Fatalf("write with a peer gone: %v, want EROFS", e)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
