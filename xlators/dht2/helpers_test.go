package dht2

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// counting counts the requests that reach a set, by op.
type counting struct {
	xl.Funnel
	next xl.Xlator
	mu   sync.Mutex
	n    map[xl.Op]int
}

func newCounting(next xl.Xlator) *counting {
	c := &counting{next: next, n: map[xl.Op]int{}}
	c.Funnel = xl.Funnel{H: func(ctx context.Context, f *xl.Fop) *xl.Result {
		c.mu.Lock()
		c.n[f.Op]++
		c.mu.Unlock()
		return xl.Dispatch(ctx, c.next, f)
	}}
	return c
}

func (c *counting) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := 0
	for _, n := range c.n {
		t += n
	}
	return t
}

func (c *counting) reset() {
	c.mu.Lock()
	c.n = map[xl.Op]int{}
	c.mu.Unlock()
}

// cluster is a DHT2 over posix stores in temp dirs, each behind a Guard
// and a counter.
type cluster struct {
	t      *testing.T
	dirs   []string
	stores []*posix.Store
	guards []*Guard
	counts []*counting
	src    *MemStore
	d      *DHT2
}

func newCluster(t *testing.T, sets int, opts Options) *cluster {
	t.Helper()
	c := &cluster{t: t, src: NewMemStore(Even(sets))}
	for range sets {
		c.addSet()
	}
	c.d = c.client(opts)
	return c
}

func (c *cluster) addSet() int {
	c.t.Helper()
	dir := c.t.TempDir()
	s, err := posix.New(dir, posix.Options{Logger: quiet})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { s.Close() })
	g, err := NewGuard(s, GuardOptions{Logger: quiet})
	if err != nil {
		c.t.Fatal(err)
	}
	c.dirs = append(c.dirs, dir)
	c.stores = append(c.stores, s)
	c.guards = append(c.guards, g)
	c.counts = append(c.counts, newCounting(g))
	return len(c.stores) - 1
}

// client opens another DHT2 client over the cluster's sets.
func (c *cluster) client(opts Options) *DHT2 {
	c.t.Helper()
	opts.Subvols = nil
	for _, x := range c.counts {
		opts.Subvols = append(opts.Subvols, x)
	}
	opts.Layout = c.src
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	d, err := New(opts)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { d.Close() })
	return d
}

func (c *cluster) resetCounts() {
	for _, x := range c.counts {
		x.reset()
	}
}

// touched is the sets that saw requests since the last reset.
func (c *cluster) touched() []int {
	var s []int
	for i, x := range c.counts {
		if x.total() > 0 {
			s = append(s, i)
		}
	}
	return s
}

var bg = xl.WithCall(context.Background(), &xl.Call{})

func must[T any](t *testing.T, v T, e syscall.Errno) T {
	t.Helper()
	if e != 0 {
		t.Fatalf("errno %v", e)
	}
	return v
}

func ok(t *testing.T, e syscall.Errno) {
	t.Helper()
	if e != 0 {
		t.Fatalf("errno %v", e)
	}
}
