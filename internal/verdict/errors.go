package verdict

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// errorRate judges one status class with Wald's SPRT on the canary's
// outcomes: H0 the canary errs at p0 = max(the baseline rate's upper bound,
// the stable rate's upper bound, ErrorFloor), H1 at p1 = p0 + ErrorIncrease.
// The log likelihood ratio after n requests with k errors is
// k·ln(p1/p0) + (n-k)·ln((1-p1)/(1-p0)); it fails at A = ln((1-Beta)/Alpha)
// and passes at B = ln(Beta/(1-Alpha)).
//
// The ratio is recomputed from the whole sample at each evaluation, so a
// canary that passed and later errs fails then: under H0 the likelihood
// ratio is a nonnegative martingale, and Ville's inequality bounds the chance
// that it ever reaches e^A by e^-A = Alpha/(1-Beta), however often one looks,
// as long as the canary's true rate is at most p0.
func errorRate(cfg Config, class Class, canary, baseline []Outcome, stable Counts) Metric {
	kc, nc := count(class, canary)
	kb, nb := count(class, baseline)
	m := Metric{Name: "errors " + class.String(), Test: "sprt", Canary: nc, Baseline: nb}
	m.CanaryValue, m.BaselineValue = rate(kc, nc), rate(kb, nb)
	m.Effect = m.CanaryValue - m.BaselineValue
	// The baseline's rate is itself a measurement: H0 takes its one-sided
	// 1-Alpha upper bound (normal approximation), so that a baseline that
	// happened to err less than it really does is not read as a clean one.
	// A baseline without errors gives the floor: that is the assumption of
	// this test (the old release errs below ErrorFloor unless its baseline
	// shows otherwise); when the old release really errs at a few percent
	// and its baseline shows none, a canary as good as it fails more often
	// than Alpha (docs/deploys.md gives the measured rates).
	z := distuv.UnitNormal.Quantile(1 - cfg.Alpha)
	bound := upperBound(m.BaselineValue, nb, z)
	ks, ns := stable.ByClass[class], stable.Requests
	if ns > 0 {
		bound = max(bound, upperBound(rate(ks, ns), ns, z))
	}
	p0 := min(max(bound, cfg.ErrorFloor), 0.99)
	p1 := min(p0+cfg.ErrorIncrease, 0.999)
	t := newSPRT(p0, p1, cfg.Alpha, cfg.Beta)
	m.Threshold = fmt.Sprintf("H0 %s rate %.2f%% (the old release's upper bound, at least the floor), H1 %.2f%%; fail at log LR >= %.2f (alpha %.3g), pass at <= %.2f (beta %.3g)",
		class, 100*p0, 100*p1, t.upper, cfg.Alpha, t.lower, cfg.Beta)
	if short := cfg.MinSamples - min(nc, nb); short > 0 {
		m.Need = short
		m.Reason = fmt.Sprintf("%d canary and %d baseline requests, below the minimum of %d", nc, nb, cfg.MinSamples)
		return m
	}
	var need int
	m.LogLR, m.Decision, need = t.judge(kc, nc)
	upper, lower := t.upper, t.lower
	seen := fmt.Sprintf("%d of %d (%.2f%%) vs baseline %d of %d (%.2f%%), log LR %.2f",
		kc, nc, 100*m.CanaryValue, kb, nb, 100*m.BaselineValue, m.LogLR)
	if ns > 0 {
		seen = fmt.Sprintf("%d of %d (%.2f%%) vs baseline %d of %d (%.2f%%) and stable %d of %d (%.2f%%), log LR %.2f",
			kc, nc, 100*m.CanaryValue, kb, nb, 100*m.BaselineValue, ks, ns, 100*rate(ks, ns), m.LogLR)
	}
	switch m.Decision {
	case Fail:
		m.Reason = fmt.Sprintf("%s >= %.2f: %.3g%% errors is %.3g times likelier than %.3g%% (false-fail bound %.2g)",
			seen, upper, 100*p1, math.Exp(m.LogLR), 100*p0, cfg.Alpha/(1-cfg.Beta))
	case Pass:
		m.Reason = fmt.Sprintf("%s <= %.2f: %.3g%% errors is %.3g times likelier than %.3g%%: no worse than the baseline",
			seen, lower, 100*p0, math.Exp(-m.LogLR), 100*p1)
	default:
		m.Need = need
		m.Reason = fmt.Sprintf("%s between %.2f and %.2f: at least %d more clean requests to pass", seen, lower, upper, m.Need)
	}
	return m
}

// upperBound is the one-sided upper bound of a rate measured as p in n
// trials (normal approximation; 0 for a rate of 0, which the floor covers).
func upperBound(p float64, n int, z float64) float64 {
	return p + z*math.Sqrt(p*(1-p)/float64(max(n, 1)))
}

// count returns the outcomes of class and the total.
func count(class Class, os []Outcome) (k, n int) {
	for _, o := range os {
		if ClassOf(o.Status) == class {
			k++
		}
	}
	return k, len(os)
}

func rate(k, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(k) / float64(n)
}

// sprt is Wald's sequential probability ratio test of a Bernoulli rate: H0
// p0 against H1 p1 > p0, failing at A = ln((1-beta)/alpha) and passing at
// B = ln(beta/(1-alpha)).
type sprt struct {
	perHit, perMiss float64 // log LR added by an event and by a non-event (negative)
	upper, lower    float64
}

func newSPRT(p0, p1, alpha, beta float64) sprt {
	return sprt{
		perHit:  math.Log(p1 / p0),
		perMiss: math.Log((1 - p1) / (1 - p0)),
		upper:   math.Log((1 - beta) / alpha),
		lower:   math.Log(beta / (1 - alpha)),
	}
}

// judge returns the log likelihood ratio of k events in n trials, the
// decision, and, when undecided, how many more trials without an event
// would pass.
func (t sprt) judge(k, n int) (llr float64, d Decision, need int) {
	llr = float64(k)*t.perHit + float64(n-k)*t.perMiss
	switch {
	case llr >= t.upper:
		return llr, Fail, 0
	case llr <= t.lower:
		return llr, Pass, 0
	}
	return llr, Continue, max(1, int(math.Ceil((llr-t.lower)/-t.perMiss)))
}
