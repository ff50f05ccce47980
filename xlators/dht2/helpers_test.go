package dht2

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
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
	t      testing.TB
	dirs   []string
	stores []*posix.Store
	guards []*Guard
	counts []*counting
	src    *MemStore
	d      *DHT2
	want   atomic.Int32 // the set new directories go to; -1: Spread
	wrap   func(xl.Xlator) xl.Xlator
}

func newCluster(t testing.TB, sets int, opts Options) *cluster {
	return newClusterOf(t, sets, sets, opts)
}

// newClusterOf has stores sets, the layout spreading over the first sets.
func newClusterOf(t testing.TB, stores, sets int, opts Options) *cluster {
	return newClusterWith(t, stores, sets, opts, nil)
}

// newClusterWith puts wrap (if not nil) above each set's guard, as a
// brick puts features/access.
func newClusterWith(t testing.TB, stores, sets int, opts Options, wrap func(xl.Xlator) xl.Xlator) *cluster {
	t.Helper()
	c := &cluster{t: t, src: NewMemStore(Even(sets)), wrap: wrap}
	c.want.Store(-1)
	for range stores {
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
	var top xl.Xlator = g
	if c.wrap != nil {
		top = c.wrap(g)
	}
	c.counts = append(c.counts, newCounting(top))
	return len(c.stores) - 1
}

// client opens another DHT2 client over the cluster's sets.
func (c *cluster) client(opts Options) *DHT2 {
	c.t.Helper()
	opts.Subvols = nil
	for _, x := range c.counts {
		opts.Subvols = append(opts.Subvols, x)
	}
	if opts.Layout == nil {
		opts.Layout = c.src
	}
	if opts.Policy == nil {
		spread := new(Spread)
		opts.Policy = PolicyFunc(func(l *Layout, parent xl.GFID, name string, gfid xl.GFID) uint16 {
			if s := c.want.Load(); s >= 0 {
				return tokenOn(l, int(s), gfid)
			}
			return spread.DirToken(l, parent, name, gfid)
		})
	}
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

// must(x.Op(...))(t) is Op's value, failing t on an errno.
func must[T any](v T, e syscall.Errno) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if e != 0 {
			t.Fatalf("errno %v", e)
		}
		return v
	}
}

func ok(t testing.TB, e syscall.Errno) {
	t.Helper()
	if e != 0 {
		t.Fatalf("errno %v", e)
	}
}

// tokenOn is a token of set s other than the root's, picked by gfid.
func tokenOn(l *Layout, s int, gfid xl.GFID) uint16 {
	var owned []uint16
	for t, o := range l.Owner {
		if int(o) == s && t != 0 {
			owned = append(owned, uint16(t))
		}
	}
	return owned[(int(gfid[12])<<8|int(gfid[13]))%len(owned)]
}

// mkdirOn makes a directory whose home is set s.
func (c *cluster) mkdirOn(parent xl.GFID, name string, s int) xl.GFID {
	c.t.Helper()
	c.want.Store(int32(s))
	defer c.want.Store(-1)
	a, e := c.d.Mkdir(bg, parent, name, xl.NewGFID(), 0o755)
	if e != 0 {
		c.t.Fatalf("mkdir %s: %v", name, e)
	}
	if got := c.d.Layout().Set(TokenOf(a.GFID)); got != s {
		c.t.Fatalf("mkdir %s: on set %d, want %d", name, got, s)
	}
	return a.GFID
}

// create makes a file holding data.
func (c *cluster) create(parent xl.GFID, name string, data []byte) xl.GFID {
	c.t.Helper()
	fd, a, e := c.d.Create(bg, parent, name, xl.NewGFID(), syscall.O_RDWR, 0o644)
	if e != 0 {
		c.t.Fatalf("create %s: %v", name, e)
	}
	if len(data) > 0 {
		if n, e := c.d.Write(bg, fd, data, 0); e != 0 || n != len(data) {
			c.t.Fatalf("write %s: %d, %v", name, n, e)
		}
	}
	ok(c.t, c.d.Release(bg, fd))
	return a.GFID
}

// read reads a whole file by GFID through d.
func read(t testing.TB, d *DHT2, g xl.GFID) []byte {
	t.Helper()
	fd, e := d.Open(bg, g, syscall.O_RDONLY)
	if e != 0 {
		t.Fatalf("open %v: %v", g, e)
	}
	defer d.Release(bg, fd)
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, e := d.Read(bg, fd, buf, int64(len(out)))
		if e != 0 {
			t.Fatalf("read %v: %v", g, e)
		}
		out = append(out, buf[:n]...)
		if n < len(buf) {
			return out
		}
	}
}

// list reads a whole directory through d.
func list(t *testing.T, d *DHT2, dir xl.GFID) map[string]xl.Attr {
	t.Helper()
	fd, e := d.Opendir(bg, dir)
	if e != 0 {
		t.Fatalf("opendir: %v", e)
	}
	defer d.Releasedir(bg, fd)
	m := map[string]xl.Attr{}
	var off uint64
	for {
		ents, e := d.Readdir(bg, fd, off, 100)
		if e != 0 {
			t.Fatalf("readdir: %v", e)
		}
		if len(ents) == 0 {
			return m
		}
		for _, de := range ents {
			if _, dup := m[de.Name]; dup {
				t.Fatalf("readdir lists %q twice", de.Name)
			}
			m[de.Name] = de.Attr
		}
		off = ents[len(ents)-1].Off
	}
}

// move publishes a layout with token t on set s.
func (c *cluster) move(src *MemStore, t uint16, s int) {
	c.t.Helper()
	cur, err := src.Load(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	n := cur.Clone()
	n.Version++
	n.Owner[t] = uint16(s)
	n.Sets = max(n.Sets, s+1)
	if err := src.Save(context.Background(), n); err != nil {
		c.t.Fatal(err)
	}
}
