package jbrclient

import (
	"context"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// abort says why the client cut an attempt short.
type abort uint8

const (
	notAborted abort = iota
	// abortMoved: the leader changed to another child while the attempt
	// was out.
	abortMoved
	// abortClosed: Close was called.
	abortClosed
	// abortExpired: the request's RetryTimeout ran out.
	abortExpired
)

// attempt is one send of a request to one child. While it is out it is
// registered in Client.attempts, so that news of another leader, or
// Close, can cancel it.
type attempt struct {
	ctx    context.Context // the caller's ctx, cancellable by the client
	cancel context.CancelFunc
	target int   // set when registered
	why    abort // set, with Client.mu held, when the client cancels it
}

func newAttempt(ctx context.Context) *attempt {
	a := &attempt{}
	a.ctx, a.cancel = context.WithCancel(ctx)
	return a
}

// enlist registers a, about to go to child i. With c.mu held.
func (c *Client) enlist(a *attempt, i int) {
	a.target = i
	c.attempts[a] = struct{}{}
}

// abortAll cancels the attempts out to children other than keep (all of
// them when keep is -1). With c.mu held.
func (c *Client) abortAll(keep int, why abort) {
	for a := range c.attempts {
		if a.target != keep {
			a.why = why
			a.cancel()
			delete(c.attempts, a)
		}
	}
}

// try sends f to child a.target, within deadline when the request's
// retry budget has started. It reports why the client cut the attempt
// short, if it did and the child's answer says so: an answer that
// arrived all the same stands.
func (c *Client) try(a *attempt, f *xl.Fop, deadline time.Time) (*xl.Result, abort) {
	ctx := a.ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	r := xl.Dispatch(ctx, c.kids[a.target], f)
	// The deadline above, not the caller's nor the client's cancel.
	expired := ctx.Err() != nil && a.ctx.Err() == nil
	c.mu.Lock()
	delete(c.attempts, a)
	why := a.why
	c.mu.Unlock()
	a.cancel()
	switch r.Errno {
	case syscall.EINTR, syscall.ETIMEDOUT, syscall.ENOTCONN:
		// What a child (protocol/client) answers when its ctx ends.
	default:
		return r, notAborted
	}
	if why == notAborted && expired {
		why = abortExpired
	}
	return r, why
}

// requeue marks t, whose attempt was cut short, for a resend: it may have
// been applied, so the ordering rule holds later requests until it is
// answered.
func (c *Client) requeue(t *ticket) {
	if t == nil {
		return
	}
	c.mu.Lock()
	t.sent, t.resend = false, true
	c.mu.Unlock()
}
