package systest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/internal/etcdtest"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/volume/rebalance"
	"github.com/gluon-fs/gluon/xlators/dht2"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// dvol is a distributed volume of single-brick sets, each brick a
// "gluon brick" process.
type dvol struct {
	t      *testing.T
	cli    *clientv3.Client
	store  *volume.Store
	top    string
	bricks []*exec.Cmd
	clog   *syncBuffer
}

const dvolName = "dv"

// workloadPause spaces each workload goroutine's operations: the test is
// about files staying whole and reachable while tokens move, not about
// load, and the rebalance shares the machine with it.
const workloadPause = 5 * time.Millisecond

func newDvol(t *testing.T, sets int) *dvol {
	return newDvolReplica(t, sets, 1)
}

// newDvolReplica is a distributed volume of sets sets of replica bricks
// each, every brick a "gluon brick" process.
func newDvolReplica(t *testing.T, sets, replica int) *dvol {
	cli := etcdtest.Start(t)
	d := &dvol{t: t, cli: cli, store: volume.NewStore(cli), top: t.TempDir(), clog: &syncBuffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	v := &volume.Volume{Name: dvolName, Replica: replica}
	for i := range replica * sets {
		v.Bricks = append(v.Bricks, d.brickDir(i))
	}
	if err := d.store.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := d.store.SetState(ctx, dvolName, volume.StateStarted); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	for i := range v.Bricks {
		d.start(i)
	}
	return d
}

func (d *dvol) brickDir(i int) volume.Brick {
	p := filepath.Join(d.top, fmt.Sprintf("b%d", i))
	if err := os.MkdirAll(p, 0o755); err != nil {
		d.t.Fatal(err)
	}
	return volume.Brick{Host: "127.0.0.1", Path: p}
}

func (d *dvol) start(i int) {
	logf, err := os.OpenFile(filepath.Join(d.top, fmt.Sprintf("brick%d.log", i)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(gluonBin, "brick", "--etcd="+d.cli.Endpoints()[0], "--volume="+dvolName,
		"--index="+strconv.Itoa(i), "--listen=127.0.0.1:0", "--lease-ttl="+brickLease.String(), "--log-level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.bricks = append(d.bricks, cmd)
}

// stop ends the bricks; their logs are shown if the test failed.
func (d *dvol) stop() {
	for i, cmd := range d.bricks {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				d.t.Errorf("brick %d: %v", i, err)
			}
		case <-time.After(waitBound):
			cmd.Process.Kill()
			d.t.Errorf("brick %d did not stop within %v", i, waitBound)
			<-done
		}
		if d.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(d.top, fmt.Sprintf("brick%d.log", i)))
			d.t.Logf("brick %d log:\n%s", i, tail(string(b), 40))
		}
	}
	if d.t.Failed() {
		d.t.Logf("client log:\n%s", tail(d.clog.String(), 40))
	}
}

func (d *dvol) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(d.clog, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// open opens the volume as a mount does; Cleanup closes it.
func (d *dvol) open() *client.Volume {
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	v, err := client.Open(ctx, d.cli, dvolName, client.Options{Logger: d.logger()})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { v.Close() })
	return v
}

// content is the deterministic content of file name: its length and
// bytes follow from the name, so a reader can check any file it finds.
func content(name string) []byte {
	sum := sha256.Sum256([]byte(name))
	n := 1 + int(sum[0])<<6 | int(sum[1])>>2 // 1 B to 16 KiB
	return bytes.Repeat(sum[:], n/len(sum)+1)[:n]
}

// workload creates checksummed files in a few directories and reads back
// files it made, through one client graph, until stopped. Every error
// fails the test: files must stay reachable while their tokens move.
type workload struct {
	t     *testing.T
	top   xl.Xlator
	c     *caller
	dirs  []xl.GFID
	files *fileSet
	stop  chan struct{}
	wg    sync.WaitGroup
	errs  chan error
}

// fileSet is what every workload wrote: path -> parent directory index.
type fileSet struct {
	mu    sync.Mutex
	names []string
	dir   map[string]int
}

func (f *fileSet) add(name string, dir int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.names = append(f.names, name)
	f.dir[name] = dir
}

func (f *fileSet) pick(r *rand.Rand) (string, int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.names) == 0 {
		return "", 0, false
	}
	n := f.names[r.IntN(len(f.names))]
	return n, f.dir[n], true
}

func (f *fileSet) all() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.dir))
	for k, v := range f.dir {
		out[k] = v
	}
	return out
}

// dirName is workload directory i, in the volume's root.
func dirName(i int) string { return fmt.Sprintf("dir%02d", i) }

// lookupDirs finds (or makes) the workload's directories.
func lookupDirs(t *testing.T, c *caller, n int) []xl.GFID {
	var out []xl.GFID
	for i := range n {
		ctx := c.ctx(context.Background())
		a, e := c.top.Lookup(ctx, xl.RootGFID, dirName(i))
		if e == syscall.ENOENT {
			a, e = c.top.Mkdir(c.ctx(context.Background()), xl.RootGFID, dirName(i), xl.NewGFID(), 0o755)
		}
		if e != 0 {
			t.Fatalf("directory %s: %v", dirName(i), e)
		}
		out = append(out, a.GFID)
	}
	return out
}

func startWorkload(t *testing.T, top xl.Xlator, files *fileSet, tag string, writers int) *workload {
	c := newCaller(top)
	w := &workload{t: t, top: top, c: c, dirs: lookupDirs(t, c, 12), files: files, stop: make(chan struct{}), errs: make(chan error, 2*writers)}
	for g := range writers {
		w.wg.Go(func() { w.write(fmt.Sprintf("%s-%d", tag, g)) })
		w.wg.Go(func() { w.read(uint64(g)) })
	}
	return w
}

func (w *workload) fail(err error) {
	select {
	case w.errs <- err:
	default:
	}
}

func (w *workload) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *workload) write(tag string) {
	for k := 0; !w.stopped(); k++ {
		i := k % len(w.dirs)
		name := fmt.Sprintf("%s-%05d", tag, k)
		data := content(name)
		ctx := context.Background()
		fd, _, e := w.top.Create(w.c.ctx(ctx), w.dirs[i], name, xl.NewGFID(), syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, 0o644)
		if e != 0 {
			w.fail(fmt.Errorf("create %s/%s: %v", dirName(i), name, e))
			return
		}
		n, e := w.top.Write(w.c.ctx(ctx), fd, data, 0)
		if e == 0 && n != len(data) {
			e = syscall.EIO
		}
		if e2 := w.top.Release(w.c.ctx(ctx), fd); e == 0 {
			e = e2
		}
		if e != 0 {
			w.fail(fmt.Errorf("write %s/%s: %v", dirName(i), name, e))
			return
		}
		w.files.add(name, i)
		time.Sleep(workloadPause)
	}
}

func (w *workload) read(seed uint64) {
	r := rand.New(rand.NewPCG(seed, 42))
	for !w.stopped() {
		name, i, ok := w.files.pick(r)
		if !ok {
			time.Sleep(time.Millisecond)
			continue
		}
		if err := check(w.c, w.dirs[i], i, name); err != nil {
			w.fail(err)
			return
		}
		time.Sleep(workloadPause)
	}
}

// check reads file name of directory i and compares it with its content.
func check(c *caller, dir xl.GFID, i int, name string) error {
	got, err := c.readFile(dir, name)
	if err != nil {
		return fmt.Errorf("in %s: %w", dirName(i), err)
	}
	if !bytes.Equal(got, content(name)) {
		return fmt.Errorf("%s/%s: %d bytes differ from the %d written", dirName(i), name, len(got), len(content(name)))
	}
	return nil
}

// end stops the workload and fails the test on its first error.
func (w *workload) end() {
	close(w.stop)
	w.wg.Wait()
	select {
	case err := <-w.errs:
		w.t.Errorf("workload: %v", err)
	default:
	}
}

// TestDHT2RebalanceUnderLoad adds a set to a distributed volume while a
// workload writes and reads checksummed files, rebalances while it goes
// on, and checks that nothing was lost or corrupted, every file stayed
// readable, and the tokens end up spread evenly.
func TestDHT2RebalanceUnderLoad(t *testing.T) {
	t.Parallel()
	d := newDvol(t, 2)
	files := &fileSet{dir: map[string]int{}}
	w := startWorkload(t, d.open().Top, files, "a", 2)

	// Add a set while the workload runs; the mounted client reaches it.
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitBound)
	defer cancel()
	if _, err := d.store.AddBricks(ctx, dvolName, []volume.Brick{d.brickDir(2)}); err != nil {
		t.Fatal(err)
	}
	d.start(2)

	// Under the race detector a token takes tens of milliseconds to move
	// (all of a rebalance, minutes): there the rebalance is stopped after
	// its first tokens, which must leave everything whole too.
	stopped := make(chan struct{})
	if raceEnabled {
		go func() {
			defer close(stopped)
			for ctx.Err() == nil {
				if r, err := d.store.Rebalance(ctx, dvolName); err == nil && r != nil && r.TokensMoved >= 100 {
					if _, err := d.store.StopRebalance(ctx, dvolName, volume.KindRebalance); err != nil {
						t.Errorf("stop: %v", err)
					}
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	} else {
		close(stopped)
	}
	r, err := rebalance.Run(ctx, d.cli, dvolName, volume.KindRebalance, 0, rebalance.Options{Logger: d.logger(), SaveEvery: 100 * time.Millisecond})
	<-stopped
	if err != nil {
		t.Fatalf("rebalance: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // a little load on the new layout too
	w.end()
	if t.Failed() {
		return
	}
	t.Logf("rebalance: %d tokens, %d files, %d bytes in %v; %d files written meanwhile",
		r.TokensMoved, r.Files, r.Bytes, r.Elapsed, len(files.all()))
	l, err := dht2.NewEtcdStore(d.cli, dvolName).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if raceEnabled {
		if r.State != volume.RebalanceStopped || r.TokensMoved < 100 || l.Counts()[2] != r.TokensMoved {
			t.Errorf("stopped rebalance %+v; layout counts %v", r, l.Counts())
		}
	} else {
		if r.State != volume.RebalanceCompleted || r.TokensMoved != r.TokensTotal || r.TokensTotal < dht2.Tokens/3-1 {
			t.Errorf("rebalance ended %+v", r)
		}
		for s, n := range l.Counts() {
			if n < dht2.Tokens/3 || n > dht2.Tokens/3+1 {
				t.Errorf("set %d homes %d tokens, want %d or %d", s, n, dht2.Tokens/3, dht2.Tokens/3+1)
			}
		}
	}
	// Every file, through a fresh client.
	c := newCaller(d.open().Top)
	dirs := lookupDirs(t, c, 12)
	for name, i := range files.all() {
		if err := check(c, dirs[i], i, name); err != nil {
			t.Error(err)
		}
	}
	if raceEnabled {
		return
	}
	// The new set holds its share of the files now.
	onNew := 0
	filepath.WalkDir(d.brickDir(2).Path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.IsDir() && e.Name() == ".gluon" {
			return filepath.SkipDir
		}
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.Size() > 0 {
			onNew++
		}
		return nil
	})
	if onNew == 0 {
		t.Error("no file moved to the new set")
	}
	if st, err := d.store.Rebalance(ctx, dvolName); err != nil || st.State != volume.RebalanceCompleted {
		t.Errorf("stored record %+v, %v", st, err)
	}
	// Balanced already: a second rebalance moves nothing.
	r, err = rebalance.Run(ctx, d.cli, dvolName, volume.KindRebalance, 0, rebalance.Options{Logger: d.logger()})
	if err != nil || r.TokensTotal != 0 || r.State != volume.RebalanceCompleted {
		t.Errorf("second rebalance: %+v, %v", r, err)
	}
}
