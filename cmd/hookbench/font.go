package main

import (
	"image"
	"image/color"
	"strings"
)

// glyphs is a 3×5 bitmap font, enough for the chart's labels: golang.org/x/image is not in
// the module graph, and the chart is not worth a dependency. 5 rows of 3 cells, top to bottom;
// '#' = ink.
var glyphs = map[rune]string{
	'A': ".#.#.#####.##.#", 'B': "##.#.###.#.###.", 'C': ".###..#..#...##", 'D': "##.#.##.##.###.",
	'E': "####..##.#..###", 'F': "####..##.#..#..", 'G': ".###..#.##.#.##", 'H': "#.##.#####.##.#",
	'I': "###.#..#..#.###", 'J': "..#..#..##.#.#.", 'K': "#.##.###.#.##.#", 'L': "#..#..#..#..###",
	'M': "#.########.##.#", 'N': "##.#.##.##.##.#", 'O': ".#.#.##.##.#.#.", 'P': "##.#.###.#..#..",
	'Q': ".#.#.##.###..##", 'R': "##.#.###.#.##.#", 'S': ".###...#...###.", 'T': "###.#..#..#..#.",
	'U': "#.##.##.##.####", 'V': "#.##.##.##.#.#.", 'W': "#.##.########.#", 'X': "#.##.#.#.#.##.#",
	'Y': "#.##.#.#..#..#.", 'Z': "###..#.#.#..###", '0': "####.##.##.####", '1': ".#.##..#..#.###",
	'2': "##...#.#.#..###", '3': "##...#.#...###.", '4': "#.##.####..#..#", '5': "####..##...###.",
	'6': ".###..####.####", '7': "###..#.#..#..#.", '8': "####.#####.####", '9': "####.####..###.",
	'.': ".............#.", '/': "..#..#.#.#..#..", '-': "......###......", ':': "....#.....#....",
	'%': "#.#..#.#.#..#.#", '(': ".#.#..#..#...#.", ')': ".#...#..#..#.#.", '=': "...###...###...",
	'<': "..#.#.#...#...#", ' ': "...............",
}

// text draws s (upper-cased) with its top-left corner at (x, y), each font cell scale pixels.
func text(img *image.RGBA, x, y int, s string, scale int, c color.Color) {
	for _, r := range strings.ToUpper(s) {
		if r == '×' {
			r = 'X'
		}
		g := glyphs[r]
		for i, ch := range g {
			if ch == '#' {
				fill(img, x+(i%3)*scale, y+(i/3)*scale, scale, scale, c)
			}
		}
		x += 4 * scale
	}
}

// textWidth is the width in pixels text draws s at.
func textWidth(s string, scale int) int { return len([]rune(s)) * 4 * scale }

func fill(img *image.RGBA, x, y, w, h int, c color.Color) {
	r := image.Rect(x, y, x+w, y+h).Intersect(img.Bounds())
	for py := r.Min.Y; py < r.Max.Y; py++ {
		for px := r.Min.X; px < r.Max.X; px++ {
			img.Set(px, py, c)
		}
	}
}
