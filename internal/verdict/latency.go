package verdict

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// latencies returns the latencies of the requests that did not err (an error
// is judged by its own metric, and a fast 500 must not make a canary look
// quick), the newest MaxSamples of them, sorted.
func latencies(cfg Config, os []Outcome) []int64 {
	var out []int64
	for i := len(os) - 1; i >= 0 && len(out) < cfg.MaxSamples; i-- {
		if !slices.Contains(cfg.ErrorClasses, ClassOf(os[i].Status)) {
			out = append(out, int64(os[i].Latency))
		}
	}
	slices.Sort(out)
	return out
}

// shift judges the median slowdown: Mann-Whitney U (one sided: is the canary
// slower?) with the Hodges-Lehmann estimate of the shift (the median of all
// canary−baseline differences) relative to the baseline's median, with
// Moses' distribution-free one-sided bounds at 1-LatencyAlpha. It fails when
// the canary is significantly slower (p < LatencyAlpha) and even the shift's
// lower bound exceeds the tolerance; it passes when the upper bound is inside
// the tolerance. Between the two a sample too small to show either keeps the
// verdict open, and a canary is judged on evidence of a slowdown beyond the
// tolerance rather than on a point estimate: evaluated after every request,
// a point estimate over the tolerance at p < 0.01 falsely failed 3 of 100
// identical canaries in this package's tests.
func shift(cfg Config, x, y []int64) Metric {
	m := Metric{Name: "latency median", Test: "mann-whitney"}
	if cfg.OutlierIQR > 0 {
		x, y = trim(x, cfg.OutlierIQR), trim(y, cfg.OutlierIQR)
	}
	n, k := len(x), len(y)
	m.Canary, m.Baseline = n, k
	m.Threshold = fmt.Sprintf("fail when p < %.3g and shift > %.3g of the baseline median; pass when the shift's %.3g upper bound < %.3g",
		cfg.LatencyAlpha, cfg.LatencyTolerance, 1-cfg.LatencyAlpha, cfg.LatencyTolerance)
	if short := cfg.MinSamples - min(n, k); short > 0 {
		m.Need = short
		m.Reason = fmt.Sprintf("%d canary and %d baseline successful requests, below the minimum of %d", n, k, cfg.MinSamples)
		return m
	}
	mc, mb := median(x), median(y)
	m.CanaryValue, m.BaselineValue = mc.Seconds(), mb.Seconds()
	base := math.Max(float64(mb), 1)

	u, sd := mannWhitney(x, y)
	mean := float64(n) * float64(k) / 2
	m.PValue = 1
	if sd > 0 {
		m.PValue = distuv.UnitNormal.Survival((u - mean - 0.5) / sd)
	}
	nk := n * k
	hl := (kthDiff(x, y, (nk+1)/2) + kthDiff(x, y, nk/2+1)) / 2
	z := distuv.UnitNormal.Quantile(1 - cfg.LatencyAlpha)
	// Moses' bounds: the C-th smallest and C-th largest differences.
	c := min(nk, max(1, int(math.Floor(mean-z*sd))))
	lower, upper := kthDiff(x, y, c), kthDiff(x, y, nk+1-c)
	m.Effect = float64(hl) / base
	relLower, relUpper := float64(lower)/base, float64(upper)/base
	seen := fmt.Sprintf("median %s vs baseline %s, shift %s (%+.1f%%, %.3g one-sided bounds %+.1f%% to %+.1f%%), p=%.3g",
		dur(mc), dur(mb), dur(time.Duration(hl)), 100*m.Effect, 1-cfg.LatencyAlpha, 100*relLower, 100*relUpper, m.PValue)
	switch {
	case m.PValue < cfg.LatencyAlpha && relLower > cfg.LatencyTolerance:
		m.Decision = Fail
		m.Reason = fmt.Sprintf("%s: slower, p < %.3g, and the lower bound is beyond the %.0f%% tolerance", seen, cfg.LatencyAlpha, 100*cfg.LatencyTolerance)
	case relUpper < cfg.LatencyTolerance:
		m.Decision = Pass
		m.Reason = fmt.Sprintf("%s: the upper bound is inside the %.0f%% tolerance", seen, 100*cfg.LatencyTolerance)
	default:
		// The bounds' half width shrinks as 1/sqrt(n): about how many
		// requests until they no longer straddle the tolerance, taking the
		// shift at least half the tolerance away from it (an estimate right
		// at the tolerance would ask for any number).
		half := (relUpper - relLower) / 2
		gap := math.Max(math.Abs(cfg.LatencyTolerance-m.Effect), cfg.LatencyTolerance/2)
		need := float64(min(n, k)) * (math.Pow(half/gap, 2) - 1)
		m.Need = max(1, int(math.Ceil(math.Min(need, 1e6))))
		m.Reason = fmt.Sprintf("%s: not yet clear of the %.0f%% tolerance, about %d more requests", seen, 100*cfg.LatencyTolerance, m.Need)
	}
	return m
}

// tail judges the TailQuantile: a canary request is "slow" when it takes
// longer than the baseline's quantile times (1+TailTolerance). A canary like
// the baseline has at most 1-TailQuantile slow requests; the same sequential
// test as the error rates (Alpha, Beta) weighs that against TailRatio times
// as many, so a clean tail passes as soon as that is shown and a slower one
// fails, without a fixed sample size.
func tail(cfg Config, x, y []int64) Metric {
	q := cfg.TailQuantile
	m := Metric{Name: fmt.Sprintf("latency p%g", 100*q), Test: "sprt", Canary: len(x), Baseline: len(y)}
	p0 := 1 - q
	p1 := min(p0*cfg.TailRatio, 0.999)
	t := newSPRT(p0, p1, cfg.Alpha, cfg.Beta)
	m.Threshold = fmt.Sprintf("slow: above the baseline's p%g + %.0f%%; H0 %.2f%% slow, H1 %.2f%%; fail at log LR >= %.2f, pass at <= %.2f",
		100*q, 100*cfg.TailTolerance, 100*p0, 100*p1, t.upper, t.lower)
	if short := cfg.TailMinSamples - min(len(x), len(y)); short > 0 {
		m.Need = short
		m.Reason = fmt.Sprintf("%d canary and %d baseline successful requests, below the tail's minimum of %d",
			len(x), len(y), cfg.TailMinSamples)
		return m
	}
	qc, qb := quantile(x, q), quantile(y, q)
	m.CanaryValue, m.BaselineValue = qc.Seconds(), qb.Seconds()
	m.Effect = float64(qc)/math.Max(float64(qb), 1) - 1
	limit := int64(float64(qb) * (1 + cfg.TailTolerance))
	slow := len(x) - sort.Search(len(x), func(i int) bool { return x[i] > limit })
	m.LogLR, m.Decision, m.Need = t.judge(slow, len(x))
	seen := fmt.Sprintf("p%g %s vs baseline %s (%+.1f%%); %d of %d canary requests above %s where %.1f are expected, log LR %.2f",
		100*q, dur(qc), dur(qb), 100*m.Effect, slow, len(x), dur(time.Duration(limit)), float64(len(x))*p0, m.LogLR)
	switch m.Decision {
	case Fail:
		m.Reason = fmt.Sprintf("%s >= %.2f: the canary's tail is slower", seen, t.upper)
	case Pass:
		m.Reason = fmt.Sprintf("%s <= %.2f: no slower tail", seen, t.lower)
	default:
		m.Reason = fmt.Sprintf("%s: at least %d more requests to pass", seen, m.Need)
	}
	return m
}

// mannWhitney returns the canary's U statistic and its standard deviation
// under H0, corrected for ties. x and y are sorted.
func mannWhitney(x, y []int64) (u, sd float64) {
	n, k := float64(len(x)), float64(len(y))
	total := n + k
	var rx, ties float64
	i, j := 0, 0
	rank := 1.0
	for i < len(x) || j < len(y) {
		v := int64(math.MaxInt64)
		if i < len(x) {
			v = x[i]
		}
		if j < len(y) && y[j] < v {
			v = y[j]
		}
		ci, cj := 0, 0
		for i < len(x) && x[i] == v {
			i, ci = i+1, ci+1
		}
		for j < len(y) && y[j] == v {
			j, cj = j+1, cj+1
		}
		t := float64(ci + cj)
		rx += float64(ci) * (rank + (t-1)/2) // the tied values share the mean rank
		ties += t*t*t - t
		rank += t
	}
	u = rx - n*(n+1)/2
	v := n * k / 12 * ((total + 1) - ties/(total*(total-1)))
	return u, math.Sqrt(math.Max(v, 0))
}

// kthDiff returns the k-th smallest (1-based) of the len(x)·len(y)
// differences x[i]-y[j] without listing them: a bisection on the value, each
// step counting the differences at most d in O(len(x)+len(y)). x and y are
// sorted and not empty.
func kthDiff(x, y []int64, k int) int64 {
	lo, hi := x[0]-y[len(y)-1], x[len(x)-1]-y[0]
	for lo < hi {
		mid := lo + (hi-lo)/2
		if countAtMost(x, y, mid) >= k {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// countAtMost counts the pairs with x[i]-y[j] <= d, that is y[j] >= x[i]-d.
func countAtMost(x, y []int64, d int64) int {
	c, j := 0, 0
	for _, xi := range x { // x[i]-d grows with i, so j only moves forward
		for j < len(y) && y[j] < xi-d {
			j++
		}
		c += len(y) - j
	}
	return c
}

// trim drops the values farther than f·IQR outside the quartiles.
func trim(s []int64, f float64) []int64 {
	q1, q3 := float64(quantile(s, 0.25)), float64(quantile(s, 0.75))
	lo, hi := q1-f*(q3-q1), q3+f*(q3-q1)
	out := make([]int64, 0, len(s))
	for _, v := range s {
		if float64(v) >= lo && float64(v) <= hi {
			out = append(out, v)
		}
	}
	return out
}

// quantile is the nearest-rank quantile of a sorted, non-empty sample.
func quantile(s []int64, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return time.Duration(s[min(len(s)-1, max(0, i))])
}

func median(s []int64) time.Duration {
	n := len(s)
	return time.Duration((s[(n-1)/2] + s[n/2]) / 2)
}

func dur(d time.Duration) string {
	return d.Round(10 * time.Microsecond).String()
}
