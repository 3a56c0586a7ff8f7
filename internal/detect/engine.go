package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/signal"
)

const (
	// DefaultInterval is how often the Engine evaluates its conditions.
	DefaultInterval = time.Second
	// MaxImplicit bounds the conditions created for pushed alerts that no
	// configured condition matches.
	MaxImplicit = 100
)

// Options configure an Engine.
type Options struct {
	Clock    clock.Clock   // default clock.Real
	Interval time.Duration // default DefaultInterval
	Source   SeriesSource  // where signals are read; required by Serve
	// OnTransition receives every transition, in order, from the Serve
	// goroutine. Evaluation waits for it, so it must hand over rather than
	// act (the audit append and a send to the runbook engine's queue).
	OnTransition func(Transition)
	Log          *slog.Logger // default slog.Default
}

// Stats are the Engine's counters.
type Stats struct {
	Conditions int
	Evals      uint64
	// Pushed alerts that matched no configured condition and could not get
	// an implicit one (no alertname, a name taken by another kind, or
	// MaxImplicit reached).
	UnmatchedAlerts uint64
	// Readings dropped because a condition already tracked MaxAlerts label sets.
	DroppedReadings uint64
}

// Engine holds every condition and evaluates them; safe for concurrent use.
//
// Pushed alerts that no alert condition matches become an implicit alert
// condition named after their alertname label (a runbook can trigger on an
// Alertmanager alert by name with no condition configured), unless a
// configured condition of another kind has that name.
type Engine struct {
	opts Options
	kick chan struct{}

	mu        sync.Mutex
	conds     map[string]*Condition
	implicit  map[string]bool
	removed   []*Condition // their pending and firing alerts resolve at the next Eval
	evals     uint64
	unmatched uint64
}

// New builds an engine from the configured conditions.
func New(conds map[string]*config.Condition, opts Options) (*Engine, error) {
	built, err := build(conds)
	if err != nil {
		return nil, err
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	return &Engine{opts: opts, kick: make(chan struct{}, 1), conds: built, implicit: map[string]bool{}}, nil
}

func build(conds map[string]*config.Condition) (map[string]*Condition, error) {
	built := make(map[string]*Condition, len(conds))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(conds)) {
		c, err := NewCondition(name, conds[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		built[name] = c
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return built, nil
}

// Update replaces the configured conditions. An unchanged condition keeps
// its object and state; a changed one starts from the old one's state
// (CopyState); a removed one, or one that now watches another signal or is
// another kind, resolves its alerts at the next Eval. If any
// condition is invalid nothing changes and the error says why.
func (e *Engine) Update(conds map[string]*config.Condition) error {
	built, err := build(conds)
	if err != nil {
		return fmt.Errorf("update conditions: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, old := range e.conds {
		nc, kept := built[name]
		switch {
		case kept && nc.Equal(old):
			built[name] = old
		case kept:
			if !nc.CopyState(old) {
				// Another kind or signal: the old alerts mean something
				// else now, so they end, and the new condition starts afresh.
				e.removed = append(e.removed, old)
			}
		case e.implicit[name]:
			built[name] = old // implicit conditions outlive reloads
		default:
			e.removed = append(e.removed, old)
		}
	}
	for name := range e.implicit {
		if built[name] != e.conds[name] {
			delete(e.implicit, name) // now configured
		}
	}
	e.conds = built
	return nil
}

// Eval evaluates every condition at now, in name order, and returns the
// transitions. It never reads the clock.
func (e *Engine) Eval(now time.Time, src SeriesSource) []Transition {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evals++
	var out []Transition
	for _, c := range e.removed {
		for _, a := range c.alerts {
			if a.state == StatePending || a.state == StateFiring {
				out = append(out, Transition{Condition: c.name, Kind: c.kind, Labels: a.labels.Clone(), From: a.state,
					To: StateInactive, At: now, ActiveAt: a.activeAt, Value: a.value,
					Reason: "condition removed or redefined by a configuration reload"})
			}
		}
	}
	e.removed = nil
	for _, name := range slices.Sorted(maps.Keys(e.conds)) {
		out = append(out, e.conds[name].Eval(now, src)...)
	}
	return out
}

// Push offers a pushed alert received at now to every alert condition that
// matches it (or to an implicit one, see Engine) and wakes the loop. It
// reports whether any condition took it.
func (e *Engine) Push(a ExternalAlert, now time.Time) bool {
	e.mu.Lock()
	matched := false
	for _, c := range e.conds {
		if c.Push(a, now) {
			matched = true
		}
	}
	if !matched {
		matched = e.pushImplicitLocked(a, now)
	}
	if !matched {
		e.unmatched++
	}
	e.mu.Unlock()
	e.wake()
	return matched
}

func (e *Engine) pushImplicitLocked(a ExternalAlert, now time.Time) bool {
	name := a.Labels["alertname"]
	if name == "" || len(name) > 128 {
		return false
	}
	if e.conds[name] == nil {
		if len(e.implicit) >= MaxImplicit || a.Status != AlertFiring {
			return false
		}
		c, err := NewCondition(name, &config.Condition{Alert: &config.ConditionAlert{Match: map[string]string{"alertname": name}}})
		if err != nil {
			return false
		}
		e.conds[name], e.implicit[name] = c, true
	}
	return e.implicit[name] && e.conds[name].Push(a, now)
}

// PushAlerts pushes each alert at the engine clock's now; it fits the
// handlers of package alerts. It never fails: an alert no condition wants
// is counted, not refused (Alertmanager would retry it forever).
func (e *Engine) PushAlerts(alerts []ExternalAlert) error {
	now := clock.Or(e.opts.Clock).Now()
	for _, a := range alerts {
		e.Push(a, now)
	}
	return nil
}

// Observe offers a supervisor event to the event conditions and wakes the
// loop; the transition is stamped with the event's time.
func (e *Engine) Observe(ev medic.Event) {
	e.mu.Lock()
	matched := false
	for _, c := range e.conds {
		if c.Observe(ev) {
			matched = true
		}
	}
	e.mu.Unlock()
	if matched {
		e.wake()
	}
}

func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Serve evaluates every interval, and at once after a Push or Observe,
// delivering transitions to OnTransition, until ctx ends; then it returns nil.
func (e *Engine) Serve(ctx context.Context) error {
	if e.opts.Source == nil {
		return errors.New("detect: Serve needs Options.Source")
	}
	clk := clock.Or(e.opts.Clock)
	t := clk.NewTimer(e.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			t.Reset(e.opts.Interval)
		case <-e.kick:
		}
		for _, tr := range e.Eval(clk.Now(), e.opts.Source) {
			e.log(tr)
			if e.opts.OnTransition != nil {
				e.opts.OnTransition(tr)
			}
		}
	}
}

func (e *Engine) log(tr Transition) {
	log := e.opts.Log
	if log == nil {
		log = slog.Default()
	}
	log.Info("condition "+tr.To.String(), "condition", tr.Condition, "labels", tr.Labels.String(),
		"from", tr.From.String(), "reason", tr.Reason)
}

// Alerts returns the pending, firing and recently resolved alerts of every
// condition, by condition name and labels.
func (e *Engine) Alerts() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Alert
	for _, name := range slices.Sorted(maps.Keys(e.conds)) {
		out = append(out, e.conds[name].Alerts()...)
	}
	return out
}

// Firing reports whether condition cond has a firing alert whose labels
// match (a runbook's precondition and verification ask this).
func (e *Engine) Firing(cond string, match signal.Labels) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.conds[cond]
	if c == nil {
		return false
	}
	for _, a := range c.alerts {
		if a.state == StateFiring && a.labels.Matches(match) {
			return true
		}
	}
	return false
}

// Has reports whether a condition of that name exists (configured or implicit).
func (e *Engine) Has(cond string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conds[cond] != nil
}

// Signals returns the names of the signals the conditions read, sorted: the
// metric families a Scraper needs to keep.
func (e *Engine) Signals() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	set := map[string]bool{}
	for _, c := range e.conds {
		if s := c.Signal(); s != "" {
			set[s] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// History returns, per signal the conditions read, how far back they read
// it (the longest of its conditions' Condition.History): what a
// signal.Store must keep (Store.SetHistory). A signal not in it is read by
// no condition.
func (e *Engine) History() map[string]time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := map[string]time.Duration{}
	for _, c := range e.conds {
		if s := c.Signal(); s != "" {
			h[s] = max(h[s], c.History())
		}
	}
	return h
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Stats{Conditions: len(e.conds), Evals: e.evals, UnmatchedAlerts: e.unmatched}
	for _, c := range e.conds {
		st.DroppedReadings += c.dropped
	}
	return st
}
