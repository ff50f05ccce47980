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
// request turns out slow after all, the watchdog hands the reading to a
// new goroutine after at most about two handoff periods, so that the
// connection's other requests, and the frame that may cancel this one,
// are not held up for long. Ops that were slow lately, such as reads from
// disk or anything a replicating translator must agree on, are handed
// off at once. (GlusterFS's epoll threads too run a fop until io-threads
// queues it.)
const (
	// quick is the average duration, lately, below which an op is served
	// inline.
	quick = 50 * time.Microsecond
	// handoff is how long a request served inline may hold up its
	// connection, and the watchdog's period.
	handoff = time.Millisecond
	// watchIdle is how many quiet periods the watchdog waits before it
	// sleeps until the next request served inline.
	watchIdle = 100
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
// mark to pass to served.
func (c *conn) inlined() int64 {
	s := c.s
	mark := s.inlineSeq.Add(1)
	c.inline.Store(mark)
	if !s.watching.Load() && s.watching.CompareAndSwap(false, true) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return mark
}

// served reports whether the goroutine that served a request inline
// still holds the reading; if not, the watchdog has handed it over.
func (c *conn) served(mark int64) bool { return c.inline.CompareAndSwap(mark, 0) }

// watchdog hands the reading of a connection whose inline request runs
// long to a new goroutine. It runs from the first Serve until Close, and
// sleeps while nothing is served inline.
func (s *Server) watchdog() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
		t := time.NewTicker(handoff)
		last := s.inlineSeq.Load()
		for quiet := 0; quiet < watchIdle; {
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			s.handOff()
			if seq := s.inlineSeq.Load(); seq != last {
				last, quiet = seq, 0
			} else {
				quiet++
			}
		}
		t.Stop()
		// A request that went inline just now saw watching set and did
		// not wake us: look once more after clearing it.
		s.watching.Store(false)
		if s.handOff() && s.watching.CompareAndSwap(false, true) {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
}

// handOff starts a reader for every connection whose inline request has
// run since the previous call, and reports whether any request was
// inline.
func (s *Server) handOff() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	busy := false
	for c := range s.conns {
		mark := c.inline.Load()
		if mark == 0 {
			continue
		}
		busy = true
		if mark == c.seen {
			// Inline since the last look, a handoff period ago at least.
			if c.inline.CompareAndSwap(mark, 0) {
				s.goRead(c, c.rd)
			}
			continue
		}
		c.seen = mark
	}
	return busy
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
		// Under s.wg: the caller is a connection or the watchdog, which
		// hold it, so Close is waiting at most.
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
