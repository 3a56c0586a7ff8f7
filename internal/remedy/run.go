package remedy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/action"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/notify"
)

// Run results, recorded in Fields["result"] of EventRunEnd.
const (
	resultVerified     = "verified"
	resultFailed       = "failed"
	resultPrecondition = "precondition"
	resultDenied       = "denied"
	resultExpired      = "expired"
	resultAborted      = "aborted"
)

// maxSummaryLines bounds the silent runs listed in one summary.
const maxSummaryLines = 500

// errStepTimeout is the cause of a step's context when its timeout passes.
var errStepTimeout = errors.New("step timeout")

// startLocked runs pl in its own goroutine, tracked by e.runs. The target is
// held (Guards.Admit) until the run finishes.
func (e *Engine) startLocked(ctx context.Context, pl *plan) {
	if e.stopping || e.runCtx == nil {
		e.releaseFleet(ctx, pl.target, pl.fleetRelease)
		e.guards.Release(e.clock.Now(), pl.target, pl.rb.name, pl.inc.ID, 0, false)
		pl.inc.running--
		e.record(ctx, medic.Event{Kind: EventRunEnd, Target: pl.target, Actor: actorOf(pl.rb.name), Reason: "aborted: shutdown",
			Fields: fields("incident", pl.inc.ID, "runbook", pl.rb.name, "result", resultAborted)})
		return
	}
	runCtx := e.runCtx
	e.runs.Add(1)
	go func() {
		defer e.runs.Done()
		e.execute(runCtx, pl)
	}()
}

// execute is one remediation: precondition, steps in order (each audited,
// each with its timeout, stopping at the first failure), verification
// within the deadline; on failure the rollback steps and an escalation.
func (e *Engine) execute(ctx context.Context, pl *plan) {
	e.mu.Lock()
	if pl.inc.Acted.IsZero() {
		pl.inc.Acted = e.clock.Now()
	}
	e.mu.Unlock()
	if pc := pl.rb.cfg.Precondition; pc != nil {
		if ok, why := e.precondition(pl, pc); !ok {
			e.finish(ctx, pl, resultPrecondition, "precondition not met: "+why)
			return
		}
	}
	for i := range pl.steps {
		st := &pl.steps[i]
		if res, why := e.runStep(ctx, pl, st); res != "" {
			if res == resultFailed {
				e.rollback(ctx, pl)
			}
			e.finish(ctx, pl, res, why)
			return
		}
	}
	if ctx.Err() != nil {
		e.finish(ctx, pl, resultAborted, "aborted: shutdown")
		return
	}
	if v := pl.rb.cfg.Verify; v != nil {
		ok, why := e.verify(ctx, pl, v)
		if ctx.Err() != nil {
			e.finish(ctx, pl, resultAborted, "aborted: shutdown")
			return
		}
		e.record(ctx, medic.Event{Kind: EventVerify, Target: pl.target, Actor: actorOf(pl.rb.name), Reason: why,
			Fields: fields("incident", pl.inc.ID, "runbook", pl.rb.name, "ok", strconv.FormatBool(ok))})
		if !ok {
			e.rollback(ctx, pl)
			e.finish(ctx, pl, resultFailed, why)
			return
		}
		e.finish(ctx, pl, resultVerified, why)
		return
	}
	e.finish(ctx, pl, resultVerified, "all steps succeeded (no verify configured)")
}

// runStep runs one step; it returns "" to go on, or the run's result and why.
func (e *Engine) runStep(ctx context.Context, pl *plan, st *step) (string, string) {
	if ctx.Err() != nil {
		return resultAborted, "aborted: shutdown"
	}
	if st.approve {
		if res, why := e.stepApproval(ctx, pl, st); res != "" {
			return res, why
		}
	}
	out, err, took := e.do(ctx, pl, st)
	pl.results = append(pl.results, result{step: st, out: out, err: err, took: took})
	if errors.Is(err, ErrAuditDegraded) {
		// Not a failure of the step: no rollback (it would act without a record either).
		return resultAborted, fmt.Sprintf("aborted before step %d %s: %v", st.index, st.name, err)
	}
	if errors.Is(err, errFleetCutOff) {
		// No rollback either: it would act without the fleet lock. A human is told.
		why := fmt.Sprintf("aborted before step %d %s: %v", st.index, st.name, err)
		e.escalateCutOff(ctx, pl, why)
		return resultAborted, why
	}
	if err != nil {
		if ctx.Err() != nil {
			return resultAborted, fmt.Sprintf("aborted: shutdown during step %d %s", st.index, st.name)
		}
		return resultFailed, fmt.Sprintf("step %d %s failed: %v", st.index, st.name, err)
	}
	return "", ""
}

// do runs a step's driver with the step's timeout (on the engine's clock)
// and records its start and end.
func (e *Engine) do(ctx context.Context, pl *plan, st *step) (action.Output, error, time.Duration) {
	e.stepEvent(ctx, pl, st, EventStepStart, fmt.Sprintf("%s step %d: %s", st.phase, st.index, st.line()), nil)
	// The start record was appended above, synchronously: if the log could
	// not store it, it is degraded now, and the step must not run.
	if why := e.auditDown(); why != "" {
		err := fmt.Errorf("%w: %s", ErrAuditDegraded, why)
		e.stepEvent(ctx, pl, st, EventStepEnd, "refused: "+err.Error(), fields("ok", "false", "error", err.Error(), "guard", GuardAudit))
		return action.Output{Summary: "refused: the audit log cannot store records"}, err, 0
	}
	if guard, err := e.fleetSafe(ctx, pl); err != nil {
		e.stepEvent(ctx, pl, st, EventStepEnd, "refused: "+err.Error(), fields("ok", "false", "error", err.Error(), "guard", guard))
		return action.Output{Summary: "refused: this host is cut from the fleet"}, err, 0
	}
	e.mu.Lock()
	drv := e.drivers[st.action] // Update may swap the map
	e.mu.Unlock()
	if drv == nil {
		err := fmt.Errorf("no driver for action %q", st.action)
		e.stepEvent(ctx, pl, st, EventStepEnd, err.Error(), fields("ok", "false", "error", err.Error()))
		return action.Output{}, err, 0
	}
	if err := e.budget(st); err != nil {
		e.stepEvent(ctx, pl, st, EventStepEnd, "refused: "+err.Error(), fields("ok", "false", "error", err.Error(), "guard", GuardBudget))
		return action.Output{Summary: "refused by the disruption budget"}, err, 0
	}
	sctx, cancel := context.WithCancelCause(ctx)
	timer := e.clock.AfterFunc(st.timeout, func() { cancel(errStepTimeout) })
	begin := e.clock.Now()
	out, err := drv.Do(sctx, st.in)
	timer.Stop()
	if err != nil && context.Cause(sctx) == errStepTimeout {
		err = fmt.Errorf("%w after %v: %w", errStepTimeout, st.timeout, err)
	}
	cancel(nil)
	took := e.clock.Now().Sub(begin)
	f := fields("ok", strconv.FormatBool(err == nil), "changed", strconv.FormatBool(out.Changed),
		"replayed", strconv.FormatBool(out.Replayed), "summary", out.Summary, "took", took.String())
	for k, v := range out.Fields {
		f["out."+k] = v
	}
	if out.Detail != "" {
		f["output"] = out.Detail
	}
	reason := out.Summary
	if err != nil {
		f["error"] = err.Error()
		reason = "failed: " + err.Error()
	}
	if ctx.Err() != nil {
		reason = "aborted: shutdown: " + reason
	}
	e.stepEvent(ctx, pl, st, EventStepEnd, reason, f)
	return out, err, took
}

// auditDown says why the audit log cannot store records, or "".
func (e *Engine) auditDown() string {
	if e.audit == nil {
		return ""
	}
	if bad, why := e.audit.Degraded(); bad {
		return why
	}
	return ""
}

// budget checks the disruption budget right before a disruptive step (the
// decision checked it too, but an earlier step or a crash may have changed
// it since). Rollback steps are held to it as well.
func (e *Engine) budget(st *step) error {
	if !action.Disruptive(st.action) || e.sup == nil {
		return nil
	}
	status := e.sup.Status()
	svc, r := removal(*st, status)
	for _, s := range status {
		if s.Name != svc || r <= 0 {
			continue
		}
		if s.Ready-r < s.MinAvailable {
			return fmt.Errorf("%w: %s: %s has %d ready, taking %d out would go below min_available %d",
				ErrBlocked, GuardBudget, svc, s.Ready, r, s.MinAvailable)
		}
		if b, ok := e.fleetBudgetOf(svc, s.Ready, r); ok && b.Ready-r < b.MinAvailable {
			return fmt.Errorf("%w: %s: %s has %d ready on every host together, taking %d out would go below %d",
				ErrBlocked, GuardBudget, b.Service, b.Ready, r, b.MinAvailable)
		}
	}
	return nil
}

func (e *Engine) stepEvent(ctx context.Context, pl *plan, st *step, kind medic.EventKind, reason string, extra map[string]string) {
	f := fields("incident", pl.inc.ID, "runbook", pl.rb.name, "step", strconv.Itoa(st.index), "name", st.name,
		"action", st.action, "phase", st.phase, "key", st.in.Key, "step_target", st.in.Target)
	for k, v := range extra {
		f[k] = v
	}
	e.record(ctx, medic.Event{Kind: kind, Target: pl.target, Actor: actorOf(pl.rb.name), Reason: reason, Fields: f})
	e.mu.Lock()
	pl.inc.add(e.clock.Now(), "step", actorOf(pl.rb.name), fmt.Sprintf("%s %d %s: %s", st.phase, st.index, st.name, reason))
	e.mu.Unlock()
}

// stepApproval asks for and waits on an approval of one step.
func (e *Engine) stepApproval(ctx context.Context, pl *plan, st *step) (string, string) {
	e.mu.Lock()
	if e.stopping {
		e.mu.Unlock()
		return resultAborted, "aborted: shutdown"
	}
	p := e.proposeLocked(ctx, e.clock.Now(), pl, st.index, fmt.Sprintf("%s step %d on %s: %s", pl.rb.name, st.index, pl.target, st.line()))
	e.mu.Unlock()
	select {
	case ok := <-p.decided:
		if ok {
			return "", ""
		}
		e.mu.Lock()
		state, reason := p.State, p.Reason
		e.mu.Unlock()
		switch state {
		case "denied":
			return resultDenied, fmt.Sprintf("step %d not run: %s", st.index, reason)
		case "aborted":
			return resultAborted, "aborted: shutdown"
		}
		return resultExpired, fmt.Sprintf("step %d not run: approval %s %s", st.index, p.ID, state)
	case <-ctx.Done():
		return resultAborted, "aborted: shutdown while waiting for approval " + p.ID
	}
}

// precondition checks the runbook's precondition with the trigger's labels.
func (e *Engine) precondition(pl *plan, pc *config.RunbookCheck) (bool, string) {
	name, wantResolved := pc.ConditionFiring, false
	if pc.ConditionResolved != "" {
		name, wantResolved = pc.ConditionResolved, true
	}
	if e.checker == nil {
		return false, "no condition checker"
	}
	resolved, err := e.checker.Holds(name, pl.trig.Labels, e.clock.Now())
	if err != nil {
		return false, fmt.Sprintf("%s: %v", name, err)
	}
	if resolved != wantResolved {
		state := "firing"
		if resolved {
			state = "not firing"
		}
		return false, name + " is " + state
	}
	return true, ""
}

// verify polls the expected outcome every v.Every until it has held for
// v.For, or v.Within passed.
func (e *Engine) verify(ctx context.Context, pl *plan, v *config.RunbookVerify) (bool, string) {
	begin := e.clock.Now()
	deadline := begin.Add(v.Within.D())
	var since time.Time
	for {
		now := e.clock.Now()
		ok, why := e.outcome(pl, v, now)
		switch {
		case ok && since.IsZero():
			since = now
			fallthrough
		case ok:
			if now.Sub(since) >= v.For.D() {
				return true, fmt.Sprintf("verified after %v: %s", now.Sub(begin).Round(time.Millisecond), why)
			}
		default:
			since = time.Time{}
		}
		if !now.Before(deadline) {
			return false, fmt.Sprintf("not verified within %v: %s", v.Within, why)
		}
		t := e.clock.NewTimer(min(v.Every.D(), deadline.Sub(now)))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, "aborted: shutdown during verification"
		case <-t.C():
		}
	}
}

// outcome checks the verify conditions once.
func (e *Engine) outcome(pl *plan, v *config.RunbookVerify, now time.Time) (bool, string) {
	var parts []string
	ok := true
	if v.ConditionResolved != "" {
		switch {
		case e.checker == nil:
			ok = false
			parts = append(parts, "no condition checker")
		default:
			resolved, err := e.checker.Holds(v.ConditionResolved, pl.trig.Labels, now)
			switch {
			case err != nil:
				ok = false
				parts = append(parts, fmt.Sprintf("%s unknown: %v", v.ConditionResolved, err))
			case !resolved:
				ok = false
				parts = append(parts, v.ConditionResolved+" still firing")
			default:
				parts = append(parts, v.ConditionResolved+" resolved")
			}
		}
	}
	if v.ServiceReady {
		svc := action.ServiceOf(pl.target)
		if v.Service != "" {
			if s, err := (vars{t: pl.trig, params: pl.rb.cfg.Params, target: pl.target}).expand(v.Service); err == nil {
				svc = s
			}
		}
		ready, desired, found := 0, 0, false
		if e.sup != nil {
			for _, s := range e.sup.Status() {
				if s.Name == svc {
					ready, desired, found = s.Ready, s.Desired, true
				}
			}
		}
		if !found || desired == 0 || ready < desired {
			ok = false
		}
		parts = append(parts, fmt.Sprintf("%s %d/%d ready", svc, ready, desired))
	}
	return ok, strings.Join(parts, "; ")
}

// rollback runs the rollback steps, each audited; a failing one does not
// stop the others (the run has failed already, undo as much as possible).
func (e *Engine) rollback(ctx context.Context, pl *plan) {
	for i := range pl.rollback {
		st := &pl.rollback[i]
		if ctx.Err() != nil {
			return
		}
		out, err, took := e.do(ctx, pl, st)
		pl.results = append(pl.results, result{step: st, out: out, err: err, took: took})
	}
}

// finish releases the target, learns from the result, notifies or
// escalates, and updates the incident.
func (e *Engine) finish(ctx context.Context, pl *plan, res, why string) {
	if len(pl.results) > 0 {
		e.coolFleet(ctx, pl, pl.rb.cfg.Cooldown.D()) // before the release: no other host takes the target in between
	}
	e.releaseFleet(ctx, pl.target, pl.fleetRelease) // before the engine's lock: it asks etcd
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	rb, inc := pl.rb, pl.inc
	acted := len(pl.results) > 0
	cooldown := time.Duration(0)
	if acted {
		cooldown = rb.cfg.Cooldown.D()
	}
	e.guards.Release(now, pl.target, rb.name, inc.ID, cooldown, res == resultFailed)
	inc.running--
	inc.add(now, "run", actorOf(rb.name), res+": "+why)

	if res == resultVerified || res == resultFailed {
		rec := e.records[rb.name]
		next, change := rec.Outcome(res == resultVerified, now.Sub(pl.trig.start()), now, e.cfg.Automation.PromoteAfter, rb.max)
		*rec = next
		e.saveRecord(ctx, next)
		if change.To != LevelUnknown {
			e.record(ctx, medic.Event{Kind: EventTrust, Target: rb.name, Actor: actorOf(rb.name),
				Reason: fmt.Sprintf("%s: %s → %s", change.Reason, change.From, change.To),
				Fields: fields("incident", inc.ID, "runbook", rb.name, "from", change.From.String(), "to", change.To.String())})
			e.send(ctx, e.notifyRoute(rb), notify.Notification{Kind: notify.KindInfo, Severity: "info",
				Summary: fmt.Sprintf("runbook %s %s", rb.name, change.Reason), Actor: actorOf(rb.name)}, false, nil, "")
		}
	}
	changed := false
	for _, r := range pl.results {
		changed = changed || r.out.Changed
	}
	closeNow := false
	switch res {
	case resultVerified:
		inc.Verified = now
		line := fmt.Sprintf("%s on %s: verified %v after detection (%s)", rb.name, pl.target,
			now.Sub(pl.trig.At).Round(time.Millisecond), pl.outputs())
		if pl.level == LevelSilent && pl.approvedBy == "" {
			if len(e.silent) < maxSummaryLines {
				e.silent = append(e.silent, now.UTC().Format(time.RFC3339)+" "+line)
			}
		} else {
			e.send(ctx, e.notifyRoute(rb), notify.Notification{Kind: notify.KindInfo, Severity: "info", Summary: line,
				Target: pl.target, Actor: actorOf(rb.name)}, false, inc, "")
		}
		switch repeat := rb.cfg.Trigger.Repeat.D(); {
		case repeat > 0 && changed:
			e.scheduleLocked(scheduled{at: now.Add(repeat), trig: pl.trig, runbook: rb.name, round: pl.round + 1, repeat: true})
		case repeat == 0:
			closeNow = true
		}
	case resultFailed:
		inc.Failed, inc.Outcome = now, "failed"
		if inc.escalateOnce("failed:" + rb.name) {
			e.send(ctx, e.escalateRoute(rb), notify.Notification{Kind: notify.KindTrigger, Severity: e.escalateSeverity(rb),
				Summary: fmt.Sprintf("%s on %s: runbook %s failed: %s", pl.trig.Condition, pl.target, rb.name, why),
				Text:    e.evidence(pl, why), Target: pl.target, Actor: actorOf(rb.name)}, true, inc, "")
		}
	case resultDenied, resultExpired:
		inc.Outcome = "escalated"
	}
	// The run's end is recorded after what it caused (trust change,
	// notice, escalation) and before the incident closes.
	e.record(ctx, medic.Event{Kind: EventRunEnd, Target: pl.target, Actor: actorOf(rb.name), Reason: res + ": " + why,
		Fields: fields("incident", inc.ID, "runbook", rb.name, "result", res, "round", strconv.Itoa(pl.round))})
	if closeNow {
		e.closeLocked(ctx, now, inc, "recovered")
	}
	e.maybeCloseLocked(ctx, now, inc)
	e.saveIncident(ctx, inc)
}

// outputs summarises the step results in one line.
func (pl *plan) outputs() string {
	var parts []string
	for _, r := range pl.results {
		parts = append(parts, r.out.Summary)
	}
	return strings.Join(parts, "; ")
}
