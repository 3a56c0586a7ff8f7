package remedy

import (
	"context"
	"fmt"
	"strings"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/notify"
)

// Event kinds the engine records. Every event carries Fields["incident"]
// when it belongs to one, and Fields["runbook"] when a runbook is involved.
const (
	EventDecision  medic.EventKind = "remedy.decision"   // Fields: outcome, guard, level, condition
	EventDeferred  medic.EventKind = "remedy.deferred"   // trigger.for: decided later if the condition holds
	EventStepStart medic.EventKind = "remedy.step.start" // Fields: step, action, phase (steps|rollback), key
	EventStepEnd   medic.EventKind = "remedy.step.end"   // + ok, error, changed, replayed, summary
	EventVerify    medic.EventKind = "remedy.verify"     // Fields: ok
	EventRunEnd    medic.EventKind = "remedy.run.end"    // Fields: result (verified, failed, precondition, denied, expired, aborted)
	EventApproval  medic.EventKind = "remedy.approval"   // Fields: approval, state, by
	EventEscalated medic.EventKind = "remedy.escalated"  // Fields: receiver, guard
	EventTrust     medic.EventKind = "remedy.trust"      // Fields: from, to
	EventIncident  medic.EventKind = "remedy.incident"   // Fields: state (opened, closed)
	EventSwitch    medic.EventKind = "remedy.switch"     // Fields: paused or dry_run
	EventDropped   medic.EventKind = "remedy.dropped"    // triggers dropped from a full queue
)

// Recorder receives one event per decision, step, approval and escalation.
// It may block until the event is durable (the audit log), and is called
// from the loop and from every running remediation: it must be safe for
// concurrent use. Its context is never cancelled (a shutdown is recorded).
type Recorder interface {
	Record(ctx context.Context, ev medic.Event)
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(ctx context.Context, ev medic.Event)

// Record calls f.
func (f RecorderFunc) Record(ctx context.Context, ev medic.Event) { f(ctx, ev) }

// Notifier queues a notification without blocking (notify.Notifier).
type Notifier interface {
	Send(receiver string, n notify.Notification) error
}

func actorOf(runbook string) string {
	if runbook == "" {
		return "remedy"
	}
	return "runbook:" + runbook
}

// humanActor names a person acting through the API: "alice" → "api:alice".
func humanActor(who string) string {
	if who == "" {
		return "api:unknown"
	}
	if strings.Contains(who, ":") {
		return who
	}
	return "api:" + who
}

// fields builds event fields from pairs, skipping empty values.
func fields(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			m[kv[i]] = kv[i+1]
		}
	}
	return m
}

func (e *Engine) record(ctx context.Context, ev medic.Event) {
	if ev.Time.IsZero() {
		ev.Time = e.clock.Now()
	}
	e.log.Debug("remedy", "kind", ev.Kind, "target", ev.Target, "actor", ev.Actor, "reason", ev.Reason)
	if e.rec != nil {
		e.rec.Record(context.WithoutCancel(ctx), ev)
	}
}

// send queues a notification and records the escalation (or why none went
// out). kind EventEscalated is recorded only for escalations.
func (e *Engine) send(ctx context.Context, receiver string, n notify.Notification, escalation bool, inc *Incident, guard string) {
	incID := ""
	if inc != nil {
		incID = inc.ID
		n.Incident = inc.ID
	}
	if receiver == "" && !escalation {
		return // notices are optional; escalations are recorded either way
	}
	var err error
	switch {
	case receiver == "":
		err = fmt.Errorf("no receiver configured (set automation.escalate / automation.notify)")
	case e.notifier == nil:
		err = fmt.Errorf("no notifier")
	default:
		err = e.notifier.Send(receiver, n)
	}
	if err == nil && inc != nil && n.Kind == notify.KindTrigger && !containsStr(inc.Receivers, receiver) {
		inc.Receivers = append(inc.Receivers, receiver)
	}
	if !escalation {
		if err != nil {
			e.log.Warn("notification not sent", "receiver", receiver, "summary", n.Summary, "err", err)
		}
		return
	}
	reason := "escalated to " + receiver + ": " + n.Summary
	if err != nil {
		reason = "escalation not sent (" + err.Error() + "): " + n.Summary
	}
	e.record(ctx, medic.Event{Kind: EventEscalated, Target: n.Target, Actor: n.Actor, Reason: reason,
		Fields: fields("incident", incID, "receiver", receiver, "guard", guard)})
	if inc != nil {
		inc.add(e.clock.Now(), "escalation", n.Actor, reason)
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
