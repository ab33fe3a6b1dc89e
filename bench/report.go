package main

import (
	"fmt"
	"html/template"
	"math"
	"os"
	"strings"
	"time"

	"github.com/playgate/playgate/bench/internal/hist"
	"github.com/playgate/playgate/bench/internal/load"
)

// htmlReport writes a self-contained page: the table, latency over time
// (p50 and p99 per second) and the latency distribution (percentile
// curve), as inline SVG, for each measured target.
func htmlReport(path, title string, runs map[string]*load.Result, reports []report) error {
	if path == "" {
		return nil
	}
	type plot struct {
		Name               string
		Over, Distribution template.HTML
	}
	var plots []plot
	for _, r := range reports {
		res := runs[r.Name]
		if res == nil {
			continue
		}
		plots = append(plots, plot{Name: r.Name, Over: overTime(res.Timeline), Distribution: distribution(res.Latency)})
	}
	page := template.Must(template.New("report").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font:14px system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}td,th{padding:.2rem .6rem;text-align:right;border-bottom:1px solid #ddd}
svg{background:#fafafa;border:1px solid #ddd;margin:.5rem 1rem .5rem 0}</style></head><body>
<h1>{{.Title}}</h1><p>{{.When}}</p>
<table><tr><th>target</th><th>req/s</th><th>requests</th><th>errors</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
{{range .Reports}}<tr><td>{{.Name}}</td><td>{{printf "%.0f" .RPS}}</td><td>{{.Requests}}</td><td>{{.Errors}}</td><td>{{.P50}}</td><td>{{.P90}}</td><td>{{.P99}}</td><td>{{.P999}}</td><td>{{.Max}}</td></tr>{{end}}
</table>
{{range .Plots}}<h2>{{.Name}}</h2>{{.Over}}{{.Distribution}}{{end}}
</body></html>`))
	var out strings.Builder
	if err := page.Execute(&out, map[string]any{"Title": title, "When": time.Now().Format(time.RFC1123), "Reports": reports, "Plots": plots}); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out.String()), 0o644)
}

const plotW, plotH = 520.0, 220.0

// series is one line of a plot, in data units (y in milliseconds).
type series struct {
	Name, Color string
	Points      [][2]float64
}

// svgPlot draws lines on a linear y axis from 0 to just above the highest
// point, so two runs' plots are read by their axis label, not their shape.
func svgPlot(title, xLabel string, xMax float64, lines ...series) template.HTML {
	yMax := 0.0
	for _, l := range lines {
		for _, p := range l.Points {
			yMax = math.Max(yMax, p[1])
		}
	}
	yMax = math.Max(yMax*1.1, 0.001)
	xMax = math.Max(xMax, 1e-9)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%.0f" height="%.0f" xmlns="http://www.w3.org/2000/svg">`, plotW+60, plotH+50)
	fmt.Fprintf(&b, `<text x="60" y="15">%s</text>`, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="60" y="%.0f">%s</text>`, plotH+45, template.HTMLEscapeString(xLabel))
	fmt.Fprintf(&b, `<text x="2" y="30">%.2f ms</text><text x="2" y="%.0f">0</text>`, yMax, plotH+20)
	fmt.Fprintf(&b, `<rect x="55" y="20" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, plotW, plotH)
	for i, l := range lines {
		var pl strings.Builder
		for _, p := range l.Points {
			fmt.Fprintf(&pl, "%.1f,%.1f ", 55+p[0]/xMax*plotW, 20+plotH-p[1]/yMax*plotH)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, l.Color, pl.String())
		fmt.Fprintf(&b, `<text x="%d" y="15" fill="%s">%s</text>`, 300+i*70, l.Color, template.HTMLEscapeString(l.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built from numbers and escaped labels only
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func overTime(tl []load.Point) template.HTML {
	var p50, p99 [][2]float64
	xMax := 0.0
	for _, p := range tl {
		x := p.At.Seconds()
		xMax = math.Max(xMax, x)
		p50 = append(p50, [2]float64{x, ms(p.P50)})
		p99 = append(p99, [2]float64{x, ms(p.P99)})
	}
	return svgPlot("latency over time", "seconds", xMax,
		series{"p50", "#1f77b4", p50}, series{"p99", "#d62728", p99})
}

func distribution(h *hist.Histogram) template.HTML {
	var pts [][2]float64
	for _, q := range []float64{0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1} {
		// x: -log10(1-q) spreads the tail, as HDR plots do.
		x := 4.0
		if q < 1 {
			x = math.Min(-math.Log10(1-q), 4)
		}
		pts = append(pts, [2]float64{x, ms(h.Quantile(q))})
	}
	return svgPlot("latency by percentile", "percentile (0, 90, 99, 99.9, 99.99 across)", 4,
		series{"latency", "#2ca02c", pts})
}
