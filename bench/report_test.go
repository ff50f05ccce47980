package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// syntheticReport has two targets over three rounds; "b" is about half as
// fast as "a", and fails one randwrite round and every meta-ls round.
func syntheticReport() *Report {
	r := &Report{
		Machine: Machine{Hostname: "box", NumCPU: 2, MemTotal: 24 << 30, Kernel: "6.18.44", Arch: "x86_64",
			GoVersion: "go1.26.8", Fio: "fio-3.33", Source: "v0.1-2-gabcdef-dirty"},
		Settings: Settings{Workloads: []string{"seqwrite", "randwrite", "meta"}, Rounds: 3, Runtime: 10 * time.Second,
			Size: 256 << 20, ReadSize: 1 << 30, Jobs: 4, MetaFiles: 5000, MetaDirs: 50, MetaFileSize: 1024},
		Targets: []TargetInfo{{Name: "a", Dir: "/tmp/a", FSType: "ext4"}, {Name: "b <&>", Dir: "/mnt/b", FSType: "fuse"}},
		Started: time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC),
	}
	add := func(round int, target, wl, unit string, ops, bps float64, p50, p99 time.Duration, cpu time.Duration, measured bool, errText string) {
		r.Results = append(r.Results, Result{Round: round, Target: target, Workload: wl, Unit: unit, OpsPerSec: ops,
			BytesPerSec: bps, P50: p50, P99: p99, CPU: cpu, PeakRSS: uint64(round) << 20, Measured: measured, Error: errText})
	}
	for round, f := range []float64{1, 3, 2} { // medians at factor 2
		round++
		add(round, "a", "seqwrite", UnitMiBps, 100*f, 100*f*(1<<20), time.Duration(f)*time.Millisecond, time.Duration(f)*10*time.Millisecond, 0, false, "")
		add(round, "b <&>", "seqwrite", UnitMiBps, 50*f, 50*f*(1<<20), time.Duration(f)*2*time.Millisecond, time.Duration(f)*20*time.Millisecond, time.Duration(f)*time.Second, true, "")
		add(round, "a", "randwrite", UnitIOPS, 1000*f, 4096*1000*f, time.Duration(f)*time.Microsecond, time.Duration(f)*8*time.Microsecond, 0, false, "")
		if round == 2 {
			add(round, "b <&>", "randwrite", UnitIOPS, 0, 0, 0, 0, 0, true, "fio: exit status 1")
		} else {
			add(round, "b <&>", "randwrite", UnitIOPS, 300*f, 4096*300*f, time.Duration(f)*3*time.Microsecond, time.Duration(f)*30*time.Microsecond, time.Second, true, "")
		}
		add(round, "a", MetaLs, UnitOpsps, 5000*f, 0, 50*time.Microsecond, 90*time.Microsecond, 0, false, "")
		add(round, "b <&>", MetaLs, UnitOpsps, 0, 0, 0, 0, 0, true, "meta-ls: listed 4999 entries, created 5000 files")
	}
	r.Summarize()
	return r
}

func findRow(t *testing.T, r *Report, workload, target string) Row {
	t.Helper()
	for _, row := range r.Summary {
		if row.Workload == workload && row.Target == target {
			return row
		}
	}
	t.Fatalf("no row %s/%s", workload, target)
	return Row{}
}

func TestSummarize(t *testing.T) {
	r := syntheticReport()
	if len(r.Summary) != 6 {
		t.Fatalf("%d rows, want 6", len(r.Summary))
	}
	// Workloads in run order, targets in Targets order.
	var order []string
	for _, row := range r.Summary {
		order = append(order, row.Workload+"/"+row.Target)
	}
	if got := strings.Join(order, " "); got != "seqwrite/a seqwrite/b <&> randwrite/a randwrite/b <&> meta-ls/a meta-ls/b <&>" {
		t.Errorf("order %s", got)
	}

	a := findRow(t, r, "seqwrite", "a")
	if a.Value != 200 || a.Ratio != 1 || a.P50 != 2*time.Millisecond || a.P99 != 20*time.Millisecond || a.Runs != 3 || a.Measured {
		t.Errorf("seqwrite/a %+v", a)
	}
	b := findRow(t, r, "seqwrite", "b <&>")
	if b.Value != 100 || b.Ratio != 0.5 || b.CPU != 2*time.Second || b.PeakRSS != 3<<20 || !b.Measured {
		t.Errorf("seqwrite/b %+v", b)
	}
	// Failed round left out; the median of the two others (300, 600) is 450.
	b = findRow(t, r, "randwrite", "b <&>")
	if b.Value != 450 || b.Runs != 2 || b.Failed != 1 || math.Abs(b.Ratio-0.225) > 1e-12 || b.Error != "fio: exit status 1" {
		t.Errorf("randwrite/b %+v", b)
	}
	b = findRow(t, r, MetaLs, "b <&>")
	if b.Runs != 0 || b.Failed != 3 || b.Ratio != 0 || b.Value != 0 {
		t.Errorf("meta-ls/b %+v", b)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{4}, 4}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestWriteTable(t *testing.T) {
	r := syntheticReport()
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"# machine: box, 2 CPUs, 24.0 GiB RAM, kernel 6.18.44 x86_64, go1.26.8, fio-3.33, source v0.1-2-gabcdef-dirty",
		"# settings: 3 round(s), fio runtime 10s, size 256.0 MiB, read size 1.0 GiB, jobs 4",
		"# target b <&>: /mnt/b (fuse)",
		"\nfailures:\n  round 1 b <&> meta-ls: meta-ls: listed 4999 entries, created 5000 files\n  round 2 b <&> randwrite: fio: exit status 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	var header string
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "WORKLOAD"):
			header = l
		case header != "" && l == "":
			header += "\x00" // end of table
		case header != "" && !strings.Contains(header, "\x00"):
			rows = append(rows, l)
		}
	}
	if len(rows) != 6 {
		t.Fatalf("%d table rows, want 6:\n%s", len(rows), out)
	}
	// Every cell starts where its column header starts.
	cols := []string{"TARGET", "RESULT", "P50", "P99", "RATIO", "CPU", "PEAK RSS", "RUNS"}
	want := [][]string{
		{"a", "200 MiB/s", "2.00ms", "20.0ms", "1.00", "-", "-", "3/3"},
		{"b <&>", "100 MiB/s", "4.00ms", "40.0ms", "0.50", "2.00s", "3.0 MiB", "3/3"},
		{"a", "2000 IOPS", "2.0µs", "16µs", "1.00", "-", "-", "3/3"},
		{"b <&>", "450 IOPS", "4.5µs", "45µs", "0.23", "1.00s", "3.0 MiB", "2/3"},
		{"a", "10000 ops/s", "50µs", "90µs", "1.00", "-", "-", "3/3"},
		{"b <&>", "FAILED", "-", "-", "-", "-", "-", "0/3"},
	}
	for i, row := range rows {
		rr := []rune(row)
		for j, c := range cols {
			at := len([]rune(header[:strings.Index(header, c)]))
			if cell := string(rr[min(at, len(rr)):]); cell != want[i][j] && !strings.HasPrefix(cell, want[i][j]+" ") {
				t.Errorf("row %d column %s: want %q at %d in %q", i, c, want[i][j], at, row)
			}
			if at > 0 && rr[at-1] != ' ' {
				t.Errorf("row %d column %s not separated: %q", i, c, row)
			}
		}
	}
	// A workload's name appears only on its first row.
	if !strings.HasPrefix(rows[0], "seqwrite ") || !strings.HasPrefix(rows[1], " ") {
		t.Errorf("grouping: %q / %q", rows[0], rows[1])
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := syntheticReport()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"nproc": 2`, `"p99_ns": 20000000`, `"ratio": 0.5`, `"source": "v0.1-2-gabcdef-dirty"`, `"runtime_ns": 10000000000`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	back, err := ReadReport(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != len(r.Results) || len(back.Summary) != len(r.Summary) || back.Machine != r.Machine {
		t.Fatalf("round trip lost data: %+v", back)
	}
	if back.Summary[3] != r.Summary[3] {
		t.Errorf("row %+v, want %+v", back.Summary[3], r.Summary[3])
	}
	if _, err := ReadReport(strings.NewReader("{")); err == nil {
		t.Error("truncated JSON read without error")
	}
}

func TestWriteSVG(t *testing.T) {
	r := syntheticReport()
	var buf bytes.Buffer
	if err := r.WriteSVG(&buf); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	counts := make(map[string]int)
	var texts []string
	var root string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, buf.String())
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Space + " " + tok.Name.Local
			}
			for _, a := range tok.Attr {
				if a.Name.Local == "class" {
					counts[a.Value]++
				}
			}
		case xml.CharData:
			texts = append(texts, string(tok))
		}
	}
	if root != "http://www.w3.org/2000/svg svg" {
		t.Errorf("root element %q", root)
	}
	// One throughput bar and two latency bars per successful row (5 of 6).
	if counts["bar"] != 5 || counts["p50"] != 5 || counts["p99"] != 5 {
		t.Errorf("bars %v, want 5 of each", counts)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"b <&>", "100 MiB/s  ×0.50", "450 IOPS  ×0.23", "2.00ms / 20.0ms", "failed: meta-ls: listed 4999", "seqwrite", "1µs", "100ms"} {
		if !strings.Contains(all, want) {
			t.Errorf("SVG text lacks %q", want)
		}
	}
}

// The PNG is the SVG's chart at twice the resolution: white, with the
// throughput bars in the targets' colours and the text drawn.
func TestWritePNG(t *testing.T) {
	r := syntheticReport()
	var buf bytes.Buffer
	if err := r.WritePNG(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	w, h := r.chartSize()
	if b := img.Bounds(); b.Dx() != 2*w || b.Dy() != 2*h {
		t.Fatalf("size %v, want %dx%d", b, 2*w, 2*h)
	}
	// Count colours straight from the pixels: At is slow under -race.
	counts := make(map[color.NRGBA]int)
	switch img := img.(type) {
	case *image.RGBA:
		for i := 0; i+4 <= len(img.Pix); i += 4 {
			counts[color.NRGBA{img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3]}]++
		}
	case *image.NRGBA:
		for i := 0; i+4 <= len(img.Pix); i += 4 {
			counts[color.NRGBA{img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3]}]++
		}
	default:
		t.Fatalf("decoded as %T", img)
	}
	white, black := color.NRGBA{255, 255, 255, 255}, color.NRGBA{0, 0, 0, 255}
	if counts[white] < 2*w*h {
		t.Errorf("%d white pixels of %d: background not white", counts[white], 4*w*h)
	}
	if counts[black] < 1000 {
		t.Errorf("%d black pixels: no text", counts[black])
	}
	// Target a's seqwrite bar is the widest: svgBarW by svgRowH, times 4.
	if n := counts[parseColor(svgColors[0])]; n < 4*svgBarW*svgRowH {
		t.Errorf("%d pixels in the first target's colour, want a full bar", n)
	}
}

func TestWriteEmptyReport(t *testing.T) {
	r := &Report{}
	r.Summarize()
	for name, write := range map[string]func(io.Writer) error{"table": r.WriteTable, "json": r.WriteJSON, "svg": r.WriteSVG, "png": r.WritePNG} {
		if err := write(io.Discard); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestFormatters(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{0, "-"}, {1500, "1.5µs"}, {95744, "96µs"}, {4014080, "4.01ms"}, {40 * time.Millisecond, "40.0ms"}, {260300 * time.Microsecond, "260ms"}, {1500 * time.Millisecond, "1.50s"}} {
		if got := fmtLatency(c.d); got != c.want {
			t.Errorf("fmtLatency(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	if got := fmtValue(812.34, UnitMiBps); got != "812 MiB/s" {
		t.Errorf("fmtValue = %q", got)
	}
	if got := fmtBytes(1536); got != "1.5 KiB" {
		t.Errorf("fmtBytes = %q", got)
	}
}
