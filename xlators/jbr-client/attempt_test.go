package jbrclient

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// hangGuard only keeps a broken client from hanging the test binary: a
// hanger that reaches it fails the test.
const hangGuard = 20 * time.Second

// hanger is a brick hook that holds every op until its ctx ends, as a
// protocol client does for a stopped brick whose connection looks up.
type hanger struct {
	arrived chan xl.Op // one per op that arrives

	mu      sync.Mutex
	byCtx   int // ops that ended because their ctx did
	byGuard int
}

func newHanger() *hanger { return &hanger{arrived: make(chan xl.Op, 100)} }

func (h *hanger) hook(ctx context.Context, f *xl.Fop) *xl.Result {
	h.arrived <- f.Op
	tm := time.NewTimer(hangGuard)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		h.mu.Lock()
		h.byCtx++
		h.mu.Unlock()
		return &xl.Result{Errno: ctxErrno(ctx)}
	case <-tm.C:
		h.mu.Lock()
		h.byGuard++
		h.mu.Unlock()
		return &xl.Result{Errno: syscall.ENOTCONN}
	}
}

// ended returns how many ops ended by their ctx, failing the test if any
// ran into the guard.
func (h *hanger) ended(t *testing.T) int {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byGuard > 0 {
		t.Errorf("%d attempts to a hung brick were never cut short", h.byGuard)
	}
	return h.byCtx
}

// The retry timeout bounds the attempts too: the leader fails, the
// client tries followers that hang (stopped bricks, still connected), and
// the request ends with ENOTCONN once the budget is spent, its attempt
// cancelled rather than left to the protocol client's ping timeout.
func TestRetryTimeoutBoundsAttempt(t *testing.T) {
	s := newSet(3, 0, 1)
	c := newClient(t, s, newSource(0, 1), 200*time.Millisecond)
	// A leader without quorum: it fails each request with ENOTCONN.
	s.bricks[0].setHook(func(context.Context, *xl.Fop) *xl.Result {
		return &xl.Result{Errno: syscall.ENOTCONN}
	})
	h := newHanger()
	s.bricks[1].setHook(h.hook)
	s.bricks[2].setHook(h.hook)
	if _, e := c.Write(req(1), xl.Fd{H: 1}, []byte("x"), 0); e != syscall.ENOTCONN {
		t.Errorf("Write = %v, want ENOTCONN", e)
	}
	if _, e := c.Read(req(2), xl.Fd{H: 1}, make([]byte, 1), 0); e != syscall.ENOTCONN {
		t.Errorf("Read = %v, want ENOTCONN", e)
	}
	if n := h.ended(t); n == 0 {
		t.Error("no attempt reached a hung follower; the test proves nothing")
	}
}

// The leader source names a new leader while requests hang at the old
// one: their attempts are cut short and resent, with the same Calls, to
// the new leader. A write resent this way may have been applied by the
// old leader, so it is answered before the later write goes: the later
// write's data wins.
func TestLeaderChangeAbortsAttempt(t *testing.T) {
	s := newSet(3, 0, 1)
	src := newSource(0, 1)
	c := newClient(t, s, src, time.Minute)
	h := newHanger()
	s.bricks[0].setHook(h.hook)
	g := xl.NewGFID()
	fd := xl.Fd{GFID: g, H: 1}
	type answer struct {
		what string
		e    syscall.Errno
	}
	answers := make(chan answer, 3)
	go func() { _, e := c.Write(req(1), fd, []byte("A"), 0); answers <- answer{"write A", e} }()
	<-h.arrived
	go func() { _, e := c.Write(req(2), fd, []byte("B"), 0); answers <- answer{"write B", e} }()
	<-h.arrived
	go func() { _, e := c.Getattr(req(3), g); answers <- answer{"getattr", e} }()
	<-h.arrived

	s.setLeader(1, 2)
	src.set(1, 2)
	for range 3 {
		if a := <-answers; a.e != 0 {
			t.Errorf("%s across the leader change: %v", a.what, a.e)
		}
	}
	if n := h.ended(t); n != 3 {
		t.Errorf("%d attempts at the old leader ended by their ctx, want 3", n)
	}
	if got := s.content(g); got != "B" {
		t.Errorf("content %q after writes A then B", got)
	}
	var writes []seen
	for _, r := range s.bricks[1].seen() {
		if r.op == xl.OpWrite {
			writes = append(writes, r)
		}
	}
	if len(writes) != 2 || writes[0].seq != 1 || writes[1].seq != 2 || writes[0].client != mount || writes[1].client != mount {
		t.Errorf("new leader saw writes %+v, want A (seq 1) then B (seq 2), the caller's Calls", writes)
	}
	if len(s.bricks[2].seen()) != 0 {
		t.Errorf("brick 2, never leader, saw %+v", s.bricks[2].seen())
	}
}

// A change that names the very brick an attempt is out to (re-elected in
// a newer term) does not cut the attempt short.
func TestLeaderChangeToSameBrickKeepsAttempt(t *testing.T) {
	s := newSet(2, 0, 1)
	src := newSource(0, 1)
	c := newClient(t, s, src, time.Minute)
	arrived, release := make(chan struct{}), make(chan struct{})
	cut := make(chan bool, 1)
	s.bricks[0].setHook(func(ctx context.Context, f *xl.Fop) *xl.Result {
		if f.Op != xl.OpWrite {
			return nil
		}
		close(arrived)
		select {
		case <-release:
			cut <- false
			return nil
		case <-ctx.Done():
			cut <- true
			return &xl.Result{Errno: ctxErrno(ctx)}
		}
	})
	errs := make(chan syscall.Errno, 1)
	go func() { _, e := c.Write(req(1), xl.Fd{H: 1}, []byte("x"), 0); errs <- e }()
	<-arrived
	s.setLeader(0, 2)
	src.set(0, 2)
	eventually(t, "the client to see term 2", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.term == 2
	})
	close(release)
	if e := <-errs; e != 0 {
		t.Fatalf("Write = %v", e)
	}
	if <-cut {
		t.Error("the attempt to the re-elected leader was cut short")
	}
	if n := len(s.bricks[0].seen()); n != 1 {
		t.Errorf("leader saw %d requests, want 1", n)
	}
}

// The caller's own cancellation during an attempt ends the request with
// EINTR, its deadline with ETIMEDOUT: neither is retried.
func TestCallerCtxEndsAttempt(t *testing.T) {
	s := newSet(2, 0, 1)
	c := newClient(t, s, newSource(0, 1), time.Minute)
	h := newHanger()
	s.bricks[0].setHook(h.hook)

	ctx, cancel := context.WithCancel(req(1))
	errs := make(chan syscall.Errno, 1)
	go func() { _, e := c.Write(ctx, xl.Fd{H: 1}, []byte("x"), 0); errs <- e }()
	<-h.arrived
	cancel()
	if e := <-errs; e != syscall.EINTR {
		t.Errorf("cancelled Write = %v, want EINTR", e)
	}

	ctx, cancel = context.WithTimeout(req(2), 50*time.Millisecond)
	defer cancel()
	if _, e := c.Getattr(ctx, xl.RootGFID); e != syscall.ETIMEDOUT {
		t.Errorf("Getattr past its deadline = %v, want ETIMEDOUT", e)
	}
	if n := h.ended(t); n != 2 {
		t.Errorf("%d attempts ended by their ctx, want 2", n)
	}
	if n := len(s.bricks[1].seen()); n != 0 {
		t.Errorf("brick 1 saw %d requests: the caller's cancellation was retried", n)
	}
}

// Close cuts short the attempts in flight: their requests fail with
// ENOTCONN.
func TestCloseAbortsAttempt(t *testing.T) {
	s := newSet(2, 0, 1)
	c := newClient(t, s, newSource(0, 1), time.Minute)
	h := newHanger()
	s.bricks[0].setHook(h.hook)
	errs := make(chan syscall.Errno, 1)
	go func() { _, e := c.Write(req(1), xl.Fd{H: 1}, []byte("x"), 0); errs <- e }()
	<-h.arrived
	c.Close()
	if e := <-errs; e != syscall.ENOTCONN {
		t.Errorf("Write across Close = %v, want ENOTCONN", e)
	}
	if n := h.ended(t); n != 1 {
		t.Errorf("%d attempts ended by their ctx, want 1", n)
	}
}

// A killed leader: its connection is down, and its followers still name
// it in its term until a new one is elected. The client does not send
// the request back to it on their word; it goes to the leader the source
// names in the next term.
func TestDeadLeaderNotRetriedInItsTerm(t *testing.T) {
	s := newSet(3, 0, 1)
	src := newSource(0, 1)
	c := newClient(t, s, src, time.Minute)
	s.bricks[0].setHook(func(context.Context, *xl.Fop) *xl.Result {
		return &xl.Result{Errno: syscall.ENOTCONN}
	})
	s.bricks[0].mu.Lock()
	s.bricks[0].down = true
	s.bricks[0].mu.Unlock()
	g := xl.NewGFID()
	errs := make(chan syscall.Errno, 1)
	go func() { _, e := c.Write(req(1), xl.Fd{GFID: g, H: 1}, []byte("x"), 0); errs <- e }()
	// Both followers were asked, and both named brick 0.
	eventually(t, "the request to reach both followers", func() bool {
		return len(s.bricks[1].seen()) > 0 && len(s.bricks[2].seen()) > 0
	})
	s.setLeader(2, 2)
	src.set(2, 2)
	if e := <-errs; e != 0 {
		t.Fatalf("Write = %v", e)
	}
	if got := s.content(g); got != "x" {
		t.Errorf("content %q", got)
	}
	if n := len(s.bricks[0].seen()); n != 1 {
		t.Errorf("the dead leader got the request %d times, want once", n)
	}
}

// A leader whose connection failed once but is back, and still leads, is
// tried again on its followers' word.
func TestLeaderRetriedAfterTransientFailure(t *testing.T) {
	s := newSet(3, 0, 1)
	c := newClient(t, s, newSource(0, 1), time.Minute)
	var once sync.Once
	s.bricks[0].setHook(func(context.Context, *xl.Fop) *xl.Result {
		e := syscall.Errno(0)
		once.Do(func() { e = syscall.ENOTCONN })
		if e != 0 {
			return &xl.Result{Errno: e}
		}
		return nil
	})
	g := xl.NewGFID()
	if _, e := c.Write(req(1), xl.Fd{GFID: g, H: 1}, []byte("x"), 0); e != 0 {
		t.Fatalf("Write = %v", e)
	}
	got := s.bricks[0].seen()
	if len(got) != 2 || got[1].seq != 1 {
		t.Errorf("leader saw %+v, want the write twice", got)
	}
	if s.content(g) != "x" {
		t.Errorf("content %q", s.content(g))
	}
}
