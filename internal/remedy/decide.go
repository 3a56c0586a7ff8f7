package remedy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/notify"
)

// handle takes one trigger: dedupe, flap accounting, the incident, then a
// decision per matching runbook — or, for a firing condition no runbook
// handles, an escalation with the evidence (never an improvised fix).
func (e *Engine) handle(ctx context.Context, t Trigger) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	if t.State == "" {
		t.State = config.StateFiring
	}
	if t.At.IsZero() {
		t.At = now
	}
	key := t.key()
	if e.lastState[key] == t.State {
		// Not a transition: Alertmanager re-sends firing alerts every
		// repeat_interval, and a restart re-reports what was firing.
		e.log.Debug("trigger repeats the known state; ignored", "condition", key, "state", t.State)
		return
	}
	e.lastState[key] = t.State
	e.guards.Changed(now, key)
	subject := t.subject()
	var matched []*runbook
	for _, rb := range e.books {
		if rb.matches(t) {
			matched = append(matched, rb)
		}
	}
	inc := e.open[subject]
	if t.State == config.StateFiring {
		if inc == nil {
			inc = e.openIncidentLocked(ctx, now, subject, t)
		}
		inc.fire(key)
		inc.add(now, "firing", "", fmt.Sprintf("%s firing (value %g, confidence %.2f): %s", key, t.Value, t.Confidence, t.Reason))
	} else if inc != nil {
		inc.resolve(key)
		inc.add(now, "resolved", "", fmt.Sprintf("%s resolved: %s", key, t.Reason))
	}

	if t.State == config.StateFiring && len(matched) == 0 {
		if inc.escalateOnce("no_runbook:" + t.Condition) {
			e.record(ctx, medic.Event{Kind: EventDecision, Target: subject, Actor: "remedy",
				Reason: "no runbook handles " + key + ": escalating with the evidence, not acting",
				Fields: fields("incident", inc.ID, "condition", t.Condition, "outcome", "escalate", "guard", "no_runbook")})
			e.send(ctx, e.escalateRoute(nil), notify.Notification{Kind: notify.KindTrigger, Severity: "critical",
				Summary: fmt.Sprintf("%s on %s: no runbook handles it", t.Condition, subject),
				Text:    e.triggerEvidence(t, subject), Target: subject, Actor: "remedy",
				Fields: fields("condition", t.Condition)}, true, inc, "no_runbook")
		}
	}
	for _, rb := range matched {
		if d := rb.cfg.Trigger.For.D(); d > 0 {
			e.scheduleLocked(scheduled{at: now.Add(d), trig: t, runbook: rb.name, round: 1})
			e.record(ctx, medic.Event{Kind: EventDeferred, Target: subject, Actor: actorOf(rb.name),
				Reason: fmt.Sprintf("%s %s: deciding in %v if it is still %s", key, t.State, d, t.State),
				Fields: fields("incident", incidentID(inc), "runbook", rb.name, "condition", t.Condition)})
			continue
		}
		if inc == nil {
			inc = e.openIncidentLocked(ctx, now, subject, t)
		}
		e.decideLocked(ctx, now, e.prepareLocked(now, rb, t, inc, 1)) //nolint:errcheck // recorded
	}
	if inc != nil {
		e.maybeCloseLocked(ctx, now, inc)
		e.saveIncident(ctx, inc)
	}
}

// dueLocked takes a scheduled decision if the condition is still in the
// state that scheduled it.
func (e *Engine) dueLocked(ctx context.Context, now time.Time, s scheduled) {
	rb := e.book(s.runbook)
	if rb == nil {
		return
	}
	subject := s.trig.subject()
	if !e.stillLocked(s.trig, now) {
		e.log.Debug("scheduled decision dropped: the condition changed", "runbook", s.runbook, "condition", s.trig.key())
		if inc := e.open[subject]; inc != nil {
			e.maybeCloseLocked(ctx, now, inc)
			e.saveIncident(ctx, inc)
		}
		return
	}
	inc := e.open[subject]
	if inc == nil {
		inc = e.openIncidentLocked(ctx, now, subject, s.trig)
	}
	e.decideLocked(ctx, now, e.prepareLocked(now, rb, s.trig, inc, s.round)) //nolint:errcheck // recorded
	e.maybeCloseLocked(ctx, now, inc)
	e.saveIncident(ctx, inc)
}

// stillLocked reports whether t's condition is still in t.State: the engine
// saw no other transition, and the Checker (when there is one) agrees.
func (e *Engine) stillLocked(t Trigger, now time.Time) bool {
	if e.lastState[t.key()] != t.State {
		return false
	}
	if e.checker == nil {
		return true
	}
	resolved, err := e.checker.Holds(t.Condition, t.Labels, now)
	if err != nil {
		return false
	}
	return resolved == (t.State == config.StateResolved)
}

// decideLocked applies the guardrails to pl and carries out the decision.
// It returns an error wrapping ErrBlocked when a guardrail refused.
func (e *Engine) decideLocked(ctx context.Context, now time.Time, pl *plan) error {
	pl.req.Approved = pl.approvedBy != ""
	d := e.guards.Check(now, pl.req)
	if d.Outcome == OutcomeAct && e.fleet != nil {
		d = e.fleetLocked(ctx, pl)
	}
	rb, inc := pl.rb, pl.inc
	inc.noteRunbook(rb.name)
	if inc.Decided.IsZero() {
		inc.Decided = now
	}
	reason := d.Reason
	if d.Outcome == OutcomeDryRun {
		reason += "; would run " + pl.describe()
	}
	e.record(ctx, medic.Event{Kind: EventDecision, Target: pl.target, Actor: actorOf(rb.name), Reason: reason,
		Fields: fields("incident", inc.ID, "runbook", rb.name, "condition", pl.trig.Condition, "outcome", d.Outcome.String(),
			"guard", d.Guard, "level", pl.level.String(), "round", fmt.Sprint(pl.round), "approved_by", pl.approvedBy, "fence", fenceField(pl.fence))})
	inc.add(now, "decision", actorOf(rb.name), d.Outcome.String()+": "+reason)
	repeat := rb.cfg.Trigger.Repeat.D()
	switch d.Outcome {
	case OutcomeAct:
		e.guards.Admit(now, pl.req, true)
		inc.running++
		e.startLocked(ctx, pl)
	case OutcomePropose:
		e.guards.Admit(now, pl.req, false)
		inc.running++
		e.proposeLocked(ctx, now, pl, 0, pl.describe())
	case OutcomeObserve:
		if inc.escalateOnce("observe:" + rb.name) {
			e.send(ctx, e.escalateRoute(rb), notify.Notification{Kind: notify.KindTrigger, Severity: e.escalateSeverity(rb),
				Summary: fmt.Sprintf("%s on %s (runbook %s observes only)", pl.trig.Condition, pl.target, rb.name),
				Text:    e.evidence(pl, ""), Target: pl.target, Actor: actorOf(rb.name)}, true, inc, d.Guard)
		}
	case OutcomeBlock:
		if d.Escalate && inc.escalateOnce(d.Guard+":"+rb.name) {
			e.send(ctx, e.escalateRoute(rb), notify.Notification{Kind: notify.KindTrigger, Severity: e.escalateSeverity(rb),
				Summary: fmt.Sprintf("%s on %s: runbook %s blocked by %s", pl.trig.Condition, pl.target, rb.name, d.Guard),
				Text:    e.evidence(pl, d.Reason), Target: pl.target, Actor: actorOf(rb.name),
				Fields: fields("guard", d.Guard)}, true, inc, d.Guard)
		}
		switch {
		case repeat > 0:
			e.scheduleLocked(scheduled{at: now.Add(repeat), trig: pl.trig, runbook: rb.name, round: pl.round})
		case !d.retry.IsZero():
			// A fleet-wide cooldown's end, or the storm brake's next look.
			e.scheduleLocked(scheduled{at: d.retry, trig: pl.trig, runbook: rb.name, round: pl.round})
		case d.Guard == GuardFleetBusy:
			// Another host holds the target's name (until placement names
			// instances fleet-wide, it may be its own copy of it): decide
			// again while the condition holds, rather than never.
			e.scheduleLocked(scheduled{at: now.Add(fleetBusyRetry), trig: pl.trig, runbook: rb.name, round: pl.round})
		case d.Guard == GuardCooldown:
			// Decide again when the cooldown ends if the condition still
			// holds: edge-triggered conditions will not fire again by themselves.
			if until, ok := e.guards.cooldown[pl.target]; ok {
				e.scheduleLocked(scheduled{at: until, trig: pl.trig, runbook: rb.name, round: pl.round})
			}
		}
		return fmt.Errorf("%w: %s: %s", ErrBlocked, d.Guard, d.Reason)
	}
	return nil
}

func (e *Engine) scheduleLocked(s scheduled) {
	e.scheduled = append(e.scheduled, s)
	e.wake()
}

func (e *Engine) openIncidentLocked(ctx context.Context, now time.Time, subject string, t Trigger) *Incident {
	inc := newIncident(subject, t)
	e.open[subject] = inc
	e.incidents = append(e.incidents, inc)
	if n := len(e.incidents) - maxIncidents; n > 0 {
		kept := e.incidents[:0]
		for _, in := range e.incidents {
			if n > 0 && in.State != "open" {
				n--
				continue
			}
			kept = append(kept, in)
		}
		e.incidents = kept
	}
	e.record(ctx, medic.Event{Kind: EventIncident, Target: subject, Actor: "remedy", Reason: "incident opened by " + t.key(),
		Fields: fields("incident", inc.ID, "state", "opened", "condition", t.Condition)})
	return inc
}

// maybeCloseLocked closes inc when nothing fires and nothing runs any more,
// and resolves what was escalated for it (PagerDuty resolve by dedup key).
func (e *Engine) maybeCloseLocked(ctx context.Context, now time.Time, inc *Incident) {
	if inc.State != "open" || len(inc.Active) > 0 || inc.running > 0 {
		return
	}
	outcome := "resolved"
	if !inc.Verified.IsZero() && (inc.Failed.IsZero() || inc.Verified.After(inc.Failed)) {
		outcome = "recovered"
	}
	e.closeLocked(ctx, now, inc, outcome)
}

func (e *Engine) closeLocked(ctx context.Context, now time.Time, inc *Incident, outcome string) {
	if inc.State != "open" {
		return
	}
	inc.close(now, outcome)
	if e.open[inc.Target] == inc {
		delete(e.open, inc.Target)
	}
	e.guards.Forget(inc.ID)
	e.record(ctx, medic.Event{Kind: EventIncident, Target: inc.Target, Actor: "remedy", Reason: "incident closed: " + inc.Outcome,
		Fields: fields("incident", inc.ID, "state", "closed", "outcome", inc.Outcome)})
	for _, r := range inc.Receivers {
		e.send(ctx, r, notify.Notification{Kind: notify.KindResolve, Severity: "info",
			Summary: fmt.Sprintf("%s: %s", inc.Target, inc.Outcome), Target: inc.Target, Actor: "remedy"}, false, inc, "")
	}
}

func (e *Engine) book(name string) *runbook {
	for _, rb := range e.books {
		if rb.name == name {
			return rb
		}
	}
	return nil
}

// escalateRoute is the receiver of rb's escalations (automation's when rb is
// nil or names none).
func (e *Engine) escalateRoute(rb *runbook) string {
	if rb != nil && rb.cfg.Escalate.Receiver != "" {
		return rb.cfg.Escalate.Receiver
	}
	return e.cfg.Automation.Escalate.Receiver
}

func (e *Engine) escalateSeverity(rb *runbook) string {
	if rb != nil && rb.cfg.Escalate.Severity != "" {
		return rb.cfg.Escalate.Severity
	}
	return e.cfg.Automation.Escalate.Severity
}

// notifyRoute is the receiver of rb's notices (actions taken, trust
// changes, summaries): rb's notify, else automation's; "" sends none. It
// does not fall back to the escalation receiver: notices must not page.
func (e *Engine) notifyRoute(rb *runbook) string {
	if rb != nil && rb.cfg.Notify.Receiver != "" {
		return rb.cfg.Notify.Receiver
	}
	return e.cfg.Automation.Notify.Receiver
}

// approvalRoute is where proposals go: the notify receiver, else the
// escalation receiver (a proposal needs a human either way).
func (e *Engine) approvalRoute(rb *runbook) string {
	if r := e.notifyRoute(rb); r != "" {
		return r
	}
	return e.escalateRoute(rb)
}

// summaryLocked sends the summary of silent runs.
func (e *Engine) summaryLocked(ctx context.Context) {
	if len(e.silent) == 0 {
		return
	}
	n := len(e.silent)
	text := strings.Join(e.silent, "\n")
	e.silent = nil
	e.send(ctx, e.notifyRoute(nil), notify.Notification{Kind: notify.KindInfo, Severity: "info",
		Summary: fmt.Sprintf("%d silent remediations since the last summary, all verified", n), Text: text,
		Actor: "remedy"}, false, nil, "")
}

func incidentID(in *Incident) string {
	if in == nil {
		return ""
	}
	return in.ID
}
