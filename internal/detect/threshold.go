package detect

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/signal"
)

// threshold compares the latest value of each series (or of each group of
// series, aggregated) with a value, with hysteresis on the way back.
type threshold struct {
	signal   string
	match    signal.Labels
	agg      string
	by       []string
	op       string
	value    float64
	clear    float64
	hasClear bool
	stale    time.Duration
}

func newThreshold(c *config.Condition) *threshold {
	op, v, clear, _ := c.Threshold()
	return &threshold{
		signal: c.Signal, match: c.Labels, agg: c.Aggregate, by: c.By, op: op, value: v, clear: clear,
		hasClear: c.ClearBelow != nil || c.ClearAbove != nil, stale: c.StaleAfter.D(),
	}
}

func compare(op string, a, b float64) bool {
	switch op {
	case ">":
		return a > b
	case ">=":
		return a >= b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case "==":
		return a == b
	case "!=":
		return a != b
	}
	return false
}

// negation names the opposite of op, for reasons.
var negation = map[string]string{">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!=", "!=": "=="}

// holds decides one value: the threshold must be breached to become active;
// once firing, with hysteresis, it stays active until the value crosses the
// clear value (fire above 90, resolve only below 80). Hysteresis does not
// apply while pending: a breach must hold, as such, for the whole `for`.
func (t *threshold) holds(v float64, firing bool) (bool, string) {
	up := t.op == ">" || t.op == ">="
	if firing && t.hasClear {
		if up {
			if v < t.clear {
				return false, fmt.Sprintf("below the clear value %s", t.fmt(t.clear))
			}
			return true, fmt.Sprintf("not yet below the clear value %s", t.fmt(t.clear))
		}
		if v > t.clear {
			return false, fmt.Sprintf("above the clear value %s", t.fmt(t.clear))
		}
		return true, fmt.Sprintf("not yet above the clear value %s", t.fmt(t.clear))
	}
	if compare(t.op, v, t.value) {
		return true, t.op + " " + t.fmt(t.value)
	}
	return false, negation[t.op] + " " + t.fmt(t.value)
}

func (t *threshold) fmt(v float64) string { return formatValue(t.signal, v) }

func (t *threshold) read(now time.Time, src SeriesSource, firing func(string) bool) []reading {
	var fresh []signal.Sample
	for _, s := range src.Latest(t.signal, t.match) {
		if now.Sub(s.T) <= t.stale {
			fresh = append(fresh, s)
		}
	}
	if t.agg == "each" {
		out := make([]reading, 0, len(fresh))
		for _, s := range fresh {
			out = append(out, t.reading(s.Labels, s.V, signal.SeriesKey(t.signal, s.Labels), firing))
		}
		return out
	}
	type group struct {
		labels signal.Labels
		vals   []float64
	}
	groups := map[string]*group{}
	base := signal.Labels{}
	for k, v := range t.match {
		if v != "" {
			base[k] = v
		}
	}
	if len(t.by) == 0 {
		// One group even without series: count and sum are then 0, so
		// "fewer than 2 ready" fires when none report at all.
		groups[base.Key()] = &group{labels: base}
	}
	for _, s := range fresh {
		l := base.Clone()
		for _, b := range t.by {
			l[b] = s.Labels[b]
		}
		g := groups[l.Key()]
		if g == nil {
			g = &group{labels: l}
			groups[l.Key()] = g
		}
		g.vals = append(g.vals, s.V)
	}
	out := make([]reading, 0, len(groups))
	for _, g := range groups {
		v, ok := aggregate(t.agg, g.vals)
		if !ok {
			continue
		}
		what := fmt.Sprintf("%s(%s%s) over %d series", t.agg, t.signal, g.labels, len(g.vals))
		out = append(out, t.reading(g.labels, v, what, firing))
	}
	slices.SortFunc(out, func(a, b reading) int { return strings.Compare(a.labels.Key(), b.labels.Key()) })
	return out
}

func (t *threshold) reading(l signal.Labels, v float64, what string, firing func(string) bool) reading {
	active, why := t.holds(v, firing(l.Key()))
	r := reading{labels: l, active: active, value: v, reason: fmt.Sprintf("%s = %s, %s", what, t.fmt(v), why)}
	if active {
		r.confidence = 1
	}
	return r
}

// aggregate combines values; ok is false when the aggregate of no values is
// undefined (max, min, avg).
func aggregate(op string, vals []float64) (float64, bool) {
	switch op {
	case "count":
		return float64(len(vals)), true
	case "sum":
		s := 0.0
		for _, v := range vals {
			s += v
		}
		return s, true
	}
	if len(vals) == 0 {
		return 0, false
	}
	switch op {
	case "max":
		return slices.Max(vals), true
	case "min":
		return slices.Min(vals), true
	case "avg":
		s := 0.0
		for _, v := range vals {
			s += v
		}
		return s / float64(len(vals)), true
	}
	return math.NaN(), false
}

// formatValue renders a value in the unit its signal name promises:
// IEC sizes for _bytes, durations for _seconds, else 4 significant digits.
func formatValue(name string, v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Sprint(v)
	case strings.HasSuffix(name, "_bytes") || strings.HasSuffix(name, "_bytes_total"):
		return formatBytes(v)
	case strings.HasSuffix(name, "_seconds") && math.Abs(v) < 1e9:
		return time.Duration(v * float64(time.Second)).Round(time.Microsecond).String()
	}
	return fmt.Sprintf("%.4g", v)
}

func formatBytes(v float64) string {
	a := math.Abs(v)
	for _, u := range []struct {
		name string
		m    float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if a >= u.m {
			return fmt.Sprintf("%.4g%s", v/u.m, u.name)
		}
	}
	return fmt.Sprintf("%.4gB", v)
}
