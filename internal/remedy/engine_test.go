package remedy_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/action"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/notify"
	"github.com/medic-dev/medic/internal/remedy"
)

// restartStuck restarts the instance a "stuck" condition names and
// verifies that the condition resolved.
func restartStuck(trust string) *config.Config {
	return &config.Config{
		Services: map[string]*config.Service{"web": {Instances: 3}},
		Runbooks: map[string]*config.Runbook{"restart_stuck": {
			Trigger: config.RunbookTrigger{Condition: "stuck"},
			Steps:   []config.RunbookStep{step("restart_instance", "${labels.instance}")},
			Verify:  &config.RunbookVerify{ConditionResolved: "stuck", Within: config.Duration(30 * time.Second)},
			Trust:   trust,
		}},
	}
}

func TestActVerifyRecover(t *testing.T) {
	sup := newFakeSup(map[string][2]int{"web": {3, 2}})
	h := start(t, restartStuck("act"), sup, nil)
	sup.onCall = func(call string) error { h.chk.set("stuck", true); return nil } // the restart fixes it
	h.fire("stuck", "instance", "web/1", "service", "web")

	end := h.wait(remedy.EventRunEnd, "runbook", "restart_stuck")
	if end.Fields["result"] != "verified" {
		h.dump()
		t.Fatalf("run ended %q: %s", end.Fields["result"], end.Reason)
	}
	if got := sup.Calls(); !slices.Equal(got, []string{"restart web/1"}) {
		t.Fatalf("supervisor calls %v", got)
	}
	inc := end.Fields["incident"]
	for _, k := range []string{string(remedy.EventDecision), string(remedy.EventStepStart), string(remedy.EventStepEnd), string(remedy.EventVerify)} {
		if h.count(medicKind(k), "incident", inc, "runbook", "restart_stuck") != 1 {
			t.Errorf("want one %s event for incident %s", k, inc)
		}
	}
	if d := h.wait(remedy.EventDecision, "runbook", "restart_stuck"); d.Fields["outcome"] != "act" || d.Actor != "runbook:restart_stuck" || d.Target != "web/1" {
		t.Errorf("decision %+v", d)
	}
	h.wait(remedy.EventIncident, "incident", inc, "state", "closed", "outcome", "recovered")
	if _, ok := h.notes.find("chat", notify.KindInfo, "restart_stuck on web/1: verified"); !ok {
		t.Error("trust act: no notice of the verified remediation to the notify receiver")
	}
	rb := h.eng.Runbooks()[0]
	if rb.Runs != 1 || rb.Successes != 1 || rb.Level != remedy.LevelAct || rb.SuccessRate != 1 {
		t.Errorf("record %+v", rb)
	}
	incs := h.eng.Incidents()
	if len(incs) != 1 || incs[0].State != "closed" || incs[0].Acted.IsZero() || incs[0].Verified.IsZero() || len(incs[0].Timeline) < 4 {
		t.Errorf("incidents %+v", incs)
	}
}

// Each guardrail blocks through the engine, and the decision is recorded
// with the guard's name and reason; the escalating ones tell a human.
func TestGuardrailsRecorded(t *testing.T) {
	fast := func(rb *config.Runbook) { rb.Verify = nil }
	tests := []struct {
		name     string
		cfg      func(c *config.Config)
		sup      map[string][2]int
		setup    func(h *harness)
		labels   []string
		guard    string
		escalate bool
	}{
		{name: "paused", setup: func(h *harness) { h.eng.Pause(context.Background(), "alice") }, guard: remedy.GuardPaused, escalate: true},
		{name: "protected", cfg: func(c *config.Config) { c.Services["web"].Remedy = &config.ServiceRemedy{Protected: true} },
			guard: remedy.GuardProtected, escalate: true},
		{name: "observe", cfg: func(c *config.Config) { c.Runbooks["restart_stuck"].Trust = "observe" }, guard: remedy.GuardTrust, escalate: true},
		{name: "flapping", cfg: func(c *config.Config) {
			c.Automation.Flap = config.AutomationFlap{Changes: 3, Within: config.Duration(time.Hour)}
			fast(c.Runbooks["restart_stuck"])
		},
			setup: func(h *harness) {
				h.fire("stuck", "instance", "web/1", "service", "web")
				h.wait(remedy.EventRunEnd)
				h.resolve("stuck", "instance", "web/1", "service", "web")
			}, guard: remedy.GuardFlapping, escalate: true},
		{name: "cooldown", cfg: func(c *config.Config) { fast(c.Runbooks["restart_stuck"]) },
			setup: func(h *harness) {
				h.fire("stuck", "instance", "web/1", "service", "web")
				h.wait(remedy.EventRunEnd)
				h.resolve("stuck", "instance", "web/1", "service", "web")
			}, guard: remedy.GuardCooldown},
		{name: "busy", setup: func(h *harness) {
			h.sup.block = make(chan struct{})
			h.t.Cleanup(func() { close(h.sup.block) })
			h.fire("stuck", "instance", "web/1", "service", "web", "probe", "other") // another condition instance, same target
			h.wait(remedy.EventStepStart)
			for len(h.sup.Calls()) == 0 { // the restart is under way (blocked)
				time.Sleep(time.Millisecond)
			}
		}, guard: remedy.GuardBusy},
		{name: "budget", sup: map[string][2]int{"web": {3, 3}}, guard: remedy.GuardBudget, escalate: true},
		{name: "max_targets", cfg: func(c *config.Config) {
			c.Runbooks["restart_stuck"].Steps[0].Target = "${labels.service}" // all 3 instances
			c.Automation.MaxTargets = 2
		}, sup: map[string][2]int{"web": {3, 0}}, guard: remedy.GuardMaxTargets, escalate: true},
		{name: "no_targets", labels: []string{"service", "web"}, guard: remedy.GuardNoTargets, escalate: true}, // no instance label
		{name: "dry_run", cfg: func(c *config.Config) { c.Runbooks["restart_stuck"].DryRun = true }, guard: remedy.GuardDryRun},
		{name: "global dry_run", setup: func(h *harness) { h.eng.SetDryRun(context.Background(), true, "alice") }, guard: remedy.GuardDryRun},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := restartStuck("act")
			if tt.cfg != nil {
				tt.cfg(cfg)
			}
			spec := tt.sup
			if spec == nil {
				spec = map[string][2]int{"web": {3, 1}}
			}
			sup := newFakeSup(spec)
			h := start(t, cfg, sup, nil)
			if tt.setup != nil {
				tt.setup(h)
			}
			before := len(sup.Calls())
			labels := tt.labels
			if labels == nil {
				labels = []string{"instance", "web/1", "service", "web"}
			}
			h.fire("stuck", labels...)
			d := h.wait(remedy.EventDecision, "guard", tt.guard)
			if d.Reason == "" || d.Fields["incident"] == "" || d.Actor != "runbook:restart_stuck" {
				t.Errorf("decision %+v", d)
			}
			h.settle()
			if got := sup.Calls()[before:]; len(got) != 0 {
				t.Errorf("blocked by %s, yet the supervisor was called: %v", tt.guard, got)
			}
			if esc := h.count(remedy.EventEscalated, "guard", tt.guard); (esc > 0) != tt.escalate {
				t.Errorf("escalations for %s: %d, want escalate=%v", tt.guard, esc, tt.escalate)
			}
		})
	}
}

// The 21st run within an hour under a limit of 20 per hour is blocked.
func TestRateLimit21st(t *testing.T) {
	var runs atomic.Int32
	cfg := &config.Config{Runbooks: map[string]*config.Runbook{"hook": {
		Trigger: config.RunbookTrigger{Condition: "queue_full"},
		Steps:   []config.RunbookStep{{Action: "http", URL: "http://127.0.0.1:1/drain?host=${labels.host}"}},
		Trust:   "act", Rate: config.ActionRate{Max: 20, Per: config.Duration(time.Hour)},
	}}}
	h := start(t, cfg, newFakeSup(nil), func(o *remedy.Options) {
		o.Actions = map[string]action.Action{"http": action.Func(func(ctx context.Context, in action.Input) (action.Output, error) {
			runs.Add(1)
			return action.Output{Summary: "ok " + in.URL, Changed: true}, nil
		})}
	})
	for i := range 21 {
		h.fire("queue_full", "host", "h"+string(rune('a'+i)))
		h.clk.Advance(time.Minute)
	}
	d := h.wait(remedy.EventDecision, "guard", remedy.GuardRateRunbook)
	if !strings.Contains(d.Reason, "20 runs in the last 1h0m0s (limit 20)") || d.Target != "queue_full{host=hu}" {
		t.Fatalf("21st decision: %s on %s", d.Reason, d.Target)
	}
	h.waitCount(20, remedy.EventRunEnd, "result", "verified")
	h.settle()
	if runs.Load() != 20 || h.count(remedy.EventDecision, "outcome", "act") != 20 {
		t.Fatalf("%d runs (%d act decisions), want 20", runs.Load(), h.count(remedy.EventDecision, "outcome", "act"))
	}
}

func TestUnknownFailureEscalates(t *testing.T) {
	sup := newFakeSup(map[string][2]int{"api": {2, 1}})
	h := start(t, &config.Config{}, sup, nil)
	h.fire("mystery_errors", "service", "api")
	ev := h.wait(remedy.EventEscalated, "guard", "no_runbook")
	if ev.Fields["receiver"] != "oncall" || ev.Fields["incident"] == "" {
		t.Errorf("escalation %+v", ev)
	}
	n, ok := h.notes.find("oncall", notify.KindTrigger, "no runbook handles it")
	if !ok || !strings.Contains(n.Text, "medic does not improvise") || !strings.Contains(n.Text, "status: api 2/2 ready") || n.Incident == "" {
		t.Fatalf("escalation notification %+v", n)
	}
	if len(sup.Calls()) != 0 {
		t.Fatalf("acted on an unknown failure: %v", sup.Calls())
	}
	// Resolving closes the incident and resolves the page.
	h.resolve("mystery_errors", "service", "api")
	h.wait(remedy.EventIncident, "state", "closed", "outcome", "resolved")
	if _, ok := h.notes.find("oncall", notify.KindResolve, "api"); !ok {
		t.Error("closing the incident did not resolve the escalation")
	}
}

// A failing step stops the run, runs the rollback, escalates with the
// evidence and demotes the runbook.
func TestFailureRollbackEscalate(t *testing.T) {
	cfg := &config.Config{
		Services: map[string]*config.Service{"web": {Instances: 2}},
		Runbooks: map[string]*config.Runbook{"fix": {
			Trigger:  config.RunbookTrigger{Condition: "broken"},
			Target:   "${labels.service}",
			Steps:    []config.RunbookStep{{Action: "exec", Command: []string{"fix", "${labels.service}"}}, step("restart_instance", "web/0")},
			Rollback: []config.RunbookStep{step("start", "web/0")},
			Trust:    "act",
		}},
	}
	sup := newFakeSup(map[string][2]int{"web": {2, 1}})
	h := start(t, cfg, sup, func(o *remedy.Options) {
		o.Actions = map[string]action.Action{"exec": action.Func(func(ctx context.Context, in action.Input) (action.Output, error) {
			return action.Output{Summary: "fix exited 2", Detail: "disk is read-only"}, errors.New("exit status 2")
		})}
	})
	h.fire("broken", "service", "web")
	end := h.wait(remedy.EventRunEnd, "runbook", "fix")
	if end.Fields["result"] != "failed" {
		t.Fatalf("result %s", end.Fields["result"])
	}
	if got := sup.Calls(); !slices.Equal(got, []string{"start web/0"}) { // step 2 never ran; the rollback did
		t.Fatalf("supervisor calls %v", got)
	}
	h.wait(remedy.EventStepEnd, "phase", "rollback", "ok", "true")
	n, ok := h.notes.find("oncall", notify.KindTrigger, "runbook fix failed")
	if !ok || !strings.Contains(n.Text, "FAILED: exit status 2") || !strings.Contains(n.Text, "disk is read-only") ||
		!strings.Contains(n.Text, "status: web 2/2 ready (min_available 1)") {
		t.Fatalf("escalation %+v", n)
	}
	h.wait(remedy.EventTrust, "runbook", "fix", "from", "act", "to", "propose")
	if rb := h.eng.Runbooks()[0]; rb.Level != remedy.LevelPropose || rb.Failures != 1 {
		t.Fatalf("record %+v", rb)
	}
}

// A step's key makes it idempotent across runs within the window.
func TestIdempotencyKey(t *testing.T) {
	cfg := restartStuck("act")
	rb := cfg.Runbooks["restart_stuck"]
	rb.Steps[0].Key = "restart-${labels.instance}"
	rb.Verify = nil
	rb.Cooldown = config.Duration(time.Second)
	sup := newFakeSup(map[string][2]int{"web": {3, 1}})
	h := start(t, cfg, sup, nil)
	h.fire("stuck", "instance", "web/1", "service", "web")
	h.wait(remedy.EventRunEnd)
	h.resolve("stuck", "instance", "web/1", "service", "web")
	h.clk.Advance(time.Minute)
	h.fire("stuck", "instance", "web/1", "service", "web")
	ev := h.wait(remedy.EventStepEnd, "replayed", "true")
	if ev.Fields["key"] != "restart-web/1" {
		t.Fatalf("replayed step key %q", ev.Fields["key"])
	}
	if got := sup.Calls(); len(got) != 1 {
		t.Fatalf("restarted %d times within the idempotency window: %v", len(got), got)
	}
}

// Stopping the engine cancels the running step, records "aborted:
// shutdown" and waits for it.
func TestShutdownAborts(t *testing.T) {
	sup := newFakeSup(map[string][2]int{"web": {3, 1}})
	sup.block = make(chan struct{}) // never closed: only the cancellation ends the step
	h := start(t, restartStuck("act"), sup, nil)
	h.fire("stuck", "instance", "web/1", "service", "web")
	h.wait(remedy.EventStepStart)
	h.stop()
	end := h.wait(remedy.EventRunEnd)
	if end.Fields["result"] != "aborted" || !strings.HasPrefix(end.Reason, "aborted: aborted: shutdown") && !strings.Contains(end.Reason, "aborted: shutdown") {
		t.Fatalf("run end %q %q", end.Fields["result"], end.Reason)
	}
	if se := h.wait(remedy.EventStepEnd); !strings.HasPrefix(se.Reason, "aborted: shutdown") {
		t.Fatalf("step end %q", se.Reason)
	}
}

func medicKind(s string) medic.EventKind { return medic.EventKind(s) }

// A full queue drops triggers without blocking the caller, counts them and
// records the drop.
func TestSubmitNeverBlocks(t *testing.T) {
	cfg := restartStuck("act")
	cfg = setDefaults(cfg)
	eng, err := remedy.New(remedy.Options{Config: cfg, QueueSize: 2, Recorder: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	// Not serving: the queue fills.
	ok := 0
	for range 5 {
		if eng.Submit(remedy.Trigger{Condition: "x", State: "firing"}) {
			ok++
		}
	}
	if ok != 2 || eng.Dropped() != 3 {
		t.Fatalf("accepted %d dropped %d, want 2 and 3", ok, eng.Dropped())
	}
}

var (
	_ remedy.Notifier = (*notify.Notifier)(nil)
	_ action.Notifier = (*notify.Notifier)(nil)
	_ remedy.Recorder = (*recorder)(nil)
	_ remedy.Checker  = (*checker)(nil)
)

// Update installs a reloaded config and keeps the learned state.
func TestUpdateKeepsState(t *testing.T) {
	sup := newFakeSup(map[string][2]int{"web": {3, 1}})
	cfg := restartStuck("act")
	cfg.Runbooks["restart_stuck"].Verify = nil
	h := start(t, cfg, sup, nil)
	h.fire("stuck", "instance", "web/1", "service", "web")
	h.wait(remedy.EventRunEnd, "result", "verified")
	next := restartStuck("act")
	next.Runbooks["restart_stuck"].Verify = nil
	next.Runbooks["other"] = &config.Runbook{Trigger: config.RunbookTrigger{Condition: "x"}, Steps: []config.RunbookStep{step("start", "web/0")}}
	if err := h.eng.Update(context.Background(), setDefaults(next)); err != nil {
		t.Fatal(err)
	}
	rbs := h.eng.Runbooks()
	if len(rbs) != 2 || rbs[1].Name != "restart_stuck" || rbs[1].Runs != 1 || rbs[0].Level != remedy.LevelPropose {
		t.Fatalf("after update: %+v", rbs)
	}
	// The cooldown survived the reload.
	h.resolve("stuck", "instance", "web/1", "service", "web")
	h.fire("stuck", "instance", "web/1", "service", "web")
	h.wait(remedy.EventDecision, "guard", remedy.GuardCooldown)
}
