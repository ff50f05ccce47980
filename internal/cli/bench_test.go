package cli

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/bench"
)

// gluonMain runs the command line in this process.
func gluonMain(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main(append([]string{"gluon"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// Bad invocations exit 2 with one "gluon: ..." line before anything starts.
func TestBenchUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string // in the message
	}{
		{nil, "missing TARGET"},
		{[]string{"nfs:replica=3"}, `"nfs:replica=3" is neither local`},
		{[]string{"gluon:replica=0"}, "replica must be a positive integer"},
		{[]string{"gluon:replica=3,stripe=2"}, `unknown key "stripe"`},
		{[]string{"gluster:replica"}, "not key=value"},
		{[]string{filepath.Join(dir, "missing")}, "nor an existing directory"},
		{[]string{"local", "local"}, "given twice"},
		{[]string{"--runtime", "fast", "local"}, `invalid argument "fast" for "--runtime"`},
		{[]string{"--runtime", "0", "local"}, "--runtime 0s: must be positive"},
		{[]string{"--runtime", "500ms", "local"}, "at least 1s"},
		{[]string{"--rounds", "0", "local"}, "--rounds 0"},
		{[]string{"--jobs", "0", "local"}, "--jobs 0"},
		{[]string{"--meta-workers", "0", "local"}, "--meta-workers 0"},
		{[]string{"--meta-workers", "100", "local"}, "meta workers 100: want 1..64"},
		{[]string{"--meta-files", "0", "local"}, "--meta-files 0"},
		{[]string{"--meta-dirs", "0", "local"}, "--meta-dirs 0"},
		{[]string{"--meta-big", "-1", "local"}, "--meta-big -1"},
		{[]string{"--meta-create-for", "0", "local"}, "--meta-create-for 0s: must be positive"},
		{[]string{"--size", "lots", "local"}, `size "lots"`},
		{[]string{"--size", "4k", "local"}, "at least 1M"},
		{[]string{"--read-size", "1x", "local"}, `size "1x"`},
		{[]string{"--workloads", "randread,meta", "local"}, `unknown workload "randread"`},
		{[]string{"--workloads", "", "local"}, "--workloads: empty"},
		{[]string{"--plot", "out.pdf", "local"}, "name it FILE.svg or FILE.png"},
		{[]string{"--json", "r.svg", "--plot", "r.svg", "local"}, "both name"},
		{[]string{"--bogus", "local"}, "unknown flag: --bogus"},
	} {
		code, stdout, stderr := gluonMain(append([]string{"bench"}, tt.args...)...)
		if code != exitUsage || stdout != "" || !strings.HasPrefix(stderr, "gluon: ") ||
			strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
			t.Errorf("gluon bench %q: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q",
				tt.args, code, stdout, stderr, tt.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("usage errors left %v behind", ents)
	}
}

// TestBenchLocalLoopback runs a short benchmark through the command line
// and checks all three outputs. The meta flags have values of their own,
// so that one bound to the wrong field shows in the settings.
func TestBenchLocalLoopback(t *testing.T) {
	out, work := t.TempDir(), t.TempDir()
	jsonPath, plotPath, raw := filepath.Join(out, "r.json"), filepath.Join(out, "r.svg"), filepath.Join(out, "raw")
	code, stdout, stderr := gluonMain("bench", "local", "loopback", "--rounds", "1", "--runtime", "1s", "--size", "4M",
		"--workloads", "randwrite,meta", "--keep-caches", "--work-dir", work,
		"--meta-files", "60", "--meta-workers", "2", "--meta-dirs", "5", "--meta-big", "20", "--meta-create-for", "1m",
		"--json", jsonPath, "--plot", plotPath, "--raw", raw)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Log("\n" + stdout)
	if stderr != "" {
		t.Errorf("stderr is not a terminal, yet got %q", stderr)
	}

	// The table: a header with a ratio column, and a row per workload
	// (meta: per phase) and target, with the first target as baseline.
	lines := strings.Split(stdout, "\n")
	hdr := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "WORKLOAD") })
	if hdr < 0 || !strings.Contains(lines[hdr], "RATIO") {
		t.Fatalf("no table header with RATIO:\n%s", stdout)
	}
	ratioCol := strings.Index(lines[hdr], "RATIO")
	workload := ""
	rows := 0
	for _, l := range lines[hdr+1:] {
		if l == "" {
			break
		}
		f := strings.Fields(l)
		if !strings.HasPrefix(l, " ") {
			workload, f = f[0], f[1:]
		}
		rows++
		if len(l) <= ratioCol {
			t.Errorf("short row %q", l)
			continue
		}
		ratio := strings.Fields(l[ratioCol:])[0]
		switch {
		case f[0] != "local" && f[0] != "loopback":
			t.Errorf("row %q: unknown target", l)
		case f[0] == "local" && ratio != "1.00":
			t.Errorf("%s: baseline ratio %s, want 1.00", workload, ratio)
		case ratio == "-":
			t.Errorf("%s %s: no ratio: %q", workload, f[0], l)
		}
	}
	// meta-ls-big runs: --meta-big is set.
	if want := 2 * (1 + len(bench.MetaPhases) + 1); rows != want {
		t.Errorf("%d table rows, want %d:\n%s", rows, want, stdout)
	}
	if strings.Contains(stdout, "failures:") {
		t.Errorf("failures reported:\n%s", stdout)
	}

	f, err := os.Open(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := bench.ReadReport(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Targets) != 2 || rep.Targets[0].Name != "local" || rep.Targets[1].Name != "loopback" ||
		len(rep.Summary) != rows || rep.Settings.Runtime.Seconds() != 1 || rep.Settings.Size != 4<<20 {
		t.Errorf("JSON report: targets %+v, %d summary rows, settings %+v", rep.Targets, len(rep.Summary), rep.Settings)
	}
	if s := rep.Settings; s.MetaFiles != 60 || s.MetaWorkers != 2 || s.MetaDirs != 5 || s.MetaBig != 20 || s.MetaCreateFor != time.Minute {
		t.Errorf("JSON settings: meta files %d, workers %d, dirs %d, big %d, create cap %v; want 60, 2, 5, 20, 1m0s",
			s.MetaFiles, s.MetaWorkers, s.MetaDirs, s.MetaBig, s.MetaCreateFor)
	}
	if !slices.ContainsFunc(rep.Summary, func(r bench.Row) bool { return r.Workload == bench.MetaLsBig }) {
		t.Errorf("no %s in the summary", bench.MetaLsBig)
	}

	svg, err := os.ReadFile(plotPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := wellFormed(svg); err != nil || !bytes.Contains(svg, []byte("<svg")) {
		t.Errorf("plot is not well-formed SVG: %v", err)
	}
	if raws, _ := filepath.Glob(filepath.Join(raw, "*.json")); len(raws) != 2 {
		t.Errorf("raw fio outputs %v, want one per target", raws)
	}
	// Only the outputs, no temporary files; nothing left in the work dir.
	if ents, _ := os.ReadDir(out); len(ents) != 3 {
		t.Errorf("output dir holds %d entries, want r.json, r.svg, raw", len(ents))
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir not cleaned up: %v", ents)
	}
}

// wellFormed parses data as XML to the end.
func wellFormed(data []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// An output path that cannot be written fails at once, before any target
// is started.
func TestBenchBadOutputPath(t *testing.T) {
	work := t.TempDir()
	code, stdout, stderr := gluonMain("bench", "--json", filepath.Join(work, "no", "r.json"), "--work-dir", work, "local")
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, "no such file or directory") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir %v: something was started", ents)
	}
}

// --plot draws SVG or PNG by the file's extension, in any case.
func TestPlotWriter(t *testing.T) {
	for _, p := range []string{"r.svg", "dir/R.SVG", "r.png", "r.Png"} {
		if plotWriter(p) == nil {
			t.Errorf("%s: no writer", p)
		}
	}
	for _, p := range []string{"r.pdf", "r", "svg", "r.svg.gz"} {
		if plotWriter(p) != nil {
			t.Errorf("%s: a writer", p)
		}
	}
}
