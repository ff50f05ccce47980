package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// SVG layout, in pixels.
const (
	svgWidth    = 1100
	svgLabelX   = 10  // workload and target labels
	svgBarX     = 190 // throughput panel
	svgBarW     = 300
	svgLatX     = 650 // latency panel (log scale)
	svgLatW     = 300
	svgRowH     = 18
	svgRowGap   = 4
	svgBlockGap = 16
	svgTop      = 106
)

// svgColors are distinguishable on white and for most colour blindness
// (Okabe-Ito).
var svgColors = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

// WriteSVG draws the summary: per workload, one horizontal bar per target
// for the throughput (scaled to the best target of that workload, labelled
// with the value and the ratio to the first target), and on a shared
// logarithmic axis the p50 (dark) and p99 (light) latency.
func (r *Report) WriteSVG(w io.Writer) error {
	var targets []string
	nblocks := 0
	prev := ""
	minLat, maxLat := time.Duration(math.MaxInt64), time.Duration(0)
	for _, row := range r.Summary {
		if row.Workload != prev {
			nblocks++
			prev = row.Workload
		}
		if !slices.Contains(targets, row.Target) {
			targets = append(targets, row.Target)
		}
		for _, d := range []time.Duration{row.P50, row.P99} {
			if row.Runs > 0 && d > 0 {
				minLat, maxLat = min(minLat, d), max(maxLat, d)
			}
		}
	}
	// Whole decades around the data, so that the grid lines are round.
	loExp, hiExp := 3.0, 6.0 // 1µs .. 1ms when there is no latency at all
	if maxLat > 0 {
		loExp = math.Floor(math.Log10(float64(minLat)))
		hiExp = math.Ceil(math.Log10(float64(maxLat)))
		if hiExp <= loExp {
			hiExp = loExp + 1
		}
	}
	latX := func(d time.Duration) float64 {
		if d <= 0 {
			return svgLatX
		}
		f := (math.Log10(float64(d)) - loExp) / (hiExp - loExp)
		return svgLatX + svgLatW*min(max(f, 0), 1)
	}
	height := svgTop + len(r.Summary)*(svgRowH+svgRowGap) + nblocks*(svgBlockGap+svgRowH) + 20

	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	text := func(x, y float64, attrs, s string) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f"%s>%s</text>`+"\n", x, y, attrs, esc(s))
	}
	text(svgLabelX, 20, ` font-size="16" font-weight="bold"`, "gluon bench")
	for i, l := range r.header() {
		text(svgLabelX, 38+float64(i)*15, ` fill="#444"`, l)
	}
	// Legend: one swatch per target, and the two latency shades.
	x := float64(svgLabelX)
	for i, t := range targets {
		fmt.Fprintf(&b, `<rect x="%.1f" y="72" width="12" height="12" fill="%s"/>`+"\n", x, svgColors[i%len(svgColors)])
		text(x+16, 82, "", t)
		x += 16 + 7.5*float64(len(t)) + 20
	}
	text(svgBarX, svgTop-2, ` fill="#444"`, "throughput (bar length relative to the best target)")
	text(svgLatX, svgTop-2, ` fill="#444"`, "latency p50 (dark) and p99 (light), log scale")

	y := float64(svgTop)
	prev = ""
	for _, row := range r.Summary {
		if row.Workload != prev {
			prev = row.Workload
			y += svgBlockGap
			text(svgLabelX, y+svgRowH-5, ` font-weight="bold"`, row.Workload)
			r.svgGrid(&b, y, len(r.rowsOf(row.Workload)), loExp, hiExp, latX)
			y += svgRowH
		}
		ti := slices.Index(targets, row.Target)
		color := svgColors[ti%len(svgColors)]
		text(svgLabelX+12, y+svgRowH-5, "", row.Target)
		if row.Runs == 0 {
			text(svgBarX, y+svgRowH-5, ` fill="#C00"`, "failed: "+truncate(row.Error, 80))
			y += svgRowH + svgRowGap
			continue
		}
		best := 0.0
		for _, o := range r.rowsOf(row.Workload) {
			best = max(best, o.Value)
		}
		bw := 0.0
		if best > 0 {
			bw = svgBarW * row.Value / best
		}
		fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%.1f" width="%.1f" height="%d" fill="%s"/>`+"\n", svgBarX, y, bw, svgRowH, color)
		label := fmtValue(row.Value, row.Unit)
		if row.Ratio > 0 {
			label += fmt.Sprintf("  ×%.2f", row.Ratio)
		}
		text(svgBarX+bw+5, y+svgRowH-5, "", label)
		x50, x99 := latX(row.P50), latX(row.P99)
		fmt.Fprintf(&b, `<rect class="p99" x="%d" y="%.1f" width="%.1f" height="%d" fill="%s" fill-opacity="0.35"/>`+"\n",
			svgLatX, y, x99-svgLatX, svgRowH, color)
		fmt.Fprintf(&b, `<rect class="p50" x="%d" y="%.1f" width="%.1f" height="%d" fill="%s"/>`+"\n",
			svgLatX, y+4, x50-svgLatX, svgRowH-8, color)
		text(svgLatX+svgLatW+8, y+svgRowH-5, "", fmtLatency(row.P50)+" / "+fmtLatency(row.P99))
		y += svgRowH + svgRowGap
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// svgGrid draws the decade lines of the latency axis for a block of n
// rows starting below the workload title at y.
func (r *Report) svgGrid(b *bytes.Buffer, y float64, n int, loExp, hiExp float64, latX func(time.Duration) float64) {
	bottom := y + svgRowH + float64(n)*(svgRowH+svgRowGap)
	for e := loExp; e <= hiExp; e++ {
		d := time.Duration(math.Pow(10, e))
		x := latX(d)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x, y+svgRowH-2, x, bottom)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" fill="#888" text-anchor="middle">%s</text>`+"\n",
			x, y+svgRowH-5, esc(fmtDecade(d)))
	}
}

func (r *Report) rowsOf(workload string) []Row {
	var rows []Row
	for _, row := range r.Summary {
		if row.Workload == workload {
			rows = append(rows, row)
		}
	}
	return rows
}

// fmtDecade names a power-of-ten duration: 1µs, 100ms, 10s.
func fmtDecade(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d)
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d/time.Microsecond)
	case d < time.Second:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s)) // writes to a bytes.Buffer cannot fail
	return b.String()
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
