package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"golang.org/x/term"
)

// Units of Result.Value.
const (
	UnitMiBps = "MiB/s" // sequential workloads
	UnitIOPS  = "IOPS"  // random fio workloads
	UnitOpsps = "ops/s" // metadata phases
)

// Report is the outcome of Run. Durations are in nanoseconds in JSON.
type Report struct {
	Machine  Machine      `json:"machine"`
	Settings Settings     `json:"settings"`
	Targets  []TargetInfo `json:"targets"` // in Config order; the first is the ratio baseline
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	// Estimate is what Run expected the whole run to take, before it started.
	Estimate time.Duration `json:"estimate_ns"`
	Results  []Result      `json:"results"` // every run, in run order
	Summary  []Row         `json:"summary"` // filled by Summarize
}

// Settings records the Config a report was measured with.
type Settings struct {
	Workloads     []string      `json:"workloads"`
	Rounds        int           `json:"rounds"`
	Runtime       time.Duration `json:"runtime_ns"`
	Size          int64         `json:"size_bytes"`
	ReadSize      int64         `json:"read_size_bytes"`
	Jobs          int           `json:"jobs"`
	MetaWorkers   int           `json:"meta_workers"`
	MetaFiles     int           `json:"meta_files"`
	MetaDirs      int           `json:"meta_dirs"`
	MetaFileSize  int           `json:"meta_file_size"`
	MetaBig       int           `json:"meta_big,omitempty"` // files meta-ls-big lists; 0: not run
	MetaCreateFor time.Duration `json:"meta_create_for_ns"` // cap of meta-create
	DropCaches    bool          `json:"drop_caches"`        // before the cold workloads and the metadata phases that read
}

func (s *settings) report() Settings {
	return Settings{
		Workloads:     slices.Clone(s.workloads),
		Rounds:        s.rounds,
		Runtime:       s.runtime,
		Size:          s.size,
		ReadSize:      s.readSize,
		Jobs:          s.jobs,
		MetaWorkers:   s.meta.Workers,
		MetaFiles:     s.meta.Files,
		MetaDirs:      s.meta.Dirs,
		MetaFileSize:  s.meta.FileSize,
		MetaBig:       s.meta.Big,
		MetaCreateFor: s.meta.CreateFor,
		DropCaches:    s.drop,
	}
}

// Result is one workload (or metadata phase) run once on one target.
type Result struct {
	Round       int           `json:"round"`
	Target      string        `json:"target"`
	Workload    string        `json:"workload"` // fio workload or metadata phase (MetaConfig.Phases)
	Unit        string        `json:"unit"`     // of Value: UnitMiBps, UnitIOPS or UnitOpsps
	OpsPerSec   float64       `json:"ops_per_sec"`
	BytesPerSec float64       `json:"bytes_per_sec"`
	P50         time.Duration `json:"p50_ns"`
	P99         time.Duration `json:"p99_ns"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	// CPU is the user+system time of the target's processes (and their
	// descendants) during the run, PeakRSS the peak of their summed
	// resident memory; both only if Measured. For loopback that process
	// is the benchmark itself, which also runs the metadata workload.
	CPU       time.Duration `json:"cpu_ns"`
	PeakRSS   uint64        `json:"peak_rss_bytes"`
	Measured  bool          `json:"measured"`
	ClientCPU time.Duration `json:"client_cpu_ns,omitempty"` // fio's own user+system time
	// Disk is what the disk under the work directory wrote and discarded
	// from the start of a writing fio run to a sync after it: the
	// target's, and anything else the machine did meanwhile.
	DiskWritten   uint64 `json:"disk_written_bytes,omitempty"`
	DiskDiscarded uint64 `json:"disk_discarded_bytes,omitempty"`
	Note          string `json:"note,omitempty"` // e.g. read/write split, fsync latency
	Error         string `json:"error,omitempty"`
}

// Value is the headline number in Unit.
func (r Result) Value() float64 {
	if r.Unit == UnitMiBps {
		return r.BytesPerSec / (1 << 20)
	}
	return r.OpsPerSec
}

// Row summarizes the runs of one workload on one target: medians over the
// rounds that succeeded.
type Row struct {
	Workload string        `json:"workload"`
	Target   string        `json:"target"`
	Unit     string        `json:"unit"`
	Value    float64       `json:"value"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	// Ratio is Value divided by the first target's Value for the same
	// workload; 0 if either has no successful run.
	Ratio    float64       `json:"ratio"`
	CPU      time.Duration `json:"cpu_ns"`         // median
	PeakRSS  uint64        `json:"peak_rss_bytes"` // highest over the runs
	Measured bool          `json:"measured"`       // CPU and PeakRSS are known
	Runs     int           `json:"runs"`           // successful runs
	Failed   int           `json:"failed"`
	Note     string        `json:"note,omitempty"`  // of the last successful run
	Error    string        `json:"error,omitempty"` // of the last failed run
}

// Summarize computes Summary from Results: one row per workload and
// target, workloads in the order they first ran, targets in the order of
// Targets (or of first appearance in Results if Targets is empty).
func (r *Report) Summarize() {
	var workloads, targets []string
	for _, t := range r.Targets {
		targets = append(targets, t.Name)
	}
	for _, res := range r.Results {
		if !slices.Contains(workloads, res.Workload) {
			workloads = append(workloads, res.Workload)
		}
		if !slices.Contains(targets, res.Target) {
			targets = append(targets, res.Target)
		}
	}
	r.Summary = r.Summary[:0]
	for _, w := range workloads {
		var base float64
		for ti, t := range targets {
			row := Row{Workload: w, Target: t}
			var vals, cpus []float64
			var p50s, p99s []float64
			for _, res := range r.Results {
				if res.Workload != w || res.Target != t {
					continue
				}
				row.Unit = res.Unit
				if res.Error != "" {
					row.Failed++
					row.Error = res.Error
					continue
				}
				row.Runs++
				row.Note = res.Note
				vals = append(vals, res.Value())
				p50s = append(p50s, float64(res.P50))
				p99s = append(p99s, float64(res.P99))
				if res.Measured {
					row.Measured = true
					cpus = append(cpus, float64(res.CPU))
					row.PeakRSS = max(row.PeakRSS, res.PeakRSS)
				}
			}
			if row.Runs+row.Failed == 0 {
				continue
			}
			row.Value = median(vals)
			row.P50 = time.Duration(median(p50s))
			row.P99 = time.Duration(median(p99s))
			row.CPU = time.Duration(median(cpus))
			if ti == 0 {
				base = row.Value
			}
			if base > 0 && row.Runs > 0 {
				row.Ratio = row.Value / base
			}
			r.Summary = append(r.Summary, row)
		}
	}
}

// median of xs (the mean of the middle two for an even count); 0 if empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadReport decodes a report written by WriteJSON, e.g. to draw it again.
func ReadReport(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	return &r, nil
}

// TerminalProgress returns f if it is a terminal and nil otherwise: the
// value for Config.Progress, so that progress lines are shown to a person
// watching but stay out of logs and pipes.
func TerminalProgress(f *os.File) io.Writer {
	if f != nil && term.IsTerminal(int(f.Fd())) {
		return f
	}
	return nil
}

// fmtValue formats a headline value with its unit.
func fmtValue(v float64, unit string) string {
	switch {
	case unit == UnitMiBps && v < 100:
		return fmt.Sprintf("%.1f %s", v, unit)
	case v < 10:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

// fmtLatency formats a latency with three significant digits or so.
func fmtLatency(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// fmtBytes formats a byte count in binary units.
func fmtBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}
