package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// fioWorkload is a fio workload: its job file jobs/<name>.fio, the files
// it works on, and how they are prepared before the measured run.
// Preparation is not timed.
type fioWorkload struct {
	name string
	data dataSet // the laid-out files it uses (dataNone: a new file in its scratch directory)
	drop bool    // sync and drop the kernel caches first (root)
	warm bool    // then read the files once, so that the measured run finds them cached
}

// dataSet names the files a workload shares with others. They are laid
// out once per target, before the first round (see layoutData), so that
// no workload pays, or waits, for writing its input.
type dataSet int

const (
	dataNone dataSet = iota
	dataRead         // "read", ReadSize bytes: seqread-*, randread-*
	dataRW           // "rw.0" ... "rw.<Jobs-1>", Size bytes each: randwrite* (rw.0), randrw
)

// fioWorkloads are the fio jobs of the reference suite the 2026-11-21
// baseline was measured with, in the order a round runs them.
var fioWorkloads = []fioWorkload{
	{name: "seqwrite"}, // one pass of 1 MiB writes into a new file
	{name: "seqread-cold", data: dataRead, drop: true},             // one pass of 1 MiB reads
	{name: "seqread-warm", data: dataRead, drop: true, warm: true}, // the same after a cold pass
	{name: "randread-cold", data: dataRead, drop: true},            // one pass of 4 KiB random reads
	{name: "randread-aio-direct", data: dataRead, drop: true},      // O_DIRECT, libaio, queue depth 16
	{name: "randwrite", data: dataRW},                              // 4 KiB random writes
	{name: "randwrite-fsync", data: dataRW},                        // fsync after each
	{name: "randrw", data: dataRW, drop: true},                     // 70/30, Jobs parallel jobs
}

func fioWorkloadNamed(name string) (fioWorkload, bool) {
	for _, w := range fioWorkloads {
		if w.name == name {
			return w, true
		}
	}
	return fioWorkload{}, false
}

// WorkloadMeta selects the metadata workload (RunMeta); it reports one
// result per phase it runs (MetaConfig.Phases).
const WorkloadMeta = "meta"

// Workloads lists every workload name Config.Workloads accepts, in the
// order a round runs them.
func Workloads() []string {
	var names []string
	for _, w := range fioWorkloads {
		names = append(names, w.name)
	}
	return append(names, WorkloadMeta)
}

// dropsCaches reports whether workload w drops the kernel caches unless
// Config.KeepCaches is set.
func dropsCaches(w string) bool {
	fw, ok := fioWorkloadNamed(w)
	return w == WorkloadMeta || ok && fw.drop
}

// Defaults for the zero fields of Config. The workloads and their fio
// options are those of the reference suite the 2026-11-21 baseline was
// measured with (/work/shared/bench/fio-suite.sh); the durations and sizes
// are smaller, so that a three-target comparison (gluon and GlusterFS
// replica 3, loopback) finishes in about 10 minutes on a 2-core machine.
// See the package documentation for why these values.
const (
	DefaultRounds       = 2
	DefaultRuntime      = 6 * time.Second
	DefaultSize         = "128M"
	DefaultJobs         = 4
	DefaultMetaWorkers  = 1
	DefaultMetaFiles    = 2000
	DefaultMetaDirs     = 20
	DefaultMetaFileSize = 1024
)

// Config configures Run. Only Targets is required.
type Config struct {
	// Targets to compare; the first is the baseline of the ratio column.
	// Each is one of:
	//   local                               a temporary directory in WorkDir (the bare disk)
	//   loopback                            go-fuse loopback mount of a temporary directory, in this process
	//   gluon:replica=N[,distribute=M]      a gluon volume brought up by Starter
	//   gluster:replica=N[,distribute=M]    a GlusterFS volume on this host (needs glusterfs-server)
	//   /some/dir                           an existing directory, e.g. a mount point
	Targets   []string
	Workloads []string // names from Workloads(); nil means all
	Rounds    int      // every target runs every workload once per round; 0 means DefaultRounds
	// Runtime is the run time of each fio workload (the cap of the
	// one-pass ones); 0 means DefaultRuntime.
	Runtime time.Duration
	// Size is the file size per job of randwrite, randwrite-fsync and
	// randrw, e.g. "128M", "4M", "1G"; "" means DefaultSize.
	Size string
	// ReadSize is the size of the file seqwrite writes and the read
	// workloads read; "" means four times Size (512M by default).
	ReadSize string
	Jobs     int // parallel fio jobs of randrw; 0 means DefaultJobs

	MetaWorkers int // parallel workers of the metadata workload; 0 means DefaultMetaWorkers
	// MetaFiles is the number of files the metadata workload creates
	// (fewer if meta-create reaches MetaCreateFor first); 0 means
	// DefaultMetaFiles.
	MetaFiles    int
	MetaDirs     int // directories they are spread over; 0 means DefaultMetaDirs
	MetaFileSize int // bytes per file; 0 means DefaultMetaFileSize
	// MetaBig is the number of files in the directory meta-ls-big lists
	// (MetaConfig.Big); 0, the default, means no meta-ls-big, which costs
	// creating and removing its files, untimed.
	MetaBig int
	// MetaCreateFor caps meta-create (MetaConfig.CreateFor); 0 means
	// Runtime. A cap well above what the slowest target needs makes every
	// target create all MetaFiles files.
	MetaCreateFor time.Duration
	// KeepCaches skips dropping the kernel caches (which needs root)
	// before the cold workloads and the metadata phases that read; their
	// results are then not cold.
	KeepCaches bool

	WorkDir string  // where local, loopback and gluster keep their files; "" means os.TempDir()
	RawDir  string  // if set, fio's JSON output of every run is kept here
	Fio     string  // fio binary; "" means "fio" from PATH
	Starter Starter // starts gluon:... targets; nil means ExecStarter{}

	Logger *slog.Logger // nil means slog.Default()
	// Progress receives one line per finished workload; nil means none.
	// See TerminalProgress.
	Progress io.Writer
}

// settings is a validated Config with defaults filled in.
type settings struct {
	targets   []targetSpec
	workloads []string
	rounds    int
	runtime   time.Duration
	size      int64
	readSize  int64
	jobs      int
	drop      bool // drop the kernel caches before cold runs
	meta      MetaConfig
	workDir   string
	rawDir    string
	fio       string
	starter   Starter
	log       *slog.Logger
	progress  io.Writer
}

func (c Config) settings() (*settings, error) {
	s := &settings{
		rounds:   orDefault(c.Rounds, DefaultRounds),
		runtime:  c.Runtime,
		jobs:     orDefault(c.Jobs, DefaultJobs),
		workDir:  c.WorkDir,
		rawDir:   c.RawDir,
		fio:      c.Fio,
		starter:  c.Starter,
		log:      c.Logger,
		progress: c.Progress,
	}
	if len(c.Targets) == 0 {
		return nil, errors.New("no targets")
	}
	seen := make(map[string]bool)
	for _, t := range c.Targets {
		ts, err := parseTarget(t)
		if err != nil {
			return nil, err
		}
		if seen[t] {
			return nil, fmt.Errorf("target %q given twice", t)
		}
		seen[t] = true
		s.targets = append(s.targets, ts)
	}
	s.workloads = c.Workloads
	if len(s.workloads) == 0 {
		s.workloads = Workloads()
	}
	for i, w := range s.workloads {
		if !slices.Contains(Workloads(), w) {
			return nil, fmt.Errorf("unknown workload %q (known: %s)", w, strings.Join(Workloads(), ", "))
		}
		if slices.Contains(s.workloads[:i], w) {
			return nil, fmt.Errorf("workload %q given twice", w)
		}
	}
	if s.rounds < 1 {
		return nil, fmt.Errorf("rounds %d < 1", c.Rounds)
	}
	if s.runtime == 0 {
		s.runtime = DefaultRuntime
	}
	if s.runtime < time.Second {
		return nil, fmt.Errorf("runtime %v: at least 1s", s.runtime)
	}
	size := c.Size
	if size == "" {
		size = DefaultSize
	}
	var err error
	if s.size, err = ParseSize(size); err != nil {
		return nil, err
	}
	if s.size < 1<<20 {
		return nil, fmt.Errorf("size %s: at least 1M (one sequential block)", size)
	}
	s.readSize = 4 * s.size
	if c.ReadSize != "" {
		if s.readSize, err = ParseSize(c.ReadSize); err != nil {
			return nil, err
		}
		if s.readSize < 1<<20 {
			return nil, fmt.Errorf("read size %s: at least 1M (one sequential block)", c.ReadSize)
		}
	}
	if s.jobs < 1 || s.jobs > 64 {
		return nil, fmt.Errorf("jobs %d: want 1..64", s.jobs)
	}
	if c.MetaWorkers < 0 || c.MetaWorkers > 64 {
		return nil, fmt.Errorf("meta workers %d: want 1..64", c.MetaWorkers)
	}
	if c.MetaCreateFor < 0 {
		return nil, fmt.Errorf("meta create cap %v: must not be negative (0 means Runtime)", c.MetaCreateFor)
	}
	s.drop = !c.KeepCaches && slices.ContainsFunc(s.workloads, dropsCaches)
	s.meta = MetaConfig{
		Workers:    orDefault(c.MetaWorkers, DefaultMetaWorkers),
		Files:      orDefault(c.MetaFiles, DefaultMetaFiles),
		Dirs:       orDefault(c.MetaDirs, DefaultMetaDirs),
		FileSize:   orDefault(c.MetaFileSize, DefaultMetaFileSize),
		Big:        c.MetaBig,
		DropCaches: s.drop,
		CreateFor:  c.MetaCreateFor,
	}
	if s.meta.CreateFor == 0 {
		s.meta.CreateFor = s.runtime
	}
	if err := s.meta.validate(); err != nil {
		return nil, err
	}
	if s.drop && os.Geteuid() != 0 {
		return nil, errors.New("the cold workloads drop the kernel caches, which needs root; run as root, keep the caches (KeepCaches, gluon bench --keep-caches) or leave out " +
			strings.Join(slices.DeleteFunc(slices.Clone(s.workloads), func(w string) bool { return !dropsCaches(w) }), ", "))
	}
	if s.workDir == "" {
		s.workDir = os.TempDir()
	}
	if s.fio == "" {
		s.fio = "fio"
	}
	if s.starter == nil {
		s.starter = ExecStarter{Dir: c.WorkDir, Logger: c.Logger}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.progress == nil {
		s.progress = io.Discard
	}
	return s, nil
}

// Validate checks c as Run does before it starts anything: an error means
// the configuration itself is wrong (or names a directory that is not there).
func (c Config) Validate() error {
	_, err := c.settings()
	return err
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// ParseSize parses a byte count with an optional binary suffix: "4096",
// "4k", "256M", "1G", "1GiB" (K, M, G, T are powers of 1024, as in fio).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	shift := 0
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			shift = 10 * (i + 1)
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("size %q: want a byte count such as 4096, 4M or 1G", s)
	}
	return n << shift, nil
}

// Run sets up every target, runs the workloads on them in interleaved
// rounds (the order of the targets changes from round to round, so slow
// drift in machine load hits all targets alike), tears the
// targets down and returns the report. A workload that fails on a target
// is recorded in its Result and the run goes on; errors setting up or
// tearing down targets, and cancellation, end the run. When only teardown
// fails, Run returns the report together with the error.
func Run(ctx context.Context, cfg Config) (_ *Report, err error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Machine:  machineInfo(ctx),
		Settings: s.report(),
		Started:  time.Now().UTC(),
	}
	var jobFiles map[string]string
	needFio := slices.ContainsFunc(s.workloads, func(w string) bool { return w != WorkloadMeta })
	if needFio {
		if rep.Machine.Fio, err = fioVersion(ctx, s.fio); err != nil {
			return nil, err
		}
	}
	runDir, err := os.MkdirTemp(s.workDir, "gluon-bench-run-")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(runDir)) }()
	if needFio {
		if jobFiles, err = writeJobFiles(runDir); err != nil {
			return nil, err
		}
	}
	if s.rawDir != "" {
		if err := os.MkdirAll(s.rawDir, 0o755); err != nil {
			return nil, err
		}
	}

	rep.Estimate = s.estimate()
	fmt.Fprintf(s.progress, "estimated total: %s (%d round(s) x %d target(s), fio capped at %v per workload, %s laid out per target)\n",
		fmtMinutes(rep.Estimate), s.rounds, len(s.targets), s.runtime, fmtBytes(uint64(s.layoutBytes())))

	var targets []*target
	defer func() {
		var errs []error
		for i := len(targets) - 1; i >= 0; i-- {
			if cerr := targets[i].close(); cerr != nil {
				errs = append(errs, fmt.Errorf("tear down %s: %w", targets[i].info.Name, cerr))
			}
		}
		err = errors.Join(err, errors.Join(errs...))
		rep.Finished = time.Now().UTC() // teardown included
	}()
	for _, ts := range s.targets {
		fmt.Fprintf(s.progress, "starting %s\n", ts.label)
		t0 := time.Now()
		t, err := openTarget(ctx, ts, s)
		if err != nil {
			return nil, err
		}
		t.info.Setup = time.Since(t0)
		targets = append(targets, t)
	}
	for _, t := range targets {
		if err := layoutData(ctx, t, s); err != nil {
			return nil, err
		}
		rep.Targets = append(rep.Targets, t.info)
	}

	r := &runner{s: s, runDir: runDir, jobFiles: jobFiles}
	for round := 1; round <= s.rounds; round++ {
		for _, i := range roundOrder(len(targets), round) {
			for _, w := range s.workloads {
				res, err := r.runWorkload(ctx, targets[i], w, round)
				if err != nil {
					return nil, err
				}
				rep.Results = append(rep.Results, res...)
			}
		}
	}
	rep.Summarize()
	return rep, nil
}

// roundOrder returns the order of n targets in round r (1-based). Odd
// rounds rotate the order by one more place each time, even rounds run the
// previous round backwards: over 2n rounds every target runs in every
// position, before and after every other target.
func roundOrder(n, r int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = (i + (r-1)/2) % n
	}
	if r%2 == 0 {
		slices.Reverse(order)
	}
	return order
}

type runner struct {
	s        *settings
	runDir   string
	jobFiles map[string]string
}

// runWorkload runs one workload on one target in a scratch directory it
// removes afterwards. Only cancellation is an error: a workload that
// fails, even for want of a scratch directory on a target that died, is
// reported in its Result so that the other targets still get measured.
func (r *runner) runWorkload(ctx context.Context, t *target, w string, round int) ([]Result, error) {
	var res []Result
	scratch, err := os.MkdirTemp(t.dir, fmt.Sprintf(".gluon-bench-r%d-%s-", round, w))
	switch {
	case err != nil:
		res = r.failed(w, fmt.Errorf("scratch directory: %w", err))
	case w == WorkloadMeta:
		res = r.runMeta(ctx, t, scratch)
	default:
		res = []Result{r.runFio(ctx, t, w, round, scratch)}
	}
	if err == nil {
		if err := os.RemoveAll(scratch); err != nil {
			r.s.log.Warn("cannot remove scratch directory", "target", t.info.Name, "err", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i := range res {
		res[i].Round, res[i].Target = round, t.info.Name
		r.progress(res[i])
	}
	return res, nil
}

// failed is the outcome of a workload that could not run: one Result per
// metadata phase for "meta", so that the table keeps its shape.
func (r *runner) failed(w string, err error) []Result {
	names := []string{w}
	if w == WorkloadMeta {
		names = r.s.meta.Phases()
	}
	res := make([]Result, len(names))
	for i, n := range names {
		res[i] = Result{Workload: n, Unit: unitOf(n), Error: err.Error()}
	}
	return res
}

func (r *runner) progress(res Result) {
	line := fmt.Sprintf("round %d/%d  %-18s %-19s ", res.Round, r.s.rounds, res.Target, res.Workload)
	if res.Error != "" {
		line += "FAILED: " + res.Error
	} else {
		line += fmt.Sprintf("%s  p50 %s  p99 %s", fmtValue(res.Value(), res.Unit), fmtLatency(res.P50), fmtLatency(res.P99))
	}
	fmt.Fprintln(r.s.progress, line)
}

func (r *runner) runFio(ctx context.Context, t *target, w string, round int, scratch string) Result {
	res := Result{Workload: w, Unit: unitOf(w)}
	out := filepath.Join(r.runDir, "fio-output.json")
	if r.s.rawDir != "" {
		out = filepath.Join(r.s.rawDir, fmt.Sprintf("r%d-%s-%s.json", round, fileSafe(t.info.Name), w))
	}
	fw, _ := fioWorkloadNamed(w)
	if fw.data != dataNone && t.dataErr != nil {
		res.Error = t.dataErr.Error()
		return res
	}
	run := fioRun{
		fio:      r.s.fio,
		jobFile:  r.jobFiles[w],
		dir:      scratch,
		data:     t.data,
		size:     r.s.size,
		readSize: r.s.readSize,
		runtime:  r.s.runtime,
		jobs:     r.s.jobs,
		output:   filepath.Join(r.runDir, "fio-prepare.json"),
	}
	if err := r.prepare(ctx, run, fw); err != nil {
		res.Error = err.Error()
		return res
	}
	run.output = out
	var pids []int
	if t.pids != nil {
		pids = t.pids()
	}
	var (
		dev    diskDev
		disk0  diskIO
		devErr = errors.New("no disk known")
	)
	if t.disk != "" {
		if dev, devErr = diskOf(t.disk); devErr == nil {
			disk0, devErr = readDiskIO(dev)
		}
	}
	mon := startMonitor(pids)
	fr, err := run.run(ctx)
	if mon != nil {
		res.CPU, res.PeakRSS = mon.Stop()
		res.Measured = true
	}
	var sum fioSummary
	if err == nil {
		sum, err = fr.summarize()
	}
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.OpsPerSec, res.BytesPerSec = sum.iops, sum.bw
	res.P50, res.P99 = sum.p50, sum.p99
	res.Elapsed, res.ClientCPU, res.Note = sum.elapsed, sum.clientCPU, sum.note
	if devErr == nil && sum.wrote > 0 {
		// Untimed: what the run left in the page cache (a brick's store,
		// local's file) is its disk traffic too.
		unix.Sync()
		if disk1, err := readDiskIO(dev); err == nil {
			d := disk1.sub(disk0)
			res.DiskWritten, res.DiskDiscarded = d.written, d.discarded
			res.Note = joinNotes(res.Note, diskNote(d, sum.wrote))
		}
	}
	return res
}

func joinNotes(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// prepare does what workload fw needs before its measured run, and in any
// case writes back dirty data, so that the previous workload's writeback
// does not land in this one's time.
func (r *runner) prepare(ctx context.Context, run fioRun, fw fioWorkload) error {
	if fw.drop && r.s.drop {
		// drop_caches empties the page, dentry and inode caches of every
		// file system, FUSE mounts and the disks behind bricks and
		// loopback included; none of the targets caches file data in
		// user space.
		if err := dropCaches(); err != nil {
			return err
		}
	} else {
		unix.Sync()
	}
	if fw.warm {
		if _, err := run.run(ctx); err != nil {
			return fmt.Errorf("warm-up read: %w", err)
		}
	}
	return nil
}

func (r *runner) runMeta(ctx context.Context, t *target, scratch string) []Result {
	type usage struct {
		cpu  time.Duration
		rss  uint64
		done bool
	}
	used := make(map[string]usage)
	cfg := r.s.meta
	cfg.Dir = scratch
	if t.pids != nil {
		cfg.Observe = func(phase string) func() {
			mon := startMonitor(t.pids())
			return func() {
				if mon != nil {
					cpu, rss := mon.Stop()
					used[phase] = usage{cpu, rss, true}
				}
			}
		}
	}
	phases, err := RunMeta(ctx, cfg)
	if err != nil {
		return r.failed(WorkloadMeta, err)
	}
	res := make([]Result, len(phases))
	for i, p := range phases {
		u := used[p.Name]
		res[i] = Result{
			Workload:    p.Name,
			Unit:        unitOf(p.Name),
			OpsPerSec:   p.OpsPerSec(),
			BytesPerSec: float64(p.Bytes) / max(p.Elapsed.Seconds(), 1e-9),
			P50:         p.P50,
			P99:         p.P99,
			Elapsed:     p.Elapsed,
			CPU:         u.cpu,
			PeakRSS:     u.rss,
			Measured:    u.done,
		}
		var notes []string
		if p.Name == MetaCreate && p.Ops < cfg.Files {
			notes = append(notes, fmt.Sprintf("%d of %d files in the %v cap", p.Ops, cfg.Files, cfg.CreateFor))
		}
		switch p.Name {
		case MetaLs, MetaFind:
			notes = append(notes, fmt.Sprintf("%d entries in %s, latency per directory", p.Ops, fmtLatency(p.Elapsed)))
		case MetaLsBig:
			notes = append(notes, fmt.Sprintf("%d entries in %s, latency per entry", p.Ops, fmtLatency(p.Elapsed)))
		}
		if p.EINTR > 0 {
			calls := "calls"
			if p.EINTR == 1 {
				calls = "call"
			}
			notes = append(notes, fmt.Sprintf("%d %s failed with EINTR", p.EINTR, calls))
		}
		res[i].Note = strings.Join(notes, "; ")
	}
	return res
}

// unitOf names the headline metric of a workload.
func unitOf(w string) string {
	switch {
	case strings.HasPrefix(w, "seq"):
		return UnitMiBps
	case strings.HasPrefix(w, "meta"):
		return UnitOpsps
	}
	return UnitIOPS
}

// fileSafe turns a target name into something usable in a file name.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, s)
}
