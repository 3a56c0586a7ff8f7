package remedy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/remedy"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// base is a request every guard lets through.
func base() remedy.Request {
	return remedy.Request{Runbook: "rb", Rate: remedy.Window{Max: 20, Per: time.Hour}, Target: "web/0",
		FlapKey: "c{instance=web/0}", Incident: "inc-1", Level: remedy.LevelAct, Targets: []int{1}, MaxTargets: 3}
}

// Each guardrail blocks with its name and a reason, in the documented order.
func TestGuardEach(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(g *remedy.Guards)
		req     func(r *remedy.Request)
		outcome remedy.Outcome
		guard   string
		reason  string // a substring of the reason
	}{
		{"act", nil, nil, remedy.OutcomeAct, "", "all guardrails passed"},
		{"paused", nil, func(r *remedy.Request) { r.Paused = true }, remedy.OutcomeBlock, remedy.GuardPaused, "paused"},
		{"protected", nil, func(r *remedy.Request) { r.Protected = "db" }, remedy.OutcomeBlock, remedy.GuardProtected, "db is protected"},
		{"observe", nil, func(r *remedy.Request) { r.Level = remedy.LevelObserve }, remedy.OutcomeObserve, remedy.GuardTrust, "alert only"},
		{"flapping", func(g *remedy.Guards) {
			for i := range 6 {
				g.Changed(t0.Add(time.Duration(i)*time.Minute), "c{instance=web/0}")
			}
		}, nil, remedy.OutcomeBlock, remedy.GuardFlapping, "changed state 6 times"},
		{"rate per runbook", func(g *remedy.Guards) {
			r := base()
			r.Rate.Max = 1
			g.Admit(t0.Add(-time.Minute), r, true)
			g.Release(t0.Add(-time.Minute), "web/0", "rb", "inc-0", 0, false)
		}, func(r *remedy.Request) { r.Rate.Max = 1 }, remedy.OutcomeBlock, remedy.GuardRateRunbook, "1 runs in the last 1h0m0s (limit 1)"},
		{"rate global", func(g *remedy.Guards) {
			g.Global.Max = 1
			r := base()
			r.Runbook, r.Target = "other", "web/1"
			g.Admit(t0.Add(-time.Minute), r, true)
		}, nil, remedy.OutcomeBlock, remedy.GuardRateGlobal, "all runbooks"},
		{"cooldown", func(g *remedy.Guards) {
			g.Admit(t0.Add(-time.Minute), base(), false)
			g.Release(t0.Add(-time.Minute), "web/0", "rb", "inc-0", 5*time.Minute, false)
		}, nil, remedy.OutcomeBlock, remedy.GuardCooldown, "cooldown until 2026-01-01T00:04:00Z"},
		{"failed before", func(g *remedy.Guards) {
			g.Admit(t0.Add(-time.Hour), base(), false)
			g.Release(t0.Add(-time.Hour), "web/0", "rb", "inc-1", 0, true)
		}, nil, remedy.OutcomeBlock, remedy.GuardFailedBefore, "already failed in incident inc-1"},
		{"busy", func(g *remedy.Guards) {
			r := base()
			r.Runbook = "other"
			g.Admit(t0, r, false)
		}, nil, remedy.OutcomeBlock, remedy.GuardBusy, "by other"},
		{"budget", nil, func(r *remedy.Request) {
			r.Budgets = []remedy.Budget{{Service: "web", Ready: 2, Removing: 1, MinAvailable: 2}}
		}, remedy.OutcomeBlock, remedy.GuardBudget, "web has 2 ready instances; taking 1 out would go below min_available 2"},
		{"budget: nothing ready is taken out", nil, func(r *remedy.Request) {
			r.Budgets = []remedy.Budget{{Service: "web", Ready: 0, Removing: 0, MinAvailable: 1}} // stopping a crash loop
		}, remedy.OutcomeAct, "", ""},
		{"render error", nil, func(r *remedy.Request) { r.RenderError = errors.New(`the trigger has no label "instance"`) },
			remedy.OutcomeBlock, remedy.GuardNoTargets, "no label"},
		{"no targets", nil, func(r *remedy.Request) { r.Targets, r.TargetErrors = []int{1, 0}, []string{"", "unknown service x"} },
			remedy.OutcomeBlock, remedy.GuardNoTargets, "step 2 has no targets: unknown service x"},
		{"max targets", nil, func(r *remedy.Request) { r.Targets = []int{4} }, remedy.OutcomeBlock, remedy.GuardMaxTargets, "4 targets; max_targets is 3"},
		{"dry run", nil, func(r *remedy.Request) { r.DryRun = true }, remedy.OutcomeDryRun, remedy.GuardDryRun, "dry run"},
		{"propose", nil, func(r *remedy.Request) { r.Level = remedy.LevelPropose }, remedy.OutcomePropose, remedy.GuardApproval, "trust level propose"},
		{"approve required", nil, func(r *remedy.Request) { r.Approval = true }, remedy.OutcomePropose, remedy.GuardApproval, "approve: required"},
		{"approved", nil, func(r *remedy.Request) { r.Level, r.Approved = remedy.LevelPropose, true }, remedy.OutcomeAct, "", ""},
		// Order: a degraded audit log outranks everything (even an approval:
		// no action without its record), paused comes next, dry-run after
		// every real guard.
		{"audit degraded", nil, func(r *remedy.Request) { r.AuditDown = "audit degraded since t: disk full" }, remedy.OutcomeBlock, remedy.GuardAudit, "no action without its record"},
		{"audit before paused and approved", nil, func(r *remedy.Request) {
			r.AuditDown, r.Paused, r.Approved = "audit degraded since t: disk full", true, true
		}, remedy.OutcomeBlock, remedy.GuardAudit, ""},
		{"paused before protected", nil, func(r *remedy.Request) { r.Paused, r.Protected = true, "db" }, remedy.OutcomeBlock, remedy.GuardPaused, ""},
		{"budget before dry run", nil, func(r *remedy.Request) {
			r.DryRun = true
			r.Budgets = []remedy.Budget{{Service: "web", Ready: 1, Removing: 1, MinAvailable: 1}}
		}, remedy.OutcomeBlock, remedy.GuardBudget, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := remedy.NewGuards(remedy.Window{Max: 50, Per: time.Hour}, 6, 30*time.Minute)
			if tt.setup != nil {
				tt.setup(g)
			}
			r := base()
			if tt.req != nil {
				tt.req(&r)
			}
			d := g.Check(t0, r)
			if d.Outcome != tt.outcome || d.Guard != tt.guard || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("Check = %v/%s %q; want %v/%s containing %q", d.Outcome, d.Guard, d.Reason, tt.outcome, tt.guard, tt.reason)
			}
		})
	}
}

// The 21st run within an hour under a limit of 20 per hour is blocked; the
// window slides.
func TestRateWindow(t *testing.T) {
	g := remedy.NewGuards(remedy.Window{Max: 100, Per: time.Hour}, 0, 0)
	r := base()
	for i := range 20 {
		r.Target = "web/" + string(rune('a'+i)) // distinct targets: no cooldown or busy in the way
		now := t0.Add(time.Duration(i) * time.Minute)
		if d := g.Check(now, r); d.Outcome != remedy.OutcomeAct {
			t.Fatalf("run %d: %v %s", i+1, d.Outcome, d.Reason)
		}
		g.Admit(now, r, true)
		g.Release(now, r.Target, "rb", "inc", 0, false)
	}
	r.Target = "web/x"
	steps := []struct {
		at   time.Duration
		want remedy.Outcome
	}{
		{20 * time.Minute, remedy.OutcomeBlock}, // the 21st
		{59 * time.Minute, remedy.OutcomeBlock},
		{60 * time.Minute, remedy.OutcomeAct}, // the first run left the window
	}
	for _, s := range steps {
		d := g.Check(t0.Add(s.at), r)
		if d.Outcome != s.want {
			t.Fatalf("+%v: %v %s; want %v", s.at, d.Outcome, d.Reason, s.want)
		}
		if s.want == remedy.OutcomeBlock && (d.Guard != remedy.GuardRateRunbook || !strings.Contains(d.Reason, "20 runs in the last 1h0m0s (limit 20)")) {
			t.Fatalf("+%v: guard %s reason %q", s.at, d.Guard, d.Reason)
		}
	}
}

// Flap detection slides too: old changes leave the window.
func TestFlapWindow(t *testing.T) {
	g := remedy.NewGuards(remedy.Window{}, 3, 10*time.Minute)
	r := base()
	steps := []struct {
		at     time.Duration
		change bool
		want   remedy.Outcome
	}{
		{0, true, remedy.OutcomeAct},
		{time.Minute, true, remedy.OutcomeAct},
		{2 * time.Minute, true, remedy.OutcomeBlock},             // third change within 10m
		{10*time.Minute + time.Second, false, remedy.OutcomeAct}, // the first two aged out
	}
	for _, s := range steps {
		now := t0.Add(s.at)
		if s.change {
			g.Changed(now, r.FlapKey)
		}
		if d := g.Check(now, r); d.Outcome != s.want {
			t.Fatalf("+%v: %v %s; want %v", s.at, d.Outcome, d.Reason, s.want)
		}
	}
}
