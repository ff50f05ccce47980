package systest

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/dht2"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// failRmdir is a set's connection that fails the rmdir of one name, as
// a client that dies after the first step of a two-step rmdir leaves it.
type failRmdir struct {
	xl.Xlator
	parent xl.GFID
	name   string
}

func (f failRmdir) Rmdir(ctx context.Context, parent xl.GFID, name string) syscall.Errno {
	if parent == f.parent && name == f.name {
		return syscall.EIO
	}
	return f.Xlator.Rmdir(ctx, parent, name)
}

// TestDHT2BackgroundScrub: a mounted client of a distributed volume
// removes, by itself, the dangling name an interrupted rmdir across sets
// left, and counts it.
func TestDHT2BackgroundScrub(t *testing.T) {
	d := newDvol(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	for k, v := range map[string]string{volume.OptDHT2ScrubInterval: "1s", volume.OptDHT2ScrubGrace: "1s"} {
		if _, err := d.store.SetOption(ctx, dvolName, k, v); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	mounted, err := client.Open(ctx, d.cli, dvolName, client.Options{Logger: d.logger(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer mounted.Close()
	c := newCaller(mounted.Top)

	// A directory in the root whose inode lives on another set than the
	// root: its name is a stub on the root's set and an anchor name on
	// its own (Spread deals new directories to the sets in turn).
	store := dht2.NewEtcdStore(d.cli, dvolName)
	l, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	home := l.Set(dht2.TokenOf(xl.RootGFID))
	var victim string
	for i := range 6 {
		name := fmt.Sprintf("d%d", i)
		a, e := mounted.Top.Mkdir(c.ctx(ctx), xl.RootGFID, name, xl.NewGFID(), 0o755)
		if e != 0 {
			t.Fatalf("mkdir %s: %v", name, e)
		}
		if l.Set(dht2.TokenOf(a.GFID)) != home {
			victim = name
			break
		}
	}
	if victim == "" {
		t.Fatal("no directory of six landed on another set than the root")
	}

	// A second client, built over the volume's sets, dies between the
	// steps of rmdir: the directory goes at its anchor, its stub stays.
	sets := make([]xl.Xlator, l.Sets)
	g, err := volfile.ClientVolfile(mounted.Info)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sets {
		sub, err := g.Subgraph(fmt.Sprintf("%s-client-%d", dvolName, i))
		if err != nil {
			t.Fatal(err)
		}
		top, closeSet, err := volfile.Build(ctx, sub, volfile.DefaultRegistry(volfile.Env{Logger: d.logger(), Etcd: d.cli}))
		if err != nil {
			t.Fatal(err)
		}
		defer closeSet()
		sets[i] = top
	}
	raw := sets[home]
	sets[home] = failRmdir{Xlator: raw, parent: xl.RootGFID, name: victim}
	dying, err := dht2.New(dht2.Options{Subvols: sets, Layout: store, Logger: d.logger()})
	if err != nil {
		t.Fatal(err)
	}
	if e := dying.Rmdir(c.ctx(ctx), xl.RootGFID, victim); e != 0 {
		t.Fatalf("interrupted rmdir: %v", e)
	}
	dying.Close()
	root := xl.WithCall(ctx, &xl.Call{})
	if _, e := raw.Lookup(root, xl.RootGFID, victim); e != 0 {
		t.Fatalf("the interrupted rmdir left no stub on set %d: %v", home, e)
	}
	if _, e := mounted.Top.Lookup(c.ctx(ctx), xl.RootGFID, victim); e != syscall.ENOENT {
		t.Fatalf("lookup of the dangling name through the mount: %v, want ENOENT", e)
	}

	// No Scrub call: the mounted client's background scrub (1 s, after
	// the 1 s grace) removes the stub.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, e := raw.Lookup(root, xl.RootGFID, victim)
		if e == syscall.ENOENT {
			break
		}
		if e != 0 {
			t.Fatalf("lookup on set %d: %v", home, e)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dangling name %s is still on set %d after 30 s of background scrubs", victim, home)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := counter(t, reg, "gluon_dht2_scrub_dangling_total"); n < 1 {
		t.Fatalf("gluon_dht2_scrub_dangling_total = %v, want at least 1", n)
	}
	r, err := d.cli.Get(ctx, dht2.ScrubKey(dvolName)+"/last")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("the finished scrub is not recorded in etcd: %v, %v", r, err)
	}
	// The other names survive the scrub.
	for i := range 6 {
		name := fmt.Sprintf("d%d", i)
		if name == victim {
			break
		}
		if _, e := mounted.Top.Lookup(c.ctx(ctx), xl.RootGFID, name); e != 0 {
			t.Errorf("lookup %s after the scrub: %v", name, e)
		}
	}
}

// counter reads a counter's value from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var n float64
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
			return n
		}
	}
	return 0
}
