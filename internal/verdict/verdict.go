// Package verdict judges a canary against its baseline: a pure function from
// two samples of request outcomes (the canary group's and the baseline
// group's, as the proxy saw them) to an explained decision — continue (not
// enough data yet, and how much more is needed), pass or fail.
//
// Three kinds of metric are judged, each with its own test:
//
//   - error rate per status class (5xx and "no response" by default): Wald's
//     sequential probability ratio test on Bernoulli outcomes, so that a gross
//     regression fails within tens of requests while the chance that a canary
//     as good as its baseline ever fails stays below Alpha/(1-Beta), however
//     often it is evaluated (Ville's inequality on the likelihood ratio);
//   - latency: the Mann-Whitney U test with the Hodges-Lehmann shift estimate
//     and a relative tolerance (Kayenta's judge, with optional 3×IQR outlier
//     removal); a pass needs the shift's upper confidence bound inside the
//     tolerance, so a small sample never passes by lack of evidence;
//   - the tail (p99): the same sequential test on how many canary requests
//     are slower than the upper confidence bound of the baseline's p99 plus
//     a tolerance (judged at the p95 while the baseline is too small to
//     bound its p99).
//
// Nothing here has a clock or does I/O: the time comes in as an argument.
package verdict

import (
	"fmt"
	"strings"
	"time"
)

// Decision is a verdict's outcome. The zero value is Continue: not decided.
type Decision uint8

const (
	Continue Decision = iota // not enough evidence either way: keep the canary at its step
	Pass                     // the canary is proven no worse than the baseline within the tolerances
	Fail                     // the canary is proven worse: roll it back
)

func (d Decision) String() string {
	switch d {
	case Pass:
		return "pass"
	case Fail:
		return "fail"
	default:
		return "continue"
	}
}

// MarshalText writes the decision as its name.
func (d Decision) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a decision's name.
func (d *Decision) UnmarshalText(b []byte) error {
	for _, x := range []Decision{Continue, Pass, Fail} {
		if x.String() == string(b) {
			*d = x
			return nil
		}
	}
	return fmt.Errorf("unknown verdict decision %q", b)
}

// Outcome is one request as the proxy saw it.
type Outcome struct {
	// Status is the HTTP status sent to the client; 0 means no response
	// (connect error, reset, timeout).
	Status int
	// Latency is from the request's arrival to the response headers (or to
	// the failure).
	Latency time.Duration
}

// Class is a status class: 1 to 5 for 1xx to 5xx, 0 for no response.
type Class uint8

// Status classes.
const (
	NoResponse Class = 0
	Class2xx   Class = 2
	Class3xx   Class = 3
	Class4xx   Class = 4
	Class5xx   Class = 5
)

func (c Class) String() string {
	if c == NoResponse {
		return "no-response"
	}
	return fmt.Sprintf("%dxx", c)
}

// ClassOf returns the status class of an HTTP status (0 = no response).
func ClassOf(status int) Class {
	if status < 100 || status > 599 {
		return NoResponse
	}
	return Class(status / 100)
}

// Sample is what one group (canary or baseline) served.
type Sample struct {
	// Start is when the group began to receive traffic; the zero value means
	// unknown, and then a Config.MinDuration above 0 is never met.
	Start time.Time
	// Outcomes in arrival order (the latency tests keep the newest
	// Config.MaxSamples).
	Outcomes []Outcome
	// Stable, for the baseline only and optional: the old release's
	// long-running instances' requests over a recent window. The error
	// tests bound the old release's rate by the larger of the baseline's
	// and these, so that a few lucky baseline requests do not pass for a
	// clean old release.
	Stable Counts
	// Counters holds, for each scraped counter (Config.Counters), how much
	// it rose on the group's instances over the requests in Outcomes; a
	// counter absent here has not been scraped yet (undecided).
	Counters map[string]float64
}

// Counts are request totals by status class.
type Counts struct {
	Requests int
	ByClass  [6]int // indexed by Class: [0] no response, [2] 2xx … [5] 5xx
}

// Add counts one outcome.
func (c *Counts) Add(o Outcome) {
	c.Requests++
	c.ByClass[ClassOf(o.Status)]++
}

// Config holds the tests' settings. The zero value of a field means its
// default (Defaults): set a field to change it.
type Config struct {
	// Alpha bounds the false-fail rate of each error class's sequential test
	// (a canary as good as its baseline fails with probability at most
	// Alpha/(1-Beta), evaluated as often as you like). Default 0.01.
	Alpha float64
	// Beta bounds the chance of passing a canary whose error rate is at the
	// alternative (baseline + ErrorIncrease). Default 0.05.
	Beta float64
	// ErrorFloor is the lowest error rate assumed for the baseline (the
	// null hypothesis), so that a clean baseline does not make one canary
	// error a regression. Default 0.005 (0.5 %).
	ErrorFloor float64
	// ErrorIncrease is the regression the error test is tuned to detect: the
	// alternative is baseline rate + ErrorIncrease. Default 0.025 (2.5 points).
	ErrorIncrease float64
	// ErrorClasses are the status classes counted as errors, each judged as
	// its own metric. Default [5xx, no-response].
	ErrorClasses []Class
	// LatencyAlpha is the significance of the latency and tail tests (one
	// sided), and 1-LatencyAlpha the confidence of the shift's bound.
	// Default 0.01.
	LatencyAlpha float64
	// LatencyTolerance is the largest median slowdown accepted, relative to
	// the baseline's median (Hodges-Lehmann shift / baseline median).
	// Default 0.10 (10 %).
	LatencyTolerance float64
	// TailQuantile is the quantile of the tail test. Default 0.99.
	TailQuantile float64
	// TailTolerance is the slack over the baseline's tail quantile before a
	// canary request counts as slower. Default 0.25 (25 %).
	TailTolerance float64
	// TailRatio tunes the tail's sequential test: the alternative is a canary
	// with TailRatio times as many requests beyond the limit as the baseline
	// quantile allows (3 × 1 % for p99). Default 3.
	TailRatio float64
	// TailFallback is the quantile the tail is judged at while the baseline
	// has too few requests to bound its TailQuantile (459 for
	// the p99 at Alpha 1 %; the p95 needs 90). A value at or above
	// TailQuantile turns the fallback off. Default 0.95.
	TailFallback float64
	// TailMinSamples is the number of successful requests per group before
	// the tail is judged at all. Default 100.
	TailMinSamples int
	// OutlierIQR, when above 0, removes latencies farther than OutlierIQR
	// times the interquartile range outside the quartiles of their own group
	// before the Mann-Whitney test (Kayenta uses 3). Default 0: off.
	OutlierIQR float64
	// MinSamples is the number of requests per group before any metric gives
	// a verdict. Default 20.
	MinSamples int
	// MinDuration is how long the canary must have had traffic before it
	// passes (a fail needs no wait). Default 0.
	MinDuration time.Duration
	// MaxSamples bounds the latency tests' cost: the newest MaxSamples
	// successful requests per group are used. Default 5000.
	MaxSamples int
	// Counters are event counters scraped from the instances, each its own
	// metric ("scraped NAME"), at most MaxCounters. Default none.
	Counters []Counter
}

// Defaults returns the settings used for fields left zero.
func Defaults() Config {
	return Config{
		Alpha:            0.01,
		Beta:             0.05,
		ErrorFloor:       0.005,
		ErrorIncrease:    0.025,
		ErrorClasses:     []Class{Class5xx, NoResponse},
		LatencyAlpha:     0.01,
		LatencyTolerance: 0.10,
		TailQuantile:     0.99,
		TailTolerance:    0.25,
		TailRatio:        3,
		TailFallback:     0.95,
		TailMinSamples:   100,
		MinSamples:       20,
		MaxSamples:       5000,
	}
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	d := Defaults()
	set := func(v *float64, def float64) {
		if *v == 0 {
			*v = def
		}
	}
	set(&c.Alpha, d.Alpha)
	set(&c.Beta, d.Beta)
	set(&c.ErrorFloor, d.ErrorFloor)
	set(&c.ErrorIncrease, d.ErrorIncrease)
	set(&c.LatencyAlpha, d.LatencyAlpha)
	set(&c.LatencyTolerance, d.LatencyTolerance)
	set(&c.TailQuantile, d.TailQuantile)
	set(&c.TailTolerance, d.TailTolerance)
	set(&c.TailRatio, d.TailRatio)
	set(&c.TailFallback, d.TailFallback)
	if c.ErrorClasses == nil {
		c.ErrorClasses = d.ErrorClasses
	}
	if c.TailMinSamples == 0 {
		c.TailMinSamples = d.TailMinSamples
	}
	if c.MinSamples == 0 {
		c.MinSamples = d.MinSamples
	}
	if c.MaxSamples == 0 {
		c.MaxSamples = d.MaxSamples
	}
	return c
}

// Validate reports a setting out of its range.
func (c Config) Validate() error {
	c = c.withDefaults()
	in01 := func(name string, v float64) error {
		if !(v > 0 && v < 1) {
			return fmt.Errorf("verdict: %s %v: must be between 0 and 1", name, v)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"alpha", c.Alpha}, {"beta", c.Beta}, {"error_floor", c.ErrorFloor}, {"error_increase", c.ErrorIncrease},
		{"latency_alpha", c.LatencyAlpha}, {"tail_quantile", c.TailQuantile}, {"tail_fallback", c.TailFallback}} {
		if err := in01(f.name, f.v); err != nil {
			return err
		}
	}
	if c.ErrorFloor+c.ErrorIncrease >= 1 {
		return fmt.Errorf("verdict: error_floor + error_increase = %v: must be below 1", c.ErrorFloor+c.ErrorIncrease)
	}
	if c.LatencyTolerance < 0 || c.TailTolerance < 0 || c.OutlierIQR < 0 {
		return fmt.Errorf("verdict: tolerances and outlier_iqr must not be negative")
	}
	if c.TailRatio <= 1 {
		return fmt.Errorf("verdict: tail_ratio %v: must be above 1", c.TailRatio)
	}
	if len(c.Counters) > MaxCounters {
		return fmt.Errorf("verdict: %d counters: at most %d", len(c.Counters), MaxCounters)
	}
	for i, k := range c.Counters {
		if k.Name == "" || k.Increase < 0 || k.Increase >= 1 || c.ErrorFloor+k.Increase >= 1 {
			return fmt.Errorf("verdict: counters[%d] %q: want a name and an increase from 0 (the default) to below 1", i, k.Name)
		}
	}
	if c.MinSamples < 2 || c.TailMinSamples < 2 || c.MaxSamples < c.MinSamples {
		return fmt.Errorf("verdict: min_samples %d, tail_min_samples %d, max_samples %d: need min >= 2 and max >= min",
			c.MinSamples, c.TailMinSamples, c.MaxSamples)
	}
	return nil
}

// Metric is the judgment of one metric, with what it was judged on.
type Metric struct {
	Name     string   `json:"name"` // "errors 5xx", "latency median", "latency p99"
	Test     string   `json:"test"` // "sprt" or "mann-whitney"
	Decision Decision `json:"decision"`
	// Samples each group contributed (after outlier removal for latency).
	Canary   int `json:"canary_samples"`
	Baseline int `json:"baseline_samples"`
	// CanaryValue and BaselineValue: the error rate, or the latency in
	// seconds (median for "latency median", the quantile for the tail).
	CanaryValue   float64 `json:"canary_value"`
	BaselineValue float64 `json:"baseline_value"`
	// Effect: for errors the canary's rate minus the baseline's; for latency
	// the Hodges-Lehmann shift relative to the baseline median; for the tail
	// the canary's quantile relative to the baseline's, minus 1.
	Effect float64 `json:"effect"`
	// LogLR is the sequential test's log likelihood ratio (sprt only).
	LogLR float64 `json:"log_lr,omitempty"`
	// PValue of the Mann-Whitney test.
	PValue float64 `json:"p_value,omitempty"`
	// Threshold says what the statistic was compared with.
	Threshold string `json:"threshold"`
	// Need is, when Continue, about how many more requests per group would
	// let this metric decide.
	Need   int    `json:"need,omitempty"`
	Reason string `json:"reason"`
}

// Verdict is the decision over all metrics.
type Verdict struct {
	Decision Decision `json:"decision"`
	Reason   string   `json:"reason"`
	Metrics  []Metric `json:"metrics"`
	// NeedRequests: when Continue, about how many more requests per group
	// the undecided metrics need (the largest of theirs).
	NeedRequests int `json:"need_requests,omitempty"`
	// NeedTime: when Continue, how long until MinDuration is met.
	NeedTime time.Duration `json:"need_time,omitempty"`
}

// Evaluate judges canary against baseline at now. Fail when any metric
// fails; Pass when every metric passes and the canary has had traffic for
// MinDuration; Continue otherwise. A Config that does not Validate gives
// Continue with the error as its reason: never a guess. Evaluate neither
// modifies nor keeps the samples' slices, so a caller may pass views of
// buffers it keeps appending to between calls.
func Evaluate(cfg Config, canary, baseline Sample, now time.Time) Verdict {
	if err := cfg.Validate(); err != nil {
		return Verdict{Decision: Continue, Reason: err.Error()}
	}
	cfg = cfg.withDefaults()
	var ms []Metric
	for _, c := range cfg.ErrorClasses {
		ms = append(ms, errorRate(cfg, c, canary.Outcomes, baseline.Outcomes, baseline.Stable))
	}
	ca, cl := latencies(cfg, canary.Outcomes)
	_, bl := latencies(cfg, baseline.Outcomes)
	ms = append(ms, shift(cfg, cl, bl), tail(cfg, ca, cl, bl))
	for _, c := range cfg.Counters {
		ms = append(ms, counterRate(cfg, c, canary, baseline))
	}

	v := Verdict{Metrics: ms, Decision: Pass}
	var failed, open []string
	for _, m := range ms {
		switch m.Decision {
		case Fail:
			failed = append(failed, m.Name+": "+m.Reason)
		case Continue:
			open = append(open, m.Name)
			v.NeedRequests = max(v.NeedRequests, m.Need)
		}
	}
	if cfg.MinDuration > 0 {
		elapsed := time.Duration(0)
		if !canary.Start.IsZero() {
			elapsed = now.Sub(canary.Start)
		}
		if elapsed < cfg.MinDuration {
			v.NeedTime = cfg.MinDuration - elapsed
		}
	}
	switch {
	case len(failed) > 0:
		v.Decision, v.NeedRequests, v.NeedTime = Fail, 0, 0
		v.Reason = "fail: " + strings.Join(failed, "; ")
	case len(open) > 0:
		v.Decision = Continue
		v.Reason = fmt.Sprintf("continue: %s undecided, about %d more requests per group", strings.Join(open, ", "), v.NeedRequests)
		if v.NeedTime > 0 {
			v.Reason += fmt.Sprintf(", and %s more traffic time", v.NeedTime.Round(time.Second))
		}
	case v.NeedTime > 0:
		v.Decision = Continue
		v.Reason = fmt.Sprintf("continue: every metric passes; the canary needs %s more traffic time (min_duration %s)",
			v.NeedTime.Round(time.Second), cfg.MinDuration)
	default:
		v.Reason = fmt.Sprintf("pass: %d metrics within their tolerances", len(ms))
	}
	return v
}
