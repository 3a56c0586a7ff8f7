package remedy_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/notify"
	"github.com/medic-dev/medic/internal/remedy"
)

// proposed starts a propose-level runbook and fires it; it returns the
// pending approval.
func proposed(t *testing.T) (*harness, remedy.Approval) {
	t.Helper()
	sup := newFakeSup(map[string][2]int{"web": {3, 1}})
	cfg := restartStuck("propose")
	cfg.Runbooks["restart_stuck"].Verify = nil
	h := start(t, cfg, sup, nil)
	h.fire("stuck", "instance", "web/1", "service", "web")
	req := h.wait(remedy.EventApproval, "state", "requested")
	if d := h.wait(remedy.EventDecision, "runbook", "restart_stuck"); d.Fields["outcome"] != "propose" || d.Fields["guard"] != remedy.GuardApproval {
		t.Fatalf("decision %+v", d)
	}
	p := h.eng.Pending()
	if len(p) != 1 || p[0].ID != req.Fields["approval"] || p[0].Step != 0 || p[0].Deadline != t0.Add(15*time.Minute) {
		t.Fatalf("pending %+v", p)
	}
	if n, ok := h.notes.find("chat", notify.KindInfo, "medic approve "+p[0].ID); !ok || !strings.Contains(n.Summary, "restart_instance web/1") {
		t.Fatalf("no proposal notice with the approve command: %+v", n)
	}
	return h, p[0]
}

func TestApprovalGranted(t *testing.T) {
	h, ap := proposed(t)
	if got := h.sup.Calls(); len(got) != 0 {
		t.Fatalf("acted before approval: %v", got)
	}
	if err := h.eng.Approve(context.Background(), ap.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	ev := h.wait(remedy.EventApproval, "approval", ap.ID, "state", "approved")
	if ev.Actor != "api:alice" || ev.Fields["by"] != "api:alice" || ev.Fields["incident"] != ap.Incident {
		t.Fatalf("approval event %+v", ev)
	}
	h.wait(remedy.EventRunEnd, "result", "verified")
	if got := h.sup.Calls(); !slices.Equal(got, []string{"restart web/1"}) {
		t.Fatalf("calls %v", got)
	}
	if d := h.wait(remedy.EventDecision, "approved_by", "api:alice"); d.Fields["outcome"] != "act" {
		t.Fatalf("decision after approval %+v", d)
	}
	if err := h.eng.Approve(context.Background(), ap.ID, "bob"); !errors.Is(err, remedy.ErrNotFound) {
		t.Fatalf("approving twice: %v", err)
	}
}

func TestApprovalDenied(t *testing.T) {
	h, ap := proposed(t)
	if err := h.eng.Deny(context.Background(), ap.ID, "bob", "not during the release"); err != nil {
		t.Fatal(err)
	}
	ev := h.wait(remedy.EventApproval, "approval", ap.ID, "state", "denied")
	if ev.Actor != "api:bob" || !strings.Contains(ev.Reason, "not during the release") {
		t.Fatalf("denial %+v", ev)
	}
	h.wait(remedy.EventRunEnd, "result", "denied")
	h.settle()
	if got := h.sup.Calls(); len(got) != 0 || len(h.eng.Pending()) != 0 {
		t.Fatalf("after denial: calls %v pending %v", got, h.eng.Pending())
	}
}

// No decision by the deadline: the approval expires and escalates; nothing is done.
func TestApprovalExpired(t *testing.T) {
	h, ap := proposed(t)
	h.waitTick(time.Minute, remedy.EventApproval, "approval", ap.ID, "state", "expired")
	esc := h.wait(remedy.EventEscalated, "guard", remedy.GuardApproval)
	if esc.Fields["incident"] != ap.Incident {
		t.Fatalf("escalation %+v", esc)
	}
	if n, ok := h.notes.find("oncall", notify.KindTrigger, "approval "+ap.ID+" expired"); !ok || !strings.Contains(n.Summary, "nothing was done") {
		t.Fatalf("escalation notice %+v", n)
	}
	h.settle()
	if got := h.sup.Calls(); len(got) != 0 {
		t.Fatalf("acted after expiry: %v", got)
	}
	if err := h.eng.Approve(context.Background(), ap.ID, "late"); !errors.Is(err, remedy.ErrNotFound) {
		t.Fatalf("late approval: %v", err)
	}
}

// An approval re-checks the guardrails: approving while paused does nothing.
func TestApprovalRechecksGuards(t *testing.T) {
	h, ap := proposed(t)
	h.eng.Pause(context.Background(), "carol")
	err := h.eng.Approve(context.Background(), ap.ID, "alice")
	if !errors.Is(err, remedy.ErrBlocked) || !strings.Contains(err.Error(), remedy.GuardPaused) {
		t.Fatalf("approve while paused: %v", err)
	}
	h.settle()
	if got := h.sup.Calls(); len(got) != 0 {
		t.Fatalf("acted while paused: %v", got)
	}
}

// A step marked approve: required waits inside a running remediation.
func TestStepApproval(t *testing.T) {
	sup := newFakeSup(map[string][2]int{"web": {3, 1}})
	cfg := restartStuck("act")
	rb := cfg.Runbooks["restart_stuck"]
	rb.Verify = nil
	rb.Steps = []config.RunbookStep{{Action: "notify", Receiver: "chat", Message: "restarting ${labels.instance}"},
		{Action: "restart_instance", Target: "${labels.instance}", Approve: "required"}}
	h := start(t, cfg, sup, nil)
	h.fire("stuck", "instance", "web/1", "service", "web")
	h.wait(remedy.EventApproval, "state", "requested", "step", "2")
	p := h.eng.Pending()
	if len(p) != 1 || p[0].Step != 2 {
		t.Fatalf("pending %+v", p)
	}
	if _, ok := h.notes.find("chat", notify.KindInfo, "restarting web/1"); !ok {
		t.Fatal("step 1 did not run before the approval")
	}
	if len(sup.Calls()) != 0 {
		t.Fatal("the step ran before its approval")
	}
	if err := h.eng.Approve(context.Background(), p[0].ID, "alice"); err != nil {
		t.Fatal(err)
	}
	h.wait(remedy.EventRunEnd, "result", "verified")
	if got := sup.Calls(); !slices.Equal(got, []string{"restart web/1"}) {
		t.Fatalf("calls %v", got)
	}
}

// Shutdown withdraws pending approvals: recorded as aborted, never acted on.
func TestShutdownAbortsApprovals(t *testing.T) {
	h, ap := proposed(t)
	h.stop()
	h.wait(remedy.EventApproval, "approval", ap.ID, "state", "aborted")
	if got := h.sup.Calls(); len(got) != 0 {
		t.Fatalf("acted: %v", got)
	}
	if err := h.eng.Approve(context.Background(), ap.ID, "alice"); !errors.Is(err, remedy.ErrNotFound) {
		t.Fatalf("approve after shutdown: %v", err)
	}
}
