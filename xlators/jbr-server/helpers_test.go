package jbrserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/xlators/fdl"
	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logBuf collects a test's log output; it is printed if the test fails.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func testLogger(t testing.TB) *slog.Logger {
	lb := &logBuf{}
	t.Cleanup(func() {
		if t.Failed() {
			lb.mu.Lock()
			t.Logf("log:\n%s", lb.b.String())
			lb.mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// link is one direction of a connection between two bricks: it forwards
// peer messages to whichever server currently runs at the far end, and
// can be cut.
type link struct {
	xl.Funnel
	to   atomic.Pointer[Server]
	down atomic.Bool // disconnected
	lose atomic.Bool // looks connected, but loses every message
}

func newLink() *link {
	l := &link{}
	l.H = func(ctx context.Context, f *xl.Fop) *xl.Result {
		s := l.to.Load()
		if l.down.Load() || l.lose.Load() || s == nil {
			return &xl.Result{Errno: syscall.ENOTCONN}
		}
		return xl.Dispatch(ctx, s, f)
	}
	return l
}

func (l *link) Connected() bool { return !l.down.Load() && l.to.Load() != nil }

// gate wraps a store and holds the ops it is told to hold until released
// or until the op's context ends (the server closing).
type gate struct {
	xl.Xlator
	mu      sync.Mutex
	hold    func(*xl.Fop) bool
	open    chan struct{}
	arrived []string // names (Fop.Name or fd gfid) of held ops, in arrival order
	seen    chan struct{}
}

func newGate(x xl.Xlator, hold func(*xl.Fop) bool) *gate {
	return &gate{Xlator: x, hold: hold, open: make(chan struct{}), seen: make(chan struct{}, 100)}
}

func (g *gate) Write(ctx context.Context, fd xl.Fd, data []byte, off int64) (int, syscall.Errno) {
	f := &xl.Fop{Op: xl.OpWrite, Fd: fd, Data: data, Off: off}
	if g.hold(f) {
		g.mu.Lock()
		g.arrived = append(g.arrived, string(data))
		g.mu.Unlock()
		g.seen <- struct{}{}
		select {
		case <-g.open:
		case <-ctx.Done():
			return 0, syscall.EINTR
		}
	}
	return g.Xlator.Write(ctx, fd, data, off)
}

func (g *gate) release() { close(g.open) }

func (g *gate) got() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.arrived...)
}

// node is one brick: a posix store, a journal and a server.
type node struct {
	i     int
	dir   string // brick directory
	jdir  string
	store *posix.Store
	child xl.Xlator
	j     *journal.Journal
	el    *FakeElector
	srv   *Server
}

type cluster struct {
	t       testing.TB
	n       []*node
	links   [][]*link // links[i][j]: i's connection to j
	opts    Options
	log     *slog.Logger
	segSize int64 // journal segments; 0 is the journal's default
}

// newCluster starts n bricks whose peers are each other's servers,
// connected directly. opts gives the common options. Journal segments
// are small, so that tests rotate them.
func newCluster(t testing.TB, n int, opts Options) *cluster {
	return startCluster(t, n, opts, 1<<20)
}

func startCluster(t testing.TB, n int, opts Options, segSize int64) *cluster {
	c := &cluster{t: t, opts: opts, log: testLogger(t), segSize: segSize}
	c.links = make([][]*link, n)
	for i := range n {
		c.links[i] = make([]*link, n)
		for j := range n {
			if i != j {
				c.links[i][j] = newLink()
			}
		}
	}
	root := t.TempDir()
	for i := range n {
		nd := &node{i: i, dir: filepath.Join(root, fmt.Sprint("brick", i)), jdir: filepath.Join(root, fmt.Sprint("journal", i))}
		if err := os.Mkdir(nd.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		c.n = append(c.n, nd)
	}
	for i := range n {
		c.start(i, nil)
	}
	t.Cleanup(func() {
		for i := range c.n {
			c.stop(i)
		}
	})
	return c
}

// start opens brick i's store and journal and starts its server; wrap,
// if set, wraps the store.
func (c *cluster) start(i int, wrap func(xl.Xlator) xl.Xlator) {
	c.t.Helper()
	nd := c.n[i]
	var err error
	if nd.store, err = posix.New(nd.dir, posix.Options{Logger: c.log}); err != nil {
		c.t.Fatal(err)
	}
	nd.child = nd.store
	if wrap != nil {
		nd.child = wrap(nd.store)
	}
	if nd.j, err = journal.Open(nd.jdir, journal.Options{Logger: c.log, SegmentSize: c.segSize}); err != nil {
		c.t.Fatal(err)
	}
	nd.el = NewFakeElector()
	o := c.opts
	o.Volume, o.Self, o.Replicas = "v", i, len(c.n)
	o.Journal, o.Elector, o.Logger = nd.j, nd.el, c.log.With("node", i)
	o.Sync = fdl.SyncDir(nd.dir)
	o.Peers = map[int]xl.Xlator{}
	for j, l := range c.links[i] {
		if l != nil {
			o.Peers[j] = l
		}
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 20 * time.Millisecond
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if nd.srv, err = New(nd.child, o); err != nil {
		c.t.Fatal(err)
	}
	for j := range c.n {
		if j != i {
			c.links[j][i].to.Store(nd.srv)
		}
	}
}

// stop closes brick i: server, journal, store.
func (c *cluster) stop(i int) {
	nd := c.n[i]
	if nd.srv == nil {
		return
	}
	for j := range c.n {
		if j != i {
			c.links[j][i].to.Store(nil)
		}
	}
	nd.srv.Close()
	if err := nd.j.Close(); err != nil && !errors.Is(err, journal.ErrClosed) {
		c.t.Errorf("closing journal %d: %v", i, err)
	}
	nd.store.Close()
	nd.srv = nil
}

// cut disconnects brick i from every other; heal reconnects it.
func (c *cluster) cut(i int)  { c.setLinks(i, true) }
func (c *cluster) heal(i int) { c.setLinks(i, false) }

func (c *cluster) setLinks(i int, down bool) {
	for j := range c.n {
		if j != i {
			c.links[i][j].down.Store(down)
			c.links[j][i].down.Store(down)
		}
	}
}

// elect makes brick i win term and tells the others, then waits until it
// leads.
func (c *cluster) elect(i int, term uint64) {
	c.t.Helper()
	c.n[i].el.Elect(i, term)
	for j, nd := range c.n {
		if j != i && nd.srv != nil {
			nd.el.Observe(i, term)
		}
	}
	c.waitFor(fmt.Sprintf("brick %d to lead term %d", i, term), func() bool {
		st := c.n[i].srv.Status()
		return st.Role == "leader" && st.Term == term
	})
}

// waitFor polls cond; what the tests wait for happens in milliseconds,
// the bound only catches a hang.
func (c *cluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// converged waits until every running brick has applied all the
// leader's committed entries.
func (c *cluster) converged(leader int) {
	c.t.Helper()
	c.waitFor("replicas to converge", func() bool {
		want := c.n[leader].srv.Status().Commit
		for _, nd := range c.n {
			if nd.srv == nil {
				continue
			}
			if st := nd.srv.Status(); st.Applied < want || st.Commit < want {
				return false
			}
		}
		return true
	})
}

// caller is a client with a request id prefix and a sequence.
type caller struct {
	id  [16]byte
	seq uint64
}

func newCaller() *caller { return &caller{id: xl.NewGFID()} }

// next returns a context for a new request.
func (cl *caller) next() context.Context {
	cl.seq++
	return cl.again()
}

// again returns a context for a retry of the last request.
func (cl *caller) again() context.Context {
	return xl.WithCall(context.Background(), &xl.Call{Client: cl.id, Seq: cl.seq})
}

// create makes a file under the root and returns its fd.
func create(t *testing.T, x xl.Xlator, cl *caller, name string, flags uint32) xl.Fd {
	t.Helper()
	fd, _, e := x.Create(cl.next(), xl.RootGFID, name, xl.NewGFID(), flags|syscall.O_RDWR, 0o644)
	if e != 0 {
		t.Fatalf("create %s: %v", name, e)
	}
	return fd
}

func write(t *testing.T, x xl.Xlator, cl *caller, fd xl.Fd, data string, off int64) {
	t.Helper()
	if n, e := x.Write(cl.next(), fd, []byte(data), off); e != 0 || n != len(data) {
		t.Fatalf("write %q: %d, %v", data, n, e)
	}
}

// sameEverywhere checks that every running brick holds want in name.
func (c *cluster) sameEverywhere(name, want string) {
	c.t.Helper()
	for _, nd := range c.n {
		if nd.srv == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(nd.dir, name))
		if err != nil || string(b) != want {
			c.t.Errorf("brick %d: %s holds %q (%v), want %q", nd.i, name, b, err, want)
		}
	}
}

// readAll reads name from brick i's directory.
func readAll(c *cluster, i int, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.n[i].dir, name))
	return string(b), err
}
