package remedy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/notify"
)

// Approval is a human decision the engine waits for: a whole run (trust
// propose, approve: required) or one step marked approve: required.
type Approval struct {
	ID        string    `json:"id"`
	Runbook   string    `json:"runbook"`
	Target    string    `json:"target"`
	Incident  string    `json:"incident"`
	Step      int       `json:"step"` // 0: the whole run; n: step n (1-based) of a running remediation
	Summary   string    `json:"summary"`
	State     string    `json:"state"` // pending | approved | denied | expired | aborted
	Created   time.Time `json:"created"`
	Deadline  time.Time `json:"deadline"`
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// pending is an approval being waited for.
type pending struct {
	Approval
	plan    *plan     // the run to start when a whole-run approval is granted
	decided chan bool // a step approval's answer (buffer 1)
	inc     *Incident
}

// Pending returns the approvals waiting for a decision, oldest first.
func (e *Engine) Pending() []Approval {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Approval, 0, len(e.approvals))
	for _, p := range e.approvals {
		out = append(out, p.Approval)
	}
	slices.SortFunc(out, func(a, b Approval) int { return a.Created.Compare(b.Created) })
	return out
}

// Approve grants approval id on behalf of who (a token's identity, recorded
// as the actor "api:who"). A whole-run approval re-checks the guardrails
// first — the world may have changed while the human read the proposal —
// and starts the run; if a guardrail blocks it, the approval is recorded
// and Approve returns an error wrapping ErrBlocked. A step approval lets the
// waiting run continue.
func (e *Engine) Approve(ctx context.Context, id, who string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := e.pendingLocked(id)
	if err != nil {
		return err
	}
	now := e.clock.Now()
	e.finishApprovalLocked(ctx, p, "approved", who, "approved by "+humanActor(who), now)
	if p.plan == nil {
		return nil
	}
	// Decide again on fresh state: the guards, the targets and the budget
	// may have changed while the human read the proposal.
	old := p.plan
	e.guards.Unhold(old.target, old.rb.name)
	old.inc.running--
	pl := e.prepareLocked(now, old.rb, old.trig, old.inc, old.round)
	pl.approvedBy = humanActor(who)
	err = e.decideLocked(ctx, now, pl)
	e.maybeCloseLocked(ctx, now, pl.inc)
	e.saveIncident(ctx, pl.inc)
	return err
}

// Deny refuses approval id on behalf of who, with a reason. Nothing is done;
// a denied step ends its run without rollback (the human chose to stop
// there) and the incident stays open for a human.
func (e *Engine) Deny(ctx context.Context, id, who, reason string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := e.pendingLocked(id)
	if err != nil {
		return err
	}
	if reason == "" {
		reason = "no reason given"
	}
	e.finishApprovalLocked(ctx, p, "denied", who, "denied by "+humanActor(who)+": "+reason, e.clock.Now())
	return nil
}

func (e *Engine) pendingLocked(id string) (*pending, error) {
	p := e.approvals[id]
	if p == nil {
		return nil, fmt.Errorf("approval %s: %w (it may have expired or been decided)", id, ErrNotFound)
	}
	return p, nil
}

// proposeLocked creates a pending approval for a whole run (pl.step == 0)
// and tells the notify receiver how to decide it.
func (e *Engine) proposeLocked(ctx context.Context, now time.Time, pl *plan, step int, summary string) *pending {
	p := &pending{Approval: Approval{ID: newID("ap-", 4), Runbook: pl.rb.name, Target: pl.target, Incident: pl.inc.ID,
		Step: step, Summary: summary, State: "pending", Created: now, Deadline: now.Add(e.cfg.Automation.ApprovalTimeout.D())},
		inc: pl.inc}
	if step == 0 {
		p.plan = pl
	} else {
		p.decided = make(chan bool, 1)
	}
	e.approvals[p.ID] = p
	e.saveApproval(ctx, p.Approval)
	reason := fmt.Sprintf("approval %s requested until %s: %s", p.ID, p.Deadline.UTC().Format(time.RFC3339), summary)
	e.record(ctx, medic.Event{Kind: EventApproval, Target: pl.target, Actor: actorOf(pl.rb.name), Reason: reason,
		Fields: fields("incident", pl.inc.ID, "runbook", pl.rb.name, "approval", p.ID, "state", "requested", "step", stepField(step))})
	pl.inc.add(now, "approval", actorOf(pl.rb.name), reason)
	e.send(ctx, e.approvalRoute(pl.rb), notify.Notification{Kind: notify.KindInfo, Severity: "warning",
		Summary: fmt.Sprintf("approval needed: %s (medic approve %s / medic deny %s)", summary, p.ID, p.ID),
		Text:    e.evidence(pl, ""), Target: pl.target, Actor: actorOf(pl.rb.name)}, false, pl.inc, "")
	e.wake() // the loop's timer must cover the new deadline
	return p
}

// finishApprovalLocked records a decision on p and removes it from the
// pending set. Expired and aborted approvals escalate; a run waiting on a
// step approval is told the answer.
func (e *Engine) finishApprovalLocked(ctx context.Context, p *pending, state, who, reason string, now time.Time) {
	delete(e.approvals, p.ID)
	p.State, p.DecidedAt, p.Reason = state, now, reason
	actor := actorOf(p.Runbook)
	if who != "" {
		p.DecidedBy, actor = humanActor(who), humanActor(who)
	}
	e.saveApproval(ctx, p.Approval)
	e.record(ctx, medic.Event{Kind: EventApproval, Target: p.Target, Actor: actor, Reason: fmt.Sprintf("approval %s %s: %s", p.ID, state, reason),
		Fields: fields("incident", p.Incident, "runbook", p.Runbook, "approval", p.ID, "state", state, "by", p.DecidedBy, "step", stepField(p.Step))})
	p.inc.add(now, "approval", actor, fmt.Sprintf("approval %s %s: %s", p.ID, state, reason))
	if p.decided != nil {
		p.decided <- state == "approved"
	}
	if p.plan != nil && state != "approved" {
		e.guards.Unhold(p.Target, p.Runbook)
		p.inc.running--
		e.record(ctx, medic.Event{Kind: EventRunEnd, Target: p.Target, Actor: actor, Reason: "not run: approval " + state,
			Fields: fields("incident", p.Incident, "runbook", p.Runbook, "result", state)})
		defer e.maybeCloseLocked(ctx, now, p.inc) // after the escalation below
	}
	if state == "expired" || state == "aborted" {
		var rb *runbook
		if p.plan != nil {
			rb = p.plan.rb
		} else {
			rb = e.book(p.Runbook)
		}
		if p.inc.escalateOnce("approval " + p.ID + " " + state) {
			e.send(ctx, e.escalateRoute(rb), notify.Notification{Kind: notify.KindTrigger, Severity: "critical",
				Summary: fmt.Sprintf("no decision on %s: approval %s %s; nothing was done", p.Summary, p.ID, state),
				Target:  p.Target, Actor: actorOf(p.Runbook)}, true, p.inc, GuardApproval)
		}
	}
	e.saveIncident(ctx, p.inc)
}

// expireLocked expires the approvals past their deadline: escalate, never act.
func (e *Engine) expireLocked(ctx context.Context, now time.Time) {
	for _, p := range e.approvals {
		if !now.Before(p.Deadline) {
			e.finishApprovalLocked(ctx, p, "expired", "", fmt.Sprintf("no decision within %v", p.Deadline.Sub(p.Created)), now)
		}
	}
}

func (e *Engine) saveApproval(ctx context.Context, a Approval) {
	if err := e.store.SaveApproval(context.WithoutCancel(ctx), a); err != nil {
		e.log.Error("persist approval", "approval", a.ID, "err", err)
	}
}

func stepField(step int) string {
	if step == 0 {
		return ""
	}
	return fmt.Sprint(step)
}
