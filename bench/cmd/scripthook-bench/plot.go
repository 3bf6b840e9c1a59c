package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"unicode/utf8"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var contenderColors = map[contender]color.RGBA{
	cEval:       {0x9e, 0x9e, 0x9e, 0xff},
	cScripthook: {0xd9, 0x5f, 0x02, 0xff},
	cScriptRun:  {0x75, 0x70, 0xb3, 0xff},
	cEvalSha:    {0x1b, 0x9e, 0x77, 0xff},
	cControl:    {0x8f, 0xd1, 0xbb, 0xff},
	cRueidis:    {0xe7, 0x29, 0x8a, 0xff},
}

// aaBandColor is the A/A band, drawn over the bars.
var aaBandColor = color.NRGBA{0x40, 0x40, 0x40, 0x48}

type canvas struct{ img *image.RGBA }

func (c *canvas) rect(x0, y0, x1, y1 int, col color.Color) {
	if x1 < x0 {
		x0, x1 = x1, x0
	}
	if y1 < y0 {
		y0, y1 = y1, y0
	}
	draw.Draw(c.img, image.Rect(x0, y0, x1, y1), image.NewUniform(col), image.Point{}, draw.Src)
}

// blend draws a translucent rectangle over what is there.
func (c *canvas) blend(x0, y0, x1, y1 int, col color.Color) {
	draw.Draw(c.img, image.Rect(x0, y0, x1, y1).Canon(), image.NewUniform(col), image.Point{}, draw.Over)
}

func (c *canvas) hline(x0, x1, y int, col color.Color) { c.rect(x0, y, x1+1, y+1, col) }
func (c *canvas) vline(x, y0, y1 int, col color.Color) { c.rect(x, y0, x+1, y1+1, col) }

// text draws s with its baseline at y; align -1 left, 0 centre, 1 right.
func (c *canvas) text(x, y int, s string, align int, col color.Color) {
	w := utf8.RuneCountInString(s) * 7
	switch align {
	case 0:
		x -= w / 2
	case 1:
		x -= w
	}
	d := font.Drawer{Dst: c.img, Src: image.NewUniform(col), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten, for the y axis.
func niceMax(v float64) (max, step float64) {
	if v <= 0 || math.IsNaN(v) {
		return 1, 0.2
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			max = m * p
			break
		}
	}
	// About five ticks.
	raw := max / 5
	sp := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*sp >= raw {
			step = m * sp
			break
		}
	}
	return max, step
}

func axisLabel(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case v >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	}
	return trimZero(fmt.Sprintf("%.1f", v))
}

func trimZero(s string) string {
	for len(s) > 1 && s[len(s)-1] == '0' && containsDot(s) {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

func containsDot(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}

// panelSpec is one chart: the main rows of one mode, grouped by size.
type panelSpec struct {
	title string
	rows  []*row
}

// writePlot draws a grouped bar chart of median calls/s: one panel per call
// mode, one group per script size, one bar per contender, with whiskers
// from the slowest to the fastest round.
func writePlot(s *suite, path string) error {
	var panels []panelSpec
	for _, m := range []struct {
		mode  rowMode
		multi bool
		title string
	}{
		{modeSingle, false, "single calls, 1 goroutine"},
		{modeSingle, true, fmt.Sprintf("single calls, %d goroutines", s.cfg.goroutines)},
		{modePipeline, false, fmt.Sprintf("pipelines of %d calls", s.cfg.batch)},
	} {
		p := panelSpec{title: m.title}
		for _, r := range s.rows {
			if r.group == groupMain && r.mode == m.mode && (r.goroutines > 1) == m.multi {
				p.rows = append(p.rows, r)
			}
		}
		if len(p.rows) > 0 {
			panels = append(panels, p)
		}
	}
	const (
		W, H            = 1500, 620
		top, bottom     = 110, 540
		left, panelGap  = 70, 80
		right           = 20
		black, gridGray = 0, 1
	)
	c := &canvas{img: image.NewRGBA(image.Rect(0, 0, W, H))}
	white := color.RGBA{0xff, 0xff, 0xff, 0xff}
	ink := color.RGBA{0x20, 0x20, 0x20, 0xff}
	grid := color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
	c.rect(0, 0, W, H, white)

	title := "scripthook benchmark: median calls/s (higher is better)"
	if s.cfg.quick {
		title += " [-quick smoke run]"
	}
	c.text(W/2, 24, title, 0, ink)
	// Legend.
	lx := left
	for _, ct := range mainContenders {
		col := contenderColors[ct]
		c.rect(lx, 44, lx+14, 58, col)
		c.text(lx+20, 56, ct.String(), -1, ink)
		lx += 20 + utf8.RuneCountInString(ct.String())*7 + 30
	}
	c.blend(left, 70, left+28, 82, aaBandColor)
	c.text(left+36, 80, "A/A noise band: EvalSha preloaded's median x the A/A control's per-round ratios (IQR, symmetric); whiskers: slowest to fastest round", -1, color.RGBA{0x60, 0x60, 0x60, 0xff})

	if len(panels) == 0 {
		return savePNG(c.img, path)
	}
	pw := (W - left - right - panelGap*(len(panels)-1)) / len(panels)
	for pi, p := range panels {
		x0 := left + pi*(pw+panelGap)
		x1 := x0 + pw
		var vmax float64
		for _, r := range p.rows {
			for _, a := range aggregate(r) {
				vmax = math.Max(vmax, nanZero(a.cps.hi))
				vmax = math.Max(vmax, nanZero(a.cps.med))
			}
		}
		ymax, step := niceMax(vmax * 1.02)
		yOf := func(v float64) int { return bottom - int(math.Round(v/ymax*float64(bottom-top))) }
		for v := 0.0; v <= ymax*1.0001; v += step {
			y := yOf(v)
			c.hline(x0, x1, y, grid)
			c.hline(x0-5, x0, y, ink)
			c.text(x0-8, y+4, axisLabel(v), 1, ink)
		}
		c.vline(x0, top, bottom, ink)
		c.hline(x0, x1, bottom, ink)
		c.text(x0-8, top-12, "calls/s", -1, ink)
		c.text((x0+x1)/2, top-12, p.title, 0, ink)

		ng := len(p.rows)
		gw := pw / ng
		nb := len(mainContenders)
		bw := (gw - 24) / nb
		for gi, r := range p.rows {
			gx := x0 + gi*gw + 12
			for bi, a := range aggregate(r) {
				col, ok := contenderColors[a.c]
				if !ok {
					continue
				}
				bx := gx + bi*bw
				if !math.IsNaN(a.cps.med) {
					c.rect(bx+1, yOf(a.cps.med), bx+bw-1, bottom, col)
				}
				if a.cps.n > 1 && !math.IsNaN(a.cps.lo) {
					mx := bx + bw/2
					c.vline(mx, yOf(a.cps.hi), yOf(a.cps.lo), ink)
					c.hline(mx-3, mx+3, yOf(a.cps.hi), ink)
					c.hline(mx-3, mx+3, yOf(a.cps.lo), ink)
				}
			}
			if aa, ok := aaBand(r); ok {
				if lim := findAgg(aggregate(r), cEvalSha); lim != nil && !math.IsNaN(lim.cps.med) {
					c.blend(gx, max(top, yOf(lim.cps.med*aa.band.q3)), gx+nb*bw, min(bottom, yOf(lim.cps.med*aa.band.q1)+1), aaBandColor)
				}
			}
			c.text(gx+(nb*bw)/2, bottom+18, sizeLabel(r.size)+" script", 0, ink)
		}
	}
	c.text(W/2, H-30, "Each bar: one contender, median over rounds run in a balanced order. Generated by bench/cmd/scripthook-bench.", 0, color.RGBA{0x60, 0x60, 0x60, 0xff})
	return savePNG(c.img, path)
}

func nanZero(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

func savePNG(img image.Image, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
