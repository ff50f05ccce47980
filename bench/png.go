package bench

import (
	"image"
	"image/color"
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
	c := &pngCanvas{img: img}
	c.fill(img.Bounds(), color.NRGBA{255, 255, 255, 255})
	r.draw(c)
	return png.Encode(w, img)
}

// pngCanvas rasterizes the chart.
type pngCanvas struct{ img *image.RGBA }

// px converts SVG pixels to image pixels.
func px(v float64) int { return int(math.Round(v * pngScale)) }

// fill paints r with col over what is there (col.A is its opacity).
func (c *pngCanvas) fill(r image.Rectangle, col color.NRGBA) {
	r = r.Intersect(c.img.Bounds())
	if r.Empty() {
		return
	}
	if col.A == 255 {
		// One row of the colour, copied into place row by row: far fewer
		// memory operations than a loop over pixels.
		line := make([]byte, 4*r.Dx())
		copy(line, []byte{col.R, col.G, col.B, 255})
		for n := 4; n < len(line); n *= 2 {
			copy(line[n:], line[:n])
		}
		for y := r.Min.Y; y < r.Max.Y; y++ {
			copy(c.img.Pix[c.img.PixOffset(r.Min.X, y):], line)
		}
		return
	}
	a := uint32(col.A)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := c.img.Pix[c.img.PixOffset(r.Min.X, y):c.img.PixOffset(r.Max.X, y)]
		for i := 0; i < len(row); i += 4 {
			row[i] = uint8((uint32(col.R)*a + uint32(row[i])*(255-a)) / 255)
			row[i+1] = uint8((uint32(col.G)*a + uint32(row[i+1])*(255-a)) / 255)
			row[i+2] = uint8((uint32(col.B)*a + uint32(row[i+2])*(255-a)) / 255)
			row[i+3] = 255
		}
	}
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
