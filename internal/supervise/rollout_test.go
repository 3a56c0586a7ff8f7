package supervise_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/supervise"
)

// readyService is a service of n instances with a fast readiness probe.
func readyService(n int) *config.Service {
	svc := service("exec sleep 300")
	svc.Instances = n
	min := n - 1
	svc.MinAvailable = &min
	// A healthy instance must not look unready because a 30 ms probe of
	// `true` was slow on a loaded machine: the budget tests below must fail
	// only on a real breach (a generous timeout, three failures in a row).
	svc.Probes.Readiness = execProbe("true", 30*time.Millisecond, 3)
	svc.Probes.Readiness.Timeout = dur(2 * time.Second)
	return svc
}

func pids(s *supervise.Supervisor, name string) map[int]int {
	out := map[int]int{}
	for _, st := range s.Status() {
		if st.Name == name {
			for _, in := range st.Instances {
				out[in.Index] = in.PID
			}
		}
	}
	return out
}

// TestReloadReplacesOneAtATime: a reload that changes a running service
// replaces its instances one at a time inside the budget (it used to stop
// them all, then start them all: every request in between got a 503), and
// every stop names the reload's actor and cause, not "medic is shutting down".
func TestReloadReplacesOneAtATime(t *testing.T) {
	old := readyService(3)
	hooks := &readyHooks{ready: map[string]bool{}, min: 99}
	s, rec := start(t, map[string]*config.Service{"web": old}, hooks)
	eventually(t, 15*time.Second, "3 ready", func() bool { return hooks.count() == 3 })
	before := pids(s, "web")
	hooks.track()

	next := readyService(3)
	next.Env = map[string]string{"VERSION": "2"}
	s.Apply(context.Background(), &config.Config{Services: map[string]*config.Service{"web": next}},
		config.Change{Changed: []string{"web"}}, "api:alice")
	eventually(t, 20*time.Second, "every instance replaced and ready", func() bool {
		now := pids(s, "web")
		for i, pid := range before {
			if now[i] == pid || now[i] == 0 || !hooks.is("web/"+string(rune('0'+i))) {
				return false
			}
		}
		return rec.count(medic.EventRolledOut, "web") == 1
	})
	if m := hooks.minSeen(); m < 2 {
		t.Fatalf("ready instances fell to %d during the reload, min_available is 2", m)
	}
	for i := 0; i < 3; i++ {
		id := "web/" + string(rune('0'+i))
		ev, ok := rec.find(medic.EventStopping, id)
		if !ok || ev.Actor != "api:alice" || !strings.Contains(ev.Reason, "reload") {
			t.Errorf("stop of %s recorded as %+v, want actor api:alice and a reload cause", id, ev)
		}
	}
	if ev, _ := rec.find(medic.EventRolledOut, "web"); ev.Actor != "api:alice" || strings.Contains(ev.Reason, "stopped") {
		t.Errorf("rollout record = %+v", ev)
	}
}

// TestReloadScalesAndReplaces: 2 → 3 instances with a new env, then back to
// 2: new instances start first, the surplus one stops last, and at no time
// do fewer than min_available (of the smaller size) serve.
func TestReloadScalesAndReplaces(t *testing.T) {
	hooks := &readyHooks{ready: map[string]bool{}, min: 99}
	s, rec := start(t, map[string]*config.Service{"web": readyService(2)}, hooks)
	eventually(t, 15*time.Second, "2 ready", func() bool { return hooks.count() == 2 })
	hooks.track()
	up := readyService(3)
	up.Env = map[string]string{"VERSION": "2"}
	s.Apply(context.Background(), &config.Config{Services: map[string]*config.Service{"web": up}}, config.Change{Changed: []string{"web"}}, "signal:SIGHUP")
	eventually(t, 20*time.Second, "3 ready after the first reload", func() bool {
		return rec.count(medic.EventRolledOut, "web") == 1 && s.Status()[0].Ready == 3
	})
	down := readyService(2)
	down.Env = map[string]string{"VERSION": "3"}
	s.Apply(context.Background(), &config.Config{Services: map[string]*config.Service{"web": down}}, config.Change{Changed: []string{"web"}}, "signal:SIGHUP")
	eventually(t, 20*time.Second, "2 ready after the second reload", func() bool {
		st := s.Status()[0]
		return rec.count(medic.EventRolledOut, "web") == 2 && st.Ready == 2 && len(st.Instances) == 2
	})
	if m := hooks.minSeen(); m < 1 {
		t.Fatalf("ready instances fell to %d during the reloads", m)
	}
	ev, ok := rec.find(medic.EventStopped, "web/2")
	if !ok || ev.Actor != "signal:SIGHUP" || !strings.Contains(ev.Reason, "reload") {
		t.Fatalf("surplus instance's stop recorded as %+v", ev)
	}
}

// TestRestartAndStopRespectBudget: an operator's or a runbook's restart or
// stop of a ready instance waits for the budget and is refused when the
// others stay unready; an instance that is not ready is always allowed out.
func TestRestartAndStopRespectBudget(t *testing.T) {
	defer func(d time.Duration) { supervise.BudgetWait = d }(supervise.BudgetWait)
	supervise.BudgetWait = 300 * time.Millisecond
	dir := t.TempDir()
	svc := readyService(2)
	// web/1 is never ready: its probe looks for a file that web/0's never needs.
	svc.Probes.Readiness = execProbe(`case "$MEDIC_INSTANCE" in web/0) true;; *) test -f `+dir+`/ready;; esac`, 30*time.Millisecond, 1)
	// The ready instance must not look unready because a 30 ms probe was
	// slow on a loaded machine (stopping an unready one is allowed).
	svc.Probes.Readiness.Timeout, svc.Probes.Readiness.FailureThreshold = dur(2*time.Second), 3
	s, _ := start(t, map[string]*config.Service{"web": svc}, nil)
	eventually(t, 15*time.Second, "web/0 ready", func() bool { return instance(s, "web", 0).Ready })
	ctx := context.Background()
	id0, id1 := medic.InstanceID{Service: "web", Index: 0}, medic.InstanceID{Service: "web", Index: 1}
	if err := s.RestartInstance(ctx, id0, "api:bob", "test"); !errors.Is(err, supervise.ErrBudget) {
		t.Fatalf("restart of the only ready instance: err = %v, want ErrBudget", err)
	}
	if err := s.StopInstance(ctx, id0, "runbook:x", "test"); !errors.Is(err, supervise.ErrBudget) {
		t.Fatalf("stop of the only ready instance: err = %v, want ErrBudget", err)
	}
	if !instance(s, "web", 0).Ready {
		t.Fatal("web/0 was taken out despite the refusal")
	}
	if err := s.RestartInstance(ctx, id1, "api:bob", "test"); err != nil {
		t.Fatalf("restart of an unready instance: %v", err)
	}
}

// TestScaleInRespectsBudget: scaling in stops a ready surplus instance only
// while the remaining ones keep min(min_available, n) ready.
func TestScaleInRespectsBudget(t *testing.T) {
	dir := t.TempDir()
	svc := readyService(2)
	svc.Probes.Readiness = execProbe(`case "$MEDIC_INSTANCE" in web/1) true;; *) test -f `+dir+`/ready;; esac`, 30*time.Millisecond, 1)
	// The ready instance must not look unready because a 30 ms probe was
	// slow on a loaded machine (stopping an unready one is allowed).
	svc.Probes.Readiness.Timeout, svc.Probes.Readiness.FailureThreshold = dur(2*time.Second), 3
	s, _ := start(t, map[string]*config.Service{"web": svc}, nil)
	eventually(t, 15*time.Second, "web/1 ready", func() bool { return instance(s, "web", 1).Ready })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := s.Scale(ctx, "web", 1, "api:carol"); !errors.Is(err, supervise.ErrInProgress) {
		t.Fatalf("scale in while only the surplus instance is ready: err = %v, want ErrInProgress", err)
	}
	if !instance(s, "web", 1).Ready {
		t.Fatal("the only ready instance was stopped by a scale-in")
	}
}

// TestScaleRefusesAnotherServicesPorts: scaling out must not give an
// instance a port inside another service's range.
func TestScaleRefusesAnotherServicesPorts(t *testing.T) {
	web, api := service("exec sleep 300"), service("exec sleep 301")
	web.Port, api.Port = 39100, 39102
	s, _ := start(t, map[string]*config.Service{"web": web, "api": api}, nil)
	err := s.Scale(context.Background(), "web", 3, "api:dave")
	if !errors.Is(err, supervise.ErrPortTaken) {
		t.Fatalf("scale onto api's port: err = %v, want ErrPortTaken", err)
	}
	if err := s.Scale(context.Background(), "web", 2, "api:dave"); err != nil {
		t.Fatalf("scale within the free ports: %v", err)
	}
}

// TestReloadStopsReplacedInstancesEvenDetached: with --detach, medic's own
// shutdown leaves processes running, but an instance a reload replaces is
// stopped (it used to be left running beside its successor).
func TestReloadStopsReplacedInstancesEvenDetached(t *testing.T) {
	dir := t.TempDir()
	rec := newRecorder()
	old := service("exec sleep 300")
	cfg := &config.Config{DataDir: dir, Services: map[string]*config.Service{"web": old}}
	s, err := supervise.New(supervise.Options{Config: cfg, LogDir: dir, StateDir: dir, Env: supervise.Env{Emit: rec.emit, Detach: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	eventually(t, 15*time.Second, "running", func() bool { return instance(s, "web", 0).PID != 0 })
	first := instance(s, "web", 0).PID
	next := service("exec sleep 302")
	s.Apply(context.Background(), &config.Config{Services: map[string]*config.Service{"web": next}}, config.Change{Changed: []string{"web"}}, "api:erin")
	eventually(t, 15*time.Second, "replaced", func() bool {
		pid := instance(s, "web", 0).PID
		return pid != 0 && pid != first
	})
	eventually(t, 10*time.Second, "the replaced process stopped", func() bool { return !alive(first) })
	last := instance(s, "web", 0).PID
	cancel()
	<-done
	if !alive(last) {
		t.Fatal("--detach: medic's shutdown stopped the running instance")
	}
	// The next medic (not detached) adopts it; when it stops, the instance
	// and every cgroup it ran in are gone (the detached one left them).
	cg := unifiedCgroupOf(last)
	t.Logf("the instance runs in cgroup %q", cg)
	s2, err := supervise.New(supervise.Options{Config: &config.Config{DataDir: dir, Services: map[string]*config.Service{"web": next}}, LogDir: dir, StateDir: dir, Env: supervise.Env{Emit: rec.emit}})
	if err != nil {
		syscall.Kill(last, syscall.SIGKILL)
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() { s2.Serve(ctx2); close(done2) }()
	t.Cleanup(func() { cancel2(); <-done2 })
	eventually(t, 15*time.Second, "adopted", func() bool { return instance(s2, "web", 0).PID == last })
	cancel2()
	<-done2
	if alive(last) {
		syscall.Kill(last, syscall.SIGKILL)
		t.Fatal("the adopting medic's stop left the instance running")
	}
	if cg != "" {
		if _, err := os.Stat(filepath.Dir(cg)); err == nil {
			t.Fatalf("the cgroups of the stopped instance are left: %s exists", filepath.Dir(cg))
		}
	}
}

// unifiedCgroupOf is the directory of pid's cgroup in the unified hierarchy
// mounted at /sys/fs/cgroup/unified or /sys/fs/cgroup ("" when not found).
func unifiedCgroupOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && p != "/" {
			for _, m := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
				if _, err := os.Stat(filepath.Join(m, p, "cgroup.procs")); err == nil {
					return filepath.Join(m, p)
				}
			}
		}
	}
	return ""
}

// TestStuckRolloutIsRecorded: a new version that never gets ready holds the
// rollout (the old instances keep serving) and a record says what it waits
// for. With room to surge (the default max_surge 1) no old instance stops;
// without (max_surge 0), one is replaced in place within min_available.
func TestStuckRolloutIsRecorded(t *testing.T) {
	defer func(d time.Duration) { supervise.RolloutStuckAfter = d }(supervise.RolloutStuckAfter)
	supervise.RolloutStuckAfter = 200 * time.Millisecond
	for _, c := range []struct {
		surge, ready int
	}{{1, 2}, {0, 1}} {
		hooks := &readyHooks{ready: map[string]bool{}, min: 99}
		s, rec := start(t, map[string]*config.Service{"web": readyService(2)}, hooks)
		eventually(t, 15*time.Second, "2 ready", func() bool { return hooks.count() == 2 })
		bad := readyService(2)
		bad.Deploy = &config.Deploy{MaxSurge: &c.surge}
		bad.Probes.Readiness = execProbe("false", 30*time.Millisecond, 1)
		s.Apply(context.Background(), &config.Config{Services: map[string]*config.Service{"web": bad}}, config.Change{Changed: []string{"web"}}, "api:frank")
		eventually(t, 10*time.Second, "a stuck-rollout record", func() bool { return rec.count(medic.EventRolloutStuck, "web") > 0 })
		ev, _ := rec.find(medic.EventRolloutStuck, "web")
		if ev.Actor != "api:frank" || !strings.Contains(ev.Reason, "to be ready") {
			t.Fatalf("max_surge %d: stuck record = %+v", c.surge, ev)
		}
		if st := s.Status()[0]; st.Ready != c.ready || !strings.Contains(st.Rollout, "to be ready") {
			t.Fatalf("max_surge %d: during a stuck rollout: %d ready, rollout %q; want %d serving and the step shown", c.surge, st.Ready, st.Rollout, c.ready)
		}
	}
}

// TestRollbackAndScaleStopsNameTheirActor: a rollback's and a scale-in's
// stops are recorded with their actor and cause.
func TestRollbackAndScaleStopsNameTheirActor(t *testing.T) {
	s, rec := start(t, map[string]*config.Service{"web": readyService(2)}, nil)
	eventually(t, 15*time.Second, "2 ready", func() bool { return s.Status()[0].Ready == 2 })
	next := readyService(2)
	next.Env = map[string]string{"VERSION": "2"}
	s.Apply(context.Background(), &config.Config{Services: map[string]*config.Service{"web": next}}, config.Change{Changed: []string{"web"}}, "api:gina")
	eventually(t, 15*time.Second, "rolled out", func() bool { return rec.count(medic.EventRolledOut, "web") == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.Rollback(ctx, "web", "runbook:crashloop_rollback"); err != nil {
		t.Fatal(err)
	}
	if err := s.Scale(ctx, "web", 1, "api:hal"); err != nil {
		t.Fatal(err)
	}
	var rollback, scale bool
	rec.mu.Lock()
	for _, ev := range rec.events {
		if ev.Kind != medic.EventStopping {
			continue
		}
		if ev.Actor == shutdownActorForTest {
			t.Errorf("a stop recorded as the supervisor's own: %+v", ev)
		}
		rollback = rollback || ev.Actor == "runbook:crashloop_rollback" && strings.Contains(ev.Reason, "rollback to the previous version")
		scale = scale || ev.Actor == "api:hal" && ev.Target == "web/1" && strings.Contains(ev.Reason, "scale from 2 to 1")
	}
	rec.mu.Unlock()
	if !rollback || !scale {
		t.Fatalf("rollback stop named: %v, scale-in stop named: %v", rollback, scale)
	}
}

const shutdownActorForTest = "supervisor"

// TestRollingSurgeKeepsFullCapacity: with room to surge (a service without
// a port, max_surge 2, min_ready 100ms), a rollout of 3 instances starts new
// copies first and never has fewer than 3 ready; it ends with 3 instances,
// all on the new spec, and the copies stopped.
func TestRollingSurgeKeepsFullCapacity(t *testing.T) {
	hooks := &readyHooks{ready: map[string]bool{}, min: 99}
	s, rec := start(t, map[string]*config.Service{"web": readyService(3)}, hooks)
	eventually(t, 15*time.Second, "3 ready", func() bool { return hooks.count() == 3 })
	before := pids(s, "web")
	hooks.track()
	next := readyService(3)
	two := 2
	next.Deploy = &config.Deploy{MaxSurge: &two, MinReady: config.Duration(100 * time.Millisecond)}
	next.Env = map[string]string{"VERSION": "2"}
	s.Apply(context.Background(), &config.Config{Services: map[string]*config.Service{"web": next}}, config.Change{Changed: []string{"web"}}, "api:ivy")
	eventually(t, 20*time.Second, "rolled out", func() bool { return rec.count(medic.EventRolledOut, "web") == 1 })
	if m := hooks.minSeen(); m < 3 {
		t.Errorf("%d ready at the lowest during the surge rollout, want 3", m)
	}
	if !hooks.seen("web/3") || !hooks.seen("web/4") {
		t.Error("no surge copy (web/3, web/4) was ever ready")
	}
	after := pids(s, "web")
	if len(after) != 3 {
		t.Fatalf("after the rollout: instances %v, want 3", after)
	}
	for i, pid := range after {
		if pid == 0 || pid == before[i] {
			t.Errorf("instance %d: pid %d (before %d): not replaced", i, pid, before[i])
		}
	}
	eventually(t, 10*time.Second, "surge copies out of rotation", func() bool { return !hooks.is("web/3") && !hooks.is("web/4") })
}
