package verdict

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// MaxCounters bounds the scraped counters of one verdict.
const MaxCounters = 8

// Counter is an event counter scraped from the canary's and the baseline's
// instances (a Prometheus counter such as app_db_errors_total): each group's
// increase over the requests it served is judged like an error class.
type Counter struct {
	// Name of the metric; the group's increase is Sample.Counters[Name].
	Name string
	// Increase is the regression its test is tuned to detect, in events per
	// request: the alternative is the baseline's rate + Increase. Default
	// Config.ErrorIncrease.
	Increase float64
}

// counterRate judges one scraped counter with the error test's SPRT: k is
// the canary's increase (at most one event per request is counted: the test
// is of a rate per request), n its requests; H0 the canary counts at p0 =
// max(the baseline's rate's 1−Alpha upper bound, ErrorFloor), H1 at p0 +
// Increase. A counter not yet scraped from both groups is undecided.
func counterRate(cfg Config, c Counter, canary, baseline Sample) Metric {
	m := Metric{Name: "scraped " + c.Name, Test: "sprt", Canary: len(canary.Outcomes), Baseline: len(baseline.Outcomes)}
	inc := c.Increase
	if inc == 0 {
		inc = cfg.ErrorIncrease
	}
	xc, okc := canary.Counters[c.Name]
	xb, okb := baseline.Counters[c.Name]
	nc, nb := m.Canary, m.Baseline
	if !okc || !okb {
		m.Need = max(cfg.MinSamples-min(nc, nb), 1)
		m.Reason = fmt.Sprintf("%s not yet scraped from both groups (canary %v, baseline %v)", c.Name, okc, okb)
		return m
	}
	kc := int(math.Round(min(max(xc, 0), float64(nc))))
	kb := int(math.Round(min(max(xb, 0), float64(nb))))
	m.CanaryValue, m.BaselineValue = rate(kc, nc), rate(kb, nb)
	m.Effect = m.CanaryValue - m.BaselineValue
	z := distuv.UnitNormal.Quantile(1 - cfg.Alpha)
	p0 := min(max(upperBound(m.BaselineValue, nb, z), cfg.ErrorFloor), 0.99)
	p1 := min(p0+inc, 0.999)
	t := newSPRT(p0, p1, cfg.Alpha, cfg.Beta)
	m.Threshold = fmt.Sprintf("H0 %.2f %s per 100 requests (the baseline's upper bound, at least the floor), H1 %.2f; fail at log LR >= %.2f, pass at <= %.2f",
		100*p0, c.Name, 100*p1, t.upper, t.lower)
	if short := cfg.MinSamples - min(nc, nb); short > 0 {
		m.Need = short
		m.Reason = fmt.Sprintf("%d canary and %d baseline requests, below the minimum of %d", nc, nb, cfg.MinSamples)
		return m
	}
	var need int
	m.LogLR, m.Decision, need = t.judge(kc, nc)
	seen := fmt.Sprintf("%s rose by %.0f over %d canary requests (%.2f per 100) vs baseline %.0f over %d (%.2f per 100), log LR %.2f",
		c.Name, xc, nc, 100*m.CanaryValue, xb, nb, 100*m.BaselineValue, m.LogLR)
	switch m.Decision {
	case Fail:
		m.Reason = fmt.Sprintf("%s >= %.2f: %.3g per 100 is %.3g times likelier than %.3g (false-fail bound %.2g)",
			seen, t.upper, 100*p1, math.Exp(m.LogLR), 100*p0, cfg.Alpha/(1-cfg.Beta))
	case Pass:
		m.Reason = fmt.Sprintf("%s <= %.2f: no more than the baseline's", seen, t.lower)
	default:
		m.Need = need
		m.Reason = fmt.Sprintf("%s between %.2f and %.2f: at least %d more requests without an increase to pass", seen, t.lower, t.upper, m.Need)
	}
	return m
}
