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
	MetaLs     = "meta-ls"     // what ls -l does to each directory (listLong)
	MetaFind   = "meta-find"   // what find does to the whole tree (walkFind)
	MetaLsBig  = "meta-ls-big" // ls -l of one directory of MetaConfig.Big files; only if Big > 0
	MetaRead   = "meta-read"   // open + read + close
	MetaUnlink = "meta-unlink" // unlink
)

// MetaPhases lists the phases of the metadata workload in order, as it
// runs by default: MetaLsBig, which runs only when MetaConfig.Big is
// positive, is not among them (see MetaConfig.Phases).
var MetaPhases = []string{MetaCreate, MetaStat, MetaLs, MetaFind, MetaRead, MetaUnlink}

// MetaConfig configures RunMeta.
type MetaConfig struct {
	Dir      string // existing directory; RunMeta works in a new subdirectory and removes it
	Workers  int    // parallel workers; worker w owns directories w, w+Workers, ... and their files
	Files    int    // small files in total
	Dirs     int    // directories the files are spread over
	FileSize int    // bytes per file
	// Big, if positive, adds meta-ls-big: after meta-find, Workers
	// workers create Big more files in one directory of their own
	// (untimed), and ls -l of that directory is timed on its own, cold.
	// The files are removed (untimed) before meta-read.
	Big int
	// DropCaches syncs and drops the kernel's page, dentry and inode
	// caches before every phase that reads (all but meta-create and
	// meta-unlink), so that they start cold (needs root), and waits a
	// little over a second, untimed, for GlusterFS's client-side
	// metadata cache to expire too.
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
	Name string
	// Ops counts files; for meta-ls and meta-ls-big the entries listed,
	// for meta-find the entries found (files and directories).
	Ops     int
	Bytes   int64         // payload written or read
	Elapsed time.Duration // wall time of the whole phase, all workers
	// P50 and P99 are per file, except: for meta-ls per directory (what
	// ls -l asks of it and of each of its entries), for meta-find per
	// directory (lstat, open, fstat, getdents), for meta-ls-big per entry
	// (its lstat and extended attributes).
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
	case c.Big < 0:
		return fmt.Errorf("meta: big directory of %d files < 0", c.Big)
	case c.CreateFor < 0:
		return fmt.Errorf("meta: create cap %v < 0", c.CreateFor)
	}
	return nil
}

// Phases lists the phases RunMeta runs with c, in order, in a new slice.
func (c MetaConfig) Phases() []string {
	phases := slices.Clone(MetaPhases)
	if c.Big <= 0 {
		return phases
	}
	return slices.Insert(phases, slices.Index(phases, MetaFind)+1, MetaLsBig)
}

// RunMeta runs the metadata workload: Workers goroutines create, stat,
// list (as ls -l does), read and unlink Files small files spread over Dirs
// directories; after the listing, one goroutine walks the whole tree as
// find does, and, if Big is positive, lists a directory of Big files as
// ls -l does. Every phase waits for all workers of the previous one.
// It checks what it reads back, so a file system that loses entries or
// bytes fails the run instead of looking fast.
func RunMeta(ctx context.Context, cfg MetaConfig) ([]MetaPhase, error) {
	return runMeta(ctx, cfg, coldStart)
}

// runMeta is RunMeta with drop called before each phase that starts cold,
// if cfg.DropCaches.
func runMeta(ctx context.Context, cfg MetaConfig, drop func(context.Context) error) (_ []MetaPhase, err error) {
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
		files[d%cfg.Workers] = append(files[d%cfg.Workers], filepath.Join(dirs[d], fileName(i)))
	}
	payload := make([]byte, cfg.FileSize)
	for i := range payload {
		payload[i] = byte(i*7 + 1)
	}

	m := &metaRun{cfg: cfg, drop: drop}
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
	if err := m.phase(ctx, MetaCreate, cfg.Workers, false, func(ctx context.Context, w int, lat *[]time.Duration) (int, int64, error) {
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
	if err := m.phase(ctx, MetaStat, cfg.Workers, cfg.DropCaches, perFile(func(p string) (int64, error) {
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
	listed := make([][]metaDir, cfg.Workers) // per worker, the directories it filled
	for w := range listed {
		listed[w] = byDir(files[w][:mine[w]])
	}
	if err := m.phase(ctx, MetaLs, cfg.Workers, cfg.DropCaches, func(ctx context.Context, w int, lat *[]time.Duration) (int, int64, error) {
		var n int
		for _, d := range listed[w] {
			if err := ctx.Err(); err != nil {
				return n, 0, err
			}
			t0 := time.Now()
			if err := m.listLong(d.path, d.names, nil); err != nil {
				return n, 0, err
			}
			*lat = append(*lat, time.Since(t0))
			n += len(d.names)
		}
		return n, 0, nil
	}); err != nil {
		return nil, err
	}
	if err := m.phase(ctx, MetaFind, 1, cfg.DropCaches, func(ctx context.Context, _ int, lat *[]time.Duration) (int, int64, error) {
		var c findCount
		if err := m.walkFind(ctx, unix.AT_FDCWD, root, root, &c, lat); err != nil {
			return 0, 0, err
		}
		// Every directory exists, even those a capped meta-create did
		// not reach.
		if c.dirs != cfg.Dirs || c.files != total || c.other != 0 {
			return 0, 0, fmt.Errorf("find %s: %d directories, %d files and %d other entries, want %d directories and %d files",
				root, c.dirs, c.files, c.other, cfg.Dirs, total)
		}
		return c.dirs + c.files, 0, nil
	}); err != nil {
		return nil, err
	}
	if cfg.Big > 0 {
		if err := m.lsBig(ctx, filepath.Join(root, "big"), payload); err != nil {
			return nil, err
		}
	}
	if err := m.phase(ctx, MetaRead, cfg.Workers, cfg.DropCaches, func(ctx context.Context, w int, lat *[]time.Duration) (int, int64, error) {
		buf := make([]byte, cfg.FileSize+1) // one per worker
		return perFile(func(p string) (int64, error) { return m.readFile(p, buf, cfg.FileSize) })(ctx, w, lat)
	}); err != nil {
		return nil, err
	}
	if err := m.phase(ctx, MetaUnlink, cfg.Workers, false, perFile(func(p string) (int64, error) {
		return 0, m.unlink(p)
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

// metaDir is a directory and the names it should hold, sorted.
type metaDir struct {
	path  string
	names []string
}

// byDir groups paths, which name their directories one after another, by
// directory. The names sort as they were created (fixed-width numbers).
func byDir(paths []string) []metaDir {
	var ds []metaDir
	for _, p := range paths {
		dir, name := filepath.Split(p)
		dir = filepath.Clean(dir)
		if len(ds) == 0 || ds[len(ds)-1].path != dir {
			ds = append(ds, metaDir{path: dir})
		}
		ds[len(ds)-1].names = append(ds[len(ds)-1].names, name)
	}
	return ds
}

// lsBig runs meta-ls-big: the workers create Big files in dir (untimed),
// one goroutine lists it as ls -l does (timed, caches dropped first), and
// the workers remove it again (untimed), so that meta-read and
// meta-unlink see the same tree as without it.
func (m *metaRun) lsBig(ctx context.Context, dir string, payload []byte) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("%s: %w", MetaLsBig, err)
	}
	names := make([]string, m.cfg.Big)
	for i := range names {
		names[i] = fileName(i)
	}
	// Worker w owns names w, w+Workers, ...
	each := func(op func(p string) error) error {
		return fanOut(ctx, m.cfg.Workers, func(ctx context.Context, w int) error {
			for i := w; i < len(names); i += m.cfg.Workers {
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := op(filepath.Join(dir, names[i])); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := each(func(p string) error {
		_, err := m.createFile(p, payload)
		return err
	}); err != nil {
		return fmt.Errorf("%s: create: %w", MetaLsBig, err)
	}
	if err := m.phase(ctx, MetaLsBig, 1, m.cfg.DropCaches, func(ctx context.Context, _ int, lat *[]time.Duration) (int, int64, error) {
		if err := m.listLong(dir, names, lat); err != nil {
			return 0, 0, err
		}
		return len(names), 0, nil
	}); err != nil {
		return err
	}
	if err := each(m.unlink); err != nil {
		return fmt.Errorf("%s: remove: %w", MetaLsBig, err)
	}
	return os.Remove(dir)
}

// fileName names file i of the workload; the fixed width makes names
// sort in the order they were made.
func fileName(i int) string { return fmt.Sprintf("f%07d", i) }

// fanOut runs fn on workers goroutines (w = 0 ... workers-1) and waits
// for them all; the first error cancels the others' ctx.
func fanOut(ctx context.Context, workers int, fn func(ctx context.Context, w int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	for w := range workers {
		g.Go(func() error { return fn(gctx, w) })
	}
	return g.Wait()
}

// phaseFunc is one worker's share of a phase: it returns the operations
// done and the payload bytes moved, and appends one latency per operation
// (or per directory) to lat.
type phaseFunc func(ctx context.Context, w int, lat *[]time.Duration) (ops int, nbytes int64, err error)

type metaRun struct {
	cfg    MetaConfig
	drop   func(context.Context) error // before a cold phase: coldStart but in tests
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

// phase runs fn on workers goroutines (w = 0 ... workers-1) and records
// the merged latencies. A failing worker cancels the others.
func (m *metaRun) phase(ctx context.Context, name string, workers int, drop bool, fn phaseFunc) error {
	if drop {
		if err := m.drop(ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if m.cfg.Observe != nil {
		done := m.cfg.Observe(name)
		defer done()
	}
	lats := make([][]time.Duration, workers)
	ops := make([]int, workers)
	nbytes := make([]int64, workers)
	eintr0 := m.eintr.Load()
	t0 := time.Now()
	if err := fanOut(ctx, workers, func(ctx context.Context, w int) error {
		var err error
		ops[w], nbytes[w], err = fn(ctx, w, &lats[w])
		return err
	}); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	p := MetaPhase{Name: name, Elapsed: time.Since(t0), EINTR: int(m.eintr.Load() - eintr0)}
	var all []time.Duration
	for w := range workers {
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

func (m *metaRun) unlink(p string) error {
	interrupted, err := m.sys(func() error { return unix.Unlink(p) })
	if errors.Is(err, unix.ENOENT) && interrupted {
		return fmt.Errorf("unlink %s: %w", p, errDoneDespiteEINTR)
	}
	if err != nil {
		return &os.PathError{Op: "unlink", Path: p, Err: err}
	}
	return nil
}

// listLong does what GNU ls -l does to a directory (coreutils 9.1, seen
// with strace): lstat the directory and ask for its SELinux label and
// ACLs, read all its names and sort them, then lstat each entry and ask
// for its label (lgetxattr security.selinux) and its access ACL (getxattr
// system.posix_acl_access). Like ls, it stops asking for an attribute
// once the file system says it does not support it (ENOTSUP), and keeps
// asking one that answers ENODATA. gluon answers ENOTSUP for both, and so
// does GlusterFS for ACLs without -o acl; but GlusterFS without --selinux
// answers security.selinux with ENODATA (fuse_getxattr, from its FUSE
// client without asking the bricks), so on GlusterFS ls -l, and this,
// make one more FUSE call per entry. Through FUSE each of these calls may
// be a round trip to the daemon: that is what a user of ls -l waits for.
//
// It checks that dir holds exactly the names want (sorted), each a
// regular file of FileSize bytes. If lat is not nil, it gets the latency
// of each entry (its lstat and attributes).
func (m *metaRun) listLong(dir string, want []string, lat *[]time.Duration) error {
	var xa lsXattrs
	var st unix.Stat_t
	if err := m.lstatLong(dir, &st, &xa); err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	// As ls: each getdents batch's entries are stat'ed before the next
	// batch is read. The order matters on FUSE: a kernel in readdirplus
	// "auto" mode (GlusterFS's) asks for attributes with the next batch
	// only if the last one's entries were looked up meanwhile, so reading
	// every name first would cost GlusterFS a LOOKUP per entry that ls
	// does not pay.
	buf := make([]byte, lsDirentBuf)
	names := make([]string, 0, len(want))
	var wrong error // a wrong entry: reported unless the names are wrong
	for {
		var n int
		if _, err := m.sys(func() (err error) { n, err = unix.Getdents(fd, buf); return err }); err != nil {
			return &os.PathError{Op: "getdents", Path: dir, Err: err}
		}
		if n == 0 {
			break
		}
		start := len(names)
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
		for _, name := range names[start:] {
			t0 := time.Now()
			p := filepath.Join(dir, name)
			if err := m.lstatLong(p, &st, &xa); err != nil {
				return err
			}
			if lat != nil {
				*lat = append(*lat, time.Since(t0))
			}
			if wrong == nil && (st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != int64(m.cfg.FileSize)) {
				wrong = fmt.Errorf("ls -l %s: mode %#o, size %d; want a regular file of %d bytes", p, st.Mode, st.Size, m.cfg.FileSize)
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		return fmt.Errorf("ls -l %s: %d entries, want %d: %s", dir, len(names), len(want), diffNames(names, want))
	}
	return wrong
}

// lsDirentBuf is the getdents buffer of glibc's readdir, which ls uses.
const lsDirentBuf = 32 << 10

// lsXattrs remembers which extended attributes the file system does not
// support, as ls does for the rest of its run.
type lsXattrs struct{ noLabel, noACL bool }

// lstatLong is what ls -l asks about one file: lstat it, then its SELinux
// label and ACLs unless they are known to be unsupported.
func (m *metaRun) lstatLong(p string, st *unix.Stat_t, xa *lsXattrs) error {
	if _, err := m.sys(func() error { return unix.Lstat(p, st) }); err != nil {
		return &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	if !xa.noLabel {
		var label [255]byte // libselinux's first guess
		_, err := m.sys(func() error {
			_, err := unix.Lgetxattr(p, "security.selinux", label[:])
			return err
		})
		if xa.noLabel, err = xattrUnsupported(err); err != nil {
			return &os.PathError{Op: "lgetxattr security.selinux", Path: p, Err: err}
		}
	}
	if xa.noACL {
		return nil
	}
	// As gnulib's file_has_acl, which ls uses: a directory is asked for
	// its default ACL only if it has no access ACL.
	none, err := m.aclNone(p, "system.posix_acl_access", xa)
	if err != nil || !none || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return err
	}
	_, err = m.aclNone(p, "system.posix_acl_default", xa)
	return err
}

// aclNone asks for the size of p's ACL name, as ls does, and reports
// whether p has none (ENODATA or an empty value). ENOTSUP sets xa.noACL.
func (m *metaRun) aclNone(p, name string, xa *lsXattrs) (bool, error) {
	var n int
	_, err := m.sys(func() (err error) {
		n, err = unix.Getxattr(p, name, nil)
		return err
	})
	none := errors.Is(err, unix.ENODATA) || err == nil && n == 0
	if xa.noACL, err = xattrUnsupported(err); err != nil {
		return false, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
	}
	return none, nil
}

// xattrUnsupported sorts a getxattr outcome as ls does: a value, none
// (ENODATA) or one larger than the buffer (ERANGE) is an answer; ENOTSUP
// means the file system has no such attributes; anything else is an error.
func xattrUnsupported(err error) (bool, error) {
	switch {
	case err == nil, errors.Is(err, unix.ENODATA), errors.Is(err, unix.ERANGE):
		return false, nil
	case errors.Is(err, unix.ENOTSUP):
		return true, nil
	}
	return false, err
}

// diffNames describes the first difference between two sorted lists of
// names.
func diffNames(got, want []string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	switch {
	case i < len(want) && (i == len(got) || want[i] < got[i]):
		return fmt.Sprintf("%q missing", want[i])
	case i < len(got):
		return fmt.Sprintf("%q unexpected", got[i])
	}
	return "same names"
}

// findCount counts the entries walkFind saw, by type.
type findCount struct{ dirs, files, other int }

// walkFind does what GNU find DIR does with no predicates (findutils 4.9,
// seen with strace): for each directory an lstat by name relative to its
// parent, an open relative to it, an fstat to check that it opened the
// directory it looked at, then getdents to the end. It tells directories
// from other entries by the type getdents reports (d_type) and, like
// find, stats no entry unless the file system leaves the type unknown
// (os.File.ReadDir then lstats it). It descends depth first and appends
// the latency of each directory (without its subdirectories) to lat.
func (m *metaRun) walkFind(ctx context.Context, parent int, name, path string, c *findCount, lat *[]time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t0 := time.Now()
	var st, fst unix.Stat_t
	if _, err := m.sys(func() error { return unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	var fd int
	if _, err := m.sys(func() (err error) {
		fd, err = unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		return err
	}); err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if _, err := m.sys(func() error { return unix.Fstat(fd, &fst) }); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if fst.Dev != st.Dev || fst.Ino != st.Ino {
		return fmt.Errorf("find %s: opened inode %d, lstat said %d", path, fst.Ino, st.Ino)
	}
	ents, err := f.ReadDir(-1)
	if err != nil {
		return err
	}
	*lat = append(*lat, time.Since(t0))
	for _, e := range ents {
		switch {
		case e.IsDir():
			c.dirs++
			if err := m.walkFind(ctx, fd, e.Name(), filepath.Join(path, e.Name()), c, lat); err != nil {
				return err
			}
		case e.Type().IsRegular():
			c.files++
		default:
			c.other++
		}
	}
	return nil
}

// coldSettle is a little over the timeout of GlusterFS's md-cache
// (performance.md-cache-timeout, 1 s by default), which keeps stat and
// extended attribute answers in the client process, out of reach of
// drop_caches: a phase timed right after the drop would have its first
// second answered from there on GlusterFS alone.
const coldSettle = 1100 * time.Millisecond

// coldStart drops the kernel caches and waits coldSettle, untimed, so
// that the next phase starts cold on every target.
func coldStart(ctx context.Context) error {
	if err := dropCaches(); err != nil {
		return err
	}
	t := time.NewTimer(coldSettle)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
