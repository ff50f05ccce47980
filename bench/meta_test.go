package bench

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func TestRunMeta(t *testing.T) {
	dir := t.TempDir()
	var observed []string
	cfg := MetaConfig{Dir: dir, Workers: 3, Files: 101, Dirs: 7, FileSize: 100,
		Observe: func(phase string) func() {
			observed = append(observed, "start "+phase)
			return func() { observed = append(observed, "end "+phase) }
		}}
	phases, err := RunMeta(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range phases {
		names = append(names, p.Name)
		want := 101
		if p.Name == MetaFind {
			want = 101 + 7 // every file and directory
		}
		if p.Ops != want {
			t.Errorf("%s: %d ops, want %d", p.Name, p.Ops, want)
		}
		if p.Elapsed <= 0 || p.P50 <= 0 || p.P99 < p.P50 || p.OpsPerSec() <= 0 {
			t.Errorf("%s: implausible %+v", p.Name, p)
		}
		wantBytes := int64(0)
		if p.Name == MetaCreate || p.Name == MetaRead {
			wantBytes = 101 * 100
		}
		if p.Bytes != wantBytes {
			t.Errorf("%s: %d bytes, want %d", p.Name, p.Bytes, wantBytes)
		}
	}
	if !slices.Equal(names, MetaPhases) {
		t.Errorf("phases %v, want %v", names, MetaPhases)
	}
	var want []string
	for _, p := range MetaPhases {
		want = append(want, "start "+p, "end "+p)
	}
	if !slices.Equal(observed, want) {
		t.Errorf("observed %v", observed)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("left behind %v (%v)", ents, err)
	}
}

func TestRunMetaMoreWorkersThanFiles(t *testing.T) {
	phases, err := RunMeta(context.Background(), MetaConfig{Dir: t.TempDir(), Workers: 8, Files: 3, Dirs: 5, FileSize: 0})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range phases {
		want := 3
		if p.Name == MetaFind {
			want += 5 // the directories too
		}
		if p.Ops != want {
			t.Errorf("%s: %d ops, want %d", p.Name, p.Ops, want)
		}
	}
}

// A capped meta-create stops early (each worker makes at least one file),
// and the later phases work on exactly the files it made.
func TestRunMetaCreateCap(t *testing.T) {
	dir := t.TempDir()
	phases, err := RunMeta(context.Background(), MetaConfig{Dir: dir, Workers: 3, Files: 100000, Dirs: 4, FileSize: 10, CreateFor: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	created := phases[0].Ops
	if created < 3 || created >= 100000 {
		t.Fatalf("created %d files with a 1ns cap, want a few", created)
	}
	for _, p := range phases {
		want := created
		if p.Name == MetaFind {
			want += 4 // directories the cap left empty are found too
		}
		if p.Ops != want {
			t.Errorf("%s: %d ops, want %d", p.Name, p.Ops, want)
		}
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("left behind %v (%v)", ents, err)
	}
}

func TestRunMetaErrors(t *testing.T) {
	ok := MetaConfig{Dir: t.TempDir(), Workers: 1, Files: 1, Dirs: 1, FileSize: 1}
	for name, mod := range map[string]func(*MetaConfig){
		"workers":   func(c *MetaConfig) { c.Workers = 0 },
		"files":     func(c *MetaConfig) { c.Files = 0 },
		"dirs":      func(c *MetaConfig) { c.Dirs = -1 },
		"file size": func(c *MetaConfig) { c.FileSize = -1 },
		"big":       func(c *MetaConfig) { c.Big = -1 },
		"cap":       func(c *MetaConfig) { c.CreateFor = -time.Second },
		"no dir":    func(c *MetaConfig) { c.Dir = "/nonexistent/meta" },
	} {
		c := ok
		mod(&c)
		if _, err := RunMeta(context.Background(), c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	_, err := RunMeta(ctx, MetaConfig{Dir: dir, Workers: 2, Files: 10, Dirs: 2, FileSize: 1})
	if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Errorf("cancelled: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("cancelled run left %v", ents)
	}
}

func TestPercentile(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 100; i++ {
		v = append(v, time.Duration(i))
	}
	for _, c := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{{v, 50, 50}, {v, 99, 99}, {v, 100, 100}, {v[:1], 99, 1}, {v[:3], 50, 2}, {nil, 50, 0}} {
		if got := percentile(c.in, c.p); got != c.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(c.in), c.p, got, c.want)
		}
	}
}

// eintrNode is a loopback node that fails one call with EINTR, the way a
// FUSE server may answer the kernel's INTERRUPT: a create or a flush
// (close) after it took effect, or a getattr before.
type eintrNode struct {
	fs.LoopbackNode
	fail  string       // "create", "getattr" or "flush"
	armed *atomic.Bool // fail the next such call
}

func (n *eintrNode) trip(op string) bool { return n.fail == op && n.armed.CompareAndSwap(true, false) }

func (n *eintrNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno == 0 && n.trip("create") {
		fh.(fs.FileReleaser).Release(ctx)
		return nil, nil, 0, syscall.EINTR
	}
	return in, fh, fl, errno
}

func (n *eintrNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if n.trip("getattr") {
		return syscall.EINTR
	}
	return n.LoopbackNode.Getattr(ctx, fh, out)
}

func (n *eintrNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	errno := fh.(fs.FileFlusher).Flush(ctx)
	if errno == 0 && n.trip("flush") {
		return syscall.EINTR
	}
	return errno
}

func mountEINTR(t *testing.T, fail string) string {
	t.Helper()
	back, mnt := t.TempDir(), t.TempDir()
	var st syscall.Stat_t
	if err := syscall.Stat(back, &st); err != nil {
		t.Fatal(err)
	}
	armed := new(atomic.Bool)
	armed.Store(true)
	root := &fs.LoopbackRoot{Path: back, Dev: uint64(st.Dev)}
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &eintrNode{LoopbackNode: fs.LoopbackNode{RootData: r}, fail: fail, armed: armed}
	}
	root.RootNode = root.NewNode(root, nil, "", &st)
	zero := time.Duration(0)
	srv, err := fs.Mount(mnt, root.RootNode, &fs.Options{EntryTimeout: &zero, AttrTimeout: &zero})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Error(err)
		}
		srv.Wait()
	})
	return mnt
}

func TestRunMetaEINTR(t *testing.T) {
	cfg := MetaConfig{Workers: 2, Files: 20, Dirs: 2, FileSize: 10}
	for fail, want := range map[string]int{
		"":        0, // no interruptions, none counted
		"getattr": 1, // interrupted before it happened: repeated
		"flush":   1, // close interrupted: done, not repeated
	} {
		cfg.Dir = mountEINTR(t, fail)
		phases, err := RunMeta(context.Background(), cfg)
		if err != nil {
			t.Errorf("%q: %v", fail, err)
			continue
		}
		n := 0
		for _, p := range phases {
			n += p.EINTR
		}
		if n != want {
			t.Errorf("%q: %d EINTR counted, want %d", fail, n, want)
		}
	}

	// Interrupted yet done: the retry's EEXIST is the file system's bug.
	cfg.Dir = mountEINTR(t, "create")
	_, err := RunMeta(context.Background(), cfg)
	if !errors.Is(err, errDoneDespiteEINTR) {
		t.Errorf("error %v, want errDoneDespiteEINTR", err)
	}
}
