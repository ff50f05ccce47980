package bench

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The fixtures in testdata/ are real fio 3.33 output of the job files in
// jobs/ (runtime 1 s, size 16 MiB, read size 64 MiB, 4 jobs), captured on
// the dev machine after the preparation Run does.

func parseFixture(t *testing.T, name string) *FioResult {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "fio-"+name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := ParseFioJSON(f)
	if err != nil {
		t.Fatalf("ParseFioJSON(%s): %v", name, err)
	}
	return res
}

func TestParseFioFixtures(t *testing.T) {
	for _, fw := range fioWorkloads {
		w := fw.name
		t.Run(w, func(t *testing.T) {
			res := parseFixture(t, w)
			if res.Version != "fio-3.33" {
				t.Errorf("version %q", res.Version)
			}
			if len(res.Jobs) != 1 || res.Jobs[0].Name != w {
				t.Fatalf("jobs %+v, want one named %s (group_reporting)", res.Jobs, w)
			}
			sum, err := res.summarize()
			if err != nil {
				t.Fatal(err)
			}
			if sum.iops <= 0 || sum.bw <= 0 || sum.p50 <= 0 || sum.p99 < sum.p50 || sum.elapsed <= 0 {
				t.Errorf("implausible summary %+v", sum)
			}
		})
	}
}

func TestParseFioRandrw(t *testing.T) {
	j := parseFixture(t, "randrw").Jobs[0]
	if j.Read.IOPS != 31449.438202 || j.Write.IOPS != 13786.516854 {
		t.Errorf("iops read %v write %v", j.Read.IOPS, j.Write.IOPS)
	}
	if j.Read.BWBytes != 128816898 || j.Write.BWBytes != 56469573 {
		t.Errorf("bw read %d write %d", j.Read.BWBytes, j.Write.BWBytes)
	}
	if j.JobRuntime != 4195 || j.UsrCPU != 0.834327 || j.SysCPU != 15.995232 {
		t.Errorf("runtime %d usr %v sys %v", j.JobRuntime, j.UsrCPU, j.SysCPU)
	}
	if p, ok := j.Read.CLat.Pct(99); !ok || p != 477184 {
		t.Errorf("read clat p99 %v %v", p, ok)
	}
	if p, ok := j.Read.Lat.Pct(50); !ok || p != 86528 {
		t.Errorf("read lat p50 %v %v", p, ok)
	}
	if _, ok := j.Read.Lat.Pct(42); ok {
		t.Error("percentile 42 reported as present")
	}

	sum, err := parseFixture(t, "randrw").summarize()
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(sum.iops-(31449.438202+13786.516854)) > 1e-6 {
		t.Errorf("iops %v, want read+write", sum.iops)
	}
	if sum.bw != 128816898+56469573 {
		t.Errorf("bw %v", sum.bw)
	}
	// Latency of the read side (lat_ns), the write side in the note.
	if sum.p50 != 86528 || sum.p99 != 481280 {
		t.Errorf("p50 %v p99 %v", sum.p50, sum.p99)
	}
	if sum.elapsed != 1068*time.Millisecond {
		t.Errorf("elapsed %v", sum.elapsed)
	}
	// (0.834327+15.995232)% of 4.195 s
	if want := 706 * time.Millisecond; sum.clientCPU < want-time.Millisecond || sum.clientCPU > want+time.Millisecond {
		t.Errorf("client cpu %v, want about %v", sum.clientCPU, want)
	}
	if sum.note != "read 31449 + write 13787 IOPS, write p99 96µs" {
		t.Errorf("note %q", sum.note)
	}
}

func TestParseFioFsync(t *testing.T) {
	res := parseFixture(t, "randwrite-fsync")
	j := res.Jobs[0]
	if j.Sync.TotalIOs != 1939 {
		t.Errorf("fsyncs %d", j.Sync.TotalIOs)
	}
	sum, err := res.summarize()
	if err != nil {
		t.Fatal(err)
	}
	if sum.iops != 1937.062937 || sum.p50 != 6880 || sum.p99 != 34560 {
		t.Errorf("summary %+v", sum)
	}
	if sum.note != "fsync p99 4.01ms" {
		t.Errorf("note %q", sum.note)
	}
}

func TestParseFioAio(t *testing.T) {
	sum, err := parseFixture(t, "randread-aio-direct").summarize()
	if err != nil {
		t.Fatal(err)
	}
	// Total latency (submission + completion) rather than clat.
	if sum.iops != 71234.782609 || sum.p50 != 205824 || sum.p99 != 296960 || sum.note != "" {
		t.Errorf("summary %+v", sum)
	}
}

func TestParseFioJSONLeadingWarnings(t *testing.T) {
	data, err := os.ReadFile("testdata/fio-seqwrite.json")
	if err != nil {
		t.Fatal(err)
	}
	in := "fio: file hash not empty on exit\nnote: both iodepth >= 1 and synchronous I/O engine are selected\n" + string(data)
	res, err := ParseFioJSON(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if res.Jobs[0].Write.BWBytes != 1973790117 {
		t.Errorf("bw %d", res.Jobs[0].Write.BWBytes)
	}
}

func TestParseFioJSONErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":     "",
		"text only": "fio: failed to open job file\n",
		"truncated": `{"fio version" : "fio-3.33", "jobs" : [ {"jobname": "x"`,
		"no jobs":   `{"fio version" : "fio-3.33", "jobs" : []}`,
		"bad type":  `{"jobs" : [ {"jobname": 7} ]}`,
	} {
		if _, err := ParseFioJSON(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFioSummaryErrors(t *testing.T) {
	res := &FioResult{Jobs: []FioJob{{Name: "randread-aio-direct", Error: int(syscall.EINVAL)}}}
	if _, err := res.summarize(); err == nil || !strings.Contains(err.Error(), "invalid argument") {
		t.Errorf("job error: %v", err)
	}
	res = &FioResult{Jobs: []FioJob{{Name: "seqread"}}}
	if _, err := res.summarize(); err == nil {
		t.Error("no I/O: no error")
	}
}

// TestJobFiles checks the embedded job files do what the workload names
// promise and take their parameters from the environment.
func TestJobFiles(t *testing.T) {
	onePass := []string{"size=${BENCH_READ_SIZE}", "runtime=${BENCH_RUNTIME}"}
	timed := []string{"size=${BENCH_SIZE}", "runtime=${BENCH_RUNTIME}", "time_based=1"}
	want := map[string][]string{
		"seqwrite":            append([]string{"rw=write", "bs=1M", "end_fsync=1"}, onePass...),
		"seqread-cold":        append([]string{"rw=read", "bs=1M"}, onePass...),
		"seqread-warm":        append([]string{"rw=read", "bs=1M", "invalidate=0"}, onePass...),
		"randread-cold":       append([]string{"rw=randread", "bs=4k"}, onePass...),
		"randread-aio-direct": append([]string{"rw=randread", "bs=4k", "ioengine=libaio", "direct=1", "iodepth=16"}, onePass...),
		"randwrite":           append([]string{"rw=randwrite", "bs=4k", "end_fsync=1"}, timed...),
		"randwrite-fsync":     append([]string{"rw=randwrite", "bs=4k", "fsync=1"}, timed...),
		"randrw":              append([]string{"rw=randrw", "rwmixread=70", "bs=4k", "numjobs=${BENCH_JOBS}", "end_fsync=1"}, timed...),
	}
	for _, fw := range fioWorkloads {
		w := fw.name
		data, err := jobFiles.ReadFile("jobs/" + w + ".fio")
		if err != nil {
			t.Errorf("%s: %v", w, err)
			continue
		}
		lines := strings.Split(string(data), "\n")
		has := func(opt string) bool {
			return slices.ContainsFunc(lines, func(l string) bool { return strings.TrimSpace(l) == opt })
		}
		// The laid-out files, or a new one in the scratch directory.
		switch fw.data {
		case dataNone:
			want[w] = append(want[w], "directory=${BENCH_DIR}")
		case dataRead:
			want[w] = append(want[w], "directory=${BENCH_DATA}", "filename=read")
		case dataRW:
			want[w] = append(want[w], "directory=${BENCH_DATA}", "filename_format=rw.$jobnum")
		}
		// The reference suite's common options.
		for _, opt := range append(want[w], "ioengine=psync", "direct=0",
			"group_reporting=1", "lat_percentiles=1", "["+w+"]") {
			if !has(opt) {
				t.Errorf("%s.fio lacks %q", w, opt)
			}
		}
		// One-pass jobs must not loop over their file: a second pass
		// would be served from the cache the first one filled.
		if has("size=${BENCH_READ_SIZE}") && has("time_based=1") {
			t.Errorf("%s.fio: one-pass job is time based", w)
		}
		if fw.drop && fw.data == dataNone {
			t.Errorf("%s: drops the caches before reading files it has yet to write", w)
		}
	}
}

// TestJobFilesParse has fio check every job file with the parameters
// substituted, without running any I/O.
func TestJobFilesParse(t *testing.T) {
	paths, err := writeJobFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for w, p := range paths {
		cmd := exec.Command("fio", "--parse-only", p)
		cmd.Env = fioRun{dir: t.TempDir(), data: t.TempDir(), size: 4 << 20, readSize: 16 << 20, runtime: time.Second, jobs: 4}.env()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: fio --parse-only: %v: %s", w, err, out)
		}
	}
}
