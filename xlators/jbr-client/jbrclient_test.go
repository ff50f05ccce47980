package jbrclient

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// etcd's embedded server and client keep these background loops
		// until the process ends.
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/client/pkg/v3/logutil.(*MergeLogger).outputLoop"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// replicaSet is a fake JBR replica set: bricks that answer EREMOTE unless
// they lead, over one shared store, as if replication worked.
type replicaSet struct {
	mu     sync.Mutex
	leader int // -1: nobody
	term   uint64
	files  map[xl.GFID][]byte
	nextH  uint64
	bricks []*brick
}

// seen is one request as a brick received it.
type seen struct {
	op     xl.Op
	client [16]byte
	seq    uint64
	fd     xl.Fd
	data   string
	// durable: the request asked for a durable answer (durableKey).
	durable bool
}

type brick struct {
	xl.Funnel
	set *replicaSet
	idx int

	mu    sync.Mutex
	calls []seen
	// hook, when set, sees every client op first; a non-nil result is the
	// answer.
	hook func(ctx context.Context, f *xl.Fop) *xl.Result
	// noIpc makes the brick refuse jbr.leader.
	noIpc bool
	// down makes Connected report false, as for a brick whose process
	// died.
	down bool
}

// Connected is what jbr-client asks of a protocol client.
func (b *brick) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.down
}

func newSet(n, leader int, term uint64) *replicaSet {
	s := &replicaSet{leader: leader, term: term, files: make(map[xl.GFID][]byte)}
	for i := range n {
		b := &brick{set: s, idx: i}
		b.Funnel.H = b.handle
		s.bricks = append(s.bricks, b)
	}
	return s
}

func (s *replicaSet) kids() []xl.Xlator {
	var k []xl.Xlator
	for _, b := range s.bricks {
		k = append(k, b)
	}
	return k
}

func (s *replicaSet) setLeader(i int, term uint64) {
	s.mu.Lock()
	s.leader, s.term = i, term
	s.mu.Unlock()
}

func (s *replicaSet) content(g xl.GFID) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.files[g])
}

func (b *brick) setHook(h func(ctx context.Context, f *xl.Fop) *xl.Result) {
	b.mu.Lock()
	b.hook = h
	b.mu.Unlock()
}

// seen returns the client ops (not jbr.leader questions) b received.
func (b *brick) seen() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.calls...)
}

func (b *brick) handle(ctx context.Context, f *xl.Fop) *xl.Result {
	s := b.set
	if f.Op == xl.OpIpc && xl.IpcOp(f.Name) == ipcLeader {
		b.mu.Lock()
		no := b.noIpc
		b.mu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		if no || s.leader < 0 {
			return &xl.Result{Errno: syscall.ENOTSUP}
		}
		return &xl.Result{Xdata: xl.Xdata{
			"leader": []byte(strconv.Itoa(s.leader)),
			"term":   []byte(strconv.FormatUint(s.term, 10)),
		}}
	}
	call := xl.CallFrom(ctx)
	b.mu.Lock()
	_, durable := call.Xdata[durableKey]
	b.calls = append(b.calls, seen{op: f.Op, client: call.Client, seq: call.Seq, fd: f.Fd, data: string(f.Data), durable: durable})
	hook := b.hook
	b.mu.Unlock()
	if hook != nil {
		if r := hook(ctx, f); r != nil {
			return r
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leader != b.idx {
		return &xl.Result{Errno: syscall.EREMOTE}
	}
	switch f.Op {
	case xl.OpWrite:
		buf := s.files[f.Fd.GFID]
		if end := f.Off + int64(len(f.Data)); int64(len(buf)) < end {
			buf = append(buf, make([]byte, end-int64(len(buf)))...)
		}
		copy(buf[f.Off:], f.Data)
		s.files[f.Fd.GFID] = buf
		return &xl.Result{N: int64(len(f.Data))}
	case xl.OpRead:
		buf := s.files[f.Fd.GFID]
		if f.Off >= int64(len(buf)) {
			return &xl.Result{}
		}
		n := copy(f.Data[:f.Len], buf[f.Off:])
		return &xl.Result{N: int64(n), Data: f.Data[:n]}
	case xl.OpOpen, xl.OpCreate, xl.OpOpendir:
		s.nextH++
		return &xl.Result{Fd: xl.Fd{GFID: f.GFID, H: s.nextH, Flags: f.Flags}}
	}
	return &xl.Result{}
}

// fakeSource is a LeaderSource the test sets.
type fakeSource struct {
	mu     sync.Mutex
	leader int
	term   uint64
	ok     bool
	ch     chan struct{}
}

func newSource(leader int, term uint64) *fakeSource {
	return &fakeSource{leader: leader, term: term, ok: true, ch: make(chan struct{}, 1)}
}

func (s *fakeSource) Leader() (int, uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leader, s.term, s.ok
}

func (s *fakeSource) Changed() <-chan struct{} { return s.ch }

func (s *fakeSource) set(leader int, term uint64) {
	s.mu.Lock()
	s.leader, s.term, s.ok = leader, term, true
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

var mount = [16]byte{'m', 'o', 'u', 'n', 't'}

// req is a request context of the test mount with sequence number seq.
func req(seq uint64) context.Context {
	return xl.WithCall(context.Background(), &xl.Call{Client: mount, Seq: seq})
}

func newClient(t *testing.T, s *replicaSet, src LeaderSource, retry time.Duration) *Client {
	t.Helper()
	c, err := New(s.kids(), Options{Leaders: src, RetryTimeout: retry, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// activeIs reports whether c routes to child i.
func (c *Client) activeIs(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active == i
}

// held reports whether the mount's request seq is outstanding and held
// back by the ordering rule.
func (c *Client) held(seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[mount]
	if g == nil {
		return false
	}
	for t := range g.reqs {
		if t.seq == seq {
			return !t.sent && c.blocked(t)
		}
	}
	return false
}

func TestNewRejectsBadInput(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("no children accepted")
	}
	if _, err := New([]xl.Xlator{nil}, Options{}); err == nil {
		t.Error("nil child accepted")
	}
	if _, err := New(newSet(1, 0, 1).kids(), Options{RetryTimeout: -1}); err == nil {
		t.Error("negative retry timeout accepted")
	}
}

// Every op, present and future, goes to the leader and only there, but
// Flush, which no brick has anything to answer, goes nowhere.
func TestRoutesEveryOpToLeader(t *testing.T) {
	s := newSet(3, 2, 7)
	c := newClient(t, s, newSource(2, 7), 0)
	for op := xl.Op(1); op.Valid(); op++ {
		f := &xl.Fop{Op: op, GFID: xl.NewGFID(), Fd: xl.Fd{GFID: xl.NewGFID(), H: 1}, Name: "n"}
		if r := xl.Dispatch(req(uint64(op)), c, f); r.Errno != 0 {
			t.Errorf("%v: %v", op, r.Errno)
		}
	}
	if n := len(s.bricks[0].seen()) + len(s.bricks[1].seen()); n != 0 {
		t.Errorf("followers received %d requests", n)
	}
	got := s.bricks[2].seen()
	i := 0
	for op := xl.Op(1); op.Valid(); op++ {
		if op == xl.OpFlush {
			continue
		}
		if i >= len(got) || got[i].op != op || got[i].seq != uint64(op) || got[i].client != mount {
			t.Fatalf("leader saw %+v, want every op but Flush once in order with its Call", got)
		}
		i++
	}
	if i != len(got) {
		t.Fatalf("leader saw %d requests, want %d", len(got), i)
	}
}

// Without a leader source the client asks a brick, or failing that tries
// them in turn; EREMOTE never reaches the caller.
func TestFindsLeaderWithoutSource(t *testing.T) {
	for _, ask := range []bool{true, false} {
		t.Run("ipc="+strconv.FormatBool(ask), func(t *testing.T) {
			s := newSet(3, 2, 4)
			for _, b := range s.bricks {
				b.noIpc = !ask
			}
			c := newClient(t, s, nil, 0)
			g := xl.NewGFID()
			if n, e := c.Write(req(1), xl.Fd{GFID: g, H: 9}, []byte("data"), 0); e != 0 || n != 4 {
				t.Fatalf("Write = %d, %v", n, e)
			}
			if got := s.content(g); got != "data" {
				t.Fatalf("content %q", got)
			}
			// The leader is cached: the next request goes straight there.
			if _, e := c.Getattr(req(2), g); e != 0 {
				t.Fatal(e)
			}
			if len(s.bricks[0].seen()) != 1 {
				t.Errorf("brick 0 saw %+v, want only the first write", s.bricks[0].seen())
			}
			if got := s.bricks[2].seen(); len(got) != 2 {
				t.Errorf("leader saw %+v", got)
			}
		})
	}
}

// A leader that steps down mid-request answers ENOTCONN; the client
// resends the very same Call to the new leader, so the bricks can
// deduplicate it. The new leader is named by the leader source, or found
// by trying the next brick, which says who leads.
func TestFailoverResendsSameCall(t *testing.T) {
	for _, how := range []string{"source", "ipc"} {
		t.Run(how, func(t *testing.T) {
			s := newSet(3, 0, 1)
			var (
				src  *fakeSource
				ls   LeaderSource
				next = 2
			)
			if how == "source" {
				src, next = newSource(0, 1), 1
				ls = src
			}
			c := newClient(t, s, ls, 0)
			var once sync.Once
			s.bricks[0].setHook(func(ctx context.Context, f *xl.Fop) *xl.Result {
				if f.Op != xl.OpWrite {
					return nil
				}
				e := syscall.EREMOTE
				once.Do(func() {
					s.setLeader(next, 2)
					if src != nil {
						src.set(next, 2)
					}
					e = syscall.ENOTCONN
				})
				return &xl.Result{Errno: e}
			})
			g := xl.NewGFID()
			fd := xl.Fd{GFID: g, H: 3}
			for seq := uint64(1); seq <= 3; seq++ {
				if n, e := c.Write(req(seq), fd, []byte("x"), int64(seq)); e != 0 || n != 1 {
					t.Fatalf("write %d = %d, %v", seq, n, e)
				}
			}
			old, cur := s.bricks[0].seen(), s.bricks[next].seen()
			if len(old) != 1 || old[0].seq != 1 || old[0].client != mount {
				t.Fatalf("old leader saw %+v", old)
			}
			if len(cur) != 3 {
				t.Fatalf("new leader saw %+v, want 3 writes", cur)
			}
			for i, r := range cur {
				if r.seq != uint64(i+1) || r.client != mount || r.fd != fd {
					t.Errorf("new leader's call %d has client %x seq %d fd %+v, want the caller's", i, r.client, r.seq, r.fd)
				}
			}
			if s.content(g) != "\x00xxx" {
				t.Errorf("content %q", s.content(g))
			}
		})
	}
}

// The ordering rule: write A goes to the leader, which loses leadership
// while A is out. Write B to the same offset comes along and finds the
// new leader, but must wait for A, so the file ends with B's data.
func TestWriteNotOvertakenAcrossFailover(t *testing.T) {
	s := newSet(2, 0, 1)
	src := newSource(0, 1)
	c := newClient(t, s, src, 0)
	g := xl.NewGFID()
	fd := xl.Fd{GFID: g, H: 1}
	arrived, release := make(chan struct{}), make(chan struct{})
	s.bricks[0].setHook(func(ctx context.Context, f *xl.Fop) *xl.Result {
		if f.Op == xl.OpWrite && string(f.Data) == "A" {
			close(arrived)
			<-release
			return &xl.Result{Errno: syscall.ENOTCONN} // stepped down
		}
		return nil
	})
	errs := make(chan syscall.Errno, 2)
	go func() { _, e := c.Write(req(1), fd, []byte("A"), 0); errs <- e }()
	<-arrived
	s.setLeader(1, 2)
	src.set(1, 2)
	eventually(t, "the client to follow the new leader", func() bool { return c.activeIs(1) })
	go func() { _, e := c.Write(req(2), fd, []byte("B"), 0); errs <- e }()
	eventually(t, "write B to be held back or sent", func() bool {
		return c.held(2) || len(s.bricks[1].seen()) > 0
	})
	// Reads are never held back.
	if _, e := c.Getattr(req(3), g); e != 0 {
		t.Errorf("Getattr while a write is held: %v", e)
	}
	close(release)
	for range 2 {
		if e := <-errs; e != 0 {
			t.Fatal(e)
		}
	}
	if got := s.content(g); got != "B" {
		t.Fatalf("content %q after writes A then B: A overtook B", got)
	}
}

// A resent write is answered before later writes of the client go.
func TestResendAnsweredBeforeLaterWrites(t *testing.T) {
	s := newSet(2, 1, 2) // brick 0 believes itself deposed; the client does not know yet
	c := newClient(t, s, nil, 0)
	g := xl.NewGFID()
	fd := xl.Fd{GFID: g, H: 1}
	arrived, release := make(chan struct{}), make(chan struct{})
	s.bricks[1].setHook(func(ctx context.Context, f *xl.Fop) *xl.Result {
		if f.Op == xl.OpWrite && string(f.Data) == "A" {
			close(arrived)
			<-release
		}
		return nil
	})
	errs := make(chan syscall.Errno, 2)
	go func() { _, e := c.Write(req(1), fd, []byte("A"), 0); errs <- e }()
	<-arrived // A was refused by brick 0 and resent to brick 1
	go func() { _, e := c.Write(req(2), fd, []byte("B"), 0); errs <- e }()
	eventually(t, "write B to be held back or sent", func() bool {
		return c.held(2) || len(s.bricks[1].seen()) > 1
	})
	close(release)
	for range 2 {
		if e := <-errs; e != 0 {
			t.Fatal(e)
		}
	}
	if got := s.content(g); got != "B" {
		t.Fatalf("content %q after writes A then B: A overtook B", got)
	}
}

// With no leader anywhere, a request gives up after RetryTimeout with
// ENOTCONN, never EREMOTE.
func TestRetryTimeout(t *testing.T) {
	s := newSet(3, -1, 0)
	c := newClient(t, s, nil, 200*time.Millisecond)
	if _, e := c.Write(req(1), xl.Fd{H: 1}, []byte("x"), 0); e != syscall.ENOTCONN {
		t.Fatalf("Write = %v, want ENOTCONN", e)
	}
	if _, e := c.Getattr(req(2), xl.RootGFID); e != syscall.ENOTCONN {
		t.Fatalf("Getattr = %v, want ENOTCONN", e)
	}
	for i, b := range s.bricks {
		if len(b.seen()) == 0 {
			t.Errorf("brick %d never tried", i)
		}
	}
}

// Quorum loss (EROFS) is retried a few times, with the same Call, then
// reported.
func TestEROFSSurfaces(t *testing.T) {
	s := newSet(3, 0, 1)
	c := newClient(t, s, newSource(0, 1), time.Minute)
	s.bricks[0].setHook(func(ctx context.Context, f *xl.Fop) *xl.Result {
		return &xl.Result{Errno: syscall.EROFS}
	})
	if _, e := c.Write(req(5), xl.Fd{H: 1}, []byte("x"), 0); e != syscall.EROFS {
		t.Fatalf("Write = %v, want EROFS", e)
	}
	got := s.bricks[0].seen()
	if len(got) != 1+maxROFS {
		t.Errorf("leader saw %d attempts, want %d", len(got), 1+maxROFS)
	}
	for _, r := range got {
		if r.seq != 5 {
			t.Errorf("attempt with seq %d, want 5", r.seq)
		}
	}
}

// A cancelled ctx ends the retries at once with EINTR; Close ends them
// with ENOTCONN.
func TestCancelAndCloseStopRetrying(t *testing.T) {
	s := newSet(2, -1, 0)
	c := newClient(t, s, nil, time.Hour)
	tried := make(chan struct{}, 100)
	for _, b := range s.bricks {
		b.setHook(func(ctx context.Context, f *xl.Fop) *xl.Result {
			tried <- struct{}{}
			return nil
		})
	}
	ctx, cancel := context.WithCancel(req(1))
	errs := make(chan syscall.Errno)
	go func() { _, e := c.Write(ctx, xl.Fd{H: 1}, []byte("x"), 0); errs <- e }()
	<-tried
	cancel()
	if e := <-errs; e != syscall.EINTR {
		t.Errorf("cancelled Write = %v, want EINTR", e)
	}

	for len(tried) > 0 {
		<-tried
	}
	go func() { _, e := c.Getattr(req(2), xl.RootGFID); errs <- e }()
	<-tried
	c.Close()
	if e := <-errs; e != syscall.ENOTCONN {
		t.Errorf("Getattr across Close = %v, want ENOTCONN", e)
	}
	if _, e := c.Getattr(req(3), xl.RootGFID); e != syscall.ENOTCONN {
		t.Errorf("Getattr after Close = %v, want ENOTCONN", e)
	}
}

// An fd opened on the old leader is resent as is to the new one.
func TestFdSurvivesFailover(t *testing.T) {
	s := newSet(2, 0, 1)
	src := newSource(0, 1)
	c := newClient(t, s, src, 0)
	g := xl.NewGFID()
	fd, e := c.Open(req(1), g, syscall.O_RDWR)
	if e != 0 {
		t.Fatal(e)
	}
	s.setLeader(1, 2)
	src.set(1, 2)
	if _, e := c.Write(req(2), fd, []byte("hello"), 0); e != 0 {
		t.Fatal(e)
	}
	buf := make([]byte, 5)
	if n, e := c.Read(req(3), fd, buf, 0); e != 0 || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", buf[:n], e)
	}
	for _, r := range s.bricks[1].seen() {
		if r.fd != fd {
			t.Errorf("new leader got %v with fd %+v, want %+v", r.op, r.fd, fd)
		}
	}
}
