package remedy

import (
	"context"
	"fmt"
	"time"

	"github.com/medic-dev/medic"
)

// RunbookStatus is one line of `medic runbooks`.
type RunbookStatus struct {
	Name             string    `json:"name"`
	Description      string    `json:"description,omitempty"`
	Builtin          string    `json:"builtin,omitempty"`
	Condition        string    `json:"condition"`
	Level            Level     `json:"level"`
	Configured       Level     `json:"configured"`
	MaxLevel         Level     `json:"max_level"`
	Consecutive      int       `json:"consecutive"`   // verified successes toward the next promotion
	PromoteAfter     int       `json:"promote_after"` // successes a promotion takes
	Runs             int       `json:"runs"`
	Successes        int       `json:"successes"`
	Failures         int       `json:"failures"`
	SuccessRate      float64   `json:"success_rate"`
	MedianTTRSeconds float64   `json:"median_ttr_seconds"`
	LastRun          time.Time `json:"last_run,omitzero"`
	DryRun           bool      `json:"dry_run"`
	Approve          bool      `json:"approve_required"`
}

// Runbooks returns the configured runbooks with their trust and record,
// sorted by name.
func (e *Engine) Runbooks() []RunbookStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]RunbookStatus, 0, len(e.books))
	for _, rb := range e.books {
		r := e.records[rb.name]
		out = append(out, RunbookStatus{Name: rb.name, Description: rb.cfg.Description, Builtin: rb.cfg.Builtin,
			Condition: rb.cfg.Trigger.Condition, Level: r.Level, Configured: r.Configured, MaxLevel: rb.max,
			Consecutive: r.Consecutive, PromoteAfter: e.cfg.Automation.PromoteAfter, Runs: r.Runs,
			Successes: r.Successes, Failures: r.Failures, SuccessRate: r.SuccessRate(),
			MedianTTRSeconds: r.MedianTTR().Seconds(), LastRun: r.LastRun, DryRun: rb.cfg.DryRun || e.dryRun,
			Approve: rb.cfg.Approve == "required"})
	}
	return out
}

// Incidents returns the open incidents and the most recent closed ones,
// oldest first, with their timelines and time to detect and recover.
func (e *Engine) Incidents() []Incident {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Incident, len(e.incidents))
	for i, in := range e.incidents {
		out[i] = in.snapshot()
	}
	return out
}

// SetTrust sets a runbook's trust level by hand (`medic runbooks trust NAME
// LEVEL`), for example to promote an observing runbook, which never
// promotes itself. The consecutive count restarts. Persisted and audited.
func (e *Engine) SetTrust(ctx context.Context, runbook string, level Level, who string) error {
	if level < LevelObserve || level > LevelSilent {
		return fmt.Errorf("runbook %s: invalid trust level %v", runbook, level)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	rb, r := e.book(runbook), e.records[runbook]
	if rb == nil || r == nil {
		return fmt.Errorf("runbook %s: %w", runbook, ErrNotFound)
	}
	from := r.Level
	r.Level, r.Consecutive = level, 0
	e.saveRecord(ctx, *r)
	e.record(ctx, medic.Event{Kind: EventTrust, Target: runbook, Actor: humanActor(who),
		Reason: fmt.Sprintf("trust set by %s: %s → %s", humanActor(who), from, level),
		Fields: fields("runbook", runbook, "from", from.String(), "to", level.String())})
	return nil
}

// Dropped returns how many triggers were dropped because the queue was full.
func (e *Engine) Dropped() uint64 { return e.dropped.Load() }
