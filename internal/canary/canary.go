// Package canary decides a canary release: a pure function from (settings,
// state, what the groups and the proxy show, the time) to the next action —
// start the next traffic step, hold, ask for an approval, complete the
// promotion, or roll back with the reason.
//
// A canary runs beside the stable instances of the old release two fresh
// groups of the same size: the canary (the new release) and a baseline (the
// old release, started at the same time), so that the verdict compares the
// new release with fresh instances of the old one, not with long-running
// ones. At step w % the canary and the baseline each get w % of the
// requests (the baseline at most 100−w %) and the stable instances the rest;
// internal/verdict judges the canary's requests against the baseline's.
//
// A step is promoted only when the verdict passes (every metric shown within
// its tolerance) and the step itself saw its minimum of requests; the canary
// is rolled back as soon as the verdict fails, the canary crash-loops, its
// instances are not ready in time, or a step stays undecided for its
// longest duration. Nothing here has a clock or does I/O: Runner (run.go)
// carries the actions out.
package canary

import (
	"errors"
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/verdict"
)

// Defaults of Config's fields left zero.
const (
	DefaultStepMinRequests = 50
	DefaultStepMaxDuration = 10 * time.Minute
	DefaultReadyTimeout    = 2 * time.Minute
	DefaultMaxRestarts     = 2
	DefaultInstances       = 1
)

// DefaultSteps are the canary's traffic steps in percent: the last is the
// promotion to the whole service.
var DefaultSteps = []int{5, 25, 50, 100}

// Config holds a canary's settings. The zero value of a field means its
// default.
type Config struct {
	// Steps of the canary's share of the requests, in percent, increasing;
	// the last is 100: the promotion (every instance runs the new release).
	// Default 5, 25, 50, 100.
	Steps []int
	// Instances of the canary and of the baseline group each. Default 1.
	Instances int
	// StepMinRequests is the number of requests the canary must receive at
	// a step before the step can be promoted. Default 50.
	StepMinRequests int
	// StepMaxDuration is the longest a step waits for a verdict; a step
	// still undecided then is rolled back (too little traffic to prove the
	// canary: never a promotion without proof). Default 10m.
	StepMaxDuration time.Duration
	// ReadyTimeout is how long the canary and the baseline instances have to
	// become ready. Default 2m.
	ReadyTimeout time.Duration
	// MaxRestarts is how many restarts of canary instances are tolerated; one
	// more is a crash loop. Default 2.
	MaxRestarts int
	// Approve: promotions wait for an approval (trust level propose).
	Approve bool
	// Verdict holds the statistical tests' settings.
	Verdict verdict.Config
	// Synthetic load while a step's real traffic is too low to decide.
	// Default off.
	Synthetic Synthetic
	// Metrics are counters scraped from the canary's and the baseline's
	// instances every ScrapeEvery; each is judged by the verdict as
	// Verdict.Counters says (same names). Default none.
	Metrics []Metric
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if len(c.Steps) == 0 {
		c.Steps = DefaultSteps
	}
	if c.Instances == 0 {
		c.Instances = DefaultInstances
	}
	if c.StepMinRequests == 0 {
		c.StepMinRequests = DefaultStepMinRequests
	}
	if c.StepMaxDuration == 0 {
		c.StepMaxDuration = DefaultStepMaxDuration
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.MaxRestarts == 0 {
		c.MaxRestarts = DefaultMaxRestarts
	}
	if c.Synthetic.Path != "" && c.Synthetic.Rate == 0 {
		c.Synthetic.Rate = DefaultSyntheticRate
	}
	return c
}

// Validate reports the first setting out of range, naming it.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if len(c.Steps) > 20 {
		return fmt.Errorf("steps: at most 20, got %d", len(c.Steps))
	}
	prev := 0
	for i, s := range c.Steps {
		if s <= prev || s > 100 {
			return fmt.Errorf("steps[%d]: %d: want increasing percentages from 1 to 100", i, s)
		}
		prev = s
	}
	if prev != 100 {
		return fmt.Errorf("steps: the last step must be 100 (the promotion), got %d", prev)
	}
	switch {
	case c.Instances < 0 || c.Instances > 100:
		return fmt.Errorf("canary_instances: want 1 to 100, got %d", c.Instances)
	case c.StepMinRequests < 0 || c.StepMinRequests > 1_000_000:
		return fmt.Errorf("step_min_requests: want 1 to 1000000, got %d", c.StepMinRequests)
	case c.StepMaxDuration < time.Second:
		return fmt.Errorf("step_max_duration: want at least 1s, got %s", c.StepMaxDuration)
	case c.ReadyTimeout < time.Second:
		return fmt.Errorf("ready_timeout: want at least 1s, got %s", c.ReadyTimeout)
	case c.MaxRestarts < 0 || c.MaxRestarts > 1000:
		return fmt.Errorf("max_restarts: want 0 to 1000, got %d", c.MaxRestarts)
	}
	if c.Synthetic.Path != "" && (c.Synthetic.Path[0] != '/' || c.Synthetic.Rate < 0 || c.Synthetic.Rate > 200) {
		return fmt.Errorf("synthetic: path %q, rate %v: want an absolute path and 1 to 200 requests per second", c.Synthetic.Path, c.Synthetic.Rate)
	}
	if err := c.Verdict.Validate(); err != nil {
		return fmt.Errorf("verdict: %w", err)
	}
	return nil
}

// Group names, as the proxy's backend groups.
const (
	Stable   = "stable"
	Canary   = "canary"
	Baseline = "baseline"
)

// Weights of the proxy's groups, in percent of the requests.
type Weights struct {
	Stable, Canary, Baseline int
}

// Map returns the weights by group name.
func (w Weights) Map() map[string]int {
	return map[string]int{Stable: w.Stable, Canary: w.Canary, Baseline: w.Baseline}
}

func (w Weights) String() string {
	return fmt.Sprintf("stable %d%%, canary %d%%, baseline %d%%", w.Stable, w.Canary, w.Baseline)
}

// WeightsAt returns the weights of a traffic step of pct percent: the canary
// pct, the baseline as much (at most 100−pct), the stable instances the rest.
// 0 is all traffic on the stable instances.
func WeightsAt(pct int) Weights {
	pct = min(max(pct, 0), 100)
	b := min(pct, 100-pct)
	return Weights{Stable: 100 - pct - b, Canary: pct, Baseline: b}
}

// ErrInvalid wraps a refused canary setting.
var ErrInvalid = errors.New("canary: invalid settings")
