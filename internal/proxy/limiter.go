package proxy

import (
	"math"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// LimiterPolicy configures the adaptive concurrency limit.
type LimiterPolicy struct {
	Initial, Min, Max int
	// Tolerance is the ratio of interval latency to the baseline above which
	// the service counts as congested.
	Tolerance float64
	// Interval and MinSamples bound how often the limit moves: at most once per
	// Interval, and only from at least MinSamples latency samples.
	Interval   time.Duration
	MinSamples int
}

// LimiterPolicyFrom converts the config section; c must have its defaults set.
func LimiterPolicyFrom(c config.ProxyShed) LimiterPolicy {
	return LimiterPolicy{
		Initial: c.InitialLimit, Min: c.MinLimit, Max: c.MaxLimit, Tolerance: c.Tolerance,
		Interval: 100 * time.Millisecond, MinSamples: 10,
	}
}

// Limiter is an adaptive concurrency limit in the gradient family (Netflix
// concurrency-limits Gradient2, Envoy adaptive concurrency), as a pure value.
//
// Each Interval it compares the mean latency of successful tries with a
// baseline, but only while the limit is in use (peak in-flight at least half
// of it): latency that rises while concurrency is far below the limit is not
// queueing the limit could cure (a busy host, a slow dependency), and
// shrinking on it would shed a steady load of clients for nothing.
//
// In use, when the ratio exceeds Tolerance the limit shrinks towards the
// middle of the band [1, Tolerance] (queueing delay grows with the limit), at
// most halving per interval; it holds in the upper half of the band and grows
// below it: by one near the middle, by its square root well below.
//
// The baseline follows the latency of intervals far from the limit (quickly
// down, slowly up), so sustained overload cannot drag it upwards
// (Gradient2's drift); only when the limit sits at Min and latency stays high
// does the baseline slowly accept a new normal.
type Limiter struct {
	policy   LimiterPolicy
	limit    float64
	inflight int

	start    time.Time     // start of the current interval
	sum      time.Duration // latency samples in the interval
	n        int
	peak     int     // most in flight during the interval
	baseline float64 // seconds; 0 until the first interval closes
}

// NewLimiter returns a limiter at its initial limit.
func NewLimiter(p LimiterPolicy) Limiter {
	return Limiter{policy: p, limit: float64(p.Initial)}
}

// Acquire takes a slot if one is free. Every successful Acquire must be
// followed by one Release.
func (l *Limiter) Acquire() bool {
	if l.inflight >= int(l.limit) {
		return false
	}
	l.inflight++
	l.peak = max(l.peak, l.inflight)
	return true
}

// Release frees a slot.
func (l *Limiter) Release() { l.inflight-- }

// Limit is the current concurrency limit.
func (l *Limiter) Limit() int { return int(l.limit) }

// Inflight is the number of slots taken.
func (l *Limiter) Inflight() int { return l.inflight }

// Sample feeds the latency of one successful try finishing at now, and moves
// the limit when an interval is complete. Failed tries are not samples: their
// latency says nothing about queueing (a hung instance's timeouts would
// otherwise shed healthy traffic).
func (l *Limiter) Sample(now time.Time, rtt time.Duration) {
	if l.start.IsZero() {
		l.start = now
	}
	l.sum += rtt
	l.n++
	if now.Sub(l.start) < l.policy.Interval || l.n < l.policy.MinSamples {
		return
	}
	l.update(now)
}

func (l *Limiter) update(now time.Time) {
	mean := (l.sum / time.Duration(l.n)).Seconds()
	used := 2*l.peak >= int(l.limit)
	atFloor := l.limit <= float64(l.policy.Min)
	if l.baseline == 0 {
		l.baseline = mean
	}
	ratio := mean / l.baseline
	tol := l.policy.Tolerance
	target := 1 + (tol-1)/2 // the middle of the band the limit settles in
	switch {
	case !used: // far from the limit: this latency, high or low, is the service's normal
		l.baseline = track(l.baseline, mean)
	case ratio > tol: // congested: shrink towards the target (queueing grows with the limit), at most by half
		l.limit = max(float64(l.policy.Min), l.limit*max(target/ratio, 0.5))
		if atFloor {
			l.baseline += (mean - l.baseline) * 0.005 // ~20 s at the floor to accept a slower normal
		}
	case ratio > target: // within tolerance but above the target: hold
	case ratio > 1+(tol-1)/4: // close to the target: probe upwards gently
		l.limit = min(float64(l.policy.Max), l.limit+1)
	default: // well within: grow fast, so that a burst of demand is admitted soon
		l.limit = min(float64(l.policy.Max), l.limit+math.Sqrt(l.limit))
	}
	l.start, l.sum, l.n, l.peak = now, 0, 0, l.inflight
}

// track moves the baseline quickly down and slowly up (a time constant of
// about 2 s at 100 ms intervals), so that one slow interval does not hide
// the queueing that follows it.
func track(baseline, mean float64) float64 {
	if mean < baseline {
		return baseline + (mean-baseline)*0.2
	}
	return baseline + (mean-baseline)*0.05
}
