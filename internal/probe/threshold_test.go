package probe_test

import (
	"testing"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/probe"
)

func TestCounter(t *testing.T) {
	const (
		S = medic.HealthSuccess
		F = medic.HealthFailure
		U = medic.HealthUnknown
	)
	type obs struct {
		in      medic.Health
		state   medic.Health
		changed bool
	}
	tests := []struct {
		name    string
		t       probe.Threshold
		initial medic.Health
		seq     []obs
	}{
		{"zero value: thresholds of 1 from unknown", probe.Threshold{}, U, []obs{
			{S, S, true}, {S, S, false}, {F, F, true}, {F, F, false}, {S, S, true},
		}},
		{"failure needs three in a row", probe.Threshold{Success: 1, Failure: 3}, S, []obs{
			{F, S, false}, {F, S, false}, {S, S, false}, // a success breaks the run
			{F, S, false}, {F, S, false}, {F, F, true}, {F, F, false},
			{S, S, true},
		}},
		{"success needs two in a row", probe.Threshold{Success: 2, Failure: 1}, F, []obs{
			{S, F, false}, {F, F, false}, {S, F, false}, {S, S, true}, {S, S, false}, {F, F, true},
		}},
		{"unknown neither extends nor breaks a run", probe.Threshold{Success: 1, Failure: 2}, S, []obs{
			{F, S, false}, {U, S, false}, {F, F, true}, {U, F, false}, {S, S, true},
		}},
		{"initial state equal to the result is no change", probe.Threshold{Success: 1, Failure: 1}, F, []obs{
			{F, F, false}, {F, F, false}, {S, S, true},
		}},
		{"negative thresholds count as one", probe.Threshold{Success: -1, Failure: 0}, U, []obs{
			{F, F, true}, {S, S, true},
		}},
		{"out-of-range health is ignored", probe.Threshold{Success: 1, Failure: 1}, S, []obs{
			{medic.Health(7), S, false}, {F, F, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := probe.NewCounter(tt.t, tt.initial)
			for i, o := range tt.seq {
				state, changed := c.Observe(o.in)
				if state != o.state || changed != o.changed {
					t.Fatalf("observation %d (%v): got %v changed=%v, want %v changed=%v", i, o.in, state, changed, o.state, o.changed)
				}
				if c.State != state {
					t.Fatalf("observation %d: State field %v, returned %v", i, c.State, state)
				}
			}
		})
	}
}

func TestCounterRun(t *testing.T) {
	c := probe.NewCounter(probe.Threshold{Success: 1, Failure: 5}, medic.HealthSuccess)
	if h, n := c.Run(); h != medic.HealthUnknown || n != 0 {
		t.Fatalf("fresh Run() = %v, %d; want unknown, 0", h, n)
	}
	for range 3 {
		c.Observe(medic.HealthFailure)
	}
	snapshot := c // a Counter is a value: copies are independent
	c.Observe(medic.HealthFailure)
	if h, n := c.Run(); h != medic.HealthFailure || n != 4 {
		t.Fatalf("Run() = %v, %d; want failure, 4", h, n)
	}
	if _, n := snapshot.Run(); n != 3 {
		t.Fatalf("snapshot run %d, want 3", n)
	}
}
