package detect

import (
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/signal"
)

// trend fits a least-squares line through each series over the window and
// compares its slope per hour with a rate: a leak is seen while the level is
// still far from any limit.
type trend struct {
	signal    string
	match     signal.Labels
	window    time.Duration
	above     bool // the slope must exceed rate; else fall below it
	rate      float64
	minPoints int
	stale     time.Duration
}

func newTrend(c *config.Condition) *trend {
	t := &trend{signal: c.Signal, match: c.Labels, window: c.Trend.Window.D(), minPoints: c.Trend.MinPoints,
		stale: c.StaleAfter.D()}
	if c.Trend.AbovePerHour != nil {
		t.above, t.rate = true, float64(*c.Trend.AbovePerHour)
	} else {
		t.rate = float64(*c.Trend.BelowPerHour)
	}
	return t
}

func (t *trend) read(now time.Time, src SeriesSource, _ func(string) bool) []reading {
	var out []reading
	for _, s := range src.Range(t.signal, t.match, now.Add(-t.window), now) {
		pts := s.Points
		if len(pts) < t.minPoints || now.Sub(pts[len(pts)-1].T) > t.stale {
			continue
		}
		span := pts[len(pts)-1].T.Sub(pts[0].T)
		if span < t.window/2 {
			continue // too little history for a slope to mean anything
		}
		perHour := Slope(pts) * 3600
		active := perHour > t.rate
		word := "above"
		if !t.above {
			active, word = perHour < t.rate, "below"
		}
		not := ""
		if !active {
			not = "not "
		}
		r := reading{labels: s.Labels, active: active, value: perHour,
			reason: fmt.Sprintf("%s changes by %s/h over %v (%d samples), %s%s %s/h", signal.SeriesKey(t.signal, s.Labels),
				formatValue(t.signal, perHour), span.Round(time.Second), len(pts), not, word, formatValue(t.signal, t.rate))}
		if active {
			r.confidence = 1
		}
		out = append(out, r)
	}
	return out
}

// Slope returns the least-squares slope of the points in units per second
// (0 for fewer than two points or no spread in time). Times and values are
// centred first, so large timestamps and levels do not cost precision.
func Slope(pts []signal.Point) float64 {
	if len(pts) < 2 {
		return 0
	}
	t0 := pts[0].T
	var mt, mv float64
	for _, p := range pts {
		mt += p.T.Sub(t0).Seconds()
		mv += p.V
	}
	n := float64(len(pts))
	mt, mv = mt/n, mv/n
	var sxy, sxx float64
	for _, p := range pts {
		dt := p.T.Sub(t0).Seconds() - mt
		sxy += dt * (p.V - mv)
		sxx += dt * dt
	}
	if sxx == 0 {
		return 0
	}
	return sxy / sxx
}
