package dht2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ScrubKey is the etcd key under which the clients of volume agree on
// scrubbing: ScrubKey(volume)+"/last" holds the time the last scrub
// finished, ScrubKey(volume)+"/lock" the scrubbing client's name, under
// its lease while it scrubs.
func ScrubKey(volume string) string { return "/gluon/volumes/" + volume + "/dht2/scrub" }

// SharedScrub runs a volume's background scrub from whichever of its
// clients claims it: one client at a time, at most once per Interval
// across all of them. A claim is a key under a lease, so a client that
// dies while scrubbing holds it only until the lease expires.
type SharedScrub struct {
	Etcd     *clientv3.Client
	Volume   string
	Interval time.Duration
	// Scrub is one full scrub, usually (*DHT2).Scrub.
	Scrub func(context.Context) (ScrubStats, error)
	// Name tells the claimant in the lock key; default host/pid.
	Name string
	// LeaseTTL is how long a dead scrubber blocks the others (default
	// 10 s; etcd rounds it up to its own minimum).
	LeaseTTL time.Duration
	Logger   *slog.Logger // default slog.Default()
}

// Claim outcomes of one attempt (see TryScrub).
const (
	ScrubRan     = "ran"     // this client scrubbed
	ScrubNotDue  = "not due" // another scrub finished less than Interval ago
	ScrubClaimed = "claimed" // another client is scrubbing
)

// Run tries to scrub every Interval (jittered, so that clients spread
// their checks) until ctx ends, and returns then. Its first check comes
// within a minute, so that clients remounted more often than Interval
// still scrub when it is due.
func (s *SharedScrub) Run(ctx context.Context) {
	log := s.logger()
	if s.Interval <= 0 {
		log.Error("dht2: shared scrub: no interval; not scrubbing", "volume", s.Volume)
		return
	}
	wait := rand.N(min(s.Interval, time.Minute))
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		outcome, next, err := s.TryScrub(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("dht2: shared scrub", "volume", s.Volume, "outcome", outcome, "err", err)
			next = min(s.Interval, time.Minute)
		}
		wait = jitter(next)
	}
}

// TryScrub scrubs if a scrub is due and no other client holds the claim.
// It returns what happened and how long until the next attempt is worth
// making.
func (s *SharedScrub) TryScrub(ctx context.Context) (outcome string, next time.Duration, err error) {
	if s.Interval <= 0 {
		return "", 0, errors.New("dht2: shared scrub: no interval")
	}
	key := ScrubKey(s.Volume)
	last, lock := key+"/last", key+"/lock"
	resp, err := s.Etcd.Get(ctx, key+"/", clientv3.WithPrefix())
	if err != nil {
		return "", 0, err
	}
	var lastRev int64
	var lastAt time.Time
	for _, kv := range resp.Kvs {
		switch string(kv.Key) {
		case lock:
			return ScrubClaimed, s.heldWait(), nil
		case last:
			lastRev = kv.ModRevision
			if lastAt, err = time.Parse(time.RFC3339Nano, string(kv.Value)); err != nil {
				lastAt = time.Time{} // unreadable: treat as never
			}
		}
	}
	if d := time.Until(lastAt.Add(s.Interval)); d > 0 {
		return ScrubNotDue, d, nil
	}
	// The claim holds only if nobody holds it and no scrub finished
	// since we read: that compare is what keeps two clients that both
	// saw the scrub due from both running it.
	// Not cancelled with ctx: Close revokes the lease (waiting at most
	// its TTL), so an unmount mid-scrub frees the claim at once.
	ttl := int((s.ttl() + time.Second - 1) / time.Second)
	sess, err := concurrency.NewSession(s.Etcd, concurrency.WithTTL(ttl), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return "", 0, err
	}
	defer sess.Close()
	txn, err := s.Etcd.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(lock), "=", 0),
		clientv3.Compare(clientv3.ModRevision(last), "=", lastRev),
	).Then(clientv3.OpPut(lock, s.name(), clientv3.WithLease(sess.Lease()))).Commit()
	if err != nil {
		return "", 0, err
	}
	if !txn.Succeeded {
		return ScrubClaimed, s.heldWait(), nil
	}
	// Stop scrubbing if the lease is lost: another client may claim.
	sctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-sess.Done():
			cancel()
		case <-sctx.Done():
		}
	}()
	defer func() { cancel(); <-watched }()
	start := time.Now()
	st, err := s.Scrub(sctx)
	log := s.logger()
	if err != nil {
		return ScrubRan, 0, fmt.Errorf("dht2: scrub: %w", err)
	}
	log.Info("dht2: scrub", "volume", s.Volume, "took", time.Since(start).Round(time.Millisecond),
		"dirs", st.Dirs, "stubs", st.Stubs, "anchored", st.Anchored,
		"orphans", st.Orphans, "dangling", st.Dangling, "young", st.Young, "errors", st.Errors)
	// Record the finish while still holding the claim.
	done := time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := s.Etcd.Txn(ctx).If(
		clientv3.Compare(clientv3.LeaseValue(lock), "=", sess.Lease()),
	).Then(clientv3.OpPut(last, done), clientv3.OpDelete(lock)).Commit(); err != nil {
		return ScrubRan, 0, fmt.Errorf("dht2: recording the scrub: %w", err)
	}
	return ScrubRan, s.Interval, nil
}

// heldWait is how long to wait while another client scrubs: its finish
// (or its lease's expiry) is noticed within this.
func (s *SharedScrub) heldWait() time.Duration {
	return max(min(s.Interval/10, time.Minute), s.ttl())
}

func (s *SharedScrub) ttl() time.Duration {
	if s.LeaseTTL > 0 {
		return s.LeaseTTL
	}
	return 10 * time.Second
}

func (s *SharedScrub) name() string {
	if s.Name != "" {
		return s.Name
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

func (s *SharedScrub) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// jitter is d plus up to a tenth more, so that clients mounted together
// do not all ask etcd at once.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/10+1)
}
