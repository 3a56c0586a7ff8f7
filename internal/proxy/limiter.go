package proxy

import (
	"math"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// LimiterPolicy configures the adaptive concurrency limit.
type LimiterPolicy struct {
	Initial, Min, Max int
	// Tolerance is how far latency may rise over its no-queue baseline, as a
	// ratio, before it counts as queueing: the mean may reach half the
	// excess and the 90th percentile the whole of twice it while the limit
	// still grows towards the knee (a busy host delays requests without any
	// queue), and a quarter of those before a probe past the knee.
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

// Limiter is an adaptive concurrency limit, as a pure value. It aims at the
// knee of the service: the most requests in flight the instances serve
// without queueing, so that admitted requests see the service's normal
// latency and the excess is refused (503) instead of queued. By Little's law
// the knee is throughput × no-queue latency (the idea behind Vegas in Netflix
// concurrency-limits, measured as a rate rather than as a queue length); and
// because a balancer never spreads requests perfectly, the 90th percentile
// of latency must stay near its own baseline too (Envoy's adaptive
// concurrency also watches a percentile).
//
// The limit moves once per Interval, from the successful tries that finished
// in it (failed tries are not samples: a hung instance's timeouts say nothing
// about queueing), and only on evidence:
//
//   - Saturated (a request was refused in the interval: demand exceeds the
//     limit) and calm (mean and p90 within half their tolerance bands), below
//     the knee last found or with none known: slow start, by (Tolerance − 1)
//     × the limit at first and 1.5× more each calm interval, stopping at the
//     knee (TCP's ssthresh), so that a burst of demand is admitted within
//     about a second.
//   - Saturated and calm at the knee (calmer still: a quarter of the bands):
//     congestion avoidance, one request past it after probeEvery calm
//     intervals, sooner and sooner while probes hold; once calm well past
//     the old knee (new capacity) it is forgotten and slow start resumes.
//     Each probe that finds the knee costs one interval of queueing, so
//     probing seldom keeps the tail of admitted requests near normal.
//   - Saturated and not calm (queueing): the knee is set to throughput ×
//     baseline and the limit to it, or lower in proportion when p90 exceeds
//     its band (1 + 2 × (Tolerance − 1) times its baseline), at most halving
//     per interval. Above the knee throughput no longer grows with the
//     limit, so the target does not depend on the limit itself: it settles in
//     an interval or two, without the oscillation of a gradient.
//   - Not saturated: concurrency is set by the clients, not by the limit, so
//     no latency, high or low, is a reason to shrink (a busy host or a slow
//     dependency would otherwise shed a steady load for nothing). While in use
//     (peak in flight at least half the limit) and latency is not far above
//     the baseline, the limit grows to keep headroom for bursts.
//
// The baselines are the latency of intervals far from the limit, following
// them quickly down and slowly up, and of any lower interval; saturation
// cannot drag them upwards (Gradient2's drift). Only when the limit sits at
// Min and latency stays high do they slowly accept a new normal.
type Limiter struct {
	policy   LimiterPolicy
	limit    float64
	inflight int
	step     float64 // the next slow-start increment; 0 when not growing
	// knee is throughput × baseline when queueing was last seen (0: unknown):
	// slow start stops there and the limit probes past it one at a time.
	knee float64
	calm int // calm intervals at the knee since the last probe past it
	gap  int // calm intervals before the next probe: probeEvery after queueing, halved by each probe that holds

	start   time.Time     // start of the current interval
	sum     time.Duration // latency samples in the interval
	n       int
	hist    histogram
	peak    int // most in flight during the interval
	refused int // Acquire calls refused during the interval

	baseMean, baseTail float64 // seconds, mean and p90; 0 until the first interval closes
}

// probeEvery is how many calm intervals at the knee precede a probe one
// request past it after queueing was seen: each probe that finds the knee
// costs one interval of queueing, so probing seldom keeps the tail of
// admitted requests near normal. Probes that hold (new capacity) come
// sooner and sooner.
const probeEvery = 8

// tailQuantile is the percentile of latency watched besides the mean.
const tailQuantile = 0.9

// NewLimiter returns a limiter at its initial limit.
func NewLimiter(p LimiterPolicy) Limiter {
	return Limiter{policy: p, limit: float64(p.Initial)}
}

// Acquire takes a slot if one is free. Every successful Acquire must be
// followed by one Release.
func (l *Limiter) Acquire() bool {
	if l.inflight >= int(l.limit) {
		l.refused++
		return false
	}
	l.inflight++
	l.peak = max(l.peak, l.inflight)
	return true
}

// Take takes a slot whatever the limit: the client classes decided (see
// classes.seat), and may briefly hold more than the limit.
func (l *Limiter) Take() {
	l.inflight++
	l.peak = max(l.peak, l.inflight)
}

// Refuse counts a request refused a slot (demand above the limit).
func (l *Limiter) Refuse() { l.refused++ }

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
	l.hist.add(rtt)
	if now.Sub(l.start) < l.policy.Interval || l.n < l.policy.MinSamples {
		return
	}
	l.update(now)
}

func (l *Limiter) update(now time.Time) {
	mean := (l.sum / time.Duration(l.n)).Seconds()
	tail := l.hist.quantile(tailQuantile, l.n)
	throughput := float64(l.n) / max(now.Sub(l.start).Seconds(), 1e-3) // successful tries per second
	saturated := l.refused > 0
	used := 2*l.peak >= int(l.limit)
	atFloor := l.Limit() <= l.policy.Min
	if l.baseMean == 0 {
		l.baseMean, l.baseTail = mean, tail
	}
	tol := l.policy.Tolerance
	tailTol := 1 + 2*(tol-1) // the tail is noisier than the mean (a busy host delays a few requests)
	calm := mean <= (1+(tol-1)/2)*l.baseMean && tail <= (1+(tailTol-1)/2)*l.baseTail
	lo, hi := float64(l.policy.Min), float64(l.policy.Max)
	growing := false
	atKnee := l.knee > 0 && l.limit+1 > l.knee
	if atKnee && calm { // probing past the knee needs a quieter interval than growing towards it
		calm = mean <= (1+(tol-1)/4)*l.baseMean && tail <= (1+(tailTol-1)/4)*l.baseTail
	}
	switch {
	case saturated && calm && atKnee:
		// Calm at the knee last found: probe past it one request at a time
		// (TCP's congestion avoidance), and forget it once calm well past it
		// (new capacity): slow start again.
		if l.gap == 0 {
			l.gap = probeEvery
		}
		if l.calm++; l.calm >= l.gap { // probe; if the last one held (still calm), the next comes sooner
			l.limit = min(hi, l.limit+1)
			l.calm, l.gap = 0, max(1, l.gap/2)
		}
		if l.limit >= 1.1*l.knee+1 {
			l.knee = 0
		}
	case saturated && calm: // below the knee: grow, faster while it stays calm, so a burst is admitted soon
		if l.step == 0 {
			l.step = max(1, (tol-1)*l.limit)
		}
		l.limit = min(hi, l.limit+l.step)
		if l.knee > 0 {
			l.limit = min(l.limit, l.knee) // slow start ends at the knee (TCP's ssthresh)
		}
		l.step *= 1.5
		growing = true
	case saturated: // queueing: the knee is throughput × baseline (Little's law), and the tail must stay near its own
		knee := throughput * l.baseMean
		target := min(knee, l.limit*tailTol*l.baseTail/tail)
		l.limit = max(lo, l.limit/2, min(target, l.limit+1))
		l.knee, l.calm, l.gap = max(lo, knee), 0, probeEvery
		if atFloor { // ~20 s at the floor to accept a slower normal
			l.baseMean += (mean - l.baseMean) * 0.005
			l.baseTail += (tail - l.baseTail) * 0.005
		}
	case !used: // far from the limit: this latency is the service's normal
		l.baseMean, l.baseTail = track(l.baseMean, mean), track(l.baseTail, tail)
	case mean <= max(2, tol)*l.baseMean: // in use, nobody refused: keep headroom for a burst
		l.limit = min(hi, l.limit+math.Sqrt(l.limit))
	}
	if !growing {
		l.step = 0
	}
	// A lower latency is evidence of a lower no-queue latency, whatever the load.
	l.baseMean, l.baseTail = min(l.baseMean, track(l.baseMean, mean)), min(l.baseTail, track(l.baseTail, tail))
	l.start, l.sum, l.n, l.peak, l.refused = now, 0, 0, l.inflight, 0
	l.hist.reset()
}

// track moves a baseline quickly down and slowly up (a time constant of
// about 2 s at 100 ms intervals), so that one slow interval does not hide
// the queueing that follows it.
func track(baseline, v float64) float64 {
	if v < baseline {
		return baseline + (v-baseline)*0.2
	}
	return baseline + (v-baseline)*0.05
}

// histogram counts latencies in buckets 1% wide on a log scale, from 10µs to
// about 100 s: a percentile within 1% in constant memory and time per sample.
type histogram struct {
	counts [histBuckets]uint32
}

const (
	histMin     = 10e-6 // seconds
	histGrowth  = 1.01
	histBuckets = 1620 // histMin × 1.01^1620 ≈ 100 s
)

var logGrowth = math.Log(histGrowth)

func (h *histogram) add(d time.Duration) {
	i := 0
	if s := d.Seconds(); s > histMin {
		i = min(histBuckets-1, int(math.Log(s/histMin)/logGrowth))
	}
	h.counts[i]++
}

// quantile returns the q-quantile of the n samples counted, in seconds (the
// middle of its bucket).
func (h *histogram) quantile(q float64, n int) float64 {
	rank := uint32(math.Ceil(q * float64(n)))
	var seen uint32
	for i, c := range h.counts {
		seen += c
		if seen >= max(rank, 1) {
			return histMin * math.Pow(histGrowth, float64(i)+0.5)
		}
	}
	return histMin * math.Pow(histGrowth, histBuckets)
}

func (h *histogram) reset() { clear(h.counts[:]) }
