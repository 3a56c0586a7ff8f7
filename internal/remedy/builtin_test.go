package remedy_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/notify"
	"github.com/medic-dev/medic/internal/remedy"
)

func builtin(name, trust string, params map[string]string) *config.Runbook {
	return &config.Runbook{Builtin: name, Trust: trust, Params: params}
}

// HPA-like: scale out one step per period while the condition fires, up to
// max_instances; after it stayed resolved for the stabilisation window,
// scale in one step per window down to min_instances.
func TestBuiltinScaleOutIn(t *testing.T) {
	cfg := &config.Config{
		Services: map[string]*config.Service{"web": {Instances: 2, Remedy: &config.ServiceRemedy{MinInstances: 2, MaxInstances: 4}}},
		Runbooks: map[string]*config.Runbook{
			"web_out": builtin("scale_out", "act", nil),
			"web_in":  builtin("scale_in", "act", nil),
		},
	}
	sup := newFakeSup(map[string][2]int{"web": {2, 1}})
	h := start(t, cfg, sup, nil)
	h.fire("latency_high", "service", "web")
	h.waitTick(10*time.Second, remedy.EventRunEnd, "runbook", "web_out", "round", "3") // 3 → 4 → stays at 4
	h.settle()
	if got := sup.Calls(); !slices.Equal(got, []string{"scale web 3", "scale web 4"}) {
		t.Fatalf("scale out: %v", got)
	}
	if h.count(remedy.EventRunEnd, "runbook", "web_out") != 3 {
		t.Fatal("scale out kept repeating at max_instances")
	}

	h.chk.set("latency_high", true)
	h.resolve("latency_high", "service", "web")
	h.wait(remedy.EventDeferred, "runbook", "web_in")
	h.waitTick(30*time.Second, remedy.EventRunEnd, "runbook", "web_in", "round", "3")
	h.settle()
	if got := sup.Calls()[2:]; !slices.Equal(got, []string{"scale web 3", "scale web 2"}) {
		t.Fatalf("scale in: %v", got)
	}
	// Scale-in waited for the stabilisation window (5m) after the resolve.
	first := h.wait(remedy.EventDecision, "runbook", "web_in", "round", "1")
	if d := first.Time.Sub(h.wait(remedy.EventDeferred, "runbook", "web_in").Time); d < 5*time.Minute {
		t.Fatalf("scale in after %v, want the 5m stabilisation window", d)
	}
}

// Crash loop after a change: roll back; when there is nothing to roll back
// to, stop the instances (no more restarts) and escalate.
func TestBuiltinCrashloopRollback(t *testing.T) {
	cfg := &config.Config{
		Services: map[string]*config.Service{"web": {Instances: 2}},
		Runbooks: map[string]*config.Runbook{"web_rollback": builtin("crashloop_rollback", "act", nil)},
	}
	t.Run("rolled back", func(t *testing.T) {
		sup := newFakeSup(map[string][2]int{"web": {2, 1}})
		sup.set("web", 2, 0, 1) // crash looping: nothing ready
		h := start(t, cfg, sup, nil)
		sup.onCall = func(call string) error {
			if call == "rollback web" {
				sup.set("web", 2, 2, 1) // the previous command works
			}
			return nil
		}
		h.fire("crashloop", "service", "web", "instance", "web/0")
		end := h.waitTick(time.Second, remedy.EventRunEnd, "runbook", "web_rollback")
		if end.Fields["result"] != "verified" || !slices.Equal(sup.Calls(), []string{"rollback web"}) {
			t.Fatalf("result %s calls %v", end.Fields["result"], sup.Calls())
		}
		if v := h.wait(remedy.EventVerify); v.Time.Sub(h.wait(remedy.EventStepEnd).Time) < 10*time.Second {
			t.Fatalf("verified after %v; want the 10s stability window", v.Time.Sub(h.wait(remedy.EventStepEnd).Time))
		}
	})
	t.Run("nothing to roll back to", func(t *testing.T) {
		sup := newFakeSup(map[string][2]int{"web": {2, 1}})
		sup.set("web", 2, 0, 1)
		sup.onCall = func(call string) error {
			if call == "rollback web" {
				return errors.New("supervise: no previous version to roll back to")
			}
			return nil
		}
		h := start(t, cfg, sup, nil)
		h.fire("crashloop", "service", "web", "instance", "web/0")
		end := h.wait(remedy.EventRunEnd, "runbook", "web_rollback")
		if end.Fields["result"] != "failed" || !slices.Equal(sup.Calls(), []string{"rollback web", "stop web/0", "stop web/1"}) {
			t.Fatalf("result %s calls %v", end.Fields["result"], sup.Calls())
		}
		n, ok := h.notes.find("oncall", notify.KindTrigger, "no previous version")
		if !ok || !strings.Contains(n.Text, "rollback 1 stop: ok") {
			t.Fatalf("escalation %+v", n)
		}
	})
}

// Disk above threshold: delete the configured files, verify, done.
func TestBuiltinDiskCleanup(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.tmp", "b.tmp", "keep.db"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
		old := t0.Add(-2 * time.Hour)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &config.Config{Runbooks: map[string]*config.Runbook{
		"tmp_cleanup": builtin("disk_cleanup", "act", map[string]string{"root": dir, "glob": "*.tmp"})}}
	h := start(t, cfg, newFakeSup(nil), nil)
	h.chk.resolved = nil
	h.chk.set("disk_full", false)
	// The condition resolves once the .tmp files are gone.
	go func() {
		for {
			if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(m) == 0 {
				h.chk.set("disk_full", true)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	h.fire("disk_full", "path", dir)
	end := h.waitTick(time.Second, remedy.EventRunEnd, "runbook", "tmp_cleanup")
	if end.Fields["result"] != "verified" {
		h.dump()
		t.Fatalf("result %s: %s", end.Fields["result"], end.Reason)
	}
	se := h.wait(remedy.EventStepEnd, "runbook", "tmp_cleanup")
	if se.Fields["out.freed_bytes"] != "2000" || se.Fields["out.deleted"] != "2" {
		t.Fatalf("step end %v", se.Fields)
	}
	if _, err := os.Stat(filepath.Join(dir, "keep.db")); err != nil {
		t.Fatal("deleted a file the glob does not match")
	}
}

// Memory leak: a rolling restart inside the disruption budget.
func TestBuiltinLeak(t *testing.T) {
	cfg := &config.Config{Runbooks: map[string]*config.Runbook{"leak": builtin("leak_rolling_restart", "act", nil)}}
	sup := newFakeSup(map[string][2]int{"web": {3, 2}})
	h := start(t, cfg, sup, nil)
	h.fire("memory_leak", "service", "web")
	if end := h.wait(remedy.EventRunEnd, "runbook", "leak"); end.Fields["result"] != "verified" || !slices.Equal(sup.Calls(), []string{"rolling web"}) {
		t.Fatalf("result %s calls %v", end.Fields["result"], sup.Calls())
	}
	// At the budget (2 ready, min 2) the leak is escalated, not restarted.
	sup.set("web", 3, 2, 2)
	h.resolve("memory_leak", "service", "web")
	h.clk.Advance(10 * time.Minute)
	h.fire("memory_leak", "service", "web")
	h.wait(remedy.EventDecision, "guard", remedy.GuardBudget)
	h.wait(remedy.EventEscalated, "guard", remedy.GuardBudget)
}

// Silent runs send no notice of their own, only the periodic summary.
func TestSilentSummary(t *testing.T) {
	cfg := restartStuck("silent")
	cfg.Runbooks["restart_stuck"].Verify = nil
	h := start(t, cfg, newFakeSup(map[string][2]int{"web": {3, 1}}), nil)
	h.fire("stuck", "instance", "web/1", "service", "web")
	h.wait(remedy.EventRunEnd, "result", "verified")
	h.settle()
	if _, ok := h.notes.find("chat", notify.KindInfo, "restart_stuck on web/1"); ok {
		t.Fatal("a silent run sent a notice")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, ok := h.notes.find("chat", notify.KindInfo, "1 silent remediations"); ok {
			if !strings.Contains(n.Text, "restart_stuck on web/1: verified") {
				t.Fatalf("summary %+v", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no summary after 24h")
		}
		h.clk.Advance(time.Hour)
		time.Sleep(time.Millisecond)
	}
}
