package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// fakeGluonEnv turns the test binary into a stand-in for `gluon up`
// (see fakeGluonUp), so that ExecStarter can be tested for real.
const fakeGluonEnv = "GLUON_BENCH_FAKE_UP"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeGluonEnv); mode != "" {
		os.Exit(fakeGluonUp(mode, os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

// fakeGluonUp behaves like `gluon up` as ExecStarter expects it: with
// mode "ok" it mounts a go-fuse loopback of DIR/data at the mount point,
// with a file "args" holding its arguments, prints the mount line and
// serves until SIGTERM. With mode "fail" it fails before mounting.
func fakeGluonUp(mode string, args []string) int {
	if len(args) == 0 || args[0] != "up" {
		fmt.Fprintln(os.Stderr, "fake gluon: want up")
		return 2
	}
	fl := flag.NewFlagSet("up", flag.ContinueOnError)
	dir := fl.String("dir", "", "")
	mnt := fl.String("mount", "", "")
	bricks := fl.Int("bricks", 1, "")
	replica := fl.Int("replica", 0, "")
	if err := fl.Parse(args[1:]); err != nil {
		return 2
	}
	if mode == "fail" {
		fmt.Fprintln(os.Stderr, "fake gluon: cannot start bricks")
		return 3
	}
	data := filepath.Join(*dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(data, "args"), []byte(strings.Join(args, " ")), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	root, err := fs.NewLoopbackRoot(data)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	srv, err := fs.Mount(*mnt, root, &fs.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("starting bricks")
	fmt.Printf("mounted fake-b%d-r%d at %s\n", *bricks, *replica, *mnt)
	<-term
	if err := srv.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv.Wait()
	return 0
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "4k": 4 << 10, "4K": 4 << 10, "256M": 256 << 20,
		"1G": 1 << 30, "1GiB": 1 << 30, "2t": 2 << 40, " 8M ": 8 << 20, "0": 0} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1M", "1.5G", "1X", "10000000000T", "4 M"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want error", in, got)
		}
	}
}

func TestParseVolumeSpec(t *testing.T) {
	for in, want := range map[string]VolumeSpec{
		"":                             {1, 1},
		"gluon:replica=3":              {3, 1},
		"gluster:replica=3":            {3, 1},
		"replica=2,distribute=4":       {2, 4},
		"gluon:distribute=2":           {1, 2},
		"gluon:distribute=2,replica=3": {3, 2},
	} {
		if got, err := ParseVolumeSpec(in); err != nil || got != want {
			t.Errorf("ParseVolumeSpec(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"gluon:replica=0", "gluon:replica=x", "gluon:replica", "gluon:stripe=2",
		"gluon:replica=2,replica=3", "gluon:replica=9,distribute=9", "gluon:replica=3,"} {
		if got, err := ParseVolumeSpec(in); err == nil {
			t.Errorf("ParseVolumeSpec(%q) = %v, want error", in, got)
		}
	}
	if s := (VolumeSpec{3, 2}).String(); s != "replica=3,distribute=2" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseTarget(t *testing.T) {
	dir := t.TempDir()
	for in, want := range map[string]targetSpec{
		"local":             {label: "local", kind: kindLocal},
		"loopback":          {label: "loopback", kind: kindLoopback},
		"loopback-np":       {label: "loopback-np", kind: kindLoopbackNP},
		"loopback-r3":       {label: "loopback-r3", kind: kindLoopbackR3},
		"gluon":             {label: "gluon", kind: kindGluon, vol: VolumeSpec{1, 1}},
		"gluon:replica=3":   {label: "gluon:replica=3", kind: kindGluon, vol: VolumeSpec{3, 1}},
		"gluster:replica=3": {label: "gluster:replica=3", kind: kindGluster, vol: VolumeSpec{3, 1}},
		dir:                 {label: dir, kind: kindDir, path: dir},
	} {
		if got, err := parseTarget(in); err != nil || got != want {
			t.Errorf("parseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "locall", "/nonexistent/dir", "testdata/fio-randrw.json", "gluon:replica=0"} {
		if got, err := parseTarget(in); err == nil {
			t.Errorf("parseTarget(%q) = %+v, want error", in, got)
		}
	}
}

func TestRoundOrder(t *testing.T) {
	// Three targets: all six orders in six rounds.
	want := [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}, {0, 2, 1}, {2, 0, 1}, {1, 0, 2}, {0, 1, 2}}
	for r, w := range want {
		if got := roundOrder(3, r+1); !slices.Equal(got, w) {
			t.Errorf("round %d: %v, want %v", r+1, got, w)
		}
	}
	want = [][]int{{0, 1}, {1, 0}, {1, 0}, {0, 1}}
	for r, w := range want {
		if got := roundOrder(2, r+1); !slices.Equal(got, w) {
			t.Errorf("two targets, round %d: %v, want %v", r+1, got, w)
		}
	}
	if got := roundOrder(1, 2); !slices.Equal(got, []int{0}) {
		t.Errorf("one target: %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	ok := Config{Targets: []string{"local"}}
	if _, err := ok.settings(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, c := range map[string]Config{
		"no targets":         {},
		"unknown target":     {Targets: []string{"nfs"}},
		"duplicate target":   {Targets: []string{"local", "local"}},
		"unknown workload":   {Targets: []string{"local"}, Workloads: []string{"randread-cold", "mdtest"}},
		"duplicate workload": {Targets: []string{"local"}, Workloads: []string{"meta", "meta"}},
		"rounds":             {Targets: []string{"local"}, Rounds: -1},
		"runtime":            {Targets: []string{"local"}, Runtime: time.Millisecond},
		"size":               {Targets: []string{"local"}, Size: "lots"},
		"small size":         {Targets: []string{"local"}, Size: "4k"},
		"read size":          {Targets: []string{"local"}, ReadSize: "1G1"},
		"small read size":    {Targets: []string{"local"}, ReadSize: "512k"},
		"jobs":               {Targets: []string{"local"}, Jobs: -4},
		"meta workers":       {Targets: []string{"local"}, MetaWorkers: 65},
		"meta files":         {Targets: []string{"local"}, MetaFiles: -1},
		"meta big":           {Targets: []string{"local"}, MetaBig: -1},
		"meta create cap":    {Targets: []string{"local"}, MetaCreateFor: -time.Second},
	} {
		if _, err := c.settings(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	_, err := Config{Targets: []string{"local"}, Workloads: []string{"mdtest"}}.settings()
	if err == nil || !strings.Contains(err.Error(), "randwrite-fsync") {
		t.Errorf("unknown workload error should list the known ones: %v", err)
	}
}

// TestRunLocalLoopback runs tiny workloads on the bare disk and on a
// go-fuse loopback mount: bandwidth and IOPS workloads, several fio jobs,
// files laid out and read warm, O_DIRECT through FUSE, and the metadata
// workload. The caches are kept: TestColdRead drops them.
func TestRunLocalLoopback(t *testing.T) {
	work, raw := t.TempDir(), t.TempDir()
	var progress bytes.Buffer
	workloads := []string{"seqwrite", "seqread-warm", "randrw", "randread-aio-direct", "meta"}
	rep, err := Run(context.Background(), Config{
		Targets:     []string{"local", "loopback"},
		Workloads:   workloads,
		Rounds:      1,
		Runtime:     time.Second,
		Size:        "4M",
		ReadSize:    "8M",
		Jobs:        2,
		MetaWorkers: 2,
		MetaFiles:   200,
		MetaDirs:    4,
		KeepCaches:  true,
		WorkDir:     work,
		RawDir:      raw,
		Progress:    &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(workloads) - 1 + len(MetaPhases); len(rep.Results) != 2*n {
		t.Fatalf("%d results, want %d", len(rep.Results), 2*n)
	}
	for _, res := range rep.Results {
		if res.Error != "" {
			t.Errorf("%s %s: %s", res.Target, res.Workload, res.Error)
			continue
		}
		if res.Round != 1 || res.Value() <= 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Elapsed <= 0 {
			t.Errorf("%s %s: implausible %+v", res.Target, res.Workload, res)
		}
		// The kernel serves local; loopback is served by this process.
		if res.Measured != (res.Target == "loopback") || res.Measured && res.PeakRSS == 0 {
			t.Errorf("%s %s: measured %v rss %d", res.Target, res.Workload, res.Measured, res.PeakRSS)
		}
	}
	if len(rep.Targets) != 2 || rep.Targets[1].FSType != "fuse" || rep.Targets[0].FSType == "fuse" || rep.Targets[0].FSType == "" {
		t.Errorf("targets %+v", rep.Targets)
	}
	if rep.Machine.NumCPU < 1 || rep.Machine.Kernel == "" || !strings.HasPrefix(rep.Machine.Fio, "fio-") || rep.Machine.GoVersion == "" {
		t.Errorf("machine %+v", rep.Machine)
	}
	if len(rep.Summary) != len(rep.Results) {
		t.Errorf("%d summary rows for %d results", len(rep.Summary), len(rep.Results))
	}
	for _, row := range rep.Summary {
		if row.Target == "local" && row.Ratio != 1 || row.Ratio <= 0 {
			t.Errorf("ratio %+v", row)
		}
	}
	if got := strings.Count(progress.String(), "round 1/1"); got != len(rep.Results) {
		t.Errorf("%d progress lines:\n%s", got, progress.String())
	}
	raws, _ := filepath.Glob(filepath.Join(raw, "*.json"))
	if len(raws) != 2*(len(workloads)-1) {
		t.Errorf("raw outputs %v", raws)
	}
	for _, p := range raws {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		res, err := ParseFioJSON(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		// One pass over the read size, not a time-based loop.
		if strings.Contains(p, "seq") {
			if n := res.Jobs[0].Read.IOBytes + res.Jobs[0].Write.IOBytes; n != 8<<20 {
				t.Errorf("%s: %d bytes moved, want one pass of 8 MiB", filepath.Base(p), n)
			}
		}
	}
	for name, write := range map[string]func(*bytes.Buffer) error{
		"table": func(b *bytes.Buffer) error { return rep.WriteTable(b) },
		"json":  func(b *bytes.Buffer) error { return rep.WriteJSON(b) },
		"svg":   func(b *bytes.Buffer) error { return rep.WriteSVG(b) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil || b.Len() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir not cleaned up: %v", ents)
	}
}

// A directory target gets its input files laid out once, shared by every
// workload and round, and keeps nothing afterwards.
func TestRunDirTarget(t *testing.T) {
	dir := t.TempDir()
	rep, err := Run(context.Background(), Config{
		Targets:    []string{dir},
		Workloads:  []string{"randwrite", "randrw", "seqread-warm"},
		Rounds:     2,
		Runtime:    time.Second,
		Size:       "1M",
		ReadSize:   "2M",
		Jobs:       3,
		KeepCaches: true,
		WorkDir:    t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep.Results {
		if res.Error != "" {
			t.Errorf("%s round %d: %s", res.Workload, res.Round, res.Error)
		}
	}
	// read (2 MiB) and rw.0 ... rw.2 (1 MiB each), once.
	if ti := rep.Targets[0]; ti.LayoutBytes != 5<<20 || ti.Layout <= 0 {
		t.Errorf("target %+v: want 5 MiB laid out", ti)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("directory target not cleaned up: %v", ents)
	}
}

// The estimate covers the rounds, the targets' setup and the layout, and
// the default three-target comparison fits the 15 minutes the issue allows.
func TestEstimate(t *testing.T) {
	est := func(c Config) time.Duration {
		t.Helper()
		c.KeepCaches = true
		s, err := c.settings()
		if err != nil {
			t.Fatal(err)
		}
		return s.estimate()
	}
	def := est(Config{Targets: []string{"gluon:replica=3", "gluster:replica=3", "loopback"}})
	if min := time.Duration(2*3*len(Workloads())) * DefaultRuntime; def < min || def > 12*time.Minute {
		t.Errorf("default estimate %v, want between %v and 12m", def, min)
	}
	if more := est(Config{Targets: []string{"gluon:replica=3", "gluster:replica=3", "loopback"}, Rounds: 4}); more <= def {
		t.Errorf("4 rounds: %v, 2 rounds: %v", more, def)
	}
	if meta := est(Config{Targets: []string{"local"}, Workloads: []string{"meta"}}); meta > time.Minute {
		t.Errorf("meta on local: %v", meta)
	}

	// meta-create's cap bounds it and its phases; meta-ls-big adds the
	// untimed create and remove of its directory; dropping the caches
	// adds the wait before each cold phase.
	meta := func(createFor time.Duration, big int) Config {
		return Config{Targets: []string{"local"}, Workloads: []string{"meta"}, Rounds: 1, MetaFiles: 50000, MetaCreateFor: createFor, MetaBig: big}
	}
	capped := est(meta(10*time.Second, 0))
	if d, want := est(meta(time.Hour, 0))-capped, 2*(50000*time.Second/estMetaRate-10*time.Second); d != want {
		t.Errorf("50,000 files uncapped: %v more than capped at 10s, want %v", d, want)
	}
	if d, want := est(meta(10*time.Second, 3000))-capped, 2*3000*time.Second/estMetaRate; d != want {
		t.Errorf("MetaBig 3000: %v more, want %v", d, want)
	}
	c := meta(10*time.Second, 3000)
	c.KeepCaches = true
	s, err := c.settings()
	if err != nil {
		t.Fatal(err)
	}
	warm := s.estimate()
	s.meta.DropCaches = true
	if d, want := s.estimate()-warm, 5*coldSettle; d != want {
		t.Errorf("dropping caches: %v more, want %v (5 cold phases)", d, want)
	}
}

// TestColdRead checks what randread-cold promises: its file is laid out
// once and the caches dropped before the measured run, which reads every
// block at most once. It runs on a FUSE loopback mount, where fio's own
// invalidation (posix_fadvise) reaches only the FUSE inode and the file
// stays cached on the disk behind the mount unless the caches are dropped.
func TestColdRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dropping the kernel caches needs root")
	}
	s, err := Config{Targets: []string{"local"}, Workloads: []string{"randread-cold"}, Size: "1M", ReadSize: "4M"}.settings()
	if err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	jobs, err := writeJobFiles(runDir)
	if err != nil {
		t.Fatal(err)
	}
	lo, err := openLoopback(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := lo.close(); err != nil {
			t.Error(err)
		}
	}()
	if err := layoutData(context.Background(), lo, s); err != nil || lo.dataErr != nil {
		t.Fatal(err, lo.dataErr)
	}
	if lo.info.LayoutBytes != 4<<20 {
		t.Errorf("laid out %d bytes, want 4 MiB", lo.info.LayoutBytes)
	}
	run := fioRun{fio: "fio", jobFile: jobs["randread-cold"], dir: t.TempDir(), data: lo.data, size: s.size, readSize: s.readSize,
		runtime: time.Minute, jobs: 1, output: filepath.Join(runDir, "out.json")}
	fw, _ := fioWorkloadNamed("randread-cold")
	// cached prepares the workload and counts the pages of the backing
	// file in the page cache.
	cached := func(drop bool) int {
		t.Helper()
		s.drop = drop
		r := &runner{s: s, runDir: runDir, jobFiles: jobs}
		if err := r.prepare(context.Background(), run, fw); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(filepath.Dir(lo.dir), "data", filepath.Base(lo.data), "read"))
		if err != nil {
			t.Fatalf("laid-out file: %v", err)
		}
		defer f.Close()
		return residentPages(t, f)
	}
	if n := cached(false); n == 0 {
		t.Error("caches kept: the laid-out file is not cached behind the mount")
	}
	// drop_caches leaves pages that are busy at that instant (another
	// process's I/O on a shared machine), so allow a handful of the 1024.
	if n := cached(true); n > 1024/100 {
		t.Errorf("caches dropped: %d pages of the laid-out file still cached", n)
	}
	res, err := run.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rd := res.Jobs[0].Read; rd.IOBytes != 4<<20 || rd.TotalIOs != 1024 {
		t.Errorf("read %d bytes in %d I/Os, want one pass: 4 MiB in 1024", rd.IOBytes, rd.TotalIOs)
	}
}

// residentPages counts the pages of f in the page cache.
func residentPages(t *testing.T, f *os.File) int {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data)
	vec := make([]byte, (len(data)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)),
		uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

func TestExecStarter(t *testing.T) {
	t.Setenv(fakeGluonEnv, "ok")
	dir := t.TempDir()
	st := ExecStarter{Path: os.Args[0], Dir: dir}
	mnt, pids, stop, err := st.Start(context.Background(), VolumeSpec{Replica: 3, Distribute: 2})
	if err != nil {
		t.Fatal(err)
	}
	if fsType(mnt) != "fuse" || !strings.HasPrefix(mnt, dir) {
		t.Errorf("mount %s is %s", mnt, fsType(mnt))
	}
	args, err := os.ReadFile(filepath.Join(mnt, "args"))
	want := "up --dir " + filepath.Dir(mnt) + " --mount " + mnt + " --bricks 6 --replica 3"
	if err != nil || string(args) != want {
		t.Errorf("gluon up got %q (%v), want %q", args, err, want)
	}
	if len(pids) != 1 || syscall.Kill(pids[0], 0) != nil {
		t.Errorf("pids %v", pids)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind %v", ents)
	}
}

func TestUpArgs(t *testing.T) {
	for spec, want := range map[VolumeSpec]string{
		{1, 1}: "up --dir D --mount M --bricks 1",
		{3, 1}: "up --dir D --mount M --bricks 3",
		{1, 4}: "up --dir D --mount M --bricks 4 --replica 1",
		{3, 2}: "up --dir D --mount M --bricks 6 --replica 3",
	} {
		if got := strings.Join(UpArgs("D", "M", spec), " "); got != want {
			t.Errorf("UpArgs(%v) = %q, want %q", spec, got, want)
		}
	}
}

func TestExecStarterFailure(t *testing.T) {
	t.Setenv(fakeGluonEnv, "fail")
	dir := t.TempDir()
	_, _, _, err := ExecStarter{Path: os.Args[0], Dir: dir}.Start(context.Background(), VolumeSpec{1, 1})
	if err == nil || !strings.Contains(err.Error(), "cannot start bricks") {
		t.Errorf("error %v should quote gluon up's stderr", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind %v", ents)
	}
	_, _, _, err = ExecStarter{Path: "/nonexistent/gluon", Dir: dir}.Start(context.Background(), VolumeSpec{1, 1})
	if err == nil {
		t.Error("missing binary: no error")
	}
}

// A gluon that does not know a flag the layout needs exits 2; the error
// says which arguments it rejected.
func TestExecStarterRejectedArgs(t *testing.T) {
	t.Setenv(fakeGluonEnv, "ok")
	dir := t.TempDir()
	st := ExecStarter{Path: os.Args[0], Dir: dir, Args: func(dir, mnt string, spec VolumeSpec) []string {
		return append(UpArgs(dir, mnt, spec), "--stripe", "2")
	}}
	_, _, _, err := st.Start(context.Background(), VolumeSpec{1, 1})
	if err == nil || !strings.Contains(err.Error(), "rejected the arguments") || !strings.Contains(err.Error(), "--stripe 2") ||
		!strings.Contains(err.Error(), "flag provided but not defined: -stripe") {
		t.Errorf("error %v should name the rejected arguments and quote gluon up", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind %v", ents)
	}
}

// TestRunGluonTarget runs a gluon target through the default Starter
// against the fake `gluon up`.
func TestRunGluonTarget(t *testing.T) {
	t.Setenv(fakeGluonEnv, "ok")
	work := t.TempDir()
	rep, err := Run(context.Background(), Config{
		Targets:   []string{"gluon:replica=3", "local"},
		Workloads: []string{"meta"},
		Rounds:    2,
		Runtime:   time.Second,
		Size:      "4M",
		MetaFiles: 50,
		MetaDirs:  2,
		// Dropping the caches (and waiting out GlusterFS's md-cache
		// after each drop) is TestRunMetaDropsCaches's and
		// TestColdRead's; here it would only cost 18 s.
		KeepCaches: true,
		WorkDir:    work,
		Starter:    ExecStarter{Path: os.Args[0], Dir: work},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2*2*len(MetaPhases) {
		t.Fatalf("%d results", len(rep.Results))
	}
	// Round 2 runs the targets in reverse.
	if rep.Results[0].Target != "gluon:replica=3" || rep.Results[len(rep.Results)-1].Target != "gluon:replica=3" {
		t.Errorf("order: first %s, last %s", rep.Results[0].Target, rep.Results[len(rep.Results)-1].Target)
	}
	for _, res := range rep.Results {
		if res.Error != "" {
			t.Errorf("%s %s: %s", res.Target, res.Workload, res.Error)
		}
		if res.Target == "gluon:replica=3" && (!res.Measured || res.PeakRSS == 0) {
			t.Errorf("gluon process not measured: %+v", res)
		}
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir not cleaned up: %v", ents)
	}
}

func TestGlusterNotInstalled(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	saved := sbinDirs
	sbinDirs = []string{empty}
	t.Cleanup(func() { sbinDirs = saved })
	_, err := Run(context.Background(), Config{Targets: []string{"gluster:replica=3"}, Workloads: []string{"meta"}, WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y glusterfs-server") {
		t.Errorf("error %v should tell how to install GlusterFS", err)
	}
}

func TestFioMissing(t *testing.T) {
	_, err := Run(context.Background(), Config{Targets: []string{"local"}, Fio: "/nonexistent/fio", WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y fio") {
		t.Errorf("error %v should tell how to install fio", err)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	work := t.TempDir()
	_, err := Run(ctx, Config{Targets: []string{"local"}, Workloads: []string{"meta"}, WorkDir: work})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir not cleaned up: %v", ents)
	}
}

func TestMonitor(t *testing.T) {
	// A shell that burns CPU and has a child.
	cmd := exec.Command("sh", "-c", "sleep 60 & i=0; while [ $i -lt 100000000 ]; do i=$((i+1)); done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	defer func() {
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		cmd.Wait()
	}()
	for range 100 {
		if pids = descendants([]int{cmd.Process.Pid}); len(pids) == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(pids) != 2 {
		t.Fatalf("descendants %v, want the shell and its sleep", pids)
	}
	if got := descendants([]int{os.Getpid()}); !slices.Equal(got, []int{os.Getpid()}) {
		t.Errorf("own children must not count: %v", got)
	}
	m := startMonitor(pids)
	time.Sleep(600 * time.Millisecond)
	cpu, rss := m.Stop()
	if cpu <= 0 || rss == 0 {
		t.Errorf("cpu %v rss %d", cpu, rss)
	}
	if startMonitor(nil) != nil {
		t.Error("monitor of nothing")
	}
}

func TestReadProcStat(t *testing.T) {
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != os.Getppid() || st.rss == 0 || st.start == 0 {
		t.Errorf("%+v", st)
	}
	if _, err := readProcStat(-1); err == nil {
		t.Error("no error for pid -1")
	}
}

// A target whose directory is gone (say its server died) fails its
// workloads without ending the run.
func TestRunWorkloadDeadTarget(t *testing.T) {
	s, err := Config{Targets: []string{"local"}}.settings()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{s: s}
	dead := &target{info: TargetInfo{Name: "dead"}, dir: filepath.Join(t.TempDir(), "gone")}
	res, err := r.runWorkload(context.Background(), dead, WorkloadMeta, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(MetaPhases) {
		t.Fatalf("%d results", len(res))
	}
	for i, x := range res {
		if x.Workload != MetaPhases[i] || x.Target != "dead" || !strings.Contains(x.Error, "scratch directory") {
			t.Errorf("result %+v", x)
		}
	}
}

// The loopback-np target keeps file data in the daemon: its handles never
// offer the kernel a passthrough fd, and data still round-trips.
func TestLoopbackWithoutPassthrough(t *testing.T) {
	lo, err := openLoopback(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := lo.close(); err != nil {
			t.Error(err)
		}
	}()
	p := filepath.Join(lo.dir, "f")
	want := bytes.Repeat([]byte("gluon"), 1000)
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	if _, ok := daemonHandle(&fs.LoopbackFile{}).(fs.FilePassthroughFder).PassthroughFd(); ok {
		t.Error("a loopback-np handle offers a passthrough fd")
	}
}
