package remedy

import (
	"fmt"
	"strings"

	"github.com/medic-dev/medic/internal/action"
	"github.com/medic-dev/medic/internal/supervise"
)

// evidence is what a human gets with an escalation: the trigger, the
// runbook and its trust level, each step done with its output, why it
// ended, and the status of the service involved.
func (e *Engine) evidence(pl *plan, note string) string {
	var b strings.Builder
	t := pl.trig
	fmt.Fprintf(&b, "condition %s %s at %s (value %g, confidence %.2f)", t.key(), t.State, t.At.UTC().Format("2006-01-02T15:04:05Z"), t.Value, t.Confidence)
	if t.Reason != "" {
		fmt.Fprintf(&b, ": %s", t.Reason)
	}
	fmt.Fprintf(&b, "\nrunbook %s (trust %s), target %s, incident %s\nplan: %s\n", pl.rb.name, pl.level, pl.target, pl.inc.ID, pl.describe())
	for _, r := range pl.results {
		status := "ok"
		if r.err != nil {
			status = "FAILED: " + r.err.Error()
		}
		fmt.Fprintf(&b, "%s %d %s: %s — %s (%v)\n", r.step.phase, r.step.index, r.step.name, status, r.out.Summary, r.took)
		if r.out.Detail != "" {
			fmt.Fprintf(&b, "  output: %s\n", strings.ReplaceAll(strings.TrimSpace(truncate(r.out.Detail, 1024)), "\n", "\n  "))
		}
	}
	if note != "" {
		fmt.Fprintf(&b, "why: %s\n", note)
	}
	b.WriteString(e.statusOf(action.ServiceOf(pl.target)))
	return strings.TrimRight(b.String(), "\n")
}

// triggerEvidence is the evidence for a condition no runbook handles.
func (e *Engine) triggerEvidence(t Trigger, subject string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "condition %s %s at %s (value %g, confidence %.2f)", t.key(), t.State, t.At.UTC().Format("2006-01-02T15:04:05Z"), t.Value, t.Confidence)
	if t.Reason != "" {
		fmt.Fprintf(&b, ": %s", t.Reason)
	}
	b.WriteString("\nno runbook matches it: medic does not improvise; a human must look.\n")
	svc := t.Labels["service"]
	if svc == "" {
		svc = action.ServiceOf(subject)
	}
	b.WriteString(e.statusOf(svc))
	return strings.TrimRight(b.String(), "\n")
}

// statusOf renders the supervisor's view of one service.
func (e *Engine) statusOf(svc string) string {
	if e.sup == nil || svc == "" {
		return ""
	}
	var s *supervise.ServiceStatus
	all := e.sup.Status()
	for i := range all {
		if all[i].Name == svc {
			s = &all[i]
		}
	}
	if s == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "status: %s %d/%d ready (min_available %d)\n", s.Name, s.Ready, s.Desired, s.MinAvailable)
	for _, in := range s.Instances {
		fmt.Fprintf(&b, "  %s %s ready=%v restarts=%d", in.ID, in.State, in.Ready, in.Restarts)
		if in.Reason != "" {
			fmt.Fprintf(&b, " (%s)", in.Reason)
		}
		if in.LastExit != nil {
			fmt.Fprintf(&b, " last exit: %s", in.LastExit.Reason)
		}
		b.WriteByte('\n')
		if in.Stderr != "" {
			fmt.Fprintf(&b, "    stderr: %s\n", strings.ReplaceAll(strings.TrimSpace(truncate(in.Stderr, 512)), "\n", "\n    "))
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
