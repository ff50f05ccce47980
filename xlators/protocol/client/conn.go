package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

var pingFrame = wire.AppendHeader(nil, wire.Header{Type: wire.TypePing})

// conn is one handshaken connection. Callers write their requests
// themselves, gathering into one writev whatever other callers queued
// meanwhile (see flush), and read replies themselves when nobody else
// does (read.go); serve's goroutine reads when they leave replies
// outstanding, and its pinger watches for silence. A call belongs to
// whoever removes it from pending: the reader, which finishes it with the
// reply; the caller, when it gives up; or failAll once the connection is
// dead.
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
	reading int           // who reads: nobody, aCaller or background
	pingOut bool          // a ping awaits its pong
	bg      chan struct{} // passes the reading to serve's goroutine

	// The reading side, used by whoever holds the reading.
	br *bufio.Reader
	fr frame

	// What waits to be written, and whether someone is writing it.
	wmu     sync.Mutex
	queue   []*call
	ctl     [][]byte // cancel and release frames, unbounded
	ping    bool
	writing bool
	closing bool           // no more background writers
	writers sync.WaitGroup // background writers
	// The writer's scratch space, used by whoever is writing.
	spare []*call
	iov   net.Buffers

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
	frame []byte    // header and metadata
	data  [][]byte  // the data section (wire.RequestData), sent in place
	one   [1][]byte // data's room for the usual one slice
	dst   []byte    // the caller's read buffer, filled in place

	state   atomic.Int32
	sent    chan struct{} // closed after the writev carrying data; set before sending
	written chan struct{} // no-reply calls: closed once the frame is written

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
		bg:      make(chan struct{}, 1),
		dying:   make(chan struct{}),
	}
	cn.br = bufio.NewReaderSize(cn, 64<<10)
	return cn
}

// serve runs the connection until it dies or ctx ends, then fails what is
// left in flight and returns why it died.
func (cn *conn) serve(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cn.pingLoop()
	}()
	stop := context.AfterFunc(ctx, func() { cn.kill(net.ErrClosed) })
	if err := cn.readBackground(); err != nil {
		cn.fail(err)
	}
	stop()
	wg.Wait()
	cn.wmu.Lock()
	cn.closing = true
	cn.wmu.Unlock()
	cn.writers.Wait()
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
	}
	id := cn.nextID.Add(1)
	// A read's data section holds only its big xdata values, if any.
	cl.frame, cl.data = wire.AppendRequestData(make([]byte, 0, 128), cl.one[:0], id, xl.CallFrom(ctx), f)
	size := 0
	for _, d := range cl.data {
		size += len(d)
	}
	if len(cl.frame)-wire.HeaderSize+size > cn.maxReq {
		return &xl.Result{Errno: syscall.EINVAL}
	}
	if ctx.Value(noReplyKey{}) != nil {
		return cn.post(cl)
	}

	cn.mu.Lock()
	if cn.dead {
		cn.mu.Unlock()
		return nil
	}
	cn.pending[id] = cl
	cn.mu.Unlock()

	cn.wmu.Lock()
	cn.queue = append(cn.queue, cl)
	cn.flush(false)
	return cn.wait(ctx, id, cl)
}

// post sends a no-reply request and returns once it is written: not
// pending, never answered. Waiting for the write keeps a fast sender to
// one frame in the socket at a time, batching what queues meanwhile. It
// returns ENOTCONN if the connection dies first, whether or not the frame
// got out.
func (cn *conn) post(cl *call) *xl.Result {
	wire.SetNoReply(cl.frame)
	cl.written = make(chan struct{})
	cn.mu.Lock()
	dead := cn.dead
	cn.mu.Unlock()
	if dead {
		return nil
	}
	cn.wmu.Lock()
	cn.queue = append(cn.queue, cl)
	cn.flush(false)
	select {
	case <-cl.written:
		return &xl.Result{}
	case <-cn.dying:
		return &xl.Result{Errno: syscall.ENOTCONN}
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
		cn.sendCtl(wire.AppendHeader(nil, wire.Header{Type: wire.TypeCancel, ID: id}), false)
		if cl.data != nil {
			// The writer may be copying data into the socket right now.
			<-cl.sent
		}
	}
	return &xl.Result{Errno: ctxErrno(ctx)}
}

// sendCtl queues a control frame and writes it out, itself or, from the
// reader, which must never block on the socket, in the background.
func (cn *conn) sendCtl(frame []byte, background bool) {
	cn.wmu.Lock()
	cn.ctl = append(cn.ctl, frame)
	cn.flush(background)
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
	cn.sendCtl(wire.AppendRequest(nil, cn.nextID.Add(1), who, f), true)
}

// ctxErrno is what a call cut short by its ctx returns: EINTR when it was
// cancelled, as an interrupted syscall, and ETIMEDOUT past its deadline.
func ctxErrno(ctx context.Context) syscall.Errno {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return syscall.ETIMEDOUT
	}
	return syscall.EINTR
}

// flush writes what is queued unless someone is writing already, who
// then takes it along. It is called with wmu held and unlocks it. The
// caller writes one batch, its own request and whatever queued up with
// it, so its latency is one writev; what queues up during that writev
// goes out from a background writer, gathered into the next batch. With
// background set (the reader) it writes nothing itself.
func (cn *conn) flush(background bool) {
	if cn.writing {
		cn.wmu.Unlock()
		return
	}
	if !background {
		cn.writing = true
		cn.writeBatch()
		cn.writing = false
	}
	if !cn.queued() || cn.closing {
		cn.wmu.Unlock()
		return
	}
	cn.writing = true
	cn.writers.Add(1)
	cn.wmu.Unlock()
	go func() {
		defer cn.writers.Done()
		cn.wmu.Lock()
		for cn.queued() {
			cn.writeBatch()
		}
		cn.writing = false
		cn.wmu.Unlock()
	}()
}

func (cn *conn) queued() bool { return len(cn.queue) > 0 || len(cn.ctl) > 0 || cn.ping }

// writeBatch writes out the queue in one writev. It is called with wmu
// held, as the writer, and drops it while writing.
func (cn *conn) writeBatch() {
	batch, ctl, ping := cn.queue, cn.ctl, cn.ping
	cn.queue, cn.ctl, cn.ping = cn.spare[:0], nil, false
	cn.wmu.Unlock()
	defer cn.wmu.Lock()

	select {
	case <-cn.dying:
		// failAll finishes the calls, and moves those never sent to the
		// next connection.
		clear(batch)
		cn.spare = batch[:0]
		return
	default:
	}
	iov := cn.iov[:0]
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
		for _, d := range cl.data {
			if len(d) > 0 {
				iov = append(iov, d)
			}
		}
	}
	// After the batch: a cancel may be for a request in it.
	iov = append(iov, ctl...)
	wv := iov
	_, err := wv.WriteTo(cn.nc)
	if sent != nil {
		close(sent)
	}
	if err == nil {
		for _, cl := range batch {
			if cl.written != nil {
				close(cl.written)
			}
		}
	}
	clear(iov)
	cn.iov = iov[:0]
	clear(batch)
	cn.spare = batch[:0]
	if err != nil {
		cn.kill(fmt.Errorf("write: %w", err))
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
		cn.mu.Lock()
		cn.pingOut = true
		if cn.reading == nobody && !cn.dead {
			// Somebody must read the pong.
			cn.passReading()
		}
		cn.mu.Unlock()
		cn.wmu.Lock()
		cn.ping = true
		cn.flush(false)
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
