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
// quick), the newest MaxSamples of them, in arrival order and sorted.
func latencies(cfg Config, os []Outcome) (arrived, sorted []int64) {
	for i := len(os) - 1; i >= 0 && len(arrived) < cfg.MaxSamples; i-- {
		if !slices.Contains(cfg.ErrorClasses, ClassOf(os[i].Status)) {
			arrived = append(arrived, int64(os[i].Latency))
		}
	}
	slices.Reverse(arrived)
	sorted = slices.Clone(arrived)
	slices.Sort(sorted)
	return arrived, sorted
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

// tail judges the TailQuantile. A canary request is "slow" when it takes
// longer than limit = U·(1+TailTolerance), where U is the (1-Alpha) upper
// confidence bound of the baseline's quantile: its r-th smallest latency,
// r the least order with P(Binomial(n, q) <= r-1) >= 1-Alpha (the count of
// baseline values at most the true quantile is Binomial(n, q) whatever the
// distribution). A canary like the baseline then has at most 1-q slow
// requests, unless U fell below the true quantile (probability <= Alpha);
// the same sequential test as the error rates (Alpha, Beta) weighs that
// against TailRatio times as many, so a clean tail passes as soon as that
// is shown and a slower one fails, without a fixed sample size. The test
// counts runs of consecutive slow requests (slowRuns), not slow requests.
//
// The bound needs at least ln(Alpha)/ln(q) baseline requests (459 for the
// p99 at 1 %: below that even the slowest baseline request is not a 99 %
// bound of its p99). With fewer, the tail is judged at TailFallback (p95,
// 90 requests) instead; once the baseline has enough, the p99 is judged and
// must pass on its own (a canary evaluated across steps sees both: its first
// small step judged at the p95, the later ones at the p99). Reading the p99
// as the 2nd slowest of ~200 baseline requests instead falsely failed 2 of
// 20 good canaries on a loaded machine (docs/benchmarks.md).
func tail(cfg Config, arrived, x, y []int64) Metric {
	m := Metric{Name: fmt.Sprintf("latency p%g", 100*cfg.TailQuantile), Test: "sprt", Canary: len(x), Baseline: len(y)}
	q, fallback := cfg.TailQuantile, false
	need := minForBound(q, cfg.Alpha)
	if len(y) < need && cfg.TailFallback > 0 && cfg.TailFallback < q && len(y) >= minForBound(cfg.TailFallback, cfg.Alpha) {
		q, fallback = cfg.TailFallback, true
	}
	p0 := 1 - q
	p1 := min(p0*cfg.TailRatio, 0.999)
	t := newSPRT(p0, p1, cfg.Alpha, cfg.Beta)
	m.Threshold = fmt.Sprintf("slow: above the %.3g upper bound of the baseline's p%g + %.0f%%; H0 %.2f%% slow, H1 %.2f%%; fail at log LR >= %.2f, pass at <= %.2f",
		1-cfg.Alpha, 100*q, 100*cfg.TailTolerance, 100*p0, 100*p1, t.upper, t.lower)
	if fallback {
		m.Threshold += fmt.Sprintf(" (p%g until the baseline has %d requests)", 100*q, need)
	}
	if short := cfg.TailMinSamples - min(len(x), len(y)); short > 0 {
		judged := need // the baseline requests before the tail is judged at all
		if cfg.TailFallback > 0 && cfg.TailFallback < cfg.TailQuantile {
			judged = min(need, minForBound(cfg.TailFallback, cfg.Alpha))
		}
		m.Need = max(short, judged-len(y))
		m.Reason = fmt.Sprintf("%d canary and %d baseline successful requests, below the tail's minimum of %d",
			len(x), len(y), cfg.TailMinSamples)
		return m
	}
	r := boundOrder(len(y), q, cfg.Alpha)
	if r == 0 {
		m.Need = need - len(y)
		m.Reason = fmt.Sprintf("%d baseline successful requests: the p%g's %.3g upper bound needs %d",
			len(y), 100*cfg.TailQuantile, 1-cfg.Alpha, need)
		return m
	}
	qc, qb, ub := quantile(x, q), quantile(y, q), time.Duration(y[r-1])
	m.CanaryValue, m.BaselineValue = qc.Seconds(), qb.Seconds()
	m.Effect = float64(qc)/math.Max(float64(qb), 1) - 1
	limit := int64(float64(ub) * (1 + cfg.TailTolerance))
	slow := len(x) - sort.Search(len(x), func(i int) bool { return x[i] > limit })
	runs := slowRuns(arrived, limit)
	var more int
	m.LogLR, m.Decision, more = t.judge(runs, len(x))
	seen := fmt.Sprintf("p%g %s vs baseline %s (%+.1f%%, its %.3g upper bound %s, order statistic %d of %d); %d of %d canary requests above %s in %d runs where %.1f are expected, log LR %.2f",
		100*q, dur(qc), dur(qb), 100*m.Effect, 1-cfg.Alpha, dur(ub), r, len(y), slow, len(x), dur(time.Duration(limit)), runs, float64(len(x))*p0, m.LogLR)
	switch m.Decision {
	case Fail:
		m.Reason = fmt.Sprintf("%s >= %.2f: the canary's tail is slower", seen, t.upper)
	case Pass:
		m.Reason = fmt.Sprintf("%s <= %.2f: no slower tail", seen, t.lower)
	default:
		m.Need = more
		m.Reason = fmt.Sprintf("%s: at least %d more requests to pass", seen, m.Need)
	}
	if fallback {
		m.Reason += fmt.Sprintf(" (judged at p%g: the p%g from %d baseline requests on)", 100*q, 100*cfg.TailQuantile, need)
	}
	return m
}

// slowRuns counts the runs of consecutive requests above limit, in arrival
// order: one stall of a process delays every request it has in flight, and
// those are one event, not many. Counting runs keeps the sequential test's
// bound (a request starts a run with at most the chance that it is slow),
// while counting requests read one unlucky stall of the canary as several
// independent slow requests: with bursts of 5 stalled requests on both
// sides, 28 of 1 000 identical canaries failed (TestTailFalseFails).
func slowRuns(arrived []int64, limit int64) int {
	runs := 0
	for i, v := range arrived {
		if v > limit && (i == 0 || arrived[i-1] <= limit) {
			runs++
		}
	}
	return runs
}

// minForBound is the least sample size whose largest value is a (1-alpha)
// upper confidence bound of the q-quantile: the least n with q^n <= alpha.
func minForBound(q, alpha float64) int {
	return int(math.Ceil(math.Log(alpha)/math.Log(q) - 1e-9))
}

// boundOrder returns the least r (1-based) such that the r-th smallest of n
// values is a (1-alpha) upper confidence bound of the q-quantile, that is
// P(Binomial(n, q) <= r-1) >= 1-alpha; 0 when even the largest is not.
func boundOrder(n int, q, alpha float64) int {
	if n < 1 {
		return 0
	}
	b := distuv.Binomial{N: float64(n), P: q}
	if b.CDF(float64(n-1)) < 1-alpha {
		return 0
	}
	// r-1 in [0, n-1]: the least m with CDF(m) >= 1-alpha. Below the
	// median (about n·q) the CDF is at most 1/2, so for alpha < 1/2 the
	// search starts there: a few CDF evaluations instead of log2(n).
	lo := 0
	if alpha < 0.5 {
		lo = max(0, int(math.Floor(float64(n)*q))-1)
	}
	m := lo + sort.Search(n-lo, func(i int) bool { return b.CDF(float64(lo+i)) >= 1-alpha })
	return m + 1
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
