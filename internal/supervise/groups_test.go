package supervise_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/supervise"
)

// groupHooks is readyHooks that also records the groups it is told.
type groupHooks struct {
	readyHooks
	gmu    sync.Mutex
	groups map[string]string
}

func (h *groupHooks) Grouped(id medic.InstanceID, group string) {
	h.gmu.Lock()
	defer h.gmu.Unlock()
	h.groups[id.String()] = group
}

// A group runs beside the service's instances on its own ports, is told to
// the hooks before it starts, counts its crashes, and stops alone: the
// service's instances are never touched.
func TestGroupsRunBesideTheService(t *testing.T) {
	hooks := &groupHooks{readyHooks: readyHooks{ready: map[string]bool{}, min: 99}, groups: map[string]string{}}
	web := readyService(2)
	web.Port = 18000
	s, rec := start(t, map[string]*config.Service{"web": web}, hooks)
	eventually(t, 15*time.Second, "2 ready", func() bool { return hooks.count() == 2 })
	before := pids(s, "web")

	canary := readyService(1)
	canary.Port = 18000
	canary.Version = "v2"
	if err := s.StartGroup(context.Background(), "web", "canary", canary, 1); err != nil {
		t.Fatal(err)
	}
	crash := service("exit 3")
	crash.Restart.Initial, crash.Restart.Max = dur(10*time.Millisecond), dur(20*time.Millisecond)
	// Without a readiness probe a running process counts as ready, and a
	// loaded machine can catch `exit 3` alive: a probe that never passes
	// makes "never ready" the group's only possible state.
	crash.Probes.Readiness = execProbe("false", 20*time.Millisecond, 1)
	if err := s.StartGroup(context.Background(), "web", "baseline", crash, 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the canary ready", func() bool { return s.GroupStatus("web", "canary").Ready == 1 })
	eventually(t, 15*time.Second, "the crashing group restarted", func() bool { return s.GroupStatus("web", "baseline").Restarts >= 3 })
	if st := s.GroupStatus("web", "baseline"); st.Want != 2 || st.Ready != 0 {
		t.Fatalf("crashing group: %+v", st)
	}
	ins := s.GroupInstances("web", "canary")
	if len(ins) != 1 || ins[0].ID != "web/1000" || ins[0].Port == 0 || ins[0].Port == 18000 || ins[0].Port == 18001 {
		t.Fatalf("canary instances: %+v", ins)
	}
	hooks.gmu.Lock()
	if hooks.groups["web/1000"] != "canary" || hooks.groups["web/1001"] != "baseline" || hooks.groups["web/1002"] != "baseline" {
		t.Errorf("groups told: %v", hooks.groups)
	}
	hooks.gmu.Unlock()
	if !hooks.is("web/1000") {
		t.Fatal("the canary's readiness did not reach the hooks")
	}
	if st := s.Status(); len(st[0].Instances) != 2 || st[0].Ready != 2 {
		t.Fatalf("the service's own status changed: %+v", st[0])
	}

	if err := s.StopGroup(context.Background(), "web", "canary"); err != nil {
		t.Fatal(err)
	}
	if err := s.StopGroup(context.Background(), "web", "baseline"); err != nil {
		t.Fatal(err)
	}
	if st := s.GroupStatus("web", "canary"); st != (supervise.GroupStatus{}) {
		t.Fatalf("after the stop: %+v", st)
	}
	if hooks.is("web/1000") {
		t.Fatal("a stopped canary is still ready for the hooks")
	}
	if after := pids(s, "web"); after[0] != before[0] || after[1] != before[1] {
		t.Fatalf("the service's instances were touched: %v → %v", before, after)
	}
	if rec.count(medic.EventKind("service.group.stopped"), "web") != 2 {
		t.Fatal("group stops not recorded")
	}
	if err := s.StartGroup(context.Background(), "nope", "canary", canary, 1); err == nil {
		t.Fatal("a group of an unknown service started")
	}
}

// TestGroupStaggeredStart: with deploy.stagger a group's instances start one
// at a time — the next when the one before is ready (never two started and
// unready at once), or stagger after it started when it is not ready by
// then; a group stopped while it staggers is gone at once.
func TestGroupStaggeredStart(t *testing.T) {
	hooks := &groupHooks{readyHooks: readyHooks{ready: map[string]bool{}, min: 99}, groups: map[string]string{}}
	web := readyService(1)
	s, _ := start(t, map[string]*config.Service{"web": web}, hooks)
	eventually(t, 15*time.Second, "1 ready", func() bool { return hooks.count() == 1 })

	green := readyService(3)
	green.Deploy = &config.Deploy{Stagger: config.Duration(time.Minute)} // readiness alone moves it on
	if err := s.StartGroup(context.Background(), "web", "green", green, 3); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ins := s.GroupInstances("web", "green")
		starting, ready := 0, 0
		for _, in := range ins {
			switch {
			case in.Ready:
				ready++
			case in.PID != 0:
				starting++
			}
		}
		if starting > 1 {
			t.Fatalf("%d instances started and not ready at once: %+v", starting, ins)
		}
		if ready == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: %+v", ins)
		}
		time.Sleep(2 * time.Millisecond)
	}

	// Never ready: the next starts stagger after the one before.
	never := service("exec sleep 300")
	never.Probes.Readiness = execProbe("false", 20*time.Millisecond, 1)
	never.Deploy = &config.Deploy{Stagger: config.Duration(300 * time.Millisecond)}
	began := time.Now()
	if err := s.StartGroup(context.Background(), "web", "slow", never, 3); err != nil {
		t.Fatal(err)
	}
	started := func() (n int) {
		for _, in := range s.GroupInstances("web", "slow") {
			if in.PID != 0 {
				n++
			}
		}
		return n
	}
	eventually(t, 15*time.Second, "3 of the never-ready group started", func() bool { return started() == 3 })
	if took := time.Since(began); took < 600*time.Millisecond {
		t.Fatalf("3 never-ready instances started within %v, want ≥ 2 × stagger (600ms)", took)
	}

	// Stopped while staggering: StopGroup does not wait for the rest.
	never.Deploy.Stagger = config.Duration(time.Minute)
	if err := s.StartGroup(context.Background(), "web", "stopped", never, 3); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the first started", func() bool {
		ins := s.GroupInstances("web", "stopped")
		return len(ins) == 3 && ins[0].PID != 0
	})
	if err := s.StopGroup(context.Background(), "web", "stopped"); err != nil {
		t.Fatal(err)
	}
	if st := s.GroupStatus("web", "stopped"); st != (supervise.GroupStatus{}) {
		t.Fatalf("after StopGroup: %+v", st)
	}
}
