package bench

import (
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"
	"strings"
)

// pngScale is the resolution of the PNG relative to the SVG: text at 12 px
// is the 5x7 font at twice its size.
const pngScale = 2

// WritePNG draws the summary as a PNG image: the same chart as WriteSVG.
func (r *Report) WritePNG(w io.Writer) error {
	width, height := r.chartSize()
	img := image.NewRGBA(image.Rect(0, 0, width*pngScale, height*pngScale))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	r.draw(&pngCanvas{img: img})
	return png.Encode(w, img)
}

// pngCanvas rasterizes the chart.
type pngCanvas struct{ img *image.RGBA }

// px converts SVG pixels to image pixels.
func px(v float64) int { return int(math.Round(v * pngScale)) }

func (c *pngCanvas) fill(r image.Rectangle, col color.Color) {
	draw.Draw(c.img, r, image.NewUniform(col), image.Point{}, draw.Over)
}

func (c *pngCanvas) rect(_ string, x, y, w, h float64, fill string, opacity float64) {
	col := parseColor(fill)
	col.A = uint8(math.Round(255 * min(max(opacity, 0), 1)))
	c.fill(image.Rect(px(x), px(y), px(x+w), px(y+h)), col)
}

// line draws a line one image pixel wide.
func (c *pngCanvas) line(x1, y1, x2, y2 float64, stroke string) {
	col := parseColor(stroke)
	ax, ay, bx, by := px(x1), px(y1), px(x2), px(y2)
	n := max(abs(bx-ax), abs(by-ay), 1)
	for i := 0; i <= n; i++ {
		x := ax + (bx-ax)*i/n
		y := ay + (by-ay)*i/n
		c.img.Set(x, y, col)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func (c *pngCanvas) text(x, y float64, s string, st textStyle) {
	k := pngScale // font pixel size in image pixels: 12 px text
	if st.size >= 15 {
		k = pngScale * 3 / 2
	}
	col := parseColor(st.color)
	runes := []rune(s)
	left, base := px(x), px(y)
	if st.middle {
		left -= (len(runes)*6*k - k) / 2
	}
	for i, r := range runes {
		g := glyph(r)
		gx := left + i*6*k
		for cx, bits := range g {
			for row := range 8 {
				if bits&(1<<row) == 0 {
					continue
				}
				x0 := gx + cx*k
				y0 := base - (7-row)*k
				w := k
				if st.bold {
					w++
				}
				c.fill(image.Rect(x0, y0, x0+w, y0+k), col)
			}
		}
	}
}

// parseColor parses "#RRGGBB" and "#RGB"; anything else is black.
func parseColor(s string) color.NRGBA {
	h := strings.TrimPrefix(s, "#")
	if len(h) == 3 {
		h = string([]byte{h[0], h[0], h[1], h[1], h[2], h[2]})
	}
	v, err := strconv.ParseUint(h, 16, 32)
	if len(h) != 6 || err != nil {
		return color.NRGBA{A: 255}
	}
	return color.NRGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 255}
}
