package dht2

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gluon-fs/gluon/internal/etcdtest"
)

var discard = slog.New(slog.DiscardHandler)

// newEtcdClient is another client of cli's etcd, as another mount has.
func newEtcdClient(t *testing.T, cli *clientv3.Client) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: cli.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSharedScrubOneClientPerInterval(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	runs := map[string]int{}
	started, release := make(chan struct{}), make(chan struct{})
	mk := func(name string, c *clientv3.Client, block bool) *SharedScrub {
		return &SharedScrub{Etcd: c, Volume: "v", Logger: discard, Interval: time.Hour, Name: name,
			Scrub: func(ctx context.Context) (ScrubStats, error) {
				mu.Lock()
				runs[name]++
				mu.Unlock()
				if block {
					close(started)
					<-release
				}
				return ScrubStats{}, nil
			}}
	}
	a := mk("a", cli, true)
	b := mk("b", newEtcdClient(t, cli), false)

	type result struct {
		outcome string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		o, _, err := a.TryScrub(ctx)
		done <- result{o, err}
	}()
	<-started
	// While a scrubs, b finds the claim taken.
	if o, next, err := b.TryScrub(ctx); err != nil || o != ScrubClaimed || next <= 0 {
		t.Fatalf("b while a scrubs: %q next %v err %v, want %q", o, next, err, ScrubClaimed)
	}
	close(release)
	if r := <-done; r.err != nil || r.outcome != ScrubRan {
		t.Fatalf("a: %q %v, want %q", r.outcome, r.err, ScrubRan)
	}
	// Once a finished, nobody scrubs again within the interval.
	for _, s := range []*SharedScrub{a, b} {
		o, next, err := s.TryScrub(ctx)
		if err != nil || o != ScrubNotDue || next <= 0 || next > time.Hour {
			t.Fatalf("%s after a's scrub: %q next %v err %v, want %q within an hour", s.Name, o, next, err, ScrubNotDue)
		}
	}
	if runs["a"] != 1 || runs["b"] != 0 {
		t.Fatalf("scrubs: %v, want a once", runs)
	}
}

func TestSharedScrubRacingClaims(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	runs := 0
	const clients = 4
	var wg sync.WaitGroup
	for i := range clients {
		c := cli
		if i > 0 {
			c = newEtcdClient(t, cli)
		}
		s := &SharedScrub{Etcd: c, Volume: "v", Logger: discard, Interval: time.Hour,
			Scrub: func(context.Context) (ScrubStats, error) {
				mu.Lock()
				runs++
				mu.Unlock()
				return ScrubStats{}, nil
			}}
		wg.Go(func() {
			// Each tries repeatedly, as if its timer fired often.
			for range 5 {
				if _, _, err := s.TryScrub(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if runs != 1 {
		t.Fatalf("%d scrubs by %d clients within one interval, want 1", runs, clients)
	}
}

func TestSharedScrubDeadClaimantExpires(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The claimant's etcd connection dies mid-scrub: its lease is
	// neither renewed nor revoked.
	dead := newEtcdClient(t, cli)
	started := make(chan struct{})
	c := &SharedScrub{Etcd: dead, Volume: "v", Logger: discard, Interval: time.Hour, LeaseTTL: time.Second,
		Scrub: func(ctx context.Context) (ScrubStats, error) {
			close(started)
			<-ctx.Done() // the lost lease stops the scrub
			return ScrubStats{}, ctx.Err()
		}}
	crashed := make(chan error, 1)
	go func() {
		_, _, err := c.TryScrub(ctx)
		crashed <- err
	}()
	<-started
	dead.Close()
	if err := <-crashed; err == nil {
		t.Fatal("a scrub whose etcd client closed reported success")
	}
	ran := false
	b := &SharedScrub{Etcd: cli, Volume: "v", Logger: discard, Interval: time.Hour,
		Scrub: func(context.Context) (ScrubStats, error) { ran = true; return ScrubStats{}, nil }}
	for !ran {
		o, _, err := b.TryScrub(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if o == ScrubNotDue {
			t.Fatal("the dead claimant's scrub counted as finished")
		}
		if !ran {
			time.Sleep(100 * time.Millisecond) // until the lease expires
		}
	}
}

func TestSharedScrubRunSpacesScrubs(t *testing.T) {
	cli := etcdtest.Start(t)
	const interval = 200 * time.Millisecond
	var mu sync.Mutex
	type span struct{ start, end time.Time }
	var spans []span
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 3 {
		c := cli
		if i > 0 {
			c = newEtcdClient(t, cli)
		}
		s := &SharedScrub{Etcd: c, Volume: "v", Logger: discard, Interval: interval,
			Scrub: func(context.Context) (ScrubStats, error) {
				// Wall clock readings (Round(0) drops the monotonic
				// one), as the times the clients record in etcd are.
				sp := span{start: time.Now().Round(0)}
				time.Sleep(20 * time.Millisecond)
				sp.end = time.Now().Round(0)
				mu.Lock()
				spans = append(spans, sp)
				mu.Unlock()
				return ScrubStats{}, nil
			}}
		wg.Go(func() { s.Run(ctx) })
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(spans)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait() // Run returns once its context ends
	mu.Lock()
	defer mu.Unlock()
	if len(spans) < 3 {
		t.Fatalf("%d scrubs in 20 s with a %v interval, want 3", len(spans), interval)
	}
	for i := 1; i < len(spans); i++ {
		// Every scrub starts an interval after the previous one finished,
		// whichever client ran either: never two in one interval.
		if gap := spans[i].start.Sub(spans[i-1].end); gap < interval {
			t.Errorf("scrub %d started %v after scrub %d finished, want at least %v", i, gap, i-1, interval)
		}
	}
}
