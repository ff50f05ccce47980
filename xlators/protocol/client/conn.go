package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// maxBatch bounds the requests gathered into one writev.
const maxBatch = 128

var pingFrame = wire.AppendHeader(nil, wire.Header{Type: wire.TypePing})

// conn is one handshaken connection. Its reader (serve's goroutine)
// matches replies to calls, its writer batches requests into writev calls,
// and its pinger watches for silence. A call belongs to whoever removes it
// from pending: the reader, which finishes it with the reply; the caller,
// when it gives up; or failAll once the connection is dead.
type conn struct {
	c      *Client
	nc     net.Conn
	maxReq int // the server's payload limit

	nextID atomic.Uint64
	epoch  time.Time
	heard  atomic.Int64 // when the server last sent anything, since epoch

	mu      sync.Mutex
	dead    bool
	pending map[uint64]*call
	// orphans are the opens abandoned after they were sent: if one
	// succeeds anyway, nobody will release its fd but us.
	orphans map[uint64]orphan
	ctl     [][]byte // cancel and release frames for the writer, unbounded

	sendq chan *call
	ctlq  chan struct{} // a token when ctl grows
	pingq chan struct{}
	dying chan struct{}
	once  sync.Once
	err   error // why the connection died; set once, before dying closes
}

// Call states, as seen by the writer and by a caller that gives up.
const (
	queued    int32 = iota
	sending         // the writer owns frame and data until sent closes
	abandoned       // the writer must skip it
)

// orphan is an open abandoned after it was sent.
type orphan struct {
	op  xl.Op
	who *xl.Call
}

type call struct {
	op    xl.Op
	frame []byte // header and metadata
	data  []byte // the caller's write data, sent in place
	dst   []byte // the caller's read buffer, filled in place

	state atomic.Int32
	sent  chan struct{} // closed after the writev carrying data; set before sending

	done chan struct{} // closed once res is set
	res  *xl.Result    // nil: never sent, the connection died; try another
}

func newConn(nc net.Conn, c *Client, maxReq int) *conn {
	cn := &conn{
		c:       c,
		nc:      nc,
		maxReq:  maxReq,
		epoch:   time.Now(),
		pending: map[uint64]*call{},
		orphans: map[uint64]orphan{},
		sendq:   make(chan *call, maxBatch),
		ctlq:    make(chan struct{}, 1),
		pingq:   make(chan struct{}, 1),
		dying:   make(chan struct{}),
	}
	return cn
}

// serve runs the connection until it dies or ctx ends, then fails what is
// left in flight and returns why it died.
func (cn *conn) serve(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		cn.writeLoop()
	}()
	go func() {
		defer wg.Done()
		cn.pingLoop()
	}()
	stop := context.AfterFunc(ctx, func() { cn.kill(net.ErrClosed) })
	cn.kill(cn.readLoop())
	stop()
	wg.Wait()
	cn.failAll()
	return cn.err
}

// kill ends the connection. New calls stop coming to it at once, so they
// wait for the next connection instead of retrying on a dying one.
func (cn *conn) kill(err error) {
	cn.once.Do(func() {
		cn.err = err
		close(cn.dying)
		cn.nc.Close()
		cn.c.detach(cn)
	})
}

// failAll finishes every call left once reader and writer have stopped:
// ENOTCONN for those that went out, a retry for those that never did.
func (cn *conn) failAll() {
	cn.mu.Lock()
	cn.dead = true
	calls := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	for _, cl := range calls {
		if cl.state.CompareAndSwap(queued, abandoned) {
			cl.finish(nil)
		} else {
			cl.finish(&xl.Result{Errno: syscall.ENOTCONN})
		}
	}
}

func (cl *call) finish(r *xl.Result) {
	cl.res = r
	close(cl.done)
}

// do sends f and waits for its reply. It returns nil if the connection
// died before f was sent.
func (cn *conn) do(ctx context.Context, f *xl.Fop) *xl.Result {
	cl := &call{op: f.Op, done: make(chan struct{})}
	if f.Op == xl.OpRead {
		// Data is the destination, not a payload.
		cl.dst = f.Data
		g := *f
		g.Data = nil
		f = &g
	} else {
		cl.data = f.Data
	}
	if len(cl.data) > cn.maxReq {
		return &xl.Result{Errno: syscall.EINVAL}
	}
	id := cn.nextID.Add(1)
	cl.frame = wire.AppendRequest(make([]byte, 0, 128), id, xl.CallFrom(ctx), f)
	if len(cl.frame)-wire.HeaderSize+len(cl.data) > cn.maxReq {
		return &xl.Result{Errno: syscall.EINVAL}
	}

	cn.mu.Lock()
	if cn.dead {
		cn.mu.Unlock()
		return nil
	}
	cn.pending[id] = cl
	cn.mu.Unlock()

	select {
	case cn.sendq <- cl:
	case <-cn.dying: // failAll finishes it
	case <-ctx.Done():
		return cn.abandon(ctx, id, cl)
	}
	select {
	case <-cl.done:
		return cl.res
	case <-ctx.Done():
		return cn.abandon(ctx, id, cl)
	}
}

// abandon gives up on a call whose ctx ended. Its reply, if any, will be
// dropped; if it went out, the server is told to cancel it. The caller
// gets its buffers back only once nobody touches them.
func (cn *conn) abandon(ctx context.Context, id uint64, cl *call) *xl.Result {
	cn.mu.Lock()
	_, mine := cn.pending[id]
	delete(cn.pending, id)
	// Decided under mu, so that the reader cannot drop the reply to an
	// open before it is known to be an orphan.
	sent := mine && !cl.state.CompareAndSwap(queued, abandoned)
	if sent {
		cn.ctl = append(cn.ctl, wire.AppendHeader(nil, wire.Header{Type: wire.TypeCancel, ID: id}))
		switch cl.op {
		case xl.OpOpen, xl.OpCreate, xl.OpOpendir:
			cn.orphans[id] = orphan{op: cl.op, who: xl.CallFrom(ctx)}
		}
	}
	cn.mu.Unlock()
	switch {
	case !mine:
		// The reader is filling dst with the reply, or failAll got here
		// first: wait for it, it cannot take long.
		<-cl.done
		if cl.res != nil {
			return cl.res
		}
	case sent:
		cn.wakeWriter()
		if cl.data != nil {
			// The writer may be copying data into the socket right now.
			<-cl.sent
		}
	}
	return &xl.Result{Errno: ctxErrno(ctx)}
}

func (cn *conn) wakeWriter() {
	select {
	case cn.ctlq <- struct{}{}:
	default: // a wake-up is already due
	}
}

// releaseOrphan releases the fd that an abandoned open got after all; r
// is the reply nobody waited for.
func (cn *conn) releaseOrphan(o orphan, r *xl.Result) {
	f := &xl.Fop{Op: xl.OpRelease, Fd: r.Fd}
	if o.op == xl.OpOpendir {
		f.Op = xl.OpReleasedir
	}
	// Only who is asking: the release is no retry of the open.
	w := o.who
	who := &xl.Call{Uid: w.Uid, Gid: w.Gid, Groups: w.Groups, Pid: w.Pid, Client: w.Client}
	// Not pending: the reply is dropped. Should the connection die first,
	// the server releases the fd itself.
	frame := wire.AppendRequest(nil, cn.nextID.Add(1), who, f)
	cn.mu.Lock()
	cn.ctl = append(cn.ctl, frame)
	cn.mu.Unlock()
	cn.wakeWriter()
}

// ctxErrno is what a call cut short by its ctx returns: EINTR when it was
// cancelled, as an interrupted syscall, and ETIMEDOUT past its deadline.
func ctxErrno(ctx context.Context) syscall.Errno {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return syscall.ETIMEDOUT
	}
	return syscall.EINTR
}

func (cn *conn) writeLoop() {
	var (
		batch []*call
		iov   net.Buffers
	)
	for {
		ping, ctl := false, false
		select {
		case cl := <-cn.sendq:
			batch = append(batch, cl)
		case <-cn.pingq:
			ping = true
		case <-cn.ctlq:
			ctl = true
		case <-cn.dying:
			return
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case cl := <-cn.sendq:
				batch = append(batch, cl)
			case <-cn.pingq:
				ping = true
			case <-cn.ctlq:
				ctl = true
			default:
				break gather
			}
		}

		iov = iov[:0]
		if ping {
			iov = append(iov, pingFrame)
		}
		var sent chan struct{}
		for _, cl := range batch {
			if cl.data != nil {
				if sent == nil {
					sent = make(chan struct{})
				}
				cl.sent = sent
			}
			if !cl.state.CompareAndSwap(queued, sending) {
				continue
			}
			iov = append(iov, cl.frame)
			if len(cl.data) > 0 {
				iov = append(iov, cl.data)
			}
		}
		if ctl {
			// After the batch: a cancel may be for a request in it.
			cn.mu.Lock()
			frames := cn.ctl
			cn.ctl = nil
			cn.mu.Unlock()
			iov = append(iov, frames...)
		}
		wv := iov
		_, err := wv.WriteTo(cn.nc)
		if sent != nil {
			close(sent)
		}
		clear(iov)
		clear(batch)
		batch = batch[:0]
		if err != nil {
			cn.kill(fmt.Errorf("write: %w", err))
			return
		}
	}
}

func (cn *conn) pingLoop() {
	t := time.NewTicker(cn.c.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-cn.dying:
			return
		case <-t.C:
		}
		silent := time.Since(cn.epoch) - time.Duration(cn.heard.Load())
		if silent > cn.c.opts.PingTimeout {
			cn.kill(fmt.Errorf("server silent for %v (ping timeout %v)", silent.Round(time.Millisecond), cn.c.opts.PingTimeout))
			return
		}
		select {
		case cn.pingq <- struct{}{}:
		default: // the last ping is still queued
		}
	}
}

// Read notes that the server is alive on every read from the socket, so a
// long reply in progress never looks like silence.
func (cn *conn) Read(p []byte) (int, error) {
	n, err := cn.nc.Read(p)
	if n > 0 {
		cn.heard.Store(int64(time.Since(cn.epoch)))
	}
	return n, err
}

func (cn *conn) readLoop() error {
	br := bufio.NewReaderSize(cn, 64<<10)
	var (
		hb   [wire.HeaderSize]byte
		meta []byte
	)
	for {
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			return err
		}
		h, err := wire.ParseHeader(hb[:], wire.DefaultMaxFrame)
		if err != nil {
			return err
		}
		switch h.Type {
		case wire.TypeReply:
		case wire.TypePong:
			continue
		default:
			return fmt.Errorf("%w: unexpected %v frame from the server", wire.ErrMalformed, h.Type)
		}
		n := h.MetaLen()
		if cap(meta) < n {
			meta = make([]byte, n)
		}
		meta = meta[:n]
		if _, err := io.ReadFull(br, meta); err != nil {
			return truncated(err)
		}

		cn.mu.Lock()
		cl := cn.pending[h.ID]
		delete(cn.pending, h.ID)
		var o orphan
		if cl == nil {
			o = cn.orphans[h.ID]
			delete(cn.orphans, h.ID)
		}
		cn.mu.Unlock()

		var data []byte
		dlen := int(h.DataLen)
		switch {
		case dlen == 0:
		case cl == nil: // a late reply to an abandoned call
			if _, err := br.Discard(dlen); err != nil {
				return truncated(err)
			}
		case cap(cl.dst) >= dlen:
			data = cl.dst[:dlen]
		default:
			data = make([]byte, dlen)
		}
		if data != nil {
			if _, err := io.ReadFull(br, data); err != nil {
				cl.finish(&xl.Result{Errno: syscall.ENOTCONN})
				return truncated(err)
			}
		}
		if cl == nil {
			// An open's reply carries no data section.
			var r xl.Result
			if o.who != nil && wire.DecodeResult(meta, nil, &r) == nil && r.Errno == 0 {
				cn.releaseOrphan(o, &r)
			}
			continue
		}
		r := new(xl.Result)
		if err := wire.DecodeResult(meta, data, r); err != nil {
			cl.finish(&xl.Result{Errno: syscall.ENOTCONN})
			return fmt.Errorf("reply %d: %w", h.ID, err)
		}
		cl.finish(r)
		if cap(meta) > 64<<10 {
			meta = nil
		}
	}
}

// truncated turns an EOF inside a frame into a malformed-frame error.
func truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: connection closed mid-frame", wire.ErrMalformed)
	}
	return err
}
