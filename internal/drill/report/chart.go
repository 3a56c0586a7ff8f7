package report

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/drill"
)

// Chart geometry, in SVG user units.
const (
	chartW            = 960
	padL, padR        = 64, 16
	latTop, latH      = 36, 220
	errTop, errH      = 290, 80
	chartH            = 400
	plotW             = chartW - padL - padR
	minLatencySeconds = 1e-4
)

// marker is a vertical line on the chart.
type marker struct {
	t     float64 // seconds since the start
	label string
	class string
}

// markers returns the drill's moments and the agent's actions as lines.
func markers(r *drill.Result) []marker {
	start := r.Marks.Start
	at := func(t time.Time) float64 { return t.Sub(start).Seconds() }
	var out []marker
	add := func(t time.Time, label, class string) {
		if !t.IsZero() {
			out = append(out, marker{at(t), label, class})
		}
	}
	add(r.Marks.Inject, "fault injected", "m-inject")
	if r.Detected != nil {
		add(r.Detected.Time, "detected: "+r.Detected.Kind, "m-detect")
	}
	for _, a := range r.Actions {
		label := a.Kind + " " + a.Target
		if a.Seq > 0 {
			label = fmt.Sprintf("#%d %s", a.Seq, label)
		}
		add(a.Time, label, "m-action")
	}
	if r.Recovered != nil {
		add(r.Recovered.Time, "recovered: "+r.Recovered.Kind, "m-recover")
	}
	add(r.Marks.Restore, "fault removed", "m-restore")
	return out
}

// svgChart draws latency (p50, p99; log scale) and the error rate over time,
// the injected period shaded, and a line per moment and action.
func svgChart(r *drill.Result) string {
	var b strings.Builder
	span := r.Marks.End.Sub(r.Marks.Start).Seconds()
	if n := len(r.Series); n > 0 {
		span = max(span, r.Series[n-1].T)
	}
	span = max(span, 1)
	x := func(t float64) float64 { return padL + plotW*t/span }
	lo, hi := math.Inf(1), 0.0
	for _, bk := range r.Series {
		if bk.Requests == 0 {
			continue
		}
		lo, hi = min(lo, max(bk.P50, minLatencySeconds)), max(hi, bk.P99, bk.Max)
	}
	if hi == 0 {
		lo, hi = 1e-3, 1
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi*1.01)))
	y := func(v float64) float64 {
		v = max(v, lo)
		return latTop + latH - latH*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="latency and errors over time">`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="20" class="title">latency (log scale): p50 and p99 per %s</text>`, padL, bucketWidth(r))
	if !r.Marks.Inject.IsZero() {
		end := r.Marks.Restore
		if end.IsZero() {
			end = r.Marks.End
		}
		x0, x1 := x(r.Marks.Inject.Sub(r.Marks.Start).Seconds()), x(end.Sub(r.Marks.Start).Seconds())
		fmt.Fprintf(&b, `<rect class="fault" x="%.1f" y="%d" width="%.1f" height="%d"><title>fault injected</title></rect>`, x0, latTop, max(x1-x0, 1), errTop+errH-latTop)
	}
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/><text class="axis" x="%d" y="%.1f" text-anchor="end">%s</text>`,
			padL, chartW-padR, y(d), y(d), padL-6, y(d)+4, ms(d))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="title">client-visible error rate</text>`, padL, errTop-8)
	fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%d" y2="%d"/><text class="axis" x="%d" y="%d" text-anchor="end">100%%</text>`,
		padL, chartW-padR, errTop, errTop, padL-6, errTop+4)
	fmt.Fprintf(&b, `<line class="axisline" x1="%d" x2="%d" y1="%d" y2="%d"/><text class="axis" x="%d" y="%d" text-anchor="end">0</text>`,
		padL, chartW-padR, errTop+errH, errTop+errH, padL-6, errTop+errH+4)
	for t := 0.0; t <= span; t += tick(span) {
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="middle">%gs</text>`, x(t), errTop+errH+18, t)
	}
	var p50, p99 []string
	for i, bk := range r.Series {
		if bk.Requests == 0 {
			continue
		}
		p50 = append(p50, fmt.Sprintf("%.1f,%.1f", x(bk.T), y(bk.P50)))
		p99 = append(p99, fmt.Sprintf("%.1f,%.1f", x(bk.T), y(bk.P99)))
		if bk.Errors > 0 {
			w := plotW / float64(len(r.Series))
			h := errH * float64(bk.Errors) / float64(bk.Requests)
			fmt.Fprintf(&b, `<rect class="err" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>+%.1fs: %d of %d failed</title></rect>`,
				x(bk.T), errTop+errH-h, max(w, 1), h, r.Series[i].T, bk.Errors, bk.Requests)
		}
	}
	fmt.Fprintf(&b, `<polyline class="p99" points="%s"/><polyline class="p50" points="%s"/>`, strings.Join(p99, " "), strings.Join(p50, " "))
	lastLabel := math.Inf(-1)
	for _, m := range markers(r) {
		mx := x(m.t)
		fmt.Fprintf(&b, `<g class="%s"><line x1="%.1f" x2="%.1f" y1="%d" y2="%d"/>`, m.class, mx, mx, latTop, errTop+errH)
		// Labels closer than a line of text would overlap: the later one
		// keeps its line and its tooltip only.
		if mx-lastLabel >= 12 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" transform="rotate(-90 %.1f %d)">%s</text>`,
				mx+3, latTop+latH-4, mx+3, latTop+latH-4, html.EscapeString(trim(m.label, 40)))
			lastLabel = mx
		}
		fmt.Fprintf(&b, `<title>%+.2fs %s</title></g>`, m.t, html.EscapeString(m.label))
	}
	fmt.Fprintf(&b, `<g class="legend"><line class="p50" x1="%d" x2="%d" y1="14" y2="14"/><text x="%d" y="18">p50</text><line class="p99" x1="%d" x2="%d" y1="14" y2="14"/><text x="%d" y="18">p99</text></g>`,
		chartW-180, chartW-160, chartW-156, chartW-110, chartW-90, chartW-86)
	b.WriteString(`</svg>`)
	return b.String()
}

func bucketWidth(r *drill.Result) string {
	if len(r.Series) < 2 {
		return "bucket"
	}
	return fmt.Sprintf("%gs", math.Round((r.Series[1].T-r.Series[0].T)*1000)/1000)
}

// tick picks a readable spacing for about 10 time labels.
func tick(span float64) float64 {
	for _, t := range []float64{0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600} {
		if span/t <= 12 {
			return t
		}
	}
	return 1800
}

func trim(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
