package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/verdict"
)

// Deploy says how a new release of the service (medic deploy, the API) rolls out (docs/deploys.md).
type Deploy struct {
	// rolling (new instances beside the old ones, max_surge at a time, within the disruption budget),
	// blue-green (the whole new set beside the old, one proxy switch, the old kept warm for
	// keep_previous) or canary (traffic steps judged against a baseline of the old release, rolled
	// back automatically). Default rolling.
	Strategy string `yaml:"strategy" json:"strategy,omitempty" jsonschema:"enum=rolling,enum=blue-green,enum=canary"`
	// Rolling: new instances started beside the old ones at once, on the spare ports up to
	// remedy.max_instances (fewer when fewer are spare; 0 replaces in place within min_available). Default 1.
	MaxSurge *int `yaml:"max_surge" json:"max_surge,omitempty" jsonschema:"minimum=0,maximum=1000"`
	// Rolling: how long a new instance must stay ready before an old one stops for it. Default 0.
	MinReady Duration `yaml:"min_ready" json:"min_ready,omitempty"`
	// Rolling, blue-green and canary: the nice value the new instances (surge copies, replacements, the green
	// set, the canary and its baseline) start at, until each is first ready; then 0. Their start then takes
	// CPU from the serving instances only when those leave some. 0 (off) to 19; needs root (CAP_SYS_NICE),
	// else not applied. Default 10.
	StartNice *int `yaml:"start_nice" json:"start_nice,omitempty" jsonschema:"minimum=0,maximum=19"`
	// Rolling, blue-green and canary: a deploy's new instances (the surge copies, the green set, the
	// canary and its baseline each) start one at a time, the next when the one before is ready or this
	// long after it started, whichever comes first, so that fewer processes start at once beside the
	// serving ones. A rolling deploy's replacement in an emptied slot is never held back. 0 (the
	// default): all at once. At most 1m.
	Stagger Duration `yaml:"stagger" json:"stagger,omitempty"`
	// Blue-green: how long the previous instances stay running, warm, after the switch, so that
	// medic rollback is a proxy switch. Default 10m.
	KeepPrevious Duration `yaml:"keep_previous" json:"keep_previous,omitempty"`
	// Canary: the canary's share of the requests at each step, in percent, increasing; the last is 100
	// (the promotion: the stable instances roll out to the new release). Default [5, 25, 50, 100].
	Steps []int `yaml:"steps" json:"steps,omitempty" jsonschema:"maxItems=20"`
	// Canary: instances of the canary and of the baseline (the old release, started beside it) each. Default 1.
	CanaryInstances int `yaml:"canary_instances" json:"canary_instances,omitempty" jsonschema:"minimum=0,maximum=100"`
	// Canary: requests the canary must receive at a step before the step is promoted. Default 50.
	StepMinRequests int `yaml:"step_min_requests" json:"step_min_requests,omitempty" jsonschema:"minimum=0,maximum=1000000"`
	// Canary: the longest a step waits for a verdict; still undecided, the canary is rolled back (no
	// promotion without proof). Default 10m.
	StepMaxDuration Duration `yaml:"step_max_duration" json:"step_max_duration,omitempty"`
	// Canary: how long the canary and baseline instances have to become ready (and to be ready again
	// after losing readiness). Default 2m.
	ReadyTimeout Duration `yaml:"ready_timeout" json:"ready_timeout,omitempty"`
	// Canary: restarts of the canary's instances tolerated; one more is a crash loop, rolled back. Default 2.
	MaxRestarts int `yaml:"max_restarts" json:"max_restarts,omitempty" jsonschema:"minimum=0,maximum=1000"`
	// Canary: act (promote each passed step and roll back on its own) or propose (each promotion waits
	// for an approval: medic deploy approve SERVICE; rollbacks still act). Default act.
	Trust string `yaml:"trust" json:"trust,omitempty" jsonschema:"enum=act,enum=propose"`
	// Canary: the statistical tests' settings (docs/deploys.md, "The verdict").
	Verdict DeployVerdict `yaml:"verdict" json:"verdict,omitempty"`
	// Canary: medic's own GET requests to the canary and the baseline while real traffic is too low
	// to decide a step. Default off.
	Synthetic *DeploySynthetic `yaml:"synthetic" json:"synthetic,omitempty"`
	// Canary: event counters scraped from the canary's and the baseline's instances (Prometheus text
	// format), each judged per request like an error class (docs/deploys.md, "Scraped counters").
	// At most 8. Default none.
	Metrics []DeployMetric `yaml:"metrics" json:"metrics,omitempty" jsonschema:"maxItems=8"`
}

// DeployMetric is one counter scraped from the canary and baseline instances.
type DeployMetric struct {
	// The counter's metric name; the values of all its series on an instance are summed.
	Name string `yaml:"name" json:"name"`
	// The path of the instances' Prometheus text endpoint, GET on each instance's port. Default /metrics.
	Path string `yaml:"path" json:"path,omitempty"`
	// The regression the test is tuned to detect, in events per request over the baseline's rate
	// (0.01: one more per 100 requests). Default verdict.error_increase (0.025).
	MaxIncrease float64 `yaml:"max_increase" json:"max_increase,omitempty" jsonschema:"minimum=0,maximum=1"`
}

// DefaultMetricsPath is a scraped counter's path when unset.
const DefaultMetricsPath = "/metrics"

// PathOrDefault is the metric's path, DefaultMetricsPath when unset.
func (m DeployMetric) PathOrDefault() string {
	if m.Path == "" {
		return DefaultMetricsPath
	}
	return m.Path
}

// DeploySynthetic is the synthetic load of a canary: GET requests of path sent straight to the canary
// and baseline instances, the same number to each, topping each group up to rate requests per
// second while the step is undecided (docs/deploys.md, "Synthetic load").
type DeploySynthetic struct {
	// The path of the GET requests; it must be safe to repeat (idempotent) and answer like real
	// traffic does. Required.
	Path string `yaml:"path" json:"path"`
	// Requests per second per group, real ones included: synthetic requests only fill the gap. 1 to 200.
	// Default 20.
	Rate float64 `yaml:"rate" json:"rate,omitempty" jsonschema:"minimum=0,maximum=200"`
}

// DefaultSyntheticRate is the synthetic load's rate per group when unset.
const DefaultSyntheticRate = 20

// RateOrDefault is rate, DefaultSyntheticRate when unset.
func (s *DeploySynthetic) RateOrDefault() float64 {
	if s == nil {
		return 0
	}
	if s.Rate == 0 {
		return DefaultSyntheticRate
	}
	return s.Rate
}

// DeployVerdict holds the canary verdict's settings; 0 means the default.
type DeployVerdict struct {
	// The error and tail tests' false-fail bound: a canary as good as its baseline fails with probability
	// at most alpha/(1-beta). Default 0.01.
	Alpha float64 `yaml:"alpha" json:"alpha,omitempty" jsonschema:"minimum=0,maximum=1"`
	// The chance to pass a canary at the alternative error rate. Default 0.05.
	Beta float64 `yaml:"beta" json:"beta,omitempty" jsonschema:"minimum=0,maximum=1"`
	// The lowest error rate assumed of the old release. Default 0.005.
	ErrorFloor float64 `yaml:"error_floor" json:"error_floor,omitempty" jsonschema:"minimum=0,maximum=1"`
	// The error regression the test is tuned to detect, in points over the baseline's rate. Default 0.025.
	ErrorIncrease float64 `yaml:"error_increase" json:"error_increase,omitempty" jsonschema:"minimum=0,maximum=1"`
	// Mann-Whitney significance of the latency tests. Default 0.01.
	LatencyAlpha float64 `yaml:"latency_alpha" json:"latency_alpha,omitempty" jsonschema:"minimum=0,maximum=1"`
	// The largest median slowdown accepted, relative to the baseline's median. Default 0.10.
	LatencyTolerance float64 `yaml:"latency_tolerance" json:"latency_tolerance,omitempty" jsonschema:"minimum=0"`
	// Slack over the baseline's p99 before a canary request counts as slow. Default 0.25.
	TailTolerance float64 `yaml:"tail_tolerance" json:"tail_tolerance,omitempty" jsonschema:"minimum=0"`
	// Drop latencies beyond k × IQR outside the quartiles before Mann-Whitney (Kayenta: 3). Default 0: off.
	OutlierIQR float64 `yaml:"outlier_iqr" json:"outlier_iqr,omitempty" jsonschema:"minimum=0"`
	// Requests per group before any metric decides. Default 20.
	MinSamples int `yaml:"min_samples" json:"min_samples,omitempty" jsonschema:"minimum=0"`
	// Traffic time of the canary before a pass. Default 0.
	MinDuration Duration `yaml:"min_duration" json:"min_duration,omitempty"`
}

// The deploy strategies.
const (
	StrategyRolling   = "rolling"
	StrategyBlueGreen = "blue-green"
	StrategyCanary    = "canary"
)

// DefaultKeepPrevious is how long blue-green keeps the previous instances warm.
const DefaultKeepPrevious = 10 * time.Minute

// maxKeepPrevious bounds keep_previous: the old set costs its memory meanwhile.
const maxKeepPrevious = 24 * time.Hour

// StrategyOrDefault is the strategy of d, rolling when d or its strategy is unset.
func (d *Deploy) StrategyOrDefault() string {
	if d == nil || d.Strategy == "" {
		return StrategyRolling
	}
	return d.Strategy
}

// MaxSurgeOrDefault is max_surge, 1 when unset.
func (d *Deploy) MaxSurgeOrDefault() int {
	if d == nil || d.MaxSurge == nil {
		return 1
	}
	return *d.MaxSurge
}

// DefaultStartNice is start_nice when unset.
const DefaultStartNice = 10

// StartNiceOrDefault is start_nice, DefaultStartNice when unset (d nil included).
func (d *Deploy) StartNiceOrDefault() int {
	if d == nil || d.StartNice == nil {
		return DefaultStartNice
	}
	return *d.StartNice
}

// MinReadyOrDefault is min_ready (0 when d is nil).
func (d *Deploy) MinReadyOrDefault() time.Duration {
	if d == nil {
		return 0
	}
	return d.MinReady.D()
}

// StaggerOrZero is stagger (0, all at once, when unset; d nil included).
func (d *Deploy) StaggerOrZero() time.Duration {
	if d == nil {
		return 0
	}
	return d.Stagger.D()
}

// KeepPreviousOrDefault is keep_previous, DefaultKeepPrevious when unset.
func (d *Deploy) KeepPreviousOrDefault() time.Duration {
	if d == nil || d.KeepPrevious == 0 {
		return DefaultKeepPrevious
	}
	return d.KeepPrevious.D()
}

// validateRollout checks the rolling and blue-green settings.
func (d *Deploy) validateRollout(ck *checker, p string, s *Service) {
	if d.MaxSurge != nil && (*d.MaxSurge < 0 || *d.MaxSurge > maxInstances) {
		ck.add(p+".max_surge", "must be 0 to %d, got %d", maxInstances, *d.MaxSurge)
	}
	if d.StartNice != nil && (*d.StartNice < 0 || *d.StartNice > 19) {
		ck.add(p+".start_nice", "must be 0 (off) to 19, got %d", *d.StartNice)
	}
	if d.Stagger < 0 || d.Stagger.D() > time.Minute {
		ck.add(p+".stagger", "must be 0 (all at once) to 1m, got %v", d.Stagger)
	}
	if d.MinReady < 0 || d.MinReady.D() > time.Hour {
		ck.add(p+".min_ready", "must be 0 to 1h, got %v", d.MinReady)
	}
	if d.KeepPrevious < 0 || d.KeepPrevious.D() > maxKeepPrevious {
		ck.add(p+".keep_previous", "must be 0 (default %v) to %v, got %v", DefaultKeepPrevious, maxKeepPrevious, d.KeepPrevious)
	}
}

// VerdictConfig returns the verdict package's settings.
func (v DeployVerdict) VerdictConfig() verdict.Config {
	return verdict.Config{Alpha: v.Alpha, Beta: v.Beta, ErrorFloor: v.ErrorFloor, ErrorIncrease: v.ErrorIncrease,
		LatencyAlpha: v.LatencyAlpha, LatencyTolerance: v.LatencyTolerance, TailTolerance: v.TailTolerance,
		OutlierIQR: v.OutlierIQR, MinSamples: v.MinSamples, MinDuration: v.MinDuration.D()}
}

func (d *Deploy) validate(ck *checker, p string, s *Service) {
	d.validateRollout(ck, p, s)
	switch d.Strategy {
	case "", StrategyRolling:
	case StrategyBlueGreen:
		if s.Proxy == nil || s.Proxy.Mode != ProxyModeHTTP {
			ck.add(p+".strategy", "blue-green switches traffic in medic's HTTP proxy: the service needs services.X.proxy, mode http")
		}
		if s.Port == 0 {
			ck.add(p+".strategy", "blue-green needs a port: the green instances listen on spare ports given as PORT")
		}
	case StrategyCanary:
		if s.Proxy == nil || s.Proxy.Mode != ProxyModeHTTP {
			ck.add(p+".strategy", "canary needs the service's HTTP proxy (services.X.proxy, mode http): the verdict judges the requests it sees")
		}
		if s.Port == 0 {
			ck.add(p+".strategy", "canary needs a port: the canary and baseline instances listen on spare ports given as PORT")
		}
	default:
		ck.add(p+".strategy", "must be rolling, blue-green or canary, got %q", d.Strategy)
	}
	if len(d.Steps) > 20 {
		ck.add(p+".steps", "at most 20 steps, got %d", len(d.Steps))
	}
	prev := 0
	for i, v := range d.Steps {
		if v <= prev || v > 100 {
			ck.add(fmt.Sprintf("%s.steps[%d]", p, i), "want increasing percentages from 1 to 100, got %d after %d", v, prev)
			break
		}
		prev = v
	}
	if len(d.Steps) > 0 && prev != 100 && prev == d.Steps[len(d.Steps)-1] {
		ck.add(p+".steps", "the last step must be 100 (the promotion), got %d", prev)
	}
	if d.CanaryInstances < 0 || d.CanaryInstances > 100 {
		ck.add(p+".canary_instances", "must be from 1 to 100, got %d", d.CanaryInstances)
	}
	if d.StepMinRequests < 0 || d.StepMinRequests > 1_000_000 {
		ck.add(p+".step_min_requests", "must be from 0 to 1000000, got %d", d.StepMinRequests)
	}
	if d.StepMaxDuration != 0 && d.StepMaxDuration.D().Seconds() < 1 {
		ck.add(p+".step_max_duration", "must be at least 1s, got %s", d.StepMaxDuration)
	}
	if d.ReadyTimeout != 0 && d.ReadyTimeout.D().Seconds() < 1 {
		ck.add(p+".ready_timeout", "must be at least 1s, got %s", d.ReadyTimeout)
	}
	if d.MaxRestarts < 0 || d.MaxRestarts > 1000 {
		ck.add(p+".max_restarts", "must be from 0 to 1000, got %d", d.MaxRestarts)
	}
	if d.Trust != "" && d.Trust != "act" && d.Trust != "propose" {
		ck.add(p+".trust", "must be act or propose, got %q", d.Trust)
	}
	if sy := d.Synthetic; sy != nil {
		if !strings.HasPrefix(sy.Path, "/") || strings.ContainsAny(sy.Path, " \t\r\n") {
			ck.add(p+".synthetic.path", "want an absolute request path such as /healthz or /api/items?limit=1, got %q", sy.Path)
		}
		if sy.Rate < 0 || sy.Rate > 200 {
			ck.add(p+".synthetic.rate", "must be from 1 to 200 requests per second per group (0: default %d), got %v", DefaultSyntheticRate, sy.Rate)
		}
	}
	if err := d.Verdict.VerdictConfig().Validate(); err != nil {
		ck.add(p+".verdict", "%s", strings.TrimPrefix(err.Error(), "verdict: "))
	}
	if len(d.Metrics) > verdict.MaxCounters {
		ck.add(p+".metrics", "at most %d scraped counters, got %d", verdict.MaxCounters, len(d.Metrics))
	}
	seen := map[string]bool{}
	for i, m := range d.Metrics {
		q := fmt.Sprintf("%s.metrics[%d]", p, i)
		if !metricName.MatchString(m.Name) || seen[m.Name] {
			ck.add(q+".name", "want a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), once, got %q", m.Name)
		}
		seen[m.Name] = true
		if m.Path != "" && (!strings.HasPrefix(m.Path, "/") || strings.ContainsAny(m.Path, " \t\r\n")) {
			ck.add(q+".path", "want an absolute request path such as /metrics, got %q", m.Path)
		}
		if m.MaxIncrease < 0 || m.MaxIncrease >= 1 {
			ck.add(q+".max_increase", "must be from 0 (the default) to below 1 event per request, got %v", m.MaxIncrease)
		}
	}
}

// metricName is a Prometheus metric name.
var metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// VerdictCounters are the scraped counters as the verdict judges them.
func (d *Deploy) VerdictCounters() []verdict.Counter {
	if d == nil {
		return nil
	}
	var out []verdict.Counter
	for _, m := range d.Metrics {
		out = append(out, verdict.Counter{Name: m.Name, Increase: m.MaxIncrease})
	}
	return out
}
