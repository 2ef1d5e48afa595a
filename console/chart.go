package console

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"
)

// Charts are drawn here as inline SVG, so the pages need no script or
// library to show them.

// point is one value at a time.
type point struct {
	T time.Time
	V float64
}

// series is one line of a chart.
type series struct {
	Name   string
	Points []point
}

// lineColors are the lines' colours, in turn.
var lineColors = []string{"#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#718096"}

// lineChart draws series over [from, to] as an SVG of w by h pixels, with
// its title, the axis range and a legend. The text is escaped; the rest
// is numbers.
func lineChart(title, unit string, from, to time.Time, ss []series, w, h int) template.HTML {
	const left, right, top, bottom = 56, 8, 18, 18
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, p := range s.Points {
			lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" viewBox="0 0 %d %d" width="%d" height="%d"><title>%s</title>`, w, h, w, h, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="12" class="chart-title">%s</text>`, left, html.EscapeString(title))
	if math.IsInf(lo, 1) {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="chart-empty">no samples in this hour</text></svg>`, left, h/2)
		return template.HTML(b.String())
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		hi = lo + 1
	}
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 { return float64(left) + pw*t.Sub(from).Seconds()/span }
	y := func(v float64) float64 { return float64(top) + ph*(1-(v-lo)/(hi-lo)) }
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" class="chart-frame"/>`, left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="chart-axis" text-anchor="end">%s</text>`, left-4, top+8, html.EscapeString(humanValue(hi, unit)))
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="chart-axis" text-anchor="end">%s</text>`, left-4, h-bottom, html.EscapeString(humanValue(lo, unit)))
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="chart-axis">%s</text>`, left, h-4, from.UTC().Format("15:04"))
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="chart-axis" text-anchor="end">%s UTC</text>`, w-right, h-4, to.UTC().Format("15:04"))
	for i, s := range ss {
		color := lineColors[i%len(lineColors)]
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.T), y(p.V)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"><title>%s</title></polyline>`, color, strings.Join(pts, " "), html.EscapeString(s.Name))
		fmt.Fprintf(&b, `<text x="%d" y="12" fill="%s" class="chart-legend" text-anchor="end">%s</text>`, w-right-i*110, color, html.EscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// barChart draws counts as a small SVG of bars (the sites' events per
// minute), the last bar now.
func barChart(title string, counts []int, w, h int) template.HTML {
	peak := 1
	for _, c := range counts {
		peak = max(peak, c)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" role="img" viewBox="0 0 %d %d" width="%d" height="%d"><title>%s</title>`, w, h, w, h, html.EscapeString(title))
	fmt.Fprintf(&b, `<line x1="0" y1="%d" x2="%d" y2="%d" class="baseline"/>`, h-1, w, h-1)
	if len(counts) > 0 {
		bw := float64(w) / float64(len(counts))
		for i, c := range counts {
			bh := float64(h-1) * float64(c) / float64(peak)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="bar"><title>%d</title></rect>`, float64(i)*bw, float64(h)-bh, math.Max(bw-1, 1), bh, c)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// humanValue is v with its unit, bits and seconds scaled for people.
func humanValue(v float64, unit string) string {
	switch unit {
	case "bps":
		for _, u := range []struct {
			f float64
			s string
		}{{1e9, "Gb/s"}, {1e6, "Mb/s"}, {1e3, "kb/s"}} {
			if math.Abs(v) >= u.f {
				return fmt.Sprintf("%.1f %s", v/u.f, u.s)
			}
		}
		return fmt.Sprintf("%.0f b/s", v)
	case "s":
		return (time.Duration(v) * time.Second).String()
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}
