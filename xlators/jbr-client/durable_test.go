package jbrclient

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// syncer drives one mount's writes and fsyncs through a client, with a
// fresh sequence number per request.
type syncer struct {
	t   *testing.T
	c   *Client
	seq uint64
}

func (s *syncer) ctx() context.Context {
	s.seq++
	return req(s.seq)
}

func (s *syncer) write(fd xl.Fd) syscall.Errno {
	_, e := s.c.Write(s.ctx(), fd, []byte("x"), 0)
	return e
}

func (s *syncer) fsync(fd xl.Fd) syscall.Errno { return s.c.Fsync(s.ctx(), fd, false) }

func (s *syncer) mustWrite(fd xl.Fd) {
	s.t.Helper()
	if e := s.write(fd); e != 0 {
		s.t.Fatalf("write: %v", e)
	}
}

// writeFailing has the leader b fail a write of fd with errno.
func (s *syncer) writeFailing(b *brick, fd xl.Fd, errno syscall.Errno) {
	s.t.Helper()
	b.setHook(failing(xl.OpWrite, errno))
	defer b.setHook(nil)
	if e := s.write(fd); e != errno {
		s.t.Fatalf("write: %v, want %v", e, errno)
	}
}

func (s *syncer) mustFsync(fd xl.Fd) {
	s.t.Helper()
	if e := s.fsync(fd); e != 0 {
		s.t.Fatalf("fsync: %v", e)
	}
}

// trace renders what a brick saw since from: W (write), D (write that
// asked for a durable answer), F (fsync), O (anything else).
func trace(b *brick, from int) string {
	var sb strings.Builder
	for _, x := range b.seen()[from:] {
		switch {
		case x.op == xl.OpWrite && x.durable:
			sb.WriteByte('D')
		case x.op == xl.OpWrite:
			sb.WriteByte('W')
		case x.op == xl.OpFsync:
			sb.WriteByte('F')
		default:
			sb.WriteByte('O')
		}
	}
	return sb.String()
}

func newFile() xl.Fd { return xl.Fd{GFID: xl.NewGFID(), H: 1, Flags: syscall.O_RDWR} }

// A writer that fsyncs after every write asks, once it has fsynced, for
// durable answers, and its fsyncs then cost no round trip: each follows
// only writes the leader answered once durable.
func TestFsyncAfterDurableWritesAnsweredByClient(t *testing.T) {
	set := newSet(3, 0, 1)
	s := &syncer{t: t, c: newClient(t, set, newSource(0, 1), 0)}
	fd := newFile()
	for range 5 {
		s.mustWrite(fd)
		s.mustFsync(fd)
	}
	if got, want := trace(set.bricks[0], 0), "WFDDDD"; got != want {
		t.Errorf("leader saw %s, want %s", got, want)
	}
	// A writer of k writes per fsync gets k durable answers per fsync,
	// once it has shown k.
	g := newFile()
	for range 3 {
		for range 3 {
			s.mustWrite(g)
		}
		s.mustFsync(g)
	}
	if got, want := trace(set.bricks[0], 6), "WWWFDWWFDDD"; got != want {
		t.Errorf("leader saw %s, want %s", got, want)
	}
}

// failing is a brick hook that fails every op of its kind with errno.
func failing(op xl.Op, errno syscall.Errno) func(context.Context, *xl.Fop) *xl.Result {
	return func(_ context.Context, f *xl.Fop) *xl.Result {
		if f.Op == op {
			return &xl.Result{Errno: errno}
		}
		return nil
	}
}

// Every way a mutation can end without a durable answer sends the next
// fsync to the leader.
func TestNonDurableAnswerForcesFsync(t *testing.T) {
	for _, tc := range []struct {
		name string
		// between runs after a write and fsync of fd have set the file
		// up for durable answers; b is the leader.
		between func(s *syncer, b *brick, fd xl.Fd)
		want    string // the leader's trace from the durable write on
	}{
		{"more writes than the last run", func(s *syncer, _ *brick, fd xl.Fd) {
			s.mustWrite(fd)
			s.mustWrite(fd)
		}, "DWF"},
		{"durable write failed", func(s *syncer, b *brick, fd xl.Fd) {
			s.writeFailing(b, fd, syscall.EIO)
		}, "DF"},
		{"durable write's outcome unknown", func(s *syncer, b *brick, fd xl.Fd) {
			s.writeFailing(b, fd, syscall.ENOTCONN)
		}, "D+F"},
		{"truncate of the file", func(s *syncer, _ *brick, fd xl.Fd) {
			s.mustWrite(fd)
			if _, e := s.c.Truncate(s.ctx(), fd.GFID, 0); e != 0 {
				s.t.Fatal(e)
			}
		}, "DOF"},
		{"entry op elsewhere", func(s *syncer, _ *brick, fd xl.Fd) {
			s.mustWrite(fd)
			if e := s.c.Unlink(s.ctx(), xl.RootGFID, "f"); e != 0 {
				s.t.Fatal(e)
			}
		}, "DOF"},
		{"failed fsync", func(s *syncer, b *brick, fd xl.Fd) {
			s.mustWrite(fd)
			s.mustWrite(fd)
			b.setHook(failing(xl.OpFsync, syscall.EIO))
			if e := s.fsync(fd); e != syscall.EIO {
				s.t.Fatalf("fsync: %v, want EIO", e)
			}
			b.setHook(nil)
		}, "DWFF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := newSet(3, 0, 1)
			s := &syncer{t: t, c: newClient(t, set, newSource(0, 1), 200*time.Millisecond)}
			b := set.bricks[0]
			fd := newFile()
			s.mustWrite(fd)
			s.mustFsync(fd)
			from := len(b.seen())
			tc.between(s, b, fd)
			s.mustFsync(fd)
			got := trace(b, from)
			if tc.want == "D+F" {
				// Retried until the budget ran out: one or more tries.
				if strings.Trim(got, "D") != "F" || !strings.HasPrefix(got, "D") {
					t.Errorf("leader saw %s, want durable tries then an fsync", got)
				}
				return
			}
			if got != tc.want {
				t.Errorf("leader saw %s, want %s", got, tc.want)
			}
		})
	}
}

// An FSYNC covers every mutation that completed before it was sent, of
// every file; a plain write to another file does not hold a file's
// fsync back.
func TestFsyncCoversEarlierMutations(t *testing.T) {
	set := newSet(3, 0, 1)
	s := &syncer{t: t, c: newClient(t, set, newSource(0, 1), 0)}
	b := set.bricks[0]
	a, other := newFile(), newFile()
	s.mustWrite(other) // plain: other is dirty
	s.mustWrite(a)
	s.mustFsync(a) // covers other's write too
	s.mustFsync(other)
	s.mustWrite(a)
	s.mustWrite(newFile())
	s.mustFsync(a)
	if got, want := trace(b, 0), "WWFDW"; got != want {
		t.Errorf("leader saw %s, want %s", got, want)
	}
}

// O_SYNC and O_DSYNC writes are durable when answered: the fsyncs after
// them cost nothing.
func TestFsyncAfterSyncWrites(t *testing.T) {
	set := newSet(3, 0, 1)
	s := &syncer{t: t, c: newClient(t, set, newSource(0, 1), 0)}
	fd := newFile()
	fd.Flags |= syscall.O_DSYNC
	for range 3 {
		s.mustWrite(fd)
		s.mustFsync(fd)
	}
	if got := trace(set.bricks[0], 0); strings.Contains(got, "F") {
		t.Errorf("leader saw %s, want no fsync", got)
	}
}

// The client's state stays bounded however many files it writes and
// fsyncs: dirt it cannot keep per file sends every file's next fsync to
// the leader.
func TestDurabilityStateBounded(t *testing.T) {
	set := newSet(1, 0, 1)
	s := &syncer{t: t, c: newClient(t, set, newSource(0, 1), 0)}
	for range maxTracked + 1 {
		s.mustWrite(newFile())
	}
	n := len(set.bricks[0].seen())
	s.mustFsync(newFile()) // never written, but may share the folded dirt
	for range maxTracked + 1 {
		s.mustFsync(newFile())
	}
	if got, want := trace(set.bricks[0], n), "F"; got != want {
		t.Errorf("leader saw %s, want %s", got, want)
	}
	s.c.mu.Lock()
	nd, nh := len(s.c.dur.dirty), len(s.c.dur.hints)
	s.c.mu.Unlock()
	if nd > maxTracked || nh > maxTracked {
		t.Errorf("tracking %d dirty files and %d hints, bound %d", nd, nh, maxTracked)
	}
}
