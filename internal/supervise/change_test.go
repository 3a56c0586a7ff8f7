package supervise_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/supervise"
)

func TestScaleUpAndDown(t *testing.T) {
	svc := service("exec sleep 300")
	svc.Instances = 2
	s, rec := start(t, map[string]*config.Service{"web": svc}, nil)
	eventually(t, 15*time.Second, "2 running", func() bool { return s.Status()[0].Instances[1].PID != 0 })
	ctx := context.Background()
	if err := s.Scale(ctx, "web", 4, "test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "4 running", func() bool {
		st := s.Status()[0]
		return st.Desired == 4 && st.Instances[3].PID != 0
	})
	gone := s.Status()[0].Instances[3].PID
	if err := s.Scale(ctx, "web", 1, "test"); err != nil {
		t.Fatal(err)
	}
	if st := s.Status()[0]; st.Desired != 1 || len(st.Instances) != 1 {
		t.Fatalf("after scale to 1: %d desired, %d instances", st.Desired, len(st.Instances))
	}
	eventually(t, 10*time.Second, "surplus instance stopped", func() bool { return !alive(gone) })
	if rec.count(medic.EventScaled, "web") != 2 {
		t.Fatalf("scaled events = %d, want 2", rec.count(medic.EventScaled, "web"))
	}
}

func TestReloadKeepsUnchangedAndRollbackRestoresPrevious(t *testing.T) {
	good := service("exec sleep 300")
	other := service("exec sleep 301")
	s, rec := start(t, map[string]*config.Service{"web": good, "db": other}, nil)
	eventually(t, 15*time.Second, "both running", func() bool { return instance(s, "web", 0).PID != 0 && instance(s, "db", 0).PID != 0 })
	dbPID := instance(s, "db", 0).PID
	if err := s.Rollback(context.Background(), "web", "test"); !errors.Is(err, supervise.ErrNoPrevious) {
		t.Fatalf("rollback without history: %v, want ErrNoPrevious", err)
	}

	// A bad deploy: web's command now crashes; db is unchanged.
	bad := service("echo broken >&2; exit 1")
	next := &config.Config{Services: map[string]*config.Service{"web": bad, "db": other}}
	s.Apply(context.Background(), next, config.Change{Changed: []string{"web"}, Unchanged: []string{"db"}}, "test")
	eventually(t, 15*time.Second, "new web crashing", func() bool { return rec.count(medic.EventRestart, "web/0") > 0 })
	if pid := instance(s, "db", 0).PID; pid != dbPID {
		t.Fatalf("unchanged service db was restarted by the reload: pid %d → %d", dbPID, pid)
	}
	if err := s.Rollback(context.Background(), "web", "runbook:crashloop"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "web running the previous command", func() bool {
		st := instance(s, "web", 0)
		return st.State == medic.StateRunning && st.Restarts == 0
	})
	if ev, ok := rec.find(medic.EventRolledBack, "web"); !ok || ev.Actor != "runbook:crashloop" {
		t.Fatalf("rollback event = %+v", ev)
	}
}

// TestScaleToZeroAndBack: a fleet host whose share is 0 runs no instance
// of the service (every instance drained and stopped), and scaling up
// again starts them.
func TestScaleToZeroAndBack(t *testing.T) {
	svc := service("exec sleep 300")
	svc.Instances = 2
	s, _ := start(t, map[string]*config.Service{"web": svc}, nil)
	eventually(t, 15*time.Second, "2 running", func() bool { return s.Status()[0].Instances[1].PID != 0 })
	pids := []int{s.Status()[0].Instances[0].PID, s.Status()[0].Instances[1].PID}
	ctx := context.Background()
	if err := s.Scale(ctx, "web", -1, "test"); err == nil {
		t.Fatal("scale to -1 accepted")
	}
	if err := s.Scale(ctx, "web", 0, "fleet"); err != nil {
		t.Fatal(err)
	}
	if st := s.Status()[0]; st.Desired != 0 || len(st.Instances) != 0 {
		t.Fatalf("after scale to 0: %d desired, %d instances", st.Desired, len(st.Instances))
	}
	eventually(t, 10*time.Second, "every instance stopped", func() bool { return !alive(pids[0]) && !alive(pids[1]) })
	if err := s.Scale(ctx, "web", 1, "fleet"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "1 running again", func() bool {
		st := s.Status()[0]
		return st.Desired == 1 && len(st.Instances) == 1 && st.Instances[0].PID != 0
	})
}

// TestStopAllBy: a stand-down stops every instance at once, each with its
// stop grace cut to the time left before the deadline. Four instances that
// take 600 ms to exit after SIGTERM, deadline 1.5 s: all exit on their own
// (one at a time, the third and fourth would be SIGKILLed); four that
// ignore SIGTERM with stop.grace 10s are SIGKILLed at the deadline.
func TestStopAllBy(t *testing.T) {
	for _, c := range []struct {
		name, cmd string
		within    time.Duration
		killed    bool
	}{
		{"graceful, all at once", `trap 'sleep 0.6; exit 0' TERM; touch "$TRAPS/$$"; while :; do sleep 0.05; done`, 1500 * time.Millisecond, false},
		{"SIGTERM ignored: SIGKILL at the deadline", `trap '' TERM; touch "$TRAPS/$$"; while :; do sleep 0.05; done`, 800 * time.Millisecond, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			traps := t.TempDir() // each instance's shell touches a file once its trap is set
			svc := service(c.cmd)
			svc.Env = map[string]string{"TRAPS": traps}
			svc.Instances = 4
			svc.Stop.Grace = dur(10 * time.Second)
			s, rec := start(t, map[string]*config.Service{"web": svc}, nil)
			eventually(t, 15*time.Second, "4 running with their trap set", func() bool {
				ents, _ := os.ReadDir(traps)
				return len(ents) == 4
			})
			var pids []int
			for _, in := range s.Status()[0].Instances {
				pids = append(pids, in.PID)
			}
			t0 := time.Now()
			by := t0.Add(c.within)
			n, err := s.StopAllBy(context.Background(), "web", by, "fleet", "stand-down")
			took := time.Since(t0)
			if err != nil || n != 4 {
				t.Fatalf("StopAllBy: %d, %v; want 4 stopped", n, err)
			}
			for _, pid := range pids {
				if alive(pid) {
					t.Errorf("pid %d alive after StopAllBy returned", pid)
				}
			}
			// The deadline plus the reaping and the rollout to 0 (loaded machine).
			if took > c.within+time.Second {
				t.Errorf("StopAllBy took %v, want within the deadline %v (+1s)", took, c.within)
			}
			if st := s.Status()[0]; st.Desired != 0 || len(st.Instances) != 0 {
				t.Errorf("after StopAllBy: %d desired, %d instances; want 0", st.Desired, len(st.Instances))
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			stopped := 0
			for _, e := range rec.events {
				switch e.Kind {
				case medic.EventStopping:
					if !strings.Contains(e.Reason, "stop grace cut from 10s") {
						t.Errorf("%s stopping: %q, want the grace cut named", e.Target, e.Reason)
					}
				case medic.EventStopped:
					stopped++
					if k := strings.Contains(e.Fields["exit"], "SIGKILL"); k != c.killed {
						t.Errorf("%s exit %q: SIGKILLed %v, want %v", e.Target, e.Fields["exit"], k, c.killed)
					}
				}
			}
			if stopped != 4 {
				t.Errorf("%d instance.stopped events, want 4", stopped)
			}
		})
	}
}
