package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Metadata workload phases, in the order RunMeta runs them.
const (
	MetaCreate = "meta-create" // open(O_CREAT|O_EXCL) + write + close
	MetaStat   = "meta-stat"   // stat
	MetaLs     = "meta-ls"     // readdir + lstat of every entry, like ls -l
	MetaRead   = "meta-read"   // open + read + close
	MetaUnlink = "meta-unlink" // unlink
)

// MetaPhases lists the phases of the metadata workload in order.
var MetaPhases = []string{MetaCreate, MetaStat, MetaLs, MetaRead, MetaUnlink}

// MetaConfig configures RunMeta.
type MetaConfig struct {
	Dir      string // existing directory; RunMeta works in a new subdirectory and removes it
	Workers  int    // parallel workers; each owns an equal share of files and directories
	Files    int    // small files in total
	Dirs     int    // directories the files are spread over
	FileSize int    // bytes per file
	// DropCaches syncs and drops the kernel's page, dentry and inode
	// caches before meta-stat and meta-read, so that they start cold
	// (needs root).
	DropCaches bool
	// CreateFor, if positive, caps meta-create: it stops creating after
	// this long, and the later phases work on the files created by then.
	// It bounds the workload's time on a slow file system.
	CreateFor time.Duration
	// Observe, if set, is called when a phase starts; the function it
	// returns is called when the phase ends. Bench uses it to measure the
	// CPU and memory of the file system's processes per phase.
	Observe func(phase string) (done func())
}

// MetaPhase is the outcome of one phase.
type MetaPhase struct {
	Name    string
	Ops     int           // operations (files; for meta-ls, directory entries)
	Bytes   int64         // payload written or read
	Elapsed time.Duration // wall time of the whole phase, all workers
	// P50 and P99 are per operation; for meta-ls they are per directory
	// (one readdir plus an lstat of each entry).
	P50, P99 time.Duration
	// EINTR counts system calls that failed with EINTR: repeated, or
	// for close, taken as done.
	EINTR int
}

// OpsPerSec is the phase's throughput over all workers.
func (p MetaPhase) OpsPerSec() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Ops) / p.Elapsed.Seconds()
}

func (c MetaConfig) validate() error {
	switch {
	case c.Workers < 1:
		return fmt.Errorf("meta: workers %d < 1", c.Workers)
	case c.Files < 1:
		return fmt.Errorf("meta: files %d < 1", c.Files)
	case c.Dirs < 1:
		return fmt.Errorf("meta: dirs %d < 1", c.Dirs)
	case c.FileSize < 0:
		return fmt.Errorf("meta: file size %d < 0", c.FileSize)
	}
	return nil
}

// RunMeta runs the metadata workload: Workers goroutines create, stat,
// list (readdir + lstat), read and unlink Files small files spread over
// Dirs directories. Every phase waits for all workers of the previous one.
// It checks what it reads back, so a file system that loses entries or
// bytes fails the run instead of looking fast.
func RunMeta(ctx context.Context, cfg MetaConfig) (_ []MetaPhase, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp(cfg.Dir, "meta-")
	if err != nil {
		return nil, err
	}
	defer func() {
		// After a successful run only the empty root is left; after a
		// failure this removes whatever the phases left behind.
		if rerr := os.RemoveAll(root); rerr != nil && err == nil {
			err = rerr
		}
	}()
	dirs := make([]string, cfg.Dirs)
	for i := range dirs {
		dirs[i] = filepath.Join(root, fmt.Sprintf("d%04d", i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			return nil, err
		}
	}
	// Directories are filled one after another, perDir files each, and
	// worker w owns directories w, w+Workers, ...: a meta-create cut short
	// by CreateFor leaves full directories (and one partial one per
	// worker), so that meta-ls lists directories of the same size on
	// every target.
	perDir := (cfg.Files + cfg.Dirs - 1) / cfg.Dirs
	files := make([][]string, cfg.Workers) // per worker, in creation order
	for i := range cfg.Files {
		d := i / perDir
		files[d%cfg.Workers] = append(files[d%cfg.Workers], filepath.Join(dirs[d], fmt.Sprintf("f%07d", i)))
	}
	payload := make([]byte, cfg.FileSize)
	for i := range payload {
		payload[i] = byte(i*7 + 1)
	}

	m := &metaRun{cfg: cfg}
	// mine[w] is how many of files[w] a phase works on: all of them for
	// meta-create, then those it created.
	mine := make([]int, cfg.Workers)
	for w := range files {
		mine[w] = len(files[w])
	}
	var deadline time.Time // zero: no cap
	perFile := func(op func(path string) (int64, error)) phaseFunc {
		return func(ctx context.Context, w int, lat *[]time.Duration) (int, int64, error) {
			var n int
			var nb int64
			for k := range mine[w] {
				if err := ctx.Err(); err != nil {
					return n, nb, err
				}
				t0 := time.Now()
				if k > 0 && !deadline.IsZero() && t0.After(deadline) {
					break
				}
				b, err := op(files[w][k])
				if err != nil {
					return n, nb, err
				}
				*lat = append(*lat, time.Since(t0))
				n++
				nb += b
			}
			return n, nb, nil
		}
	}

	create := perFile(func(p string) (int64, error) { return m.createFile(p, payload) })
	if cfg.CreateFor > 0 {
		deadline = time.Now().Add(cfg.CreateFor)
	}
	if err := m.phase(ctx, MetaCreate, false, func(ctx context.Context, w int, lat *[]time.Duration) (int, int64, error) {
		n, nb, err := create(ctx, w, lat)
		mine[w] = n // the later phases work on what was created
		return n, nb, err
	}); err != nil {
		return nil, err
	}
	deadline = time.Time{}
	total := 0
	for _, n := range mine {
		total += n
	}
	if err := m.phase(ctx, MetaStat, cfg.DropCaches, perFile(func(p string) (int64, error) {
		var st unix.Stat_t
		if _, err := m.sys(func() error { return unix.Stat(p, &st) }); err != nil {
			return 0, &os.PathError{Op: "stat", Path: p, Err: err}
		}
		if st.Size != int64(cfg.FileSize) {
			return 0, fmt.Errorf("stat %s: size %d, want %d", p, st.Size, cfg.FileSize)
		}
		return 0, nil
	})); err != nil {
		return nil, err
	}
	if err := m.phase(ctx, MetaLs, false, func(ctx context.Context, w int, lat *[]time.Duration) (int, int64, error) {
		var n int
		listed := ""
		for _, f := range files[w][:mine[w]] {
			dir := filepath.Dir(f)
			if dir == listed {
				continue
			}
			listed = dir
			if err := ctx.Err(); err != nil {
				return n, 0, err
			}
			t0 := time.Now()
			k, err := m.listLong(dir)
			if err != nil {
				return n, 0, err
			}
			*lat = append(*lat, time.Since(t0))
			n += k
		}
		return n, 0, nil
	}); err != nil {
		return nil, err
	}
	if got := m.phases[len(m.phases)-1].Ops; got != total {
		return nil, fmt.Errorf("%s: listed %d entries, created %d files", MetaLs, got, total)
	}
	if err := m.phase(ctx, MetaRead, cfg.DropCaches, func(ctx context.Context, w int, lat *[]time.Duration) (int, int64, error) {
		buf := make([]byte, cfg.FileSize+1) // one per worker
		return perFile(func(p string) (int64, error) { return m.readFile(p, buf, cfg.FileSize) })(ctx, w, lat)
	}); err != nil {
		return nil, err
	}
	if err := m.phase(ctx, MetaUnlink, false, perFile(func(p string) (int64, error) {
		interrupted, err := m.sys(func() error { return unix.Unlink(p) })
		if errors.Is(err, unix.ENOENT) && interrupted {
			return 0, fmt.Errorf("unlink %s: %w", p, errDoneDespiteEINTR)
		}
		if err != nil {
			return 0, &os.PathError{Op: "unlink", Path: p, Err: err}
		}
		return 0, nil
	})); err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if err := os.Remove(d); err != nil {
			return nil, err
		}
	}
	return m.phases, nil
}

// phaseFunc is one worker's share of a phase: it returns the operations
// done and the payload bytes moved, and appends one latency per operation
// (or per directory) to lat.
type phaseFunc func(ctx context.Context, w int, lat *[]time.Duration) (ops int, nbytes int64, err error)

type metaRun struct {
	cfg    MetaConfig
	phases []MetaPhase
	eintr  atomic.Int64 // interrupted system calls, all phases
}

// errDoneDespiteEINTR reports a file system that failed a call with EINTR
// although the call took effect, so that the retry every careful program
// makes fails: a correctness bug, not a benchmark artefact.
var errDoneDespiteEINTR = errors.New("an earlier attempt failed with EINTR but took effect (the file system must not report EINTR for an operation it completed)")

// sys runs a system call, repeating it while it fails with EINTR, as Go's
// os package and Python do. Go programs see EINTR more than most: the
// runtime preempts goroutines with signals, and a FUSE server may answer
// the kernel's INTERRUPT request with EINTR. It reports whether the call
// was interrupted at least once.
func (m *metaRun) sys(f func() error) (interrupted bool, err error) {
	for {
		if err = f(); !errors.Is(err, unix.EINTR) {
			return interrupted, err
		}
		interrupted = true
		m.eintr.Add(1)
	}
}

// phase runs fn on every worker and records the merged latencies. A failing
// worker cancels the others.
func (m *metaRun) phase(ctx context.Context, name string, drop bool, fn phaseFunc) error {
	if drop {
		if err := dropCaches(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if m.cfg.Observe != nil {
		done := m.cfg.Observe(name)
		defer done()
	}
	lats := make([][]time.Duration, m.cfg.Workers)
	ops := make([]int, m.cfg.Workers)
	nbytes := make([]int64, m.cfg.Workers)
	g, gctx := errgroup.WithContext(ctx)
	eintr0 := m.eintr.Load()
	t0 := time.Now()
	for w := range m.cfg.Workers {
		g.Go(func() error {
			var err error
			ops[w], nbytes[w], err = fn(gctx, w, &lats[w])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	p := MetaPhase{Name: name, Elapsed: time.Since(t0), EINTR: int(m.eintr.Load() - eintr0)}
	var all []time.Duration
	for w := range m.cfg.Workers {
		p.Ops += ops[w]
		p.Bytes += nbytes[w]
		all = append(all, lats[w]...)
	}
	slices.Sort(all)
	p.P50, p.P99 = percentile(all, 50), percentile(all, 99)
	m.phases = append(m.phases, p)
	return nil
}

func (m *metaRun) createFile(p string, payload []byte) (int64, error) {
	var fd int
	interrupted, err := m.sys(func() (err error) {
		fd, err = unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		return err
	})
	if errors.Is(err, unix.EEXIST) && interrupted {
		return 0, fmt.Errorf("create %s: %w", p, errDoneDespiteEINTR)
	}
	if err != nil {
		return 0, &os.PathError{Op: "create", Path: p, Err: err}
	}
	var n int
	for n < len(payload) && err == nil {
		var k int
		_, err = m.sys(func() (err error) {
			k, err = unix.Write(fd, payload[n:])
			return err
		})
		n += k
	}
	cerr := unix.Close(fd)
	if err != nil {
		return 0, &os.PathError{Op: "write", Path: p, Err: err}
	}
	if errors.Is(cerr, unix.EINTR) {
		// Linux has released the descriptor, so close must not be
		// repeated; the stat and read phases check the data arrived.
		m.eintr.Add(1)
		cerr = nil
	}
	// close reports deferred write errors on network file systems.
	if cerr != nil {
		return 0, &os.PathError{Op: "close", Path: p, Err: cerr}
	}
	return int64(n), nil
}

// readFile reads p whole into buf (one byte larger than want, to notice a
// file that grew) and checks its length.
func (m *metaRun) readFile(p string, buf []byte, want int) (int64, error) {
	var fd int
	_, err := m.sys(func() (err error) {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		var k int
		_, err := m.sys(func() (err error) {
			k, err = unix.Read(fd, buf[n:])
			return err
		})
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: p, Err: err}
		}
		if k == 0 {
			break
		}
		n += k
	}
	if n != want {
		return 0, fmt.Errorf("read %s: got %d bytes, want %d", p, n, want)
	}
	return int64(n), nil
}

// listLong does what `ls -l` does to a directory: read all names, then
// lstat each. It returns the number of entries.
func (m *metaRun) listLong(dir string) (int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	for _, name := range names {
		p := filepath.Join(dir, name)
		if _, err := m.sys(func() error { return unix.Lstat(p, &st) }); err != nil {
			return 0, &os.PathError{Op: "lstat", Path: p, Err: err}
		}
	}
	return len(names), nil
}

// dropCaches writes back dirty data and empties the kernel's page, dentry
// and inode caches.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches (needs root): %w", err)
	}
	return nil
}

// percentile returns the nearest-rank percentile p of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(float64(len(sorted))*p/100+0.999999999) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}
