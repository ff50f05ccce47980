package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// header describes the machine, the settings and the run's timing.
func (r *Report) header() []string {
	m, s := r.Machine, r.Settings
	machine := fmt.Sprintf("machine: %s, %d CPUs, %s RAM, kernel %s %s, %s", m.Hostname, m.NumCPU,
		fmtBytes(m.MemTotal), m.Kernel, m.Arch, m.GoVersion)
	if m.Fio != "" {
		machine += ", " + m.Fio
	}
	if m.Source != "" {
		machine += ", source " + m.Source
	}
	settings := fmt.Sprintf("settings: %d round(s), fio runtime %v, size %s, read size %s, jobs %d, meta %d files x %d B in %d dirs by %d worker(s)",
		s.Rounds, s.Runtime, fmtBytes(uint64(s.Size)), fmtBytes(uint64(s.ReadSize)), s.Jobs, s.MetaFiles, s.MetaFileSize, s.MetaDirs, s.MetaWorkers)
	if s.MetaCreateFor > 0 && s.MetaCreateFor != s.Runtime {
		settings += fmt.Sprintf(", meta-create capped at %v", s.MetaCreateFor)
	}
	if s.MetaBig > 0 {
		settings += fmt.Sprintf(", meta-ls-big of %d files", s.MetaBig)
	}
	if s.DropCaches {
		settings += ", caches dropped"
	}
	lines := []string{machine, settings}
	if !r.Started.IsZero() {
		run := "started " + r.Started.Format(time.RFC3339)
		if !r.Finished.IsZero() {
			run += ", took " + fmtMinutes(r.Finished.Sub(r.Started))
		}
		if r.Estimate > 0 {
			run += " (estimated " + fmtMinutes(r.Estimate) + ")"
		}
		lines = append(lines, run)
	}
	return lines
}

// WriteTable writes the summary as an aligned text table: one row per
// workload and target with the median result, p50 and p99 latency, the
// ratio to the first target, the CPU time and peak RSS of the target's
// processes, the number of successful runs, and a note. Failures are
// listed below the table.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	for _, l := range r.header() {
		fmt.Fprintf(&b, "# %s\n", l)
	}
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "# target %s: %s (%s)", t.Name, t.Dir, t.FSType)
		if t.Setup >= time.Second {
			fmt.Fprintf(&b, ", set up in %.1fs", t.Setup.Seconds())
		}
		if t.LayoutBytes > 0 {
			fmt.Fprintf(&b, ", %s laid out in %.1fs", fmtBytes(uint64(t.LayoutBytes)), t.Layout.Seconds())
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tTARGET\tRESULT\tP50\tP99\tRATIO\tCPU\tPEAK RSS\tRUNS\tNOTE")
	prev := ""
	for _, row := range r.Summary {
		wl := row.Workload
		if wl == prev {
			wl = "" // group rows of one workload visually
		}
		prev = row.Workload
		result, ratio, cpu, rss := "FAILED", "-", "-", "-"
		if row.Runs > 0 {
			result = fmtValue(row.Value, row.Unit)
		}
		if row.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", row.Ratio)
		}
		if row.Measured && row.Runs > 0 {
			cpu = fmt.Sprintf("%.2fs", row.CPU.Seconds())
			rss = fmtBytes(row.PeakRSS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", wl, row.Target, result,
			fmtLatency(row.P50), fmtLatency(row.P99), ratio, cpu, rss, row.Runs, row.Runs+row.Failed, row.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var failures []string
	for _, res := range r.Results {
		if res.Error != "" {
			failures = append(failures, fmt.Sprintf("  round %d %s %s: %s", res.Round, res.Target, res.Workload, res.Error))
		}
	}
	if len(failures) > 0 {
		b.WriteString("\nfailures:\n" + strings.Join(failures, "\n") + "\n")
	}
	// Trailing blanks from the last (note) column are noise.
	var out strings.Builder
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		out.WriteString(strings.TrimRight(l, " \n"))
		if strings.HasSuffix(l, "\n") {
			out.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}
