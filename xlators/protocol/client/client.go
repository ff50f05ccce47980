// Package client is the mount side of gluon's protocol: an xl.Xlator that
// sends every op to one brick's protocol/server over TCP, or, when the
// brick's address is one of this host's, over the unix socket the server
// shadows its TCP port with (it skips the loopback TCP/IP stack, about a
// third of the CPU of a small round trip).
//
// A Client keeps one connection, multiplexed: calls from many goroutines
// are in flight together and their replies are matched by id. It pings the
// server and declares the connection dead when nothing comes back for
// PingTimeout; the calls in flight then fail with ENOTCONN and the client
// reconnects with capped, jittered exponential backoff. A call made while
// disconnected waits for the connection up to DialTimeout (or its ctx
// deadline) before failing with ENOTCONN; if the server rejected the
// handshake (wrong volume or version) calls fail at once. A call whose ctx
// is cancelled returns EINTR at once, ETIMEDOUT if its deadline passed,
// and its late reply is dropped. If the request went out, the server is
// told to cancel its context; the op itself may still happen on the
// brick, and an open that does so has its fd released. A request the
// connection died before sending moves to the next connection.
//
// Fds stay valid across reconnections: the server releases those of a
// dead connection, and the brick serves a handle it no longer knows
// through an anonymous fd by GFID.
//
// Write data goes from the caller's slice to the socket and Read replies
// land straight in the caller's buffer. Either way a call returns only
// once the connection is done with the caller's buffer, even when
// cancelled, so the caller may reuse it at once.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/protocol/internal/localsock"
	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

type noReplyKey struct{}

// NoReply marks the requests made with ctx as wanting no reply (the
// protocol's FlagNoReply): a call returns once its request is written,
// with no error, or ENOTCONN when the connection died first; the server
// serves it and sends nothing back, not even an error. Only for requests
// whose outcome the caller learns some other way and that carry no data
// to return, such as replication's peer messages. Other translators pass
// ctx along unchanged, so the mark reaches the client below them.
func NoReply(ctx context.Context) context.Context {
	return context.WithValue(ctx, noReplyKey{}, true)
}

// Options configures a Client.
type Options struct {
	Addr   string // host:port of the brick's protocol/server
	Volume string // the volume the server must serve
	// PingInterval is how often the client pings (default 2s); after
	// PingTimeout (default 10s) without any frame from the server the
	// connection is declared dead. DialTimeout (default 5s) bounds a
	// connection attempt and handshake, and how long a call waits for a
	// connection.
	PingInterval, PingTimeout, DialTimeout time.Duration
	Logger                                 *slog.Logger // default slog.Default()
}

const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 3 * time.Second // and at most DialTimeout
)

// Client is a protocol client. Its xl.Xlator methods are safe for
// concurrent use.
type Client struct {
	xl.Funnel
	opts Options
	log  *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the connection manager

	mu       sync.Mutex
	cur      *conn         // nil while disconnected
	rejected bool          // the server refused our last handshake: fail fast
	wake     chan struct{} // closed and replaced on every change of the above

	distrusted atomic.Bool // a local socket's owner was refused: said once
}

var (
	_ xl.Xlator    = (*Client)(nil)
	_ xl.Lifecycle = (*Client)(nil)
)

// New checks opts and starts connecting in the background; it does not
// wait for the server.
func New(opts Options) (*Client, error) {
	if opts.Addr == "" {
		return nil, errors.New("protocol/client: no server address")
	}
	if opts.Volume == "" {
		return nil, errors.New("protocol/client: no volume name")
	}
	if opts.PingInterval < 0 || opts.PingTimeout < 0 || opts.DialTimeout < 0 {
		return nil, errors.New("protocol/client: negative timeout")
	}
	if opts.PingInterval == 0 {
		opts.PingInterval = 2 * time.Second
	}
	if opts.PingTimeout == 0 {
		opts.PingTimeout = 10 * time.Second
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.PingTimeout <= opts.PingInterval {
		return nil, fmt.Errorf("protocol/client: ping timeout %v must exceed ping interval %v", opts.PingTimeout, opts.PingInterval)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Client{
		opts: opts,
		log:  opts.Logger.With("xlator", "protocol/client", "addr", opts.Addr, "volume", opts.Volume),
		wake: make(chan struct{}),
	}
	c.Funnel.H = c.call
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.run()
	return c, nil
}

// Close drops the connection, fails the calls in flight with ENOTCONN and
// stops reconnecting. Later calls fail with ENOTCONN.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// Connected reports whether a handshaken connection is up.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

func (c *Client) setState(cur *conn, rejected bool) {
	c.mu.Lock()
	c.cur, c.rejected = cur, rejected
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
}

// detach forgets cn if it is the current connection.
func (c *Client) detach(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == cn {
		c.cur = nil
		close(c.wake)
		c.wake = make(chan struct{})
	}
}

// run owns the connection: it dials, serves the connection until it
// dies, and starts over after a backoff, until Close.
func (c *Client) run() {
	defer c.wg.Done()
	defer c.setState(nil, false) // wake waiters to see Close
	var (
		delay   time.Duration
		lastErr string
	)
	for {
		cn, err := c.dial()
		if c.ctx.Err() != nil {
			if cn != nil {
				cn.nc.Close()
			}
			return
		}
		var rej *rejectedError
		if err == nil {
			c.log.Info("connected")
			c.setState(cn, false)
			up := time.Now()
			err = cn.serve(c.ctx)
			if c.ctx.Err() != nil {
				return
			}
			// Only a connection that lasted resets the backoff, so a server
			// that accepts and drops us is not hammered.
			if time.Since(up) > backoffMax {
				delay = 0
			}
		} else {
			c.setState(nil, errors.As(err, &rej))
		}
		delay = min(max(2*delay, backoffMin), backoffMax, c.opts.DialTimeout)
		// A brick that stays down would log a failed attempt every few
		// seconds: warn when the reason changes, and keep repeats for
		// debugging.
		level := slog.LevelWarn
		if cn == nil && err.Error() == lastErr {
			level = slog.LevelDebug
		}
		lastErr = err.Error()
		switch {
		case cn != nil:
			c.log.Warn("connection lost", "err", err, "retry", delay)
		case rej != nil:
			c.log.Log(c.ctx, level, "server rejected the connection", "reason", rej.reason, "errno", rej.errno, "retry", delay)
		default:
			c.log.Log(c.ctx, level, "cannot connect", "err", err, "retry", delay)
		}
		// Jitter over the upper half keeps the clients of a restarted brick
		// from reconnecting in lockstep.
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return
		}
	}
}

// rejectedError is a handshake refusal from the server.
type rejectedError struct {
	errno  syscall.Errno
	reason string
}

func (e *rejectedError) Error() string { return "rejected by server: " + e.reason }

// maxAttempts bounds how often a request that never left is moved to a
// new connection.
const maxAttempts = 3

// call is the Funnel's handler: every op comes through here. Release
// and Releasedir want no reply: the fd is gone for the caller whatever
// the server says, and a server whose client's connection dies releases
// what it held, so waiting cost a round trip per close(2) and told
// nothing. The server serves them in order with the requests that follow
// on the connection, and logs a failure.
func (c *Client) call(ctx context.Context, f *xl.Fop) *xl.Result {
	if f.Op == xl.OpRelease || f.Op == xl.OpReleasedir {
		ctx = NoReply(ctx)
	}
	if ctx.Err() != nil {
		return &xl.Result{Errno: ctxErrno(ctx)}
	}
	for range maxAttempts {
		cn, e := c.conn(ctx)
		if e != 0 {
			return &xl.Result{Errno: e}
		}
		if r := cn.do(ctx, f); r != nil {
			return r
		}
		// The connection died before the request was sent: the next one
		// may take it.
	}
	return &xl.Result{Errno: syscall.ENOTCONN}
}

// conn returns the live connection, waiting for one if need be.
func (c *Client) conn(ctx context.Context) (*conn, syscall.Errno) {
	var timer *time.Timer
	for {
		c.mu.Lock()
		cur, rejected, wake := c.cur, c.rejected, c.wake
		c.mu.Unlock()
		switch {
		case cur != nil:
			return cur, 0
		case rejected, c.ctx.Err() != nil:
			return nil, syscall.ENOTCONN
		}
		if timer == nil {
			timer = time.NewTimer(c.opts.DialTimeout)
			defer timer.Stop()
		}
		select {
		case <-wake:
		case <-timer.C:
			return nil, syscall.ENOTCONN
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil, syscall.EINTR
			}
			return nil, syscall.ENOTCONN
		}
	}
}

// dial connects and handshakes within DialTimeout.
func (c *Client) dial() (*conn, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.DialTimeout)
	defer cancel()
	nc, err := localsock.Dial(ctx, c.opts.Addr)
	if err != nil {
		// Every reconnect would say it again.
		lvl := slog.LevelWarn
		if c.distrusted.Swap(true) {
			lvl = slog.LevelDebug
		}
		c.log.Log(ctx, lvl, "not using the server's local socket; dialing TCP", "err", err)
	}
	if nc == nil {
		var d net.Dialer
		if nc, err = d.DialContext(ctx, "tcp", c.opts.Addr); err != nil {
			return nil, err
		}
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	// Close interrupts a handshake in progress by expiring the deadline.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	w, err := handshake(nc, &wire.Hello{
		Version:     wire.Version,
		Volume:      c.opts.Volume,
		MaxFrame:    wire.DefaultMaxFrame,
		PingTimeout: c.opts.PingTimeout,
	})
	stop()
	if err == nil && w.Errno != 0 {
		err = &rejectedError{errno: w.Errno, reason: w.Reason}
	}
	if err == nil && w.MaxFrame < wire.MinMaxFrame {
		err = fmt.Errorf("server announced max frame %d, below the minimum %d", w.MaxFrame, wire.MinMaxFrame)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return newConn(nc, c, int(w.MaxFrame)), nil
}

func handshake(nc net.Conn, h *wire.Hello) (*wire.Welcome, error) {
	if _, err := nc.Write(wire.AppendHello(nil, 1, h)); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	var hb [wire.HeaderSize]byte
	if _, err := io.ReadFull(nc, hb[:]); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	hd, err := wire.ParseHeader(hb[:], wire.MinMaxFrame)
	if err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if hd.Type != wire.TypeHandshake || hd.ID != 1 {
		return nil, fmt.Errorf("handshake: %w: got a %v frame, id %d", wire.ErrMalformed, hd.Type, hd.ID)
	}
	payload := make([]byte, hd.Len)
	if _, err := io.ReadFull(nc, payload); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	var w wire.Welcome
	if err := wire.DecodeWelcome(payload, &w); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return &w, nil
}
