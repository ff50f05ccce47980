package volfile

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// brickClient is a protocol/client for a brick whose port is found in
// etcd, as GlusterFS clients ask glusterd's portmapper. Bricks listen on
// ports chosen at start, so it follows the brick's registration and,
// whenever the brick comes up at a new address, connects there and drops
// the old connection (its calls in flight fail with ENOTCONN; the brick
// behind it is gone anyway). While the brick has never been seen, a call
// waits for it up to the dial timeout, as a disconnected client does.
type brickClient struct {
	xl.Funnel
	opts  client.Options // Addr is filled in per address
	brick volume.Brick
	log   *slog.Logger

	cancel context.CancelFunc
	done   chan struct{} // closed when follow returns

	mu     sync.Mutex
	cur    *client.Client // nil until the brick is first seen
	addr   string
	closed bool
	wake   chan struct{} // closed and replaced when cur changes
}

var (
	_ xl.Xlator    = (*brickClient)(nil)
	_ xl.Lifecycle = (*brickClient)(nil)
)

func newBrickClient(cli *clientv3.Client, vol string, b volume.Brick, o client.Options) *brickClient {
	c := &brickClient{
		opts:  o,
		brick: b,
		log:   o.Logger.With("xlator", "protocol/client", "volume", vol, "brick", b.String()),
		done:  make(chan struct{}),
		wake:  make(chan struct{}),
	}
	c.Funnel.H = c.call
	store := volume.NewStore(cli)
	store.Logger = c.log
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.follow(store.WatchBricks(ctx, vol))
	return c
}

// follow connects to each new address the brick registers, until the
// watch ends (Close).
func (c *brickClient) follow(updates <-chan []volume.BrickStatus) {
	defer close(c.done)
	for st := range updates {
		for _, b := range st {
			if b.Brick == c.brick && b.Online && b.Addr != "" {
				c.use(b.Addr)
			}
		}
	}
}

func (c *brickClient) use(addr string) {
	c.mu.Lock()
	if c.closed || addr == c.addr {
		c.mu.Unlock()
		return
	}
	o := c.opts
	o.Addr = addr
	nc, err := client.New(o)
	if err != nil { // the options were checked when the graph was built
		c.mu.Unlock()
		c.log.Error("cannot connect to the brick", "addr", addr, "err", err)
		return
	}
	old, oldAddr := c.cur, c.addr
	c.cur, c.addr = nc, addr
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
	if old != nil {
		c.log.Info("brick registered at a new address; reconnecting", "from", oldAddr, "to", addr)
		old.Close()
	}
}

// client returns the current connection's client, waiting for the brick
// to be seen up to the dial timeout.
func (c *brickClient) client(ctx context.Context) (*client.Client, syscall.Errno) {
	var timer *time.Timer
	for {
		c.mu.Lock()
		cur, closed, wake := c.cur, c.closed, c.wake
		c.mu.Unlock()
		switch {
		case closed:
			return nil, syscall.ENOTCONN
		case cur != nil:
			return cur, 0
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

// call is the Funnel's handler: every op goes to the current client.
func (c *brickClient) call(ctx context.Context, f *xl.Fop) *xl.Result {
	cur, e := c.client(ctx)
	if e != 0 {
		return &xl.Result{Errno: e}
	}
	return cur.H(ctx, f)
}

// Connected reports whether the brick is connected; jbr uses it to
// judge whether a quorum is reachable.
func (c *brickClient) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil && c.cur.Connected()
}

// Close stops following the registration and closes the connection.
// Later calls fail with ENOTCONN.
func (c *brickClient) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cur := c.cur
	c.cur = nil
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
	c.cancel()
	<-c.done
	if cur != nil {
		return cur.Close()
	}
	return nil
}
