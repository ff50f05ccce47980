// Package server is the brick side of gluon's protocol: it accepts client
// connections, decodes each request into an xl.Fop, performs it on the top
// of the brick graph with xl.Dispatch and sends back the xl.Result. A TCP
// listener is shadowed by a unix socket for clients on the same host
// (package localsock).
//
// Requests on one connection run concurrently and are answered as they
// finish, in any order. A quick request is served by the goroutine that
// read it, which writes the reply itself unless another is writing and
// takes it along: such a request waits for no scheduling on its way
// through (see inline.go). Each runs under its own context, cancelled when
// the client sends a cancel frame for it, when the connection dies, or on
// Close. A translator that panics fails only the request it was serving,
// with EIO. Write and Setxattr data handed to the graph lives in pooled
// buffers that are reused once the op returns: as with io.Writer,
// translators must copy what they keep.
//
// The server remembers which connection opened each fd (Open, Create,
// Opendir) until it is released. When a connection ends, for whatever
// reason, the fds it left open are released on the graph, as GlusterFS
// does on disconnect, so that a client that vanishes leaks nothing, not
// even an unlinked file it held open. A client that reconnects may go on
// using its old fds: the store serves a handle it no longer knows through
// an anonymous fd by GFID. Only a file unlinked while open is gone once
// its last fd is released, and answers ESTALE.
package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/gluon-fs/gluon/internal/bufpool"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/localsock"
	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Options configures a Server.
type Options struct {
	// Volume is the name clients must ask for in their handshake.
	Volume string
	Logger *slog.Logger // default slog.Default()
	// MaxFrame bounds a request's payload; 0 means wire.DefaultMaxFrame,
	// and values below wire.MinMaxFrame are raised to it. Writes bigger
	// than MaxFrame fail with EINVAL at the client.
	MaxFrame int
}

const (
	// handshakeTimeout bounds how long a new connection may take to say hello.
	handshakeTimeout = 10 * time.Second
	// connBudget bounds the bytes held by one connection's in-flight
	// requests (their payloads and read buffers); a client that sends
	// faster than the graph answers stops being read.
	connBudget = 64 << 20
	// minWeight charges small requests enough that one connection runs at
	// most connBudget/minWeight of them at once.
	minWeight = 256 << 10
	// inlineData is the size up to which reply data is copied next to its
	// metadata rather than sent as its own iovec.
	inlineData = 1 << 10
	// keepMeta is the largest metadata buffer a connection keeps between
	// requests.
	keepMeta = 64 << 10
)

// Server serves one brick graph over any number of listeners.
type Server struct {
	top      xl.Xlator
	volume   string
	log      *slog.Logger
	maxFrame int

	// ctx parents every handler's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	lns    map[net.Listener]struct{}
	conns  map[*conn]struct{}
	wg     sync.WaitGroup // Serve calls and connections

	// fds holds the fds clients opened and have not released, each with
	// the connection that opened it. A client may release an fd through a
	// later connection than the one that opened it.
	fdMu sync.Mutex
	fds  map[fdKey]*openFd

	// Serving inline (inline.go).
	times opTimes

	// Readers parked between connections' requests (goRead).
	readers     chan readJob
	idleReaders atomic.Int32
}

// fdKey identifies an fd as the store's Release does: by handle and GFID.
type fdKey struct {
	gfid xl.GFID
	h    uint64
}

// openFd is an fd that a client holds.
type openFd struct {
	fd    xl.Fd
	dir   bool     // from Opendir: Releasedir closes it
	call  *xl.Call // the opener, on whose behalf a disconnect releases it
	n     int      // opens not yet released; over 1 only if the graph reuses handles
	owner *conn
}

// New returns a server for the graph whose top is top. It panics if top
// is nil.
func New(top xl.Xlator, opts Options) *Server {
	if top == nil {
		panic("protocol/server: New with a nil xlator")
	}
	s := &Server{
		top:      top,
		volume:   opts.Volume,
		log:      opts.Logger,
		maxFrame: opts.MaxFrame,
		lns:      map[net.Listener]struct{}{},
		conns:    map[*conn]struct{}{},
		fds:      map[fdKey]*openFd{},
		readers:  make(chan readJob),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("xlator", "protocol/server", "volume", s.volume)
	if s.maxFrame <= 0 {
		s.maxFrame = wire.DefaultMaxFrame
	}
	s.maxFrame = max(s.maxFrame, wire.MinMaxFrame)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Serve accepts connections on ln until Close, then returns nil. Other
// listener errors are returned; ln is closed either way. While it serves
// a TCP listener, clients on this host may also reach it through a unix
// socket named after its address (package localsock).
func (s *Server) Serve(ln net.Listener) error {
	uln, err := localsock.Listen(ln)
	if err != nil {
		s.log.Info("serving TCP only: no local socket", "addr", ln.Addr().String(), "err", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		if uln != nil {
			uln.Close()
		}
		return nil
	}
	s.lns[ln] = struct{}{}
	s.wg.Add(1)
	if uln != nil {
		s.lns[uln] = struct{}{}
		s.wg.Add(1)
	}
	s.mu.Unlock()
	release := func(ln net.Listener) {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
		ln.Close()
		s.wg.Done()
	}
	defer release(ln)
	if uln != nil {
		// Closed when ln is done, so that the name never outlives the
		// TCP port it stands for.
		defer uln.Close()
		go func() {
			defer release(uln)
			if err := s.accept(uln); err != nil {
				s.log.Debug("local socket closed", "err", err)
			}
		}()
	}
	return s.accept(ln)
}

// accept serves ln until Close (nil) or an error that retrying cannot cure.
func (s *Server) accept(ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if !retryAccept(err) {
				return fmt.Errorf("protocol/server: accept: %w", err)
			}
			// Out of descriptors or memory: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
			}
			continue
		}
		delay = 0
		s.start(nc)
	}
}

func retryAccept(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops every listener, drops every connection, cancels the
// contexts of in-flight requests and waits for all goroutines to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	lns := make([]net.Listener, 0, len(s.lns))
	for ln := range s.lns {
		lns = append(lns, ln)
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	for _, ln := range lns {
		ln.Close()
	}
	for _, c := range conns {
		c.kill()
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Server) start(nc net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{
		s:        s,
		nc:       nc,
		log:      s.log.With("remote", localsock.Remote(nc)),
		ctx:      ctx,
		cancel:   cancel,
		dying:    make(chan struct{}),
		budget:   semaphore.NewWeighted(connBudget),
		inflight: map[uint64]context.CancelFunc{},
		fds:      map[fdKey]*openFd{},
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go c.serve()
}

// conn is one client connection. One goroutine at a time reads it, and
// serves quick requests itself; for others it hands the reading to a new
// goroutine (see read). Replies go out through send, one writer at a
// time, in writev batches.
type conn struct {
	s   *Server
	nc  net.Conn
	log *slog.Logger

	ctx    context.Context // cancelled when the connection dies
	cancel context.CancelFunc
	dying  chan struct{}
	once   sync.Once

	budget *semaphore.Weighted
	wg     sync.WaitGroup // handlers

	// The replies and pongs waiting to be written, and whether a
	// goroutine is writing: it writes until the queue is empty.
	wmu     sync.Mutex
	queue   []reply
	pongs   int
	writing bool
	werr    error // why writing failed
	// The writer's scratch space, used by whoever is writing.
	spare []reply
	buf   []byte
	segs  []segment
	iov   net.Buffers

	// inflight cancels the running requests by id, for cancel frames.
	mu       sync.Mutex
	inflight map[uint64]context.CancelFunc

	fds map[fdKey]*openFd // the fds this connection opened; under s.fdMu

	rd *reader // the reading, passed from reader to reader
	// Serving inline (inline.go): inline is the mark of the request
	// served inline, 0 if none; marks the last mark given, by the holder
	// of the reading; stall hands the reading over when the request runs
	// long.
	inline atomic.Uint64
	marks  uint64
	stall  *time.Timer

	// Set by the handshake, before the first request.
	maxReply int
	idle     time.Duration // drop the client after this much silence; 0 = never
}

// reply is a finished request on its way to the writer.
type reply struct {
	id     uint64
	res    *xl.Result
	buf    *[]byte // pooled buffer behind res.Data, recycled once sent
	weight int64   // budget to release once sent
}

// kill closes the socket before cancelling the handlers, so that a
// handler cut short by the cancellation cannot get its reply out.
func (c *conn) kill() {
	c.once.Do(func() {
		c.nc.Close()
		close(c.dying)
		c.cancel()
	})
}

func (c *conn) serve() {
	br := bufio.NewReaderSize(c.nc, 64<<10)
	if err := c.handshake(br); err != nil {
		c.kill()
		if !errors.Is(err, errRejected) {
			c.logEnd("handshake failed", err)
		}
		c.gone()
		return
	}
	c.log.Debug("client connected")
	c.rd = &reader{br: br}
	c.stall = time.AfterFunc(time.Hour, c.stalled) // armed per inline request
	c.stall.Stop()
	c.read(c.rd)
}

// gone removes the ended connection from the server.
func (c *conn) gone() {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	c.s.wg.Done()
}

// end tears the connection down once reading failed with err: it waits
// for the requests in flight, releases the fds the client left open and
// says why the connection ended.
func (c *conn) end(err error) {
	c.kill()
	c.wg.Wait()
	c.stall.Stop()
	c.releaseAll()
	c.wmu.Lock()
	werr := c.werr
	c.wmu.Unlock()
	if werr != nil && errors.Is(err, net.ErrClosed) {
		err = werr // writing failed first, and knows why
	}
	c.logEnd("connection closed", err)
	c.gone()
}

// logEnd reports why a connection ended: quietly for a normal hang-up or
// our own Close, as a warning for a broken or hostile peer.
func (c *conn) logEnd(msg string, err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), c.s.ctx.Err() != nil:
		c.log.Debug(msg, "err", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Warn(msg+": client went silent", "idle", c.idle, "err", err)
	default:
		c.log.Warn(msg, "err", err)
	}
}

func (c *conn) handshake(br *bufio.Reader) error {
	c.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	var hb [wire.HeaderSize]byte
	if _, err := io.ReadFull(br, hb[:]); err != nil {
		return err
	}
	h, herr := wire.ParseHeader(hb[:], wire.MinMaxFrame)
	if herr != nil && !errors.Is(herr, wire.ErrVersion) {
		return herr
	}
	if h.Type != wire.TypeHandshake {
		return fmt.Errorf("%w: expected a handshake, got a %v frame", wire.ErrMalformed, h.Type)
	}
	payload := make([]byte, h.Len)
	if _, err := io.ReadFull(br, payload); err != nil {
		return err
	}
	var hello wire.Hello
	if herr != nil {
		return c.reject(h.ID, syscall.EPROTONOSUPPORT, fmt.Sprintf("protocol version %d not supported, server speaks %d", h.Version, wire.Version))
	}
	if err := wire.DecodeHello(payload, &hello); err != nil {
		return err
	}
	switch {
	case hello.Version != wire.Version:
		return c.reject(h.ID, syscall.EPROTONOSUPPORT, fmt.Sprintf("protocol version %d not supported, server speaks %d", hello.Version, wire.Version))
	case hello.Volume != c.s.volume:
		return c.reject(h.ID, syscall.ENOENT, fmt.Sprintf("volume %q is not served here", hello.Volume))
	case hello.MaxFrame < wire.MinMaxFrame:
		return c.reject(h.ID, syscall.EINVAL, fmt.Sprintf("max frame %d below the minimum %d", hello.MaxFrame, wire.MinMaxFrame))
	}
	c.maxReply = int(hello.MaxFrame)
	c.idle = 2 * hello.PingTimeout
	w := wire.AppendWelcome(nil, h.ID, &wire.Welcome{MaxFrame: uint32(c.s.maxFrame)})
	if _, err := c.nc.Write(w); err != nil {
		return err
	}
	c.nc.SetDeadline(time.Time{})
	return nil
}

var errRejected = errors.New("handshake rejected")

// reject tells the client why it is turned away; the caller then closes.
func (c *conn) reject(id uint64, e syscall.Errno, reason string) error {
	c.log.Warn("handshake rejected", "reason", reason)
	c.nc.Write(wire.AppendWelcome(nil, id, &wire.Welcome{Errno: e, Reason: reason}))
	return errRejected
}

// reader is the reading side of a connection, passed from each reader
// goroutine to the next.
type reader struct {
	br   *bufio.Reader
	hb   [wire.HeaderSize]byte
	meta []byte
}

// request is a decoded request, admitted under the connection's budget.
type request struct {
	id      uint64
	noReply bool // the client wants no reply (wire.FlagNoReply)
	call    *xl.Call
	f       *xl.Fop
	in      *[]byte // pooled buffer behind f.Data
	weight  int64
	ctx     context.Context
	cancel  context.CancelFunc
}

// read reads and serves requests. A quick request is served inline, by
// the goroutine that read it (see inline.go); otherwise, or when more
// frames are waiting already, the reading passes to another goroutine
// (goRead) and the old one ends with its request. A request that wants
// no reply is served inline even so: its sender did not wait for the one
// before it, and expects them served in order (the stall timer still
// hands the reading over if it is slow). A Release or Releasedir is never
// handed over: the client promises that the requests after it find the fd
// closed. Closing waits on no other request; only fdl's deferred destage,
// which no volume enables, first applies the file's pending writes. The
// goroutine that finds the connection broken tears it down.
func (c *conn) read(rd *reader) {
	for {
		rq, err := c.next(rd)
		if err != nil {
			c.end(err)
			return
		}
		c.wg.Add(1)
		if rq.f.Op == xl.OpRelease || rq.f.Op == xl.OpReleasedir {
			c.handle(rq)
			continue
		}
		if !rq.noReply && (rd.br.Buffered() > 0 || !c.s.times.quick(rq.f.Op)) {
			c.s.goRead(c, rd)
			c.handle(rq)
			return
		}
		mark := c.inlined()
		c.handle(rq)
		if !c.served(mark) {
			return // the stall timer handed the reading over
		}
	}
}

// next reads frames, answering pings and cancels, until a request, which
// it decodes and admits.
func (c *conn) next(rd *reader) (*request, error) {
	br := rd.br
	for {
		if c.idle > 0 {
			c.nc.SetReadDeadline(time.Now().Add(c.idle))
		}
		if _, err := io.ReadFull(br, rd.hb[:]); err != nil {
			return nil, err
		}
		h, err := wire.ParseHeader(rd.hb[:], c.s.maxFrame)
		if err != nil {
			return nil, err
		}
		switch h.Type {
		case wire.TypeRequest:
		case wire.TypePing:
			c.pong()
			continue
		case wire.TypeCancel:
			c.mu.Lock()
			if cancel := c.inflight[h.ID]; cancel != nil {
				cancel()
			}
			c.mu.Unlock()
			continue
		default:
			return nil, fmt.Errorf("%w: unexpected %v frame from a client", wire.ErrMalformed, h.Type)
		}

		n := h.MetaLen()
		if cap(rd.meta) < n {
			rd.meta = make([]byte, n)
		}
		meta := rd.meta[:n]
		if _, err := io.ReadFull(br, meta); err != nil {
			return nil, truncated(err)
		}
		rq := &request{id: h.ID, noReply: h.Flags&wire.FlagNoReply != 0, call: new(xl.Call), f: new(xl.Fop)}
		var data []byte
		inXdata := h.Flags&wire.FlagXdataData != 0
		switch {
		case h.DataLen == 0:
		case inXdata:
			// The decoded xdata values are this buffer, and whoever
			// handles the request may keep them: never recycled.
			data = make([]byte, h.DataLen)
		default:
			rq.in = bufpool.Get(int(h.DataLen))
			data = *rq.in
		}
		if len(data) > 0 {
			if _, err := io.ReadFull(br, data); err != nil {
				rq.free()
				return nil, truncated(err)
			}
		}
		err = wire.DecodeRequest(meta, data, rq.call, rq.f)
		if cap(rd.meta) > keepMeta {
			rd.meta = nil
		}
		if err == nil && inXdata != (len(data) > 0 && rq.f.Data == nil) {
			err = fmt.Errorf("%w: data section flagged as xdata %v, decoded as data %v", wire.ErrMalformed, inXdata, rq.f.Data != nil)
		}
		if err != nil {
			rq.free()
			return nil, fmt.Errorf("request %d: %w", h.ID, err)
		}

		weight := int64(h.Len)
		if rq.f.Op == xl.OpRead && rq.f.Len > 0 && rq.f.Len <= xl.MaxIO {
			weight += rq.f.Len
		}
		rq.weight = min(max(weight, minWeight), connBudget)
		if err := c.budget.Acquire(c.ctx, rq.weight); err != nil {
			rq.free()
			return nil, err
		}
		if err := c.admit(rq); err != nil {
			c.budget.Release(rq.weight)
			rq.free()
			return nil, err
		}
		return rq, nil
	}
}

// free returns the pooled buffer behind rq's data, if any.
func (rq *request) free() {
	if rq.in != nil {
		bufpool.Put(rq.in)
		rq.in = nil
	}
}

// admit gives rq a context of its own, which a cancel frame can end.
func (c *conn) admit(rq *request) error {
	ctx, cancel := context.WithCancel(c.ctx)
	c.mu.Lock()
	_, dup := c.inflight[rq.id]
	if !dup {
		c.inflight[rq.id] = cancel
	}
	c.mu.Unlock()
	if dup {
		// A cancel frame could not tell the two apart.
		cancel()
		return fmt.Errorf("%w: request id %d is already in flight", wire.ErrMalformed, rq.id)
	}
	rq.ctx, rq.cancel = xl.WithCall(ctx, rq.call), cancel
	return nil
}

// truncated turns an EOF inside a frame into a malformed-frame error.
func truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: connection closed mid-frame", wire.ErrMalformed)
	}
	return err
}

func (c *conn) handle(rq *request) {
	defer c.wg.Done()
	ctx, f := rq.ctx, rq.f
	var out *[]byte
	if f.Op == xl.OpRead && f.Len > 0 && f.Len <= xl.MaxIO {
		out = bufpool.Get(int(f.Len))
		f.Data = *out
	}
	switch f.Op {
	case xl.OpRelease, xl.OpReleasedir:
		// Forgotten first, so that a disconnect cannot release it again.
		c.s.forget(f.Fd)
	}
	start := time.Now()
	res := c.dispatch(ctx, f)
	c.s.times.add(f.Op, time.Since(start))
	if res.Errno == 0 && res.Fd != (xl.Fd{}) {
		switch f.Op {
		case xl.OpOpen, xl.OpCreate, xl.OpOpendir:
			// Before the reply goes out: the client may release it on
			// another connection as soon as it knows it.
			c.opened(rq.call, res.Fd, f.Op == xl.OpOpendir)
		}
	}
	c.mu.Lock()
	delete(c.inflight, rq.id)
	c.mu.Unlock()
	rq.cancel()
	rq.free()
	r := reply{id: rq.id, res: res, buf: out, weight: rq.weight}
	if rq.noReply {
		if res.Errno != 0 {
			// Clients send releases without waiting: the log is the
			// only place a failed one, which leaks an fd, shows.
			level := slog.LevelDebug
			if f.Op == xl.OpRelease || f.Op == xl.OpReleasedir {
				level = slog.LevelWarn
			}
			c.log.Log(ctx, level, "request without a reply failed", "id", rq.id, "op", f.Op, "errno", res.Errno)
		}
		c.recycle(&r)
		return
	}
	c.send(r)
}

// dispatch performs f on the graph. A panic in a translator fails only
// this request, with EIO; the connection and the brick carry on.
func (c *conn) dispatch(ctx context.Context, f *xl.Fop) (res *xl.Result) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("translator panicked; answering EIO", "op", f.Op, "panic", p, "stack", string(debug.Stack()))
			res = &xl.Result{Errno: syscall.EIO}
		}
	}()
	return xl.Dispatch(ctx, c.s.top, f)
}

// opened records that c's client holds fd.
func (c *conn) opened(call *xl.Call, fd xl.Fd, dir bool) {
	k := fdKey{fd.GFID, fd.H}
	s := c.s
	s.fdMu.Lock()
	defer s.fdMu.Unlock()
	o := s.fds[k]
	if o == nil {
		// Only who is asking: a release must not look like a retry of
		// the open (Seq) or carry its request data (Xdata).
		who := &xl.Call{Uid: call.Uid, Gid: call.Gid, Groups: call.Groups, Pid: call.Pid, Client: call.Client}
		o = &openFd{fd: fd, dir: dir, call: who}
		s.fds[k] = o
	}
	if o.owner != c {
		if o.owner != nil {
			delete(o.owner.fds, k)
		}
		o.owner = c
		c.fds[k] = o
	}
	o.n++
}

// forget notes that a client released fd, on whichever connection.
func (s *Server) forget(fd xl.Fd) {
	k := fdKey{fd.GFID, fd.H}
	s.fdMu.Lock()
	defer s.fdMu.Unlock()
	o := s.fds[k]
	if o == nil {
		return
	}
	if o.n--; o.n == 0 {
		delete(s.fds, k)
		delete(o.owner.fds, k)
	}
}

// releaseAll releases on the graph every fd that c's client left open.
// It runs once the connection's handlers are done, so no more opens come.
func (c *conn) releaseAll() {
	s := c.s
	s.fdMu.Lock()
	left := c.fds
	c.fds = nil
	for k := range left {
		delete(s.fds, k)
	}
	s.fdMu.Unlock()
	if len(left) == 0 {
		return
	}
	failed := 0
	for _, o := range left {
		// The connection's context is gone, and Close cancels the
		// server's: the releases must run anyway.
		ctx := xl.WithCall(context.Background(), o.call)
		f := &xl.Fop{Op: xl.OpRelease, Fd: o.fd}
		if o.dir {
			f.Op = xl.OpReleasedir
		}
		for range o.n {
			if c.dispatch(ctx, f).Errno != 0 {
				failed++
			}
		}
	}
	level := slog.LevelDebug
	if failed > 0 {
		level = slog.LevelWarn
	}
	c.log.Log(context.Background(), level, "released the fds the client left open", "fds", len(left), "failed", failed)
}

func (c *conn) recycle(r *reply) {
	if r.buf != nil {
		bufpool.Put(r.buf)
	}
	c.budget.Release(r.weight)
}

// send queues r and writes it, unless a goroutine is writing already:
// that one takes it along. Writers gather whatever is queued into one
// writev, so a busy connection flushes once per batch, not per reply.
func (c *conn) send(r reply) {
	c.wmu.Lock()
	c.queue = append(c.queue, r)
	c.flush()
}

// pong answers a ping the same way.
func (c *conn) pong() {
	c.wmu.Lock()
	c.pongs++
	c.flush()
}

// flush writes out the queue unless someone else is; it is called with
// wmu held and unlocks it.
func (c *conn) flush() {
	if c.writing {
		c.wmu.Unlock()
		return
	}
	c.writing = true
	for len(c.queue) > 0 || c.pongs > 0 {
		batch, pongs := c.queue, c.pongs
		c.queue, c.pongs = c.spare[:0], 0
		failed := c.werr != nil
		c.wmu.Unlock()
		var err error
		if !failed {
			err = c.write(batch, pongs)
		}
		for i := range batch {
			c.recycle(&batch[i])
			batch[i] = reply{}
		}
		if err != nil {
			c.kill()
		}
		c.wmu.Lock()
		c.spare = batch[:0]
		if err != nil {
			c.werr = fmt.Errorf("write: %w", err)
		}
	}
	c.writing = false
	c.wmu.Unlock()
}

// write sends pongs and a batch of replies in one writev.
func (c *conn) write(batch []reply, pongs int) error {
	buf, segs := c.buf[:0], c.segs[:0]
	for range pongs {
		buf = wire.AppendHeader(buf, wire.Header{Type: wire.TypePong})
	}
	for i := range batch {
		buf, segs = c.appendReply(buf, segs, &batch[i])
	}
	iov := c.iov[:0]
	prev := 0
	for _, sg := range segs {
		iov = append(iov, buf[prev:sg.end], sg.data)
		prev = sg.end
	}
	if prev < len(buf) {
		iov = append(iov, buf[prev:])
	}
	if c.idle > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.idle))
	}
	wv := iov
	_, err := wv.WriteTo(c.nc)
	clear(iov)
	clear(segs)
	c.iov, c.segs = iov[:0], segs[:0]
	if cap(buf) <= keepMeta {
		c.buf = buf[:0]
	} else {
		c.buf = nil
	}
	return err
}

// segment is reply data sent as its own iovec after buf[:end].
type segment struct {
	end  int
	data []byte
}

func (c *conn) appendReply(buf []byte, segs []segment, r *reply) ([]byte, []segment) {
	start := len(buf)
	buf = wire.AppendReply(buf, r.id, r.res)
	if size := len(buf) - start - wire.HeaderSize + len(r.res.Data); size > c.maxReply {
		c.log.Warn("reply too large for the client; answering EIO", "id", r.id, "bytes", size, "limit", c.maxReply)
		buf = wire.AppendReply(buf[:start], r.id, &xl.Result{Errno: syscall.EIO})
		return buf, segs
	}
	switch d := r.res.Data; {
	case len(d) == 0:
	case len(d) <= inlineData:
		buf = append(buf, d...)
	default:
		segs = append(segs, segment{end: len(buf), data: d})
	}
	return buf, segs
}
