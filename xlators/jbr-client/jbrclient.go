// Package jbrclient is the mount side of JBR replication (GlusterFS's
// experimental/jbrc): it sends every op of one replica set to the set's
// leader, whichever brick that is, and hides leader changes from the
// layers above.
//
// # Routing
//
// Children are indexed like the bricks of the replica set. The leader
// comes from a LeaderSource (etcd's election key, see WatchEtcd). A brick
// that does not lead answers EREMOTE; the client then asks that brick who
// leads (Ipc "jbr.leader") and, failing an answer, tries the children in
// turn, preferring connected ones. Reads go to the leader too: jbr-server
// decides what a read may see.
//
// # Retries
//
// EREMOTE (not leader), ENOTCONN (brick unreachable, or a leader that
// stepped down mid-request) and EROFS (quorum lost) are retried with the
// same ctx, hence the same xl.Call: bricks deduplicate by (Call.Client,
// Call.Seq), so a request that did reach a deposed leader is not applied
// twice. Between attempts the client waits for news of a new leader or a
// backoff (50 ms doubling to 1 s). A request gives up RetryTimeout after
// its first failure (or its first send, when no leader is known and the
// client is trying children in turn): with ENOTCONN, or EROFS if quorum
// was the last problem (EROFS is retried at most three times, since a
// new leader may restore quorum). EREMOTE never reaches the caller. A
// cancelled ctx ends the retries at once with EINTR (ETIMEDOUT past its
// deadline).
//
// The budget bounds each attempt too, not only the waits between them:
// an attempt to a stopped brick whose connection still looks up is cut
// short when the budget runs out, rather than when protocol/client's
// ping timeout declares the brick dead. An attempt is also cut short when
// the leader source (or a newer term) names another child: it is resent
// there at once, with the same Call, so a request the old leader applied
// after all is not applied twice, and, as a resend, it holds back the
// client's later writes (see Ordering). A brick that failed with ENOTCONN
// is not tried again on its followers' word that it still leads the term
// it failed in, while its connection stays down: a killed leader's
// followers name it until a new leader is elected.
//
// Fds need no care: a brick serves an fd it does not know through an
// anonymous fd by GFID, so a request is resent with the same xl.Fd.
//
// # Ordering
//
// GlusterFS's jbrc reorders writes when a first write is resent after a
// second one already went to the new leader. This client does not. The
// rule, for the mutating requests (xl.Fop.Mutates) of one client
// (Call.Client), ordered by Call.Seq: a request is sent only when every
// such request with a lower Seq that is still outstanding
//
//   - has been sent, to the leader of the current epoch (an epoch ends
//     whenever the client's idea of the leader changes), and
//   - is not a resend.
//
// In steady state nothing waits: a client's writes go out concurrently as
// they come, just as they would to a single brick. Once the leader
// changes, later writes wait until the writes still out at the old leader
// have come back; the ones that failed are resent in Seq order, each
// answered before the next one goes. So a write is never overtaken by a
// later one of the same client because of a failover. Non-mutating
// requests never wait.
//
// # Fsync
//
// An fsync returns once every mutation of the file that completed
// through this client before it was called is committed and fdatasynced
// in a quorum of the set's journals, as jbr-server's Fsync promises; it
// says nothing of what other clients (mounts) wrote, which their own
// fsyncs cover, as with any client that caches writes (write-behind
// holds them in the client anyway). The leader's FSYNC round trip is
// often not needed for that: after a file's fsync the client asks the
// leader to answer the file's next mutations only once they are durable
// (jbr-server's DurableKey; as many as came between the file's last two
// fsyncs, up to durableRun), and a successful answer to such a request,
// or to an O_SYNC or O_DSYNC write, means durable, on whichever leader
// gave it. The client remembers, per file, the latest mutation that
// completed without such an answer: a plain answer, an error, an
// outcome unknown (ENOTCONN after the retries); entry ops, whose objects
// it cannot all name, count for every file. An fsync with none of those
// since the last successful FSYNC was sent returns at once; otherwise it
// goes to the leader, and its success covers every mutation that
// succeeded before it was sent (one given up on with its outcome unknown
// may still reach the leader later, uncovered: the caller had its
// error). A leader change needs no care: a quorum
// synced a durable answer's entry, and every later leader holds it.
package jbrclient

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// LeaderSource tells the client which child leads. The etcd implementation
// watches the election key; tests use a fake.
type LeaderSource interface {
	// Leader returns the leading child and its term; ok is false when
	// nobody leads.
	Leader() (index int, term uint64, ok bool)
	// Changed receives (coalesced) after every change.
	Changed() <-chan struct{}
}

// Options configures a Client.
type Options struct {
	// Leaders names the leader. When nil, the client finds it by asking
	// the bricks and by trying them in turn.
	Leaders LeaderSource
	// RetryTimeout is the total time a request may spend retrying
	// (default 30s).
	RetryTimeout time.Duration
	Logger       *slog.Logger // default slog.Default()
}

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
	// maxROFS bounds the retries of EROFS: quorum loss is for the user to
	// see, but a new leader may restore quorum within a few backoffs.
	maxROFS = 3
	// askTimeout bounds an Ipc jbr.leader question to a brick.
	askTimeout = time.Second
)

// ipcLeader asks a brick who leads; it answers Xdata{"leader": index,
// "term": term}, both decimal.
const ipcLeader xl.IpcOp = "jbr.leader"

// Client is the JBR client translator. Its xl.Xlator methods are safe for
// concurrent use.
type Client struct {
	xl.Funnel
	kids  []xl.Xlator
	src   LeaderSource
	retry time.Duration
	log   *slog.Logger

	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu     sync.Mutex
	closed bool
	active int    // the child believed to lead
	guess  bool   // active is a guess: nobody named it
	term   uint64 // the highest term of any leader claim seen
	epoch  uint64 // bumped whenever active or term changes
	asking bool   // an Ipc jbr.leader question is out
	// news is closed and replaced when a leader claim changes active:
	// retrying requests then go at once instead of finishing a backoff.
	news     chan struct{}
	attempts map[*attempt]struct{} // out at a child now
	// failedIn holds, for a child that failed a request with ENOTCONN,
	// the term it failed in: a brick's claim that it still leads that
	// term is stale while it stays disconnected.
	failedIn map[int]uint64
	groups   map[[16]byte]*group // outstanding mutating requests, by client
	arrival  uint64              // orders requests that carry no Seq
	dur      durability
}

var (
	_ xl.Xlator    = (*Client)(nil)
	_ xl.Lifecycle = (*Client)(nil)
)

// New returns a client of the replica set whose bricks are children, in
// brick order. It reads opts.Leaders at once and follows it until Close.
func New(children []xl.Xlator, opts Options) (*Client, error) {
	if len(children) == 0 {
		return nil, errors.New("jbr-client: no children")
	}
	for _, k := range children {
		if k == nil {
			return nil, errors.New("jbr-client: nil child")
		}
	}
	if opts.RetryTimeout < 0 {
		return nil, errors.New("jbr-client: negative retry timeout")
	}
	if opts.RetryTimeout == 0 {
		opts.RetryTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Client{
		kids:     append([]xl.Xlator(nil), children...),
		src:      opts.Leaders,
		retry:    opts.RetryTimeout,
		log:      opts.Logger.With("xlator", "jbr-client"),
		done:     make(chan struct{}),
		guess:    true,
		news:     make(chan struct{}),
		attempts: make(map[*attempt]struct{}),
		failedIn: make(map[int]uint64),
		groups:   make(map[[16]byte]*group),
		dur:      durability{dirty: make(map[xl.GFID]uint64), hints: make(map[xl.GFID]*fsyncHint)},
	}
	c.Funnel.H = c.handle
	if c.src != nil {
		c.observe()
		c.wg.Add(1)
		go c.follow()
	}
	return c, nil
}

// Close stops following the leader source and fails outstanding
// requests with ENOTCONN, as it does later calls; their attempts in
// flight are cancelled. It closes neither the children nor opts.Leaders,
// which belong to the caller.
func (c *Client) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.done)
		c.abortAll(-1, abortClosed)
	}
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// follow applies the leader source's changes until Close.
func (c *Client) follow() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case <-c.src.Changed():
			c.observe()
		}
	}
}

// handle is the Funnel's handler: every op, present and future, is routed
// and retried here.
func (c *Client) handle(ctx context.Context, f *xl.Fop) *xl.Result {
	switch {
	case f.Op == xl.OpFlush:
		// A brick answers a write once a quorum has it, and keeps
		// nothing else for an fd that close(2) could report (there are
		// no locks to drop yet): asking it costs a round trip per close
		// of a written file and tells nothing.
		return &xl.Result{}
	case f.Op == xl.OpFsync:
		send, mark := c.fsyncStart(f.Fd.GFID)
		if !send {
			return &xl.Result{} // all it covers is durable already (see Fsync)
		}
		r := c.route(ctx, f)
		if r.Errno == 0 {
			c.fsynced(mark)
		}
		return r
	case f.Mutates():
		asked := c.askDurable(f)
		if asked {
			ctx = withDurable(ctx)
		}
		r := c.route(ctx, f)
		c.completed(f, asked, r)
		return r
	}
	return c.route(ctx, f)
}

// route sends f to the leader, retrying as the package doc says.
func (c *Client) route(ctx context.Context, f *xl.Fop) *xl.Result {
	var t *ticket
	if f.Mutates() {
		call := xl.CallFrom(ctx)
		t = &ticket{client: call.Client, seq: call.Seq}
		defer c.finish(t)
	}
	var (
		deadline time.Time // set by the first wait: RetryTimeout bounds retrying
		backoff  = minBackoff
		last     syscall.Errno
		rofs     int
	)
	for {
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return c.giveUp(ctx, f, last)
		}
		a := newAttempt(ctx)
		i, pk, e := c.acquire(ctx, t, &deadline, a)
		if e != 0 {
			a.cancel()
			if e == errExpired {
				return c.giveUp(ctx, f, last)
			}
			return &xl.Result{Errno: e}
		}
		if deadline.IsZero() && pk.guess {
			// No leader is known: this is a retry already.
			deadline = time.Now().Add(c.retry)
		}
		r, why := c.try(a, f, deadline)
		if why == notAborted {
			switch r.Errno {
			case syscall.EREMOTE, syscall.ENOTCONN:
			case syscall.EROFS:
				if rofs++; rofs > maxROFS {
					return r
				}
			default:
				return r
			}
		}
		if ctx.Err() != nil {
			return &xl.Result{Errno: ctxErrno(ctx)}
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(c.retry)
		}
		switch why {
		case abortClosed:
			return &xl.Result{Errno: syscall.ENOTCONN}
		case abortExpired:
			// The child did not answer within what was left.
			return c.giveUp(ctx, f, syscall.ENOTCONN)
		case abortMoved:
			// Resent at once to the new leader; the same Call, so a
			// brick that got it before is not applied twice.
			c.requeue(t)
			backoff = minBackoff
			continue
		}
		last = r.Errno
		now, news := c.failed(ctx, t, i, pk, r.Errno, deadline)
		if now {
			continue
		}
		woke, e := c.pause(ctx, news, backoff, deadline)
		switch {
		case e == errExpired:
			return c.giveUp(ctx, f, last)
		case e != 0:
			return &xl.Result{Errno: e}
		case woke:
			backoff = minBackoff // a new leader: start afresh
		default:
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// errExpired is internal: the request's RetryTimeout ran out.
const errExpired = syscall.Errno(^uint32(0) >> 1)

// giveUp ends a request whose retries ran out.
func (c *Client) giveUp(ctx context.Context, f *xl.Fop, last syscall.Errno) *xl.Result {
	e := syscall.ENOTCONN
	if last == syscall.EROFS {
		e = syscall.EROFS
	}
	c.log.Warn("no leader answered; giving up", "op", f.Op, "seq", xl.CallFrom(ctx).Seq,
		"retry_timeout", c.retry, "last_err", last, "err", e)
	return &xl.Result{Errno: e}
}

// pause waits before a retry: for news of a leader (woke), the backoff,
// ctx or Close. It returns errExpired once deadline has passed.
func (c *Client) pause(ctx context.Context, news <-chan struct{}, backoff time.Duration, deadline time.Time) (woke bool, e syscall.Errno) {
	left := time.Until(deadline)
	if left <= 0 {
		return false, errExpired
	}
	tm := time.NewTimer(min(backoff, left))
	defer tm.Stop()
	select {
	case <-news:
		return true, 0
	case <-tm.C:
		if !time.Now().Before(deadline) {
			return false, errExpired
		}
		return false, 0
	case <-ctx.Done():
		return false, ctxErrno(ctx)
	case <-c.done:
		return false, syscall.ENOTCONN
	}
}

// ctxErrno is what a request cut short by its ctx returns: EINTR when it
// was cancelled, as an interrupted syscall, and ETIMEDOUT past its
// deadline (as protocol/client does).
func ctxErrno(ctx context.Context) syscall.Errno {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return syscall.ETIMEDOUT
	}
	return syscall.EINTR
}
