package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Reading replies. Whoever waits for a reply reads the connection, if
// nobody else is reading: a caller alone in flight, the common case for a
// program doing one I/O at a time, reads its own reply, and wakes as the
// socket becomes readable. Handing replies over from a reader goroutine
// would cost a thread wake-up per call, more than the call's own work on
// a brick. One goroutine reads at a time (it holds the reading); it
// finishes the calls whose replies it reads. When it stops, with calls
// still waiting or a frame half read, the reading passes to serve's
// goroutine, which reads for as long as anything is outstanding.
//
// A caller whose ctx ends while it reads is interrupted by a read
// deadline. The frame it was reading is kept in conn.fr, so the next
// reader carries on where it stopped.

// Who holds the reading.
const (
	nobody = iota
	aCaller
	background // serve's goroutine
)

// pastDeadline interrupts a read.
var pastDeadline = time.Unix(1, 0)

// frame is the reading of one reply frame, kept across readers.
type frame struct {
	hb      [wire.HeaderSize]byte
	hn      int  // header bytes read
	parsed  bool // h is valid and meta sized
	h       wire.Header
	meta    []byte
	mn      int  // meta bytes read
	claimed bool // the frame's call (cl, or the orphan o, or none) is known
	cl      *call
	o       orphan
	data    []byte // where the data section goes
	dn      int
	skip    int // data bytes to discard: nobody waits for them
}

// busy reports whether a frame is half read.
func (f *frame) busy() bool { return f.hn > 0 }

// reset readies f for the next frame, keeping its metadata buffer.
func (f *frame) reset() {
	meta := f.meta[:0]
	if cap(meta) > 64<<10 {
		meta = nil
	}
	*f = frame{meta: meta}
}

// wait waits for cl's reply, reading the connection itself if nobody
// else is.
func (cn *conn) wait(ctx context.Context, id uint64, cl *call) *xl.Result {
	cn.mu.Lock()
	if cn.reading == nobody && !cn.dead {
		cn.reading = aCaller
		cn.mu.Unlock()
		if r, ok := cn.readFor(ctx, id, cl); ok {
			return r
		}
	} else {
		cn.mu.Unlock()
	}
	select {
	case <-cl.done:
		return cl.res
	case <-ctx.Done():
		return cn.abandon(ctx, id, cl)
	}
}

// readFor reads, holding the reading, until cl is finished, and returns
// its result; or until ctx ends, and gives up on cl. ok is false if the
// connection failed: cl is then finished by failAll.
func (cn *conn) readFor(ctx context.Context, id uint64, cl *call) (r *xl.Result, ok bool) {
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { cn.nc.SetReadDeadline(pastDeadline) })
	}
	for {
		select {
		case <-cl.done:
			cn.stopReading(stop)
			return cl.res, true
		default:
		}
		err := cn.readFrame()
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Ours, or an earlier reader's, whose ctx ended as it
			// stopped reading. Cleared before ctx is looked at, so that
			// ours, should ctx end now, is set after and stands.
			cn.nc.SetReadDeadline(time.Time{})
			if ctx.Err() == nil {
				continue
			}
			cn.stopReading(stop)
			return cn.abandon(ctx, id, cl), true
		}
		cn.fail(err)
		cn.stopReading(stop)
		return nil, false
	}
}

// stopReading gives up the reading after readFor: it clears a deadline
// that stop, undoing readFor's AfterFunc, may have come too late for, and
// passes the reading on if anyone needs it.
func (cn *conn) stopReading(stop func() bool) {
	if !stop() {
		cn.nc.SetReadDeadline(time.Time{})
	}
	cn.mu.Lock()
	defer cn.mu.Unlock()
	cn.passReading()
}

// needReader reports whether someone must read: a reply is awaited, a
// frame is half read, or a pong is due. cn.mu is held.
func (cn *conn) needReader() bool {
	return len(cn.pending) > 0 || len(cn.orphans) > 0 || cn.pingOut || cn.fr.busy()
}

// passReading hands the reading to serve's goroutine if someone must
// read, else lets it go. cn.mu is held, by the holder of the reading.
func (cn *conn) passReading() {
	if cn.dead || !cn.needReader() {
		cn.reading = nobody
		return
	}
	cn.reading = background
	cn.bg <- struct{}{} // cap 1, and only the holder sends
}

// readBackground is serve's part: it reads whenever the reading is passed
// to it, for as long as someone must read, until the connection fails.
func (cn *conn) readBackground() error {
	for {
		select {
		case <-cn.bg:
		case <-cn.dying:
			return nil
		}
		for {
			err := cn.readFrame()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// A caller's deadline, set as it handed over.
				cn.nc.SetReadDeadline(time.Time{})
				err = nil
			}
			if err != nil {
				return err
			}
			cn.mu.Lock()
			if !cn.needReader() {
				cn.reading = nobody
				cn.mu.Unlock()
				break
			}
			cn.mu.Unlock()
		}
	}
}

// fail kills the connection after a read error. A call whose reply was
// half read is finished here: it is no longer pending, so failAll would
// not.
func (cn *conn) fail(err error) {
	cn.kill(err)
	if cl := cn.fr.cl; cl != nil {
		cn.fr.cl = nil
		cl.finish(&xl.Result{Errno: syscall.ENOTCONN})
	}
}

// fill reads from the socket into b[*n:] until b is full.
func (cn *conn) fill(b []byte, n *int) error {
	for *n < len(b) {
		m, err := cn.br.Read(b[*n:])
		*n += m
		if err != nil && *n < len(b) {
			return err
		}
	}
	return nil
}

// readFrame reads one frame, or carries on with the one half read, and
// finishes the call it answers.
func (cn *conn) readFrame() error {
	f := &cn.fr
	if err := cn.fill(f.hb[:], &f.hn); err != nil {
		if f.hn > 0 {
			return truncated(err)
		}
		return err
	}
	if !f.parsed {
		h, err := wire.ParseHeader(f.hb[:], wire.DefaultMaxFrame)
		if err != nil {
			return err
		}
		switch h.Type {
		case wire.TypeReply:
		case wire.TypePong:
			cn.mu.Lock()
			cn.pingOut = false
			f.reset()
			cn.mu.Unlock()
			return nil
		default:
			return fmt.Errorf("%w: unexpected %v frame from the server", wire.ErrMalformed, h.Type)
		}
		f.h, f.parsed = h, true
		if n := h.MetaLen(); cap(f.meta) < n {
			f.meta = make([]byte, n)
		} else {
			f.meta = f.meta[:n]
		}
	}
	if err := cn.fill(f.meta, &f.mn); err != nil {
		return truncated(err)
	}
	if !f.claimed {
		cn.claim(f)
	}
	if err := cn.fill(f.data, &f.dn); err != nil {
		return truncated(err)
	}
	for f.skip > 0 {
		n, err := cn.br.Discard(f.skip)
		f.skip -= n
		if err != nil {
			return truncated(err)
		}
	}
	return cn.deliver(f)
}

// claim takes the call that f answers out of pending, and works out
// where its data goes.
func (cn *conn) claim(f *frame) {
	id := f.h.ID
	cn.mu.Lock()
	f.cl = cn.pending[id]
	delete(cn.pending, id)
	if f.cl == nil {
		f.o = cn.orphans[id]
		delete(cn.orphans, id)
	}
	cn.mu.Unlock()
	f.claimed = true
	dlen := int(f.h.DataLen)
	switch {
	case dlen == 0:
	case f.cl == nil: // a late reply to an abandoned call
		f.skip = dlen
	case cap(f.cl.dst) >= dlen:
		f.data = f.cl.dst[:dlen]
	default:
		f.data = make([]byte, dlen)
	}
}

// deliver finishes the call a fully read frame answers.
func (cn *conn) deliver(f *frame) error {
	cl, o, data := f.cl, f.o, f.data
	id := f.h.ID
	var r xl.Result
	err := wire.DecodeResult(f.meta, data, &r)
	f.reset()
	if cl == nil {
		// An open's reply carries no data section.
		if o.who != nil && err == nil && r.Errno == 0 {
			cn.releaseOrphan(o, &r)
		}
		return nil
	}
	if err != nil {
		cl.finish(&xl.Result{Errno: syscall.ENOTCONN})
		return fmt.Errorf("reply %d: %w", id, err)
	}
	cl.finish(&r)
	return nil
}

// truncated turns an EOF inside a frame into a malformed-frame error.
func truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: connection closed mid-frame", wire.ErrMalformed)
	}
	return err
}
