package detect

import (
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/signal"
)

// anomaly keeps a Detector per series and is active while the newest
// samples' confidence reaches the threshold.
type anomaly struct {
	signal    string
	match     signal.Labels
	threshold float64
	clear     float64
	cfg       DetectorConfig
	stale     time.Duration
	series    map[string]*tracked
}

// tracked is one series' detector and its latest judgement.
type tracked struct {
	labels signal.Labels
	d      *Detector
	last   time.Time // newest sample fed
	score  Score     // the most confident of the samples fed at the last evaluation that had any
	value  float64
}

func newAnomaly(c *config.Condition) *anomaly {
	a := c.Anomaly
	cfg := DetectorConfig{Window: a.Window.D(), Warmup: a.Warmup.D(), Direction: a.Direction,
		Season: a.Season.D(), Buckets: a.SeasonBuckets}
	if a.MinDeviation != nil {
		cfg.MinDeviation = float64(*a.MinDeviation)
	}
	return &anomaly{signal: c.Signal, match: c.Labels, threshold: *a.Confidence, clear: *a.ClearConfidence, cfg: cfg,
		stale: c.StaleAfter.D(), series: map[string]*tracked{}}
}

func (a *anomaly) copyFrom(old kind) {
	if o, ok := old.(*anomaly); ok && o.cfg == a.cfg {
		a.series = o.series
	}
}

func (a *anomaly) read(now time.Time, src SeriesSource, firing func(string) bool) []reading {
	// Read only what is new: from the oldest series' newest sample, but no
	// further back than stale_after. The first time, read all the source
	// holds, to learn the baseline from history.
	var from time.Time
	if len(a.series) > 0 {
		from = now.Add(-a.stale)
		oldest := now
		for _, t := range a.series {
			oldest = minTime(oldest, t.last)
		}
		if oldest.After(from) {
			from = oldest.Add(time.Nanosecond)
		}
	}
	for _, s := range src.Range(a.signal, a.match, from, now) {
		key := s.Labels.Key()
		t := a.series[key]
		pts := s.Points
		if t == nil {
			if len(a.series) >= MaxAlerts {
				continue
			}
			t = &tracked{labels: s.Labels, d: NewDetector(a.cfg)}
			a.series[key] = t
			// History trains the baseline; only the newest sample is judged.
			for _, p := range pts[:len(pts)-1] {
				t.d.Observe(p.T, p.V)
			}
			pts = pts[len(pts)-1:]
		}
		fed := false
		var best Score
		var bestV float64
		for _, p := range pts {
			if !p.T.After(t.last) {
				continue
			}
			sc := t.d.Observe(p.T, p.V)
			if !fed || sc.Confidence >= best.Confidence {
				best, bestV, fed = sc, p.V, true
			}
			t.last = p.T
		}
		if fed {
			t.score, t.value = best, bestV
		}
	}
	var out []reading
	for key, t := range a.series {
		if now.Sub(t.last) > a.stale {
			delete(a.series, key)
			continue
		}
		out = append(out, a.reading(t, firing(key)))
	}
	return out
}

// reading judges a series by its latest score. A firing alert stays active
// until the confidence falls below the clear confidence (hysteresis: a
// baseline adapting to a new level crosses the threshold slowly, and noise
// would otherwise flap it).
func (a *anomaly) reading(t *tracked, firing bool) reading {
	s := t.score
	limit, word := a.threshold, "the threshold"
	if firing {
		limit, word = a.clear, "the clear confidence"
	}
	r := reading{labels: t.labels, value: t.value, confidence: s.Confidence, active: s.Warm && s.Confidence >= limit}
	name := signal.SeriesKey(a.signal, t.labels)
	if !s.Warm {
		r.reason = fmt.Sprintf("%s = %s: baseline still warming up", name, formatValue(a.signal, t.value))
		return r
	}
	cmp := "≥"
	if !r.active {
		cmp = "<"
	}
	r.reason = fmt.Sprintf("%s = %s against a baseline of %s ± %s (z %.1f): confidence %.4f %s %s %v",
		name, formatValue(a.signal, t.value), formatValue(a.signal, s.Level), formatValue(a.signal, s.Scale),
		s.Z, s.Confidence, cmp, word, limit)
	return r
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
