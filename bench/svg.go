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
	svgTop      = 121
)

// svgColors are distinguishable on white and for most colour blindness
// (Okabe-Ito).
var svgColors = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

// WriteSVG draws the summary as an SVG image (see draw).
func (r *Report) WriteSVG(w io.Writer) error {
	width, height := r.chartSize()
	c := &svgCanvas{}
	fmt.Fprintf(&c.b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&c.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&c.b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	r.draw(c)
	c.b.WriteString("</svg>\n")
	_, err := w.Write(c.b.Bytes())
	return err
}

// canvas is what draw draws on: SVG elements or PNG pixels. Coordinates
// are in SVG pixels; y of text is its baseline.
type canvas interface {
	// rect fills a rectangle; class names it in SVG (for tests and styling).
	rect(class string, x, y, w, h float64, fill string, opacity float64)
	line(x1, y1, x2, y2 float64, stroke string)
	text(x, y float64, s string, st textStyle)
}

// textStyle is the look of a text; the zero value is 12 px black, left-aligned.
type textStyle struct {
	size   int    // px; 0 means 12
	bold   bool   //
	color  string // "" means black
	middle bool   // centred on x
}

var (
	styleTitle  = textStyle{size: 16, bold: true}
	styleBold   = textStyle{bold: true}
	styleDim    = textStyle{color: "#444"}
	styleFailed = textStyle{color: "#C00"}
	styleTick   = textStyle{size: 10, color: "#888", middle: true}
)

// chartSize is the size of the image draw fills, in SVG pixels.
func (r *Report) chartSize() (width, height int) {
	nblocks := 0
	prev := ""
	for _, row := range r.Summary {
		if row.Workload != prev {
			nblocks++
			prev = row.Workload
		}
	}
	return svgWidth, svgTop + len(r.Summary)*(svgRowH+svgRowGap) + nblocks*(svgBlockGap+svgRowH) + 20
}

// draw draws the summary: per workload, one horizontal bar per target for
// the throughput (scaled to the best target of that workload, labelled
// with the value and the ratio to the first target), and on a shared
// logarithmic axis the p50 (dark) and p99 (light) latency.
func (r *Report) draw(c canvas) {
	var targets []string
	minLat, maxLat := time.Duration(math.MaxInt64), time.Duration(0)
	for _, row := range r.Summary {
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

	c.text(svgLabelX, 20, "gluon bench", styleTitle)
	for i, l := range r.header() {
		c.text(svgLabelX, 38+float64(i)*15, l, styleDim)
	}
	// Legend: one swatch per target, and the two latency shades.
	x := float64(svgLabelX)
	for i, t := range targets {
		c.rect("", x, 87, 12, 12, svgColors[i%len(svgColors)], 1)
		c.text(x+16, 97, t, textStyle{})
		x += 16 + 7.5*float64(len(t)) + 20
	}
	c.text(svgBarX, svgTop-2, "throughput (bar length relative to the best target)", styleDim)
	c.text(svgLatX, svgTop-2, "latency p50 (dark) and p99 (light), log scale", styleDim)

	y := float64(svgTop)
	prev := ""
	for _, row := range r.Summary {
		if row.Workload != prev {
			prev = row.Workload
			y += svgBlockGap
			c.text(svgLabelX, y+svgRowH-5, row.Workload, styleBold)
			r.drawGrid(c, y, len(r.rowsOf(row.Workload)), loExp, hiExp, latX)
			y += svgRowH
		}
		ti := slices.Index(targets, row.Target)
		color := svgColors[ti%len(svgColors)]
		c.text(svgLabelX+12, y+svgRowH-5, row.Target, textStyle{})
		if row.Runs == 0 {
			c.text(svgBarX, y+svgRowH-5, "failed: "+truncate(row.Error, 80), styleFailed)
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
		c.rect("bar", svgBarX, y, bw, svgRowH, color, 1)
		label := fmtValue(row.Value, row.Unit)
		if row.Ratio > 0 {
			label += fmt.Sprintf("  ×%.2f", row.Ratio)
		}
		c.text(svgBarX+bw+5, y+svgRowH-5, label, textStyle{})
		x50, x99 := latX(row.P50), latX(row.P99)
		c.rect("p99", svgLatX, y, x99-svgLatX, svgRowH, color, 0.35)
		c.rect("p50", svgLatX, y+4, x50-svgLatX, svgRowH-8, color, 1)
		c.text(svgLatX+svgLatW+8, y+svgRowH-5, fmtLatency(row.P50)+" / "+fmtLatency(row.P99), textStyle{})
		y += svgRowH + svgRowGap
	}
}

// drawGrid draws the decade lines of the latency axis for a block of n
// rows starting below the workload title at y.
func (r *Report) drawGrid(c canvas, y float64, n int, loExp, hiExp float64, latX func(time.Duration) float64) {
	bottom := y + svgRowH + float64(n)*(svgRowH+svgRowGap)
	for e := loExp; e <= hiExp; e++ {
		d := time.Duration(math.Pow(10, e))
		x := latX(d)
		c.line(x, y+svgRowH-2, x, bottom, "#ddd")
		c.text(x, y+svgRowH-5, fmtDecade(d), styleTick)
	}
}

// svgCanvas writes SVG elements.
type svgCanvas struct{ b bytes.Buffer }

func (c *svgCanvas) rect(class string, x, y, w, h float64, fill string, opacity float64) {
	fmt.Fprintf(&c.b, `<rect`)
	if class != "" {
		fmt.Fprintf(&c.b, ` class="%s"`, class)
	}
	fmt.Fprintf(&c.b, ` x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"`, x, y, w, h, fill)
	if opacity < 1 {
		fmt.Fprintf(&c.b, ` fill-opacity="%.2f"`, opacity)
	}
	c.b.WriteString("/>\n")
}

func (c *svgCanvas) line(x1, y1, x2, y2 float64, stroke string) {
	fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x1, y1, x2, y2, stroke)
}

func (c *svgCanvas) text(x, y float64, s string, st textStyle) {
	fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f"`, x, y)
	if st.size != 0 {
		fmt.Fprintf(&c.b, ` font-size="%d"`, st.size)
	}
	if st.bold {
		c.b.WriteString(` font-weight="bold"`)
	}
	if st.color != "" {
		fmt.Fprintf(&c.b, ` fill="%s"`, st.color)
	}
	if st.middle {
		c.b.WriteString(` text-anchor="middle"`)
	}
	fmt.Fprintf(&c.b, ">%s</text>\n", esc(s))
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
