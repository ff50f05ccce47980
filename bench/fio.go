package bench

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The job files read their directory, size, runtime and parallelism from
// the environment (fio expands ${VAR} in option values), so one embedded
// file serves every target and every --size/--runtime.
//
//go:embed jobs/*.fio
var jobFiles embed.FS

// FioResult is the part of fio's --output-format=json document the
// benchmark uses.
type FioResult struct {
	Version string   `json:"fio version"`
	Jobs    []FioJob `json:"jobs"`
}

// FioJob is one entry of "jobs"; with group_reporting (set by every job
// file) it aggregates all numjobs clones.
type FioJob struct {
	Name  string `json:"jobname"`
	Error int    `json:"error"` // errno of the first failed I/O, 0 if none
	Read  FioIO  `json:"read"`
	Write FioIO  `json:"write"`
	Sync  struct {
		TotalIOs int64  `json:"total_ios"`
		Lat      FioLat `json:"lat_ns"`
	} `json:"sync"`
	// JobRuntime is the summed run time of all clones in milliseconds;
	// UsrCPU and SysCPU are percentages of it.
	JobRuntime int64   `json:"job_runtime"`
	UsrCPU     float64 `json:"usr_cpu"`
	SysCPU     float64 `json:"sys_cpu"`
}

// FioIO is one direction (read or write) of a job.
type FioIO struct {
	IOBytes  int64   `json:"io_bytes"`
	BWBytes  int64   `json:"bw_bytes"` // bytes per second
	IOPS     float64 `json:"iops"`
	Runtime  int64   `json:"runtime"` // milliseconds
	TotalIOs int64   `json:"total_ios"`
	CLat     FioLat  `json:"clat_ns"` // completion latency
	Lat      FioLat  `json:"lat_ns"`  // submission + completion
}

// FioLat is a latency distribution in nanoseconds.
type FioLat struct {
	Min  int64   `json:"min"`
	Max  int64   `json:"max"`
	Mean float64 `json:"mean"`
	N    int64   `json:"N"`
	// Percentile maps fio's keys ("50.000000", "99.000000", ...) to ns.
	Percentile map[string]int64 `json:"percentile"`
}

// Pct returns percentile p (e.g. 99) and whether fio reported it.
func (l FioLat) Pct(p float64) (time.Duration, bool) {
	for k, v := range l.Percentile {
		f, err := strconv.ParseFloat(k, 64)
		if err == nil && math.Abs(f-p) < 1e-6 {
			return time.Duration(v), true
		}
	}
	return 0, false
}

// latPct prefers the total latency (lat_ns, reported because the job files
// set lat_percentiles=1) and falls back to the completion latency, which is
// all older fio versions or other job files report.
func (d FioIO) latPct(p float64) time.Duration {
	if v, ok := d.Lat.Pct(p); ok {
		return v
	}
	v, _ := d.CLat.Pct(p)
	return v
}

// ParseFioJSON decodes fio's JSON output. Text fio prints before the
// document (warnings such as "fio: file hash not empty on exit") is skipped.
func ParseFioJSON(r io.Reader) (*FioResult, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	start := bytes.IndexByte(data, '{')
	if start < 0 {
		return nil, errors.New("fio output: no JSON document")
	}
	var res FioResult
	if err := json.Unmarshal(data[start:], &res); err != nil {
		return nil, fmt.Errorf("fio output: %w", err)
	}
	if len(res.Jobs) == 0 {
		return nil, errors.New("fio output: no jobs")
	}
	return &res, nil
}

// fioSummary is what one fio run contributes to a Result.
type fioSummary struct {
	iops, bw  float64
	wrote     int64 // bytes written, all jobs
	p50, p99  time.Duration
	elapsed   time.Duration
	clientCPU time.Duration
	note      string
}

// summarize adds up all jobs and directions. Latency comes from the read
// side when the job read anything (randrw is 70% reads), else the write side.
func (res *FioResult) summarize() (fioSummary, error) {
	var s fioSummary
	var rd, wr FioIO
	var readIOPS, writeIOPS float64
	var fsyncP99 time.Duration
	for i, j := range res.Jobs {
		if j.Error != 0 {
			return s, fmt.Errorf("fio job %s: %w", j.Name, syscall.Errno(j.Error))
		}
		readIOPS += j.Read.IOPS
		writeIOPS += j.Write.IOPS
		s.bw += float64(j.Read.BWBytes + j.Write.BWBytes)
		s.wrote += j.Write.IOBytes
		s.elapsed = max(s.elapsed, time.Duration(max(j.Read.Runtime, j.Write.Runtime))*time.Millisecond)
		s.clientCPU += time.Duration((j.UsrCPU + j.SysCPU) / 100 * float64(j.JobRuntime) * float64(time.Millisecond))
		if i == 0 {
			rd, wr = j.Read, j.Write
			if j.Sync.TotalIOs > 0 {
				fsyncP99, _ = j.Sync.Lat.Pct(99)
			}
		}
	}
	s.iops = readIOPS + writeIOPS
	if s.iops == 0 {
		return s, errors.New("fio: no I/O completed")
	}
	main := wr
	if rd.TotalIOs > 0 {
		main = rd
	}
	s.p50, s.p99 = main.latPct(50), main.latPct(99)
	var notes []string
	if readIOPS > 0 && writeIOPS > 0 {
		notes = append(notes, fmt.Sprintf("read %.0f + write %.0f IOPS, write p99 %s", readIOPS, writeIOPS, fmtLatency(wr.latPct(99))))
	}
	if fsyncP99 > 0 {
		notes = append(notes, "fsync p99 "+fmtLatency(fsyncP99))
	}
	s.note = strings.Join(notes, "; ")
	return s, nil
}

// fioRun describes one fio invocation.
type fioRun struct {
	fio      string // binary
	jobFile  string // path of the job file on disk
	dir      string // scratch directory on the target
	data     string // directory of the laid-out files on the target
	size     int64  // bytes of each file rw.N
	readSize int64  // bytes of the file "read", and of the one seqwrite writes
	runtime  time.Duration
	jobs     int
	output   string // where fio writes its JSON
}

// limit is how long fio may take in all: its run time, the final fsync of
// the write workloads, and slack for a slow or loaded machine. A target
// that hangs fails the workload after that instead of stalling the run.
func (f fioRun) limit() time.Duration {
	return 3*f.runtime + 2*time.Minute
}

// env is the environment the job files take their parameters from.
func (f fioRun) env() []string {
	return append(os.Environ(),
		"BENCH_DIR="+f.dir,
		"BENCH_DATA="+f.data,
		"BENCH_SIZE="+strconv.FormatInt(f.size, 10),
		"BENCH_READ_SIZE="+strconv.FormatInt(f.readSize, 10),
		fmt.Sprintf("BENCH_RUNTIME=%dms", f.runtime.Milliseconds()),
		"BENCH_JOBS="+strconv.Itoa(f.jobs),
	)
}

// run executes fio and parses its output. A non-zero exit status is an
// error carrying the tail of fio's messages.
func (f fioRun) run(ctx context.Context) (*FioResult, error) {
	// Never mistake an earlier run's output for this one's.
	if err := os.Remove(f.output); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, f.limit())
	defer cancel()
	cmd := exec.CommandContext(ctx, f.fio, "--output-format=json", "--output="+f.output, f.jobFile)
	cmd.Env = f.env()
	// fio stops cleanly on SIGINT; SIGKILL only if it does not.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second
	tail := &tailBuffer{max: 2048}
	cmd.Stdout = tail
	cmd.Stderr = tail
	runErr := cmd.Run()
	if err := parent.Err(); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("fio did not finish within %v (run time %v); stopped", f.limit(), f.runtime)
	}
	out, err := os.Open(f.output)
	if err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("fio: %w: %s", runErr, tail)
		}
		return nil, err
	}
	defer out.Close()
	res, err := ParseFioJSON(out)
	if runErr != nil {
		// The per-job errno, when fio got that far, says more than the exit status.
		if err == nil {
			if _, serr := res.summarize(); serr != nil {
				return nil, fmt.Errorf("%w: %s", serr, tail)
			}
		}
		return nil, fmt.Errorf("fio: %w: %s", runErr, tail)
	}
	return res, err
}

// writeJobFiles copies the embedded job files into dir, where fio can read
// them, and returns workload name -> path.
func writeJobFiles(dir string) (map[string]string, error) {
	paths := make(map[string]string)
	for _, w := range fioWorkloads {
		data, err := jobFiles.ReadFile("jobs/" + w.name + ".fio")
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, w.name+".fio")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		paths[w.name] = p
	}
	return paths, nil
}

// fioVersion runs `fio --version`; the error tells how to install fio.
func fioVersion(ctx context.Context, fio string) (string, error) {
	out, err := exec.CommandContext(ctx, fio, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("cannot run fio (%s): %w; install it with: apt-get install -y fio", fio, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// tailBuffer keeps the last max bytes written to it: enough of a failing
// command's output to explain the failure without holding all of it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	return strings.Join(strings.Fields(string(t.buf)), " ")
}
