package detect

import (
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/signal"
)

// State is the state of one alert of a condition. The zero value is
// StateUnknown: never evaluated.
type State int

const (
	StateUnknown  State = iota
	StateInactive       // not holding, or resolved
	StatePending        // holding, but not yet for the condition's `for`
	StateFiring         // held for `for`
)

var stateNames = [...]string{"unknown", "inactive", "pending", "firing"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("state(%d)", int(s))
	}
	return stateNames[s]
}

// MarshalText renders the state by name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Transition is one change of state of one alert: what the agent records in
// the audit log and hands to the runbook engine. Resolution is Firing →
// Inactive; a breach that did not last `for` is Pending → Inactive.
type Transition struct {
	Condition string        `json:"condition"`
	Kind      string        `json:"kind"` // threshold, trend, anomaly, event or alert
	Labels    signal.Labels `json:"labels"`
	From      State         `json:"from"`
	To        State         `json:"to"`
	At        time.Time     `json:"at"`
	// When the condition started to hold for this alert (the start of Pending);
	// At − ActiveAt is the time the `for` took.
	ActiveAt time.Time `json:"active_at"`
	// The observed value: the series' value (threshold), its slope per hour
	// (trend), the sample judged (anomaly); 0 for events and pushed alerts.
	Value float64 `json:"value"`
	// How sure the detector is, from 0 to 1: the anomaly confidence; 1 for
	// the other kinds while the condition holds, 0 when it does not.
	Confidence float64 `json:"confidence"`
	// Why, in words, with the figures: the same string goes to the log, the
	// audit record and the API.
	Reason string `json:"reason"`
	// Annotations of a pushed alert (summary, description, runbook_url).
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Resolved reports whether t is the end of a firing alert.
func (t Transition) Resolved() bool { return t.From == StateFiring && t.To == StateInactive }

// Fired reports whether t starts a firing alert.
func (t Transition) Fired() bool { return t.To == StateFiring && t.From != StateFiring }

// Alert is a snapshot of one alert of a condition: one label set.
type Alert struct {
	Condition   string            `json:"condition"`
	Labels      signal.Labels     `json:"labels"`
	State       State             `json:"state"`
	ActiveAt    time.Time         `json:"active_at,omitzero"`
	FiredAt     time.Time         `json:"fired_at,omitzero"`
	ResolvedAt  time.Time         `json:"resolved_at,omitzero"`
	Value       float64           `json:"value"`
	Confidence  float64           `json:"confidence"`
	Reason      string            `json:"reason"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// reading is what a kind observes for one label set at one time.
type reading struct {
	labels      signal.Labels
	active      bool
	value       float64
	confidence  float64
	reason      string
	annotations map[string]string
}

// alert is the state machine of one label set: timestamps, not flags
// (prometheus rules/alerting.go).
type alert struct {
	labels      signal.Labels
	state       State
	activeAt    time.Time
	firedAt     time.Time
	resolvedAt  time.Time
	keepSince   time.Time // first time it stopped holding while firing (keep_firing_for)
	value       float64
	confidence  float64
	reason      string
	annotations map[string]string
}

// step feeds one reading at time at. hold is the condition's `for`, keep its
// keep_firing_for. It returns the transition, if the state changed.
func (a *alert) step(at time.Time, r reading, hold, keep time.Duration) (tr Transition, changed bool) {
	from := a.state
	a.value, a.confidence = r.value, r.confidence
	if r.annotations != nil {
		a.annotations = r.annotations
	}
	if r.active {
		a.keepSince = time.Time{}
		switch a.state {
		case StateUnknown, StateInactive:
			a.activeAt, a.firedAt, a.resolvedAt = at, time.Time{}, time.Time{}
			if hold <= 0 {
				a.state, a.firedAt = StateFiring, at
				a.reason = r.reason
			} else {
				a.state = StatePending
				a.reason = fmt.Sprintf("%s; must hold for %v", r.reason, hold)
			}
		case StatePending:
			if held := at.Sub(a.activeAt); held >= hold {
				a.state, a.firedAt = StateFiring, at
				a.reason = fmt.Sprintf("%s; held for %v", r.reason, held.Round(time.Millisecond))
			}
		case StateFiring:
			a.reason = r.reason
		}
	} else {
		switch a.state {
		case StatePending:
			a.state = StateInactive
			a.reason = fmt.Sprintf("cleared %v after it began, before firing (for %v): %s",
				at.Sub(a.activeAt).Round(time.Millisecond), hold, r.reason)
		case StateFiring:
			if keep > 0 {
				if a.keepSince.IsZero() {
					a.keepSince = at
				}
				if at.Sub(a.keepSince) < keep {
					return Transition{}, false
				}
			}
			a.state, a.resolvedAt = StateInactive, at
			a.reason = "resolved: " + r.reason
		}
	}
	if a.state == from {
		return Transition{}, false
	}
	return Transition{
		Labels: a.labels.Clone(), From: from, To: a.state, At: at, ActiveAt: a.activeAt,
		Value: a.value, Confidence: a.confidence, Reason: a.reason, Annotations: a.annotations,
	}, true
}

func (a *alert) snapshot(cond string) Alert {
	return Alert{
		Condition: cond, Labels: a.labels.Clone(), State: a.state, ActiveAt: a.activeAt, FiredAt: a.firedAt,
		ResolvedAt: a.resolvedAt, Value: a.value, Confidence: a.confidence, Reason: a.reason, Annotations: a.annotations,
	}
}
