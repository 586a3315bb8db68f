package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
)

var (
	white = color.RGBA{255, 255, 255, 255}
	ink   = color.RGBA{40, 40, 40, 255}
	grid  = color.RGBA{220, 220, 220, 255}
	goalC = color.RGBA{200, 30, 30, 255}
	// one colour per column: both directs, ws, wss, quic (and a darker shade for p99)
	palette = map[string][2]color.RGBA{
		"discard": {{200, 200, 200, 255}, {130, 130, 130, 255}},
		"direct":  {{150, 150, 150, 255}, {90, 90, 90, 255}},
		"ws":      {{90, 150, 220, 255}, {30, 80, 160, 255}},
		"wss":     {{120, 190, 120, 255}, {40, 120, 40, 255}},
		"quic":    {{240, 170, 70, 255}, {190, 110, 20, 255}},
	}
)

// bar is one bar of a group: its value, the label above it and its colour.
type bar struct {
	v     float64
	label string
	c     color.Color
}

// group is a set of bars side by side with a name under them and an optional goal line.
type group struct {
	name string
	bars []bar
	goal float64 // 0: none
}

// chart draws two panels into w as PNG: throughput against direct per shape and transport
// (higher is better; the red tick is the goal), and the paced latency p50/p99 per column with
// the goals 1 ms and 3 ms.
func (r *results) chart(w io.Writer) error {
	img := image.NewRGBA(image.Rect(0, 0, 1000, 660))
	draw.Draw(img, img.Bounds(), &image.Uniform{white}, image.Point{}, draw.Src)

	var thr []group
	var relayed []string
	for _, c := range r.columns {
		if !isDirect(c) {
			relayed = append(relayed, c)
		}
	}
	add := func(name string, goal float64, val func(c string) (float64, bool)) {
		g := group{name: name, goal: goal}
		for _, c := range relayed {
			if v, ok := val(c); ok {
				g.bars = append(g.bars, bar{v, fmt.Sprintf("%.2f", v), palette[c][0]})
			}
		}
		thr = append(thr, g)
	}
	add("1K BURST", goalBurst1k, func(c string) (float64, bool) {
		return ratio(r.burst1k[c].rate, r.burst1k["direct"].rate), true
	})
	add("64K BURST", goalBurst64k, func(c string) (float64, bool) {
		return ratio(r.burst64k[c].rate, r.burst64k["direct"].rate), true
	})
	add("10M SPEED", 1/goalLargeX, func(c string) (float64, bool) {
		return ratio(r.large["direct"], r.large[c]), r.large[c] > 0
	})
	add("BACKLOG DRAIN", goalDrainX, func(c string) (float64, bool) {
		b, ok := r.backlog[c]
		return ratio(b.drainRate, r.burst1k["direct"].rate), ok
	})
	panel(img, image.Rect(0, 0, 1000, 330), "THROUGHPUT / DIRECT (SAME RUN), RED = GOAL", thr, nil)

	var lat []group
	for _, c := range r.columns {
		p := r.paced[c]
		lat = append(lat, group{name: c, bars: []bar{
			{p.p50, "P50 " + ms(p.p50), palette[c][0]},
			{p.p99, "P99 " + ms(p.p99), palette[c][1]},
		}})
	}
	panel(img, image.Rect(0, 330, 1000, 660), "PACED 100/S 1K: E2E LATENCY MS, RED = GOALS P50 1 / P99 3",
		lat, []float64{goalPacedP50, goalPacedP99})

	// legend for the top panel
	x := 700
	for _, c := range relayed {
		fill(img, x, 12, 14, 14, palette[c][0])
		text(img, x+20, 14, c, 2, ink)
		x += 20 + textWidth(c, 2) + 20
	}
	return png.Encode(w, img)
}

// panel draws groups of bars in rect with a title, a linear axis from 0, and horizontal goal
// lines across the whole panel (lines) or a red tick over each group (group.goal).
func panel(img *image.RGBA, rect image.Rectangle, title string, groups []group, lines []float64) {
	text(img, rect.Min.X+20, rect.Min.Y+14, title, 2, ink)
	top, bottom := rect.Min.Y+60, rect.Max.Y-40
	left, right := rect.Min.X+60, rect.Max.X-20
	top1 := 0.0
	for _, g := range groups {
		top1 = max(top1, g.goal)
		for _, b := range g.bars {
			top1 = max(top1, b.v)
		}
	}
	for _, l := range lines {
		top1 = max(top1, l)
	}
	top1 *= 1.2
	if top1 == 0 {
		top1 = 1
	}
	y := func(v float64) int { return bottom - int(v/top1*float64(bottom-top)) }
	for i := 0; i <= 4; i++ { // grid lines with values
		v := top1 * float64(i) / 4
		fill(img, left, y(v), right-left, 1, grid)
		text(img, rect.Min.X+6, y(v)-5, ms(v), 2, ink)
	}
	fill(img, left, top, 1, bottom-top, ink)
	fill(img, left, bottom, right-left, 1, ink)
	gw := (right - left) / max(1, len(groups))
	for i, g := range groups {
		gx := left + i*gw + 10
		bw := (gw - 30) / max(1, len(g.bars))
		for j, b := range g.bars {
			bx := gx + j*bw
			fill(img, bx+2, y(b.v), bw-4, bottom-y(b.v), b.c)
			text(img, bx+2, y(b.v)-14, b.label, 2, ink)
		}
		if g.goal > 0 {
			fill(img, gx-4, y(g.goal)-1, len(g.bars)*bw+8, 3, goalC)
		}
		text(img, gx, bottom+12, g.name, 2, ink)
	}
	for _, l := range lines {
		for x := left; x < right; x += 12 { // dashed
			fill(img, x, y(l), 6, 2, goalC)
		}
	}
}
