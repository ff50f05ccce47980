package jbrclient

import (
	"context"
	"strconv"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// pick is what a request knew when it chose its child. guess says no
// leader source or brick named that child.
type pick struct {
	epoch, term uint64
	guess       bool
}

// observe applies the leader source's current answer.
func (c *Client) observe() {
	i, term, ok := c.src.Leader()
	if !ok {
		c.log.Info("leader source reports no leader; keeping the last one")
		return
	}
	if i < 0 || i >= len(c.kids) {
		c.log.Warn("leader source names a child that does not exist", "leader", i, "children", len(c.kids))
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.learn(i, term, true, "leader source")
}

// learn applies a claim that child i leads in term. Claims of older terms
// are stale and dropped, and so is a brick's claim that names a child
// that failed in that term and is still disconnected: a killed leader's
// followers name it until a new one is elected. News (a newer term, or
// the leader source) wakes the retrying requests and cuts short the
// attempts out to other children. With c.mu held.
func (c *Client) learn(i int, term uint64, authoritative bool, via string) {
	if i < 0 || i >= len(c.kids) || term < c.term {
		return
	}
	if term == c.term && i == c.active {
		c.guess = false // confirmed
		return
	}
	if ft, ok := c.failedIn[i]; ok && !authoritative && term <= ft && !connected(c.kids[i]) {
		c.log.Debug("ignoring a claim for a child that failed in its term", "child", i, "term", term, "via", via)
		return
	}
	newer := term > c.term
	c.log.Info("leader changed", "from", c.active, "to", i, "term", term, "via", via)
	c.active, c.term, c.guess = i, term, false
	c.epoch++
	if newer || authoritative {
		close(c.news)
		c.news = make(chan struct{})
		c.abortAll(i, abortMoved)
	}
}

// rotate moves on from child i, which failed as leader, to the next one,
// preferring connected children. This is a guess, so it wakes nobody.
// With c.mu held.
func (c *Client) rotate(i int) {
	n := len(c.kids)
	next := (i + 1) % n
	for k := 1; k < n; k++ {
		if j := (i + k) % n; connected(c.kids[j]) {
			next = j
			break
		}
	}
	if next == i {
		return
	}
	c.log.Debug("trying another child as leader", "from", i, "to", next)
	c.active, c.guess = next, true
	c.epoch++
}

// failed records that child i answered errno to a request picked with pk
// (t, for a mutating one), and updates the leader: it asks a brick that
// said EREMOTE who leads, or else tries the next child. Only the first
// request to fail at an epoch does so. now says a newer term than the
// request knew is known, so it should be resent at once; otherwise it
// waits for news or a backoff. deadline ends the request's retries.
func (c *Client) failed(ctx context.Context, t *ticket, i int, pk pick, errno syscall.Errno, deadline time.Time) (now bool, news <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t != nil {
		t.sent, t.resend = false, true
	}
	if errno == syscall.ENOTCONN {
		if ft, ok := c.failedIn[i]; !ok || ft < pk.term {
			c.failedIn[i] = pk.term
		}
	}
	if errno != syscall.EROFS && c.active == i && c.epoch == pk.epoch && !c.asking {
		if errno == syscall.EREMOTE {
			c.asking = true
			c.mu.Unlock()
			j, term, ok := c.askLeader(ctx, i, deadline)
			c.mu.Lock()
			c.asking = false
			if ok {
				c.learn(j, term, false, "brick "+strconv.Itoa(i))
			}
		}
		if c.active == i && c.epoch == pk.epoch {
			c.rotate(i)
		}
	}
	return c.term > pk.term, c.news
}

// askLeader asks child i who leads, by deadline at the latest. It sends
// no Call of the request's: the bricks deduplicate by Call.Seq, and the
// question must not take the request's place.
func (c *Client) askLeader(ctx context.Context, i int, deadline time.Time) (leader int, term uint64, ok bool) {
	by := time.Now().Add(askTimeout)
	if deadline.Before(by) {
		by = deadline
	}
	ctx, cancel := context.WithDeadline(ctx, by)
	defer cancel()
	out, e := c.kids[i].Ipc(xl.WithCall(ctx, &xl.Call{}), ipcLeader, nil)
	if e != 0 {
		c.log.Debug("brick did not say who leads", "child", i, "err", e)
		return 0, 0, false
	}
	l, err1 := strconv.Atoi(string(out["leader"]))
	t, err2 := strconv.ParseUint(string(out["term"]), 10, 64)
	if err1 != nil || err2 != nil || l < 0 || l >= len(c.kids) {
		c.log.Debug("brick gave no usable leader", "child", i, "leader", string(out["leader"]), "term", string(out["term"]))
		return 0, 0, false
	}
	return l, t, true
}

// acquire chooses the child for attempt a and enlists a, so that news of
// another leader cuts it short. A mutating request (t) first waits until
// the ordering rule lets it go; the wait counts against its RetryTimeout,
// which starts here if it has not yet.
func (c *Client) acquire(ctx context.Context, t *ticket, deadline *time.Time, a *attempt) (int, pick, syscall.Errno) {
	var tm *time.Timer
	defer func() {
		if tm != nil {
			tm.Stop()
		}
	}()
	c.mu.Lock()
	if t != nil && t.g == nil {
		c.register(t)
	}
	for {
		if c.closed {
			c.mu.Unlock()
			return 0, pick{}, syscall.ENOTCONN
		}
		if t == nil || !c.blocked(t) {
			if t != nil {
				c.send(t)
			}
			i, pk := c.active, pick{c.epoch, c.term, c.guess}
			c.enlist(a, i)
			c.mu.Unlock()
			return i, pk, 0
		}
		ch := t.g.waiter()
		c.mu.Unlock()
		if deadline.IsZero() {
			*deadline = time.Now().Add(c.retry)
		}
		if tm == nil {
			tm = time.NewTimer(time.Until(*deadline))
		}
		select {
		case <-ch:
		case <-tm.C:
			return 0, pick{}, errExpired
		case <-ctx.Done():
			return 0, pick{}, ctxErrno(ctx)
		case <-c.done:
			return 0, pick{}, syscall.ENOTCONN
		}
		c.mu.Lock()
	}
}

type connector interface{ Connected() bool }

// connected reports whether x (a protocol client, usually) is connected;
// children that cannot tell count as connected.
func connected(x xl.Xlator) bool {
	k, ok := x.(connector)
	return !ok || k.Connected()
}
