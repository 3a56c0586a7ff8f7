package remedy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/notify"
	"github.com/medic-dev/medic/internal/remedy"
)

// fakeFleet is a FleetGuard over fleet.Local that can be cut off and
// counts the holds it released.
type fakeFleet struct {
	*fleet.Local
	mu       sync.Mutex
	cut      error // returned by Take and Hold when set
	unsafe   error // returned by Safe when set
	stale    error // returned by Fenced when set
	released int
	others   int // ready instances of web on the other hosts, when budget is set
	budget   bool
}

func (f *fakeFleet) FleetReady(service string) (int, int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if service != "web" || !f.budget {
		return 0, 0, false
	}
	return f.others, 5, true // instances: 6 fleet-wide
}

func (f *fakeFleet) Fenced(ctx context.Context, target string, fence int64) error {
	f.mu.Lock()
	stale := f.stale
	f.mu.Unlock()
	if stale != nil {
		return stale
	}
	return f.Local.Fenced(ctx, target, fence)
}

func (f *fakeFleet) Safe() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unsafe
}

func (f *fakeFleet) Take(ctx context.Context, key string, max int, per time.Duration) (bool, string, error) {
	f.mu.Lock()
	cut := f.cut
	f.mu.Unlock()
	if cut != nil {
		return false, "", cut
	}
	return f.Local.Take(ctx, key, max, per)
}

func (f *fakeFleet) Hold(ctx context.Context, target string) (int64, func(context.Context) error, error) {
	f.mu.Lock()
	cut := f.cut
	f.mu.Unlock()
	if cut != nil {
		return 0, nil, cut
	}
	fence, release, err := f.Local.Hold(ctx, target)
	if err != nil {
		return 0, nil, err
	}
	return fence, func(ctx context.Context) error {
		f.mu.Lock()
		f.released++
		f.mu.Unlock()
		return release(ctx)
	}, nil
}

func restartFast(fleetRate int) *config.Config {
	cfg := restartStuck("act")
	cfg.Runbooks["restart_stuck"].Verify = nil
	cfg.Runbooks["restart_stuck"].Cooldown = config.Duration(time.Nanosecond)
	cfg.Automation.FleetRate = config.ActionRate{Max: fleetRate, Per: config.Duration(time.Hour)}
	return cfg
}

// decisionOn waits for the decision of restart_stuck on target.
func (h *harness) decisionOn(target string) (outcome, guard string, fields map[string]string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, ev := range h.rec.all() {
			if ev.Kind == remedy.EventDecision && ev.Target == target && ev.Fields["runbook"] == "restart_stuck" {
				return ev.Fields["outcome"], ev.Fields["guard"], ev.Fields
			}
		}
		if time.Now().After(deadline) {
			h.dump()
			h.t.Fatalf("no decision on %s", target)
		}
		time.Sleep(time.Millisecond)
	}
}

// The fleet-wide rate is asked after the host's own: with fleet_rate 2 and
// the host's rate at its default of 50, the third run on a third target is
// blocked with guard fleet_rate, recorded and escalated; every fleet lock
// taken was released.
func TestFleetRateBlocks(t *testing.T) {
	sup := newFakeSup(map[string][2]int{"web": {3, 0}})
	var ff *fakeFleet
	h := start(t, restartFast(2), sup, func(o *remedy.Options) {
		ff = &fakeFleet{Local: fleet.NewLocal(o.Clock)}
		o.Fleet = ff
	})
	want := []string{"act", "act", "blocked"}
	for i := range 3 {
		target := fmt.Sprintf("web/%d", i)
		h.fire("stuck", "instance", target, "service", "web")
		outcome, guard, f := h.decisionOn(target)
		if outcome != want[i] {
			t.Fatalf("run %d: %s (guard %q), want %s", i+1, outcome, guard, want[i])
		}
		if outcome == "act" && f["fence"] == "" {
			t.Errorf("run %d: the act decision records no fence: %v", i+1, f)
		}
		if outcome == "blocked" && guard != remedy.GuardFleetRate {
			t.Fatalf("run %d blocked by %q, want %s", i+1, guard, remedy.GuardFleetRate)
		}
	}
	if _, ok := h.notes.find("oncall", notify.KindTrigger, "blocked by fleet_rate"); !ok {
		h.dump()
		t.Error("a fleet_rate refusal was not escalated")
	}
	h.waitCount(2, remedy.EventRunEnd, "runbook", "restart_stuck")
	ff.mu.Lock()
	released := ff.released
	ff.mu.Unlock()
	if released != 3 { // the two runs', and the refused one's (held, then refused by the rate)
		t.Errorf("%d fleet locks released, want 3", released)
	}
	if got := len(sup.Calls()); got != 2 {
		t.Errorf("%d actions, want 2", got)
	}
}

// A remediation holds its target's fleet lock for its whole run: another
// host's hold is refused while it runs, and succeeds after; a target held
// elsewhere is refused here with guard fleet_busy (not escalated: someone
// is on it).
func TestFleetLockHeldForTheRun(t *testing.T) {
	sup := newFakeSup(map[string][2]int{"web": {3, 0}})
	sup.block = make(chan struct{})
	var ff *fakeFleet
	h := start(t, restartFast(10), sup, func(o *remedy.Options) {
		ff = &fakeFleet{Local: fleet.NewLocal(o.Clock)}
		o.Fleet = ff
	})
	ctx := context.Background()
	h.fire("stuck", "instance", "web/1", "service", "web")
	if outcome, guard, _ := h.decisionOn("web/1"); outcome != "act" {
		t.Fatalf("web/1: %s (%s)", outcome, guard)
	}
	if _, _, err := ff.Local.Hold(ctx, "web/1"); !errors.Is(err, fleet.ErrHeld) {
		t.Fatalf("another host held web/1 during its remediation: %v", err)
	}
	close(sup.block)
	h.wait(remedy.EventRunEnd, "runbook", "restart_stuck")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, release, err := ff.Local.Hold(ctx, "web/1")
		if err == nil {
			release(ctx) //nolint:errcheck // local
			break
		}
		if errors.Is(err, fleet.ErrCooling) { // the run's cooldown (1ns), kept fleet-wide too
			h.clk.Advance(time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("web/1 still held after its run ended: %v", err)
		}
		time.Sleep(time.Millisecond)
	}

	_, release, err := ff.Local.Hold(ctx, "web/2") // another host remediates web/2
	if err != nil {
		t.Fatal(err)
	}
	defer release(ctx) //nolint:errcheck // local
	h.fire("stuck", "instance", "web/2", "service", "web")
	if outcome, guard, _ := h.decisionOn("web/2"); outcome != "blocked" || guard != remedy.GuardFleetBusy {
		t.Fatalf("web/2 held elsewhere: %s (%s), want blocked by %s", outcome, guard, remedy.GuardFleetBusy)
	}
	if _, ok := h.notes.find("oncall", notify.KindTrigger, "blocked by fleet_busy"); ok {
		t.Error("fleet_busy escalated: another host is already on the target")
	}
	if got := sup.Calls(); len(got) != 1 {
		t.Errorf("actions %v, want only the restart of web/1", got)
	}
	// The other host finishes: 15s later, the condition still firing, this
	// host decides again and acts.
	release(ctx) //nolint:errcheck // local
	retryBy := time.Now().Add(10 * time.Second)
	for len(sup.Calls()) < 2 {
		if time.Now().After(retryBy) {
			h.dump()
			t.Fatalf("web/2 never remediated after the other host released it: %v", sup.Calls())
		}
		h.clk.Advance(time.Second)
		time.Sleep(time.Millisecond)
	}
	if got := sup.Calls(); got[1] != "restart web/2" {
		t.Errorf("actions %v", got)
	}
}

// A host cut from etcd takes no fleet-wide action: blocked with guard
// fleet_cut_off and escalated; so does a fleet guard that does not answer.
func TestFleetCutOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		why  string
	}{
		{"cut off", fmt.Errorf("fleet prod: %w", fleet.ErrCutOff), "takes no fleet-wide action"},
		{"etcd error", errors.New("context deadline exceeded"), "could not be asked"},
		{"storm brake", fmt.Errorf("fleet prod: %w: 2 of 3 hosts suspect or lost", fleet.ErrStorm), "fleet-wide automation is paused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sup := newFakeSup(map[string][2]int{"web": {3, 0}})
			h := start(t, restartFast(10), sup, func(o *remedy.Options) {
				o.Fleet = &fakeFleet{Local: fleet.NewLocal(o.Clock), cut: tc.err}
			})
			h.fire("stuck", "instance", "web/0", "service", "web")
			outcome, guard, _ := h.decisionOn("web/0")
			want := remedy.GuardFleetCutOff
			if errors.Is(tc.err, fleet.ErrStorm) {
				want = remedy.GuardFleetStorm
			}
			if outcome != "blocked" || guard != want {
				t.Fatalf("%s (%s), want blocked by %s", outcome, guard, want)
			}
			ev := h.wait(remedy.EventDecision, "guard", want)
			if !strings.Contains(ev.Reason, tc.why) {
				t.Errorf("reason %q lacks %q", ev.Reason, tc.why)
			}
			if _, ok := h.notes.find("oncall", notify.KindTrigger, "blocked by "+want); !ok {
				t.Errorf("%s not escalated", want)
			}
			if got := sup.Calls(); len(got) != 0 {
				t.Errorf("a host cut from the fleet acted: %v", got)
			}
		})
	}
}

// The host's own guards come first: a run this host refuses (here its own
// rate) spends no fleet-wide token and takes no fleet lock; a dry run asks
// the fleet nothing either.
func TestFleetAskedLast(t *testing.T) {
	cfg := restartFast(10)
	cfg.Automation.Rate = config.ActionRate{Max: 1, Per: config.Duration(time.Hour)}
	sup := newFakeSup(map[string][2]int{"web": {3, 0}})
	var ff *fakeFleet
	h := start(t, cfg, sup, func(o *remedy.Options) {
		ff = &fakeFleet{Local: fleet.NewLocal(o.Clock)}
		o.Fleet = ff
	})
	h.fire("stuck", "instance", "web/0", "service", "web")
	if outcome, _, _ := h.decisionOn("web/0"); outcome != "act" {
		t.Fatalf("first run: %s", outcome)
	}
	h.fire("stuck", "instance", "web/1", "service", "web")
	if outcome, guard, _ := h.decisionOn("web/1"); guard != remedy.GuardRateGlobal {
		t.Fatalf("second run: %s (%s), want blocked by the host's %s", outcome, guard, remedy.GuardRateGlobal)
	}
	h.eng.SetDryRun(context.Background(), true, "test")
	h.fire("stuck", "instance", "web/2", "service", "web")
	h.decisionOn("web/2")
	ctx := context.Background()
	for _, target := range []string{"web/1", "web/2"} {
		_, release, err := ff.Local.Hold(ctx, target)
		if err != nil {
			t.Fatalf("%s held in the fleet after this host refused (or dry-ran) it: %v", target, err)
		}
		release(ctx) //nolint:errcheck // local
	}
	for i := range 9 { // the first run took 1 of the fleet's 10 tokens
		if ok, why, _ := ff.Local.Take(ctx, "automation", 10, time.Hour); !ok {
			t.Fatalf("fleet token %d of the 9 left refused: %s", i+2, why)
		}
	}
	if ok, _, _ := ff.Local.Take(ctx, "automation", 10, time.Hour); ok {
		t.Fatal("the fleet window had more than 9 tokens left: the first run took none")
	}
}

// A host cut from etcd in the middle of a run stops acting: the step after
// the cut is refused (guard fleet_cut_off, no rollback: it would act too),
// the run ends aborted and a human is told.
func TestFleetCutOffMidRun(t *testing.T) {
	cfg := restartFast(10)
	rb := cfg.Runbooks["restart_stuck"]
	rb.Steps = append(rb.Steps, step("restart_instance", "web/2"))
	rb.Rollback = []config.RunbookStep{step("restart_instance", "web/0")}
	sup := newFakeSup(map[string][2]int{"web": {3, 0}})
	sup.block = make(chan struct{})
	var ff *fakeFleet
	h := start(t, cfg, sup, func(o *remedy.Options) {
		ff = &fakeFleet{Local: fleet.NewLocal(o.Clock)}
		o.Fleet = ff
	})
	h.fire("stuck", "instance", "web/1", "service", "web")
	if outcome, guard, _ := h.decisionOn("web/1"); outcome != "act" {
		t.Fatalf("web/1: %s (%s)", outcome, guard)
	}
	h.wait(remedy.EventStepStart, "runbook", "restart_stuck")
	ff.mu.Lock()
	ff.unsafe = fmt.Errorf("fleet prod: %w", fleet.ErrCutOff)
	ff.mu.Unlock()
	close(sup.block)
	end := h.wait(remedy.EventRunEnd, "runbook", "restart_stuck")
	if end.Fields["result"] != "aborted" || !strings.Contains(end.Reason, "before step 2") {
		h.dump()
		t.Fatalf("run ended %q: %s", end.Fields["result"], end.Reason)
	}
	if got := sup.Calls(); len(got) != 1 || got[0] != "restart web/1" {
		t.Fatalf("actions %v, want only step 1's restart of web/1 (no step 2, no rollback)", got)
	}
	if h.count(remedy.EventStepEnd, "guard", remedy.GuardFleetCutOff) != 1 {
		h.dump()
		t.Error("the refused step is not recorded with guard fleet_cut_off")
	}
	if _, ok := h.notes.find("oncall", notify.KindTrigger, "cut from the fleet"); !ok {
		t.Error("a run stopped by the cut was not escalated")
	}
}

// A run whose fleet lock is no longer held under its fence (its lease
// expired and another host may hold the target) does not run its step: the
// step is refused with guard fleet_fence, no rollback, the run aborted and
// a human told.
func TestFleetStaleFenceRefusesTheStep(t *testing.T) {
	sup := newFakeSup(map[string][2]int{"web": {3, 0}})
	h := start(t, restartFast(10), sup, func(o *remedy.Options) {
		o.Fleet = &fakeFleet{Local: fleet.NewLocal(o.Clock), stale: fmt.Errorf("web/0: lock now fence 9: %w", fleet.ErrStaleFence)}
	})
	h.fire("stuck", "instance", "web/0", "service", "web")
	if outcome, guard, _ := h.decisionOn("web/0"); outcome != "act" {
		t.Fatalf("%s (%s), want act", outcome, guard)
	}
	ev := h.wait(remedy.EventStepEnd, "guard", remedy.GuardFleetFence)
	if !strings.Contains(ev.Reason, "fence") {
		t.Errorf("step end %q does not name the fence", ev.Reason)
	}
	end := h.wait(remedy.EventRunEnd, "runbook", "restart_stuck")
	if end.Fields["result"] != "aborted" {
		t.Errorf("run result %q, want aborted", end.Fields["result"])
	}
	if got := sup.Calls(); len(got) != 0 {
		t.Errorf("a step ran under a stale fence: %v", got)
	}
}

// A cooldown started by one host's run holds on every host: the other
// host's decision on the same target is blocked by cooldown (not
// escalated), naming the host that ran; a host's own later run on it too.
func TestFleetCooldownAcrossHosts(t *testing.T) {
	cfg := restartFast(10)
	cfg.Runbooks["restart_stuck"].Cooldown = config.Duration(time.Hour)
	var local *fleet.Local
	sup1 := newFakeSup(map[string][2]int{"web": {3, 0}})
	h1 := start(t, cfg, sup1, func(o *remedy.Options) {
		local = fleet.NewLocal(o.Clock)
		o.Fleet = &fakeFleet{Local: local}
	})
	sup2 := newFakeSup(map[string][2]int{"web": {3, 0}})
	h2 := start(t, cfg, sup2, func(o *remedy.Options) { o.Fleet = &fakeFleet{Local: local} }) // one fleet
	h1.fire("stuck", "instance", "web/0", "service", "web")
	if outcome, guard, _ := h1.decisionOn("web/0"); outcome != "act" {
		t.Fatalf("h1: %s (%s)", outcome, guard)
	}
	h1.wait(remedy.EventRunEnd, "runbook", "restart_stuck")
	h2.fire("stuck", "instance", "web/0", "service", "web")
	outcome, guard, _ := h2.decisionOn("web/0")
	if outcome != "blocked" || guard != remedy.GuardCooldown {
		t.Fatalf("h2 during h1's cooldown: %s (%s), want blocked by %s", outcome, guard, remedy.GuardCooldown)
	}
	if ev := h2.wait(remedy.EventDecision, "guard", remedy.GuardCooldown); !strings.Contains(ev.Reason, "fleet-wide cooldown") {
		t.Errorf("reason %q", ev.Reason)
	}
	if _, ok := h2.notes.find("oncall", notify.KindTrigger, "blocked by cooldown"); ok {
		t.Error("a cooldown was escalated")
	}
	if got := sup2.Calls(); len(got) != 0 {
		t.Errorf("h2 acted during the fleet-wide cooldown: %v", got)
	}
}

// The disruption budget counts every host's instances: web has 6 instances
// fleet-wide, 3 here (all ready, min_available 0 here) and 3 on the other
// hosts. With 2 of those ready (one host's instance down), restarting one
// here would leave 4 of 6 ready fleet-wide, below 5: blocked by budget. With
// all 3 ready it acts.
func TestFleetBudgetCountsEveryHost(t *testing.T) {
	for _, tc := range []struct {
		others  int
		outcome string
	}{{2, "blocked"}, {3, "act"}, {-1, "act"}} {
		t.Run(fmt.Sprint(tc.others), func(t *testing.T) {
			sup := newFakeSup(map[string][2]int{"web": {3, 0}})
			h := start(t, restartFast(10), sup, func(o *remedy.Options) {
				o.Fleet = &fakeFleet{Local: fleet.NewLocal(o.Clock), others: tc.others, budget: tc.others >= 0}
			})
			h.fire("stuck", "instance", "web/0", "service", "web")
			outcome, guard, _ := h.decisionOn("web/0")
			if outcome != tc.outcome || (outcome == "blocked" && guard != remedy.GuardBudget) {
				t.Fatalf("%d ready on the other hosts: %s (%s), want %s", tc.others, outcome, guard, tc.outcome)
			}
			if outcome == "blocked" {
				ev := h.wait(remedy.EventDecision, "guard", remedy.GuardBudget)
				if !strings.Contains(ev.Reason, "fleet-wide") || !strings.Contains(ev.Reason, "5 ready") {
					t.Errorf("reason %q does not give the fleet-wide count", ev.Reason)
				}
				if got := sup.Calls(); len(got) != 0 {
					t.Errorf("acted over the fleet-wide budget: %v", got)
				}
			}
		})
	}
}
