// Package election elects the leader of a JBR replica set through etcd and
// reports what each replica needs to know: that it won (and its term),
// who leads now, and that it lost its session.
//
// Every replica campaigns on the same key with a session lease. The term
// is the leader key's create revision, which etcd only ever increases, so
// it serves as a fencing token: bricks reject requests stamped with an
// older term (see package core).
package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Kind is what happened.
type Kind int

const (
	// Elected: this replica won; Term is its term.
	Elected Kind = iota
	// Observed: Leader holds Term (possibly this replica).
	Observed
	// Lost: this replica's session expired or was closed; a leader must
	// stop serving writes at once.
	Lost
)

func (k Kind) String() string { return [...]string{"elected", "observed", "lost"}[k] }

// Event is one change of leadership seen by a replica.
type Event struct {
	Kind   Kind
	Leader int
	Term   uint64
}

// Key is the election prefix of replica set set of volume vol.
func Key(vol string, set int) string {
	return fmt.Sprintf("/gluon/jbr/%s/%d/", vol, set)
}

// Options configures a campaign.
type Options struct {
	TTL    time.Duration // session lease; failover takes about this long. Default 5s.
	Logger *slog.Logger
}

// Campaign runs this replica's candidacy until Close. Events arrive in
// order on Events; the channel is closed after Close.
type Campaign struct {
	cli    *clientv3.Client
	key    string
	self   int
	ttl    time.Duration
	log    *slog.Logger
	events chan Event
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start begins campaigning for key as replica self.
func Start(cli *clientv3.Client, key string, self int, opts Options) (*Campaign, error) {
	if cli == nil || key == "" || self < 0 {
		return nil, errors.New("election: need an etcd client, a key and a replica index")
	}
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Second
	}
	if opts.TTL < time.Second {
		return nil, fmt.Errorf("election: lease TTL %v below etcd's 1s granularity", opts.TTL)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Campaign{cli: cli, key: key, self: self, ttl: opts.TTL, cancel: cancel,
		log: opts.Logger.With("election", key, "replica", self), events: make(chan Event, 16)}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(c.events)
		c.run(ctx)
	}()
	return c, nil
}

// Events delivers leadership changes.
func (c *Campaign) Events() <-chan Event { return c.events }

// Close resigns if leading, ends the session and waits for the campaign
// goroutines to stop. Pending events are dropped.
func (c *Campaign) Close() error {
	c.cancel()
	go func() {
		for range c.events { // unblock a sender while we wait
		}
	}()
	c.wg.Wait()
	return nil
}

func (c *Campaign) emit(ctx context.Context, ev Event) {
	select {
	case c.events <- ev:
	case <-ctx.Done():
	}
}

// run campaigns with one session after another until ctx ends.
func (c *Campaign) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("election session ended; campaigning again", "err", err, "after", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, c.ttl)
	}
}

// session holds one lease: observe the leader, campaign, and on winning
// hold office until the lease is lost.
func (c *Campaign) session(ctx context.Context) error {
	s, err := concurrency.NewSession(c.cli, concurrency.WithTTL(int(c.ttl/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("new session: %w", err)
	}
	defer func() {
		// Revoke the lease ourselves: s.Close would use ctx, which is
		// already cancelled on shutdown, and the next leader would then
		// wait out the whole TTL instead of taking over at once.
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if _, err := c.cli.Revoke(rctx, s.Lease()); err != nil {
			c.log.Warn("revoking the election lease failed; the next leader waits for it to expire", "err", err)
		}
		cancel()
		s.Close()
	}()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { // the session's lease keeper stops on expiry
		select {
		case <-s.Done():
			stop()
		case <-sctx.Done():
		}
	}()
	e := concurrency.NewElection(s, c.key)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.observe(sctx, e)
	}()
	defer wg.Wait()
	defer stop()

	if err := e.Campaign(sctx, strconv.Itoa(c.self)); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	term := uint64(e.Rev())
	c.log.Info("elected leader", "term", term)
	c.emit(ctx, Event{Kind: Elected, Leader: c.self, Term: term})
	<-sctx.Done()
	c.emit(ctx, Event{Kind: Lost, Leader: c.self, Term: term})
	if ctx.Err() == nil {
		return errors.New("lease lost while leading")
	}
	return nil
}

func (c *Campaign) observe(ctx context.Context, e *concurrency.Election) {
	for resp := range e.Observe(ctx) {
		if len(resp.Kvs) == 0 {
			continue
		}
		kv := resp.Kvs[0]
		id, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			c.log.Error("foreign value under the election key", "value", string(kv.Value))
			continue
		}
		c.emit(ctx, Event{Kind: Observed, Leader: id, Term: uint64(kv.CreateRevision)})
	}
}

// Leader reads who leads key right now, for clients that route requests.
// ok is false when nobody does.
func Leader(ctx context.Context, cli *clientv3.Client, key string) (leader int, term uint64, ok bool, err error) {
	resp, err := cli.Get(ctx, key, clientv3.WithFirstCreate()...)
	if err != nil {
		return 0, 0, false, err
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, false, nil
	}
	kv := resp.Kvs[0]
	id, err := strconv.Atoi(string(kv.Value))
	if err != nil {
		return 0, 0, false, fmt.Errorf("election %s: bad leader value %q", key, kv.Value)
	}
	return id, uint64(kv.CreateRevision), true, nil
}
