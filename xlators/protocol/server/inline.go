package server

import (
	"sync/atomic"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Serving inline. Handing a request to another goroutine wakes a second
// thread whenever a CPU is idle, which costs a small request more than
// the request itself: on a brick over a local disk, a 4 KiB write or a
// stat takes microseconds. So the goroutine that reads a quick request
// serves it itself, and nobody reads the connection meanwhile. If the
// request turns out slow after all, the connection's stall timer hands
// the reading to a new goroutine once the request has run for handoff,
// so that the connection's other requests, and the frame that may cancel
// this one, are not held up for long. The timer is stopped as the
// request ends, so it fires only for a request that stalls; a periodic
// watchdog woke every brick, even one busy with heartbeats only, a
// thousand times a second. (Arming it may still nudge the thread in the
// network poller, which measured far cheaper.) Ops that were slow
// lately, such as reads from disk or anything a replicating translator
// must agree on, are handed off at once. (GlusterFS's epoll threads too run a fop until
// io-threads queues it.)
const (
	// quick is the average duration, lately, below which an op is served
	// inline.
	quick = 50 * time.Microsecond
	// handoff is how long a request served inline may hold up its
	// connection.
	handoff = time.Millisecond
)

// opTimes holds how long each op took lately: an exponentially weighted
// moving average, in nanoseconds.
type opTimes [256]atomic.Int64

func (t *opTimes) quick(op xl.Op) bool { return time.Duration(t[op].Load()) < quick }

func (t *opTimes) add(op xl.Op, d time.Duration) {
	// A racing update may be lost; an average does not mind.
	old := t[op].Load()
	t[op].Store(old + (int64(d)-old)/8)
}

// inlined notes that c serves a request inline from now, and returns the
// mark to pass to served. It is called by the holder of the reading.
func (c *conn) inlined() uint64 {
	c.marks++
	mark := c.marks // c.marks is the next holder's once the timer fires
	c.inline.Store(mark)
	c.stall.Reset(handoff)
	return mark
}

// served reports whether the goroutine that served a request inline
// still holds the reading; if not, the stall timer has handed it over.
func (c *conn) served(mark uint64) bool {
	if !c.inline.CompareAndSwap(mark, 0) {
		return false
	}
	c.stall.Stop()
	return true
}

// stalled is the stall timer's: it hands the reading of c over to a new
// goroutine if a request is still served inline. A late run, for a
// request that ended just as the timer fired, may hand the next one over
// early, which costs a goroutine and nothing else.
func (c *conn) stalled() {
	if mark := c.inline.Load(); mark != 0 && c.inline.CompareAndSwap(mark, 0) {
		// The holder of the reading has not ended the connection,
		// which holds s.wg.
		c.s.goRead(c, c.rd)
	}
}

// maxIdleReaders bounds the goroutines parked in goRead's pool: enough
// for the connections of a busy brick, each of which hands its reading
// over once per slow request.
const maxIdleReaders = 64

// readJob is a connection's reading, handed to a pooled goroutine.
type readJob struct {
	c  *conn
	rd *reader
}

// goRead hands the reading of c to a parked goroutine, or a new one if
// none is parked. A slow request hands the reading over every time, so a
// brick serving cold reads at queue depth 1 would otherwise start a
// goroutine per request, and grow its stack again through the graph's
// deep calls each time; a parked one has grown it already.
func (s *Server) goRead(c *conn, rd *reader) {
	j := readJob{c, rd}
	select {
	case s.readers <- j:
	default:
		// Under s.wg: the caller serves a request of a connection, which
		// holds it, so Close is waiting at most.
		s.wg.Add(1)
		go s.reader(j)
	}
}

// reader runs readings handed over by goRead until Close, or until more
// goroutines than maxIdleReaders are parked.
func (s *Server) reader(j readJob) {
	defer s.wg.Done()
	for {
		j.c.read(j.rd)
		if s.idleReaders.Add(1) > maxIdleReaders {
			s.idleReaders.Add(-1)
			return
		}
		select {
		case j = <-s.readers:
			s.idleReaders.Add(-1)
		case <-s.ctx.Done():
			s.idleReaders.Add(-1)
			return
		}
	}
}
