package probe

import "github.com/medic-dev/medic"

// Threshold is how many consecutive equal results change a probe's state
// (Kubernetes' successThreshold and failureThreshold). A value below 1 counts
// as 1.
type Threshold struct {
	Success, Failure int
}

// need returns how many consecutive results of health h flip the state.
func (t Threshold) need(h medic.Health) int {
	n := t.Failure
	if h == medic.HealthSuccess {
		n = t.Success
	}
	return max(n, 1)
}

// Counter debounces a stream of probe results into a state: the state becomes
// h once Threshold-many consecutive results are h (kubelet's resultRun). It is
// a plain value with no clock and no goroutines; copy it to snapshot it.
//
// The zero Counter starts in HealthUnknown with thresholds of 1.
type Counter struct {
	// Threshold is the number of consecutive results needed to flip the state.
	Threshold Threshold
	// State is the debounced state; set it to choose the initial state
	// (Kubernetes: readiness starts Failure, liveness Success, startup Unknown).
	State medic.Health

	last medic.Health // result of the current run
	run  int          // length of the current run of equal results
}

// NewCounter returns a Counter in state initial.
func NewCounter(t Threshold, initial medic.Health) Counter {
	return Counter{Threshold: t, State: initial}
}

// Observe records one result and returns the state after it, and whether the
// state changed. A result of HealthUnknown (a check that could not judge) is
// ignored: it neither extends nor breaks the current run, as kubelet throws
// away a probe that errored.
func (c *Counter) Observe(h medic.Health) (state medic.Health, changed bool) {
	if h != medic.HealthSuccess && h != medic.HealthFailure {
		return c.State, false
	}
	if h == c.last {
		c.run++
	} else {
		c.last, c.run = h, 1
	}
	if c.run >= c.Threshold.need(h) && c.State != h {
		c.State = h
		return h, true
	}
	return c.State, false
}

// Run returns the result of the current run of equal results and its length
// (0 before the first result): "3 consecutive failures".
func (c Counter) Run() (medic.Health, int) { return c.last, c.run }
