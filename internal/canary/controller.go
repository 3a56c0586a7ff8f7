package canary

import (
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/verdict"
)

// Phase is where a canary is.
type Phase uint8

const (
	Starting    Phase = iota // the canary and the baseline start; all traffic on the stable instances
	Stepping                 // at a traffic step, judged
	Awaiting                 // the step passed; the promotion waits for an approval
	Promoting                // the last step: the stable instances roll out to the new release
	Promoted                 // done: the new release is the service's
	RollingBack              // traffic is back on the stable instances; the canary and baseline stop
	RolledBack               // done: the old release kept, the canary gone
)

var phaseNames = [...]string{"starting", "stepping", "awaiting-approval", "promoting", "promoted", "rolling-back", "rolled-back"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", p)
}

// MarshalText writes the phase as its name.
func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads a phase's name.
func (p *Phase) UnmarshalText(b []byte) error {
	for i, n := range phaseNames {
		if n == string(b) {
			*p = Phase(i)
			return nil
		}
	}
	return fmt.Errorf("unknown canary phase %q", b)
}

// Done reports a final phase.
func (p Phase) Done() bool { return p == Promoted || p == RolledBack }

// State is a canary's progress: the controller's memory between two calls.
type State struct {
	Phase Phase `json:"phase"`
	// Step indexes Config.Steps (meaningful from Stepping on).
	Step int `json:"step"`
	// Started is when the canary and baseline groups were started.
	Started time.Time `json:"started"`
	// TrafficStart is when the canary got its first requests (the first step).
	TrafficStart time.Time `json:"traffic_start,omitzero"`
	// StepStart is when the current step's weights were set.
	StepStart time.Time `json:"step_start,omitzero"`
	// StepBase is the number of canary requests seen when the step began.
	StepBase int `json:"step_base"`
	// UnreadySince is when a canary or baseline instance stopped being
	// ready after the start (zero: all ready).
	UnreadySince time.Time `json:"unready_since,omitzero"`
	// Verdict is the newest verdict.
	Verdict verdict.Verdict `json:"verdict"`
	// DecidedAt is when the canary was judged: the verdict that failed it,
	// or the promotion to the last step.
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// Reason explains the newest transition.
	Reason string `json:"reason"`
}

// GroupStatus is what the supervisor shows of a group's instances.
type GroupStatus struct {
	Want     int // instances asked for
	Ready    int // instances ready
	Restarts int // restarts of the group's instances since the canary began
}

// Observation is what the controller is shown at one call.
type Observation struct {
	Canary, Baseline GroupStatus
	// Samples of the requests the proxy sent to each group since the canary
	// began (arrival order).
	CanarySample, BaselineSample verdict.Sample
	// Approved and Denied answer a pending approval (phase Awaiting).
	Approved, Denied bool
}

// Kind is what an Action asks for.
type Kind uint8

const (
	Hold     Kind = iota // nothing to change
	SetStep              // set the proxy's weights to the step's
	Ask                  // ask an approver to promote the step
	Promote              // the last step: roll the stable instances out to the new release
	Rollback             // weights back to stable first, then stop the canary and the baseline
)

var kindNames = [...]string{"hold", "step", "ask-approval", "promote", "rollback"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// MarshalText writes the kind as its name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("unknown canary action %q", b)
}

// Action is the controller's answer.
type Action struct {
	Kind Kind
	// Step and Weights of a SetStep (Weights is all-stable for a Rollback).
	Step    int
	Weights Weights
	Reason  string
}

// Begin is the state of a canary whose groups were started at now.
func Begin(now time.Time) State {
	return State{Phase: Starting, Started: now, Reason: "the canary and baseline groups start"}
}

// Next decides the canary's next action from its settings, its state, the
// observation and the time. cfg must be valid (Validate); its zero fields
// take their defaults. Next is pure: same inputs, same answer.
func Next(cfg Config, s State, o Observation, now time.Time) (State, Action) {
	cfg = cfg.WithDefaults()
	switch s.Phase {
	case Starting:
		if a, ok := crashed(cfg, o); ok {
			return rollback(s, now, a)
		}
		ready := o.Canary.Ready >= o.Canary.Want && o.Baseline.Ready >= o.Baseline.Want && o.Canary.Want > 0
		if !ready {
			if waited := now.Sub(s.Started); waited >= cfg.ReadyTimeout {
				return rollback(s, now, fmt.Sprintf("readiness never arrived: %d of %d canary and %d of %d baseline instances ready after %s (ready_timeout %s)",
					o.Canary.Ready, o.Canary.Want, o.Baseline.Ready, o.Baseline.Want, waited.Round(time.Millisecond), cfg.ReadyTimeout))
			}
			s.Reason = fmt.Sprintf("waiting for readiness: %d of %d canary and %d of %d baseline instances ready", o.Canary.Ready, o.Canary.Want, o.Baseline.Ready, o.Baseline.Want)
			return s, Action{Kind: Hold, Reason: s.Reason}
		}
		s.TrafficStart = now
		return step(cfg, s, o, now, 0, fmt.Sprintf("every canary and baseline instance is ready after %s", now.Sub(s.Started).Round(time.Millisecond)))
	case Stepping, Awaiting:
		return judge(cfg, s, o, now)
	}
	return s, Action{Kind: Hold, Reason: s.Reason}
}

// judge evaluates a canary at a step.
func judge(cfg Config, s State, o Observation, now time.Time) (State, Action) {
	if a, ok := crashed(cfg, o); ok {
		return rollback(s, now, a)
	}
	if o.Canary.Ready < o.Canary.Want || o.Baseline.Ready < o.Baseline.Want {
		if s.UnreadySince.IsZero() {
			s.UnreadySince = now
		}
		if lost := now.Sub(s.UnreadySince); lost >= cfg.ReadyTimeout {
			return rollback(s, now, fmt.Sprintf("readiness lost: %d of %d canary and %d of %d baseline instances ready for %s (ready_timeout %s)",
				o.Canary.Ready, o.Canary.Want, o.Baseline.Ready, o.Baseline.Want, lost.Round(time.Millisecond), cfg.ReadyTimeout))
		}
	} else {
		s.UnreadySince = time.Time{}
	}
	v := verdict.Evaluate(cfg.Verdict, o.CanarySample, o.BaselineSample, now)
	s.Verdict = v
	if v.Decision == verdict.Fail {
		return rollback(s, now, "the verdict failed the canary: "+v.Reason)
	}
	pct := cfg.Steps[s.Step]
	if s.Phase == Awaiting {
		switch {
		case o.Denied:
			return rollback(s, now, fmt.Sprintf("the promotion from %d%% was refused by its approver", pct))
		case o.Approved:
			return advance(cfg, s, o, now, fmt.Sprintf("approved: %s", v.Reason))
		}
		s.Reason = fmt.Sprintf("at %d%%, waiting for an approval to promote (%s)", pct, v.Reason)
		return s, Action{Kind: Hold, Reason: s.Reason}
	}
	seen := len(o.CanarySample.Outcomes) - s.StepBase
	at := now.Sub(s.StepStart)
	if v.Decision == verdict.Pass && seen >= cfg.StepMinRequests {
		why := fmt.Sprintf("at %d%% for %s, %d canary requests at this step: %s", pct, at.Round(time.Millisecond), seen, v.Reason)
		if cfg.Approve {
			s.Phase = Awaiting
			s.Reason = "the step passed; the promotion waits for an approval (trust level propose): " + why
			return s, Action{Kind: Ask, Step: s.Step + 1, Weights: WeightsAt(cfg.Steps[s.Step+1]), Reason: s.Reason}
		}
		return advance(cfg, s, o, now, why)
	}
	if at >= cfg.StepMaxDuration {
		return rollback(s, now, fmt.Sprintf("undecided at %d%% after %s (step_max_duration %s) with %d canary requests at this step: %s; too little traffic to prove the canary, and no promotion without proof",
			pct, at.Round(time.Second), cfg.StepMaxDuration, seen, v.Reason))
	}
	if v.Decision == verdict.Pass {
		s.Reason = fmt.Sprintf("at %d%%: the verdict passes; %d of the step's %d canary requests seen", pct, seen, cfg.StepMinRequests)
	} else {
		s.Reason = fmt.Sprintf("at %d%%: %s", pct, v.Reason)
	}
	return s, Action{Kind: Hold, Reason: s.Reason}
}

// advance moves to the step after s.Step: a traffic step, or the promotion.
func advance(cfg Config, s State, o Observation, now time.Time, why string) (State, Action) {
	i := s.Step + 1
	if cfg.Steps[i] >= 100 {
		s.Phase, s.Step, s.DecidedAt = Promoting, i, now
		s.Reason = "promote: " + why
		return s, Action{Kind: Promote, Step: i, Weights: WeightsAt(cfg.Steps[s.Step-1]), Reason: s.Reason}
	}
	return step(cfg, s, o, now, i, "promoted from "+fmt.Sprint(cfg.Steps[s.Step])+"%: "+why)
}

// step starts traffic step i.
func step(cfg Config, s State, o Observation, now time.Time, i int, why string) (State, Action) {
	s.Phase, s.Step, s.StepStart, s.StepBase = Stepping, i, now, len(o.CanarySample.Outcomes)
	w := WeightsAt(cfg.Steps[i])
	s.Reason = fmt.Sprintf("step %d of %d, %s: %s", i+1, len(cfg.Steps), w, why)
	return s, Action{Kind: SetStep, Step: i, Weights: w, Reason: s.Reason}
}

// crashed reports a crash loop of the canary or of the baseline.
func crashed(cfg Config, o Observation) (string, bool) {
	switch {
	case o.Canary.Restarts > cfg.MaxRestarts:
		return fmt.Sprintf("the canary crash-loops: %d restarts (max_restarts %d)", o.Canary.Restarts, cfg.MaxRestarts), true
	case o.Baseline.Restarts > cfg.MaxRestarts:
		return fmt.Sprintf("the baseline (old release) crash-loops: %d restarts (max_restarts %d); without a baseline the canary cannot be judged", o.Baseline.Restarts, cfg.MaxRestarts), true
	}
	return "", false
}

func rollback(s State, now time.Time, why string) (State, Action) {
	s.Phase, s.DecidedAt = RollingBack, now
	s.Reason = "roll back: " + why
	return s, Action{Kind: Rollback, Weights: WeightsAt(0), Reason: s.Reason}
}
