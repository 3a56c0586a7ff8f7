package supervise_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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

// requireCgroups skips the test with the reason cgroups cannot be used here
// (not root, no writable cgroup2 hierarchy), or fails it in CI.
func requireCgroups(t *testing.T) {
	t.Helper()
	if err := supervise.CgroupSupport(); err != nil {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("cgroups are required (MEDIC_REQUIRE_INTEGRATION=1): %v", err)
		}
		t.Skipf("cgroups cannot be used here: %v", err)
	}
}

// escapee is a service whose main process starts a grandchild in its own
// session (setsid: out of the process group) and writes its pid to dir/child.
func escapee(dir string) *config.Service {
	return service(fmt.Sprintf(`setsid sleep 300 & echo $! > %s/child; exec sleep 300`, dir))
}

func TestStopKillsSetsidEscapee(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	s, _ := start(t, map[string]*config.Service{"web": escapee(dir)}, nil)
	child := readPID(t, filepath.Join(dir, "child"))
	eventually(t, 15*time.Second, "instance running", func() bool { return instance(s, "web", 0).State == medic.StateRunning })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.StopInstance(ctx, medic.InstanceID{Service: "web", Index: 0}, "test", "stop"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "setsid escapee stopped with its instance", func() bool { return !alive(child) })
}

func TestCrashKillsSetsidEscapee(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	svc := service(fmt.Sprintf(`setsid sleep 300 & echo $! > %s/child; sleep 0.2; exit 1`, dir))
	svc.Restart.Policy = "never"
	s, _ := start(t, map[string]*config.Service{"web": svc}, nil)
	child := readPID(t, filepath.Join(dir, "child"))
	eventually(t, 15*time.Second, "instance stopped by policy", func() bool { return instance(s, "web", 0).State == medic.StateStopped })
	eventually(t, 5*time.Second, "setsid escapee of the crashed instance killed", func() bool { return !alive(child) })
}

// medicRun runs a supervisor on dir until until holds, then stops it
// (detached: leaving its processes as a SIGKILLed medic does).
func medicRun(t *testing.T, dir string, svcs map[string]*config.Service, detach bool, rec *recorder, until func(*supervise.Supervisor) bool) {
	t.Helper()
	medicRunWith(t, "", dir, svcs, detach, rec, until)
}

// medicRunWith is medicRun with Options.Cgroups set to mode.
func medicRunWith(t *testing.T, mode, dir string, svcs map[string]*config.Service, detach bool, rec *recorder, until func(*supervise.Supervisor) bool) {
	t.Helper()
	cfg := &config.Config{DataDir: dir, Path: filepath.Join(dir, "medic.yaml"), Services: svcs}
	env := supervise.Env{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Detach: detach}
	if rec != nil {
		env.Emit = rec.emit
	}
	s, err := supervise.New(supervise.Options{Config: cfg, LogDir: filepath.Join(dir, "logs"), StateDir: dir, Env: env, Cgroups: mode})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	eventually(t, 15*time.Second, "supervisor reached its state", func() bool { return until(s) })
}

func running(pid *int) func(*supervise.Supervisor) bool {
	return func(s *supervise.Supervisor) bool {
		st := instance(s, "web", 0)
		if pid != nil {
			*pid = st.PID
		}
		return st.State == medic.StateRunning
	}
}

// A medic that died (here: a detached one, which leaves its processes as a
// SIGKILLed one does) left an instance with a setsid escapee; the next medic
// on the same data dir adopts the same process (no restart, same start time)
// and, when it stops the instance, the escapee goes with it.
func TestNextMedicAdoptsInsteadOfReplacing(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	svcs := map[string]*config.Service{"web": escapee(dir)}
	var pid1, pid2 int
	medicRun(t, dir, svcs, true, nil, running(&pid1))
	child := readPID(t, filepath.Join(dir, "child"))
	rec := newRecorder()
	var st supervise.InstanceStatus
	medicRun(t, dir, svcs, false, rec, func(s *supervise.Supervisor) bool {
		st = instance(s, "web", 0)
		pid2 = st.PID
		return st.State == medic.StateRunning
	})
	if pid2 != pid1 || st.Restarts != 0 {
		t.Fatalf("after the restart of medic: pid %d (was %d), %d restarts; want the same process adopted", pid2, pid1, st.Restarts)
	}
	if ev, ok := rec.find(medic.EventAdopted, "web/0"); !ok || !strings.Contains(ev.Reason, "same process") {
		t.Fatalf("no audited adoption: %+v", ev)
	}
	eventually(t, 5*time.Second, "escapee stopped with the adopted instance", func() bool { return !alive(child) && !alive(pid1) })
}

// A changed command is not adopted: the old process (and its escapee) is
// stopped, a new one started; a service no longer configured is stopped.
func TestNextMedicReplacesChangedAndStopsRemoved(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	old := escapee(dir)
	gone := service("exec sleep 301")
	var pid1 int
	medicRun(t, dir, map[string]*config.Service{"web": old, "gone": gone}, true, nil, func(s *supervise.Supervisor) bool {
		return running(&pid1)(s) && instance(s, "gone", 0).State == medic.StateRunning
	})
	child := readPID(t, filepath.Join(dir, "child"))
	b, _ := os.ReadFile(filepath.Join(dir, "processes.json"))
	if !strings.Contains(string(b), `"gone/0"`) {
		t.Fatalf("record lacks gone/0: %s", b)
	}
	gonePID := recordedPID(t, b, "gone/0")
	changed := service(fmt.Sprintf(`setsid sleep 302 & echo $! > %s/child2; exec sleep 300`, dir))
	rec := newRecorder()
	var pid2 int
	medicRun(t, dir, map[string]*config.Service{"web": changed}, false, rec, func(s *supervise.Supervisor) bool {
		return running(&pid2)(s) && !alive(child) && !alive(gonePID)
	})
	if pid2 == pid1 {
		t.Fatal("a changed command was adopted")
	}
	if _, ok := rec.find(medic.EventLeftover, "web/0"); !ok {
		t.Fatal("the replaced process was stopped without an audited reason")
	}
	if _, ok := rec.find(medic.EventLeftover, "gone/0"); !ok {
		t.Fatal("the removed service's process was stopped without an audited reason")
	}
}

func recordedPID(t *testing.T, b []byte, id string) int {
	t.Helper()
	var m map[string]struct {
		PGID int `json:"pgid"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m[id].PGID == 0 {
		t.Fatalf("record %s: %v", b, err)
	}
	return m[id].PGID
}

// A process group frozen with SIGSTOP (the hang drill) is stopped by the
// liveness probe; the next process, started in the same cgroup, must live.
func TestRestartAfterStoppedGroupLives(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	svc := service(fmt.Sprintf(`echo $$ > %s/pid.$$; exec sleep 300`, dir))
	svc.Stop.Grace = dur(100 * time.Millisecond)
	svc.Probes.Liveness = execProbe(fmt.Sprintf(`! test -f %s/hang`, dir), 50*time.Millisecond, 2)
	svc.Probes.Liveness.Timeout = dur(5 * time.Second) // a loaded machine must not fail it by timeout
	s, _ := start(t, map[string]*config.Service{"web": svc}, nil)
	eventually(t, 15*time.Second, "instance running", func() bool { return instance(s, "web", 0).State == medic.StateRunning })
	first := instance(s, "web", 0).PID
	syscall.Kill(-first, syscall.SIGSTOP)
	os.WriteFile(filepath.Join(dir, "hang"), nil, 0o644)
	eventually(t, 10*time.Second, "liveness restart", func() bool { return instance(s, "web", 0).Restarts >= 1 })
	os.Remove(filepath.Join(dir, "hang"))
	var second int
	eventually(t, 10*time.Second, "new process running", func() bool {
		st := instance(s, "web", 0)
		second = st.PID
		return st.State == medic.StateRunning && st.PID != 0 && st.PID != first
	})
	time.Sleep(500 * time.Millisecond)
	if st := instance(s, "web", 0); st.PID != second || !alive(second) {
		t.Fatalf("the process after the restart died: pid %d (was %d), %d restarts, last exit %+v", st.PID, second, st.Restarts, st.LastExit)
	}
}

// Leftovers that no configured instance adopts are stopped in parallel, each
// within its own grace: two that ignore SIGTERM with a 1s grace take about
// 1s, not 2s (the issue measured 13.4s before any service started).
func TestLeftoversStoppedInParallel(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	stubborn := func(name string) *config.Service {
		svc := service(fmt.Sprintf(`trap '' TERM; echo $$ > %s/%s; exec sleep 300`, dir, name))
		svc.Stop.Grace = dur(time.Second)
		return svc
	}
	medicRun(t, dir, map[string]*config.Service{"a": stubborn("a"), "b": stubborn("b")}, true, nil, func(s *supervise.Supervisor) bool {
		return instance(s, "a", 0).State == medic.StateRunning && instance(s, "b", 0).State == medic.StateRunning
	})
	pa, pb := readPID(t, filepath.Join(dir, "a")), readPID(t, filepath.Join(dir, "b"))
	rec := newRecorder()
	t0 := time.Now()
	medicRun(t, dir, map[string]*config.Service{}, false, rec, func(s *supervise.Supervisor) bool { return !alive(pa) && !alive(pb) })
	took := time.Since(t0)
	if took > 1800*time.Millisecond {
		t.Fatalf("two leftovers with a 1s grace took %v to stop: not in parallel", took)
	}
	if rec.count(medic.EventLeftover, "") != 2 {
		t.Fatalf("%d audited leftover stops, want 2", rec.count(medic.EventLeftover, ""))
	}
}

// An instance that was ready under the previous medic is ready at once when
// the next medic adopts it (before any probe of its own: the proxy routes to
// it at adoption), and stays so only until its own readiness probe fails.
func TestAdoptedInstanceKeepsItsReadiness(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	flag := filepath.Join(dir, "ready")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	svc := func(initialDelay time.Duration) map[string]*config.Service {
		s := service("exec sleep 300")
		s.Probes.Readiness = execProbe("test -f "+flag, 100*time.Millisecond, 1)
		s.Probes.Readiness.Timeout = dur(2 * time.Second)
		s.Probes.Readiness.InitialDelay = dur(initialDelay)
		return map[string]*config.Service{"web": s}
	}
	var pid1, pid2 int
	medicRun(t, dir, svc(0), true, nil, func(s *supervise.Supervisor) bool {
		st := instance(s, "web", 0)
		pid1 = st.PID
		return st.Ready
	})
	defer func() {
		if alive(pid1) {
			syscall.Kill(pid1, syscall.SIGKILL)
		}
	}()
	// The next medic's readiness probe would not run for an hour: the
	// instance is ready from the record alone.
	medicRun(t, dir, svc(time.Hour), true, nil, func(s *supervise.Supervisor) bool {
		st := instance(s, "web", 0)
		pid2 = st.PID
		return st.PID == pid1 && st.Ready
	})
	if pid2 != pid1 {
		t.Fatalf("pid %d after the restart of medic, want %d adopted", pid2, pid1)
	}
	// Not ready any more: the next medic's first failed probe says so.
	os.Remove(flag)
	medicRun(t, dir, svc(0), false, nil, func(s *supervise.Supervisor) bool {
		st := instance(s, "web", 0)
		return st.PID == pid1 && !st.Ready && st.Probes[medic.ProbeReadiness].Health == medic.HealthFailure
	})
}

// The pure cgroup v2 path of limits: where the unified hierarchy offers the
// memory and pids controllers, an instance's own v2 cgroup carries
// memory.max and pids.max. Hybrid hosts (memory and pids bound to v1) skip
// it: no private cgroup2 mount can get those controllers there; the v1 path
// is exercised by e2e TestLimitsOOMAndForkBomb. MEDIC_REQUIRE_CGROUP_V2=1
// makes the skip a failure (a pure-v2 CI host).
func TestLimitsThroughCgroupV2(t *testing.T) {
	requireCgroups(t)
	if err := supervise.CgroupV2LimitSupport(); err != nil {
		if os.Getenv("MEDIC_REQUIRE_CGROUP_V2") == "1" {
			t.Fatalf("the cgroup v2 limits path is required (MEDIC_REQUIRE_CGROUP_V2=1): %v", err)
		}
		t.Skipf("the pure cgroup v2 limits path cannot run here: %v; a controller is attached to one hierarchy at a time, and a private cgroup2 mount (even with unshare -m -C) shows the same controllers, so only a pure-v2 host exercises it", err)
	}
	dir := t.TempDir()
	svc := service("exec sleep 300")
	svc.Limits = &config.ResourceLimits{Memory: 64 << 20, Pids: 32}
	var pid int
	var cg, mem, pids string
	medicRun(t, dir, map[string]*config.Service{"web": svc}, false, nil, func(s *supervise.Supervisor) bool {
		pid = instance(s, "web", 0).PID
		if pid == 0 {
			return false
		}
		cg = unifiedCgroupOf(pid)
		m, _ := os.ReadFile(filepath.Join(cg, "memory.max"))
		p, _ := os.ReadFile(filepath.Join(cg, "pids.max"))
		mem, pids = strings.TrimSpace(string(m)), strings.TrimSpace(string(p))
		return mem != "" && pids != ""
	})
	if mem != "67108864" || pids == "max" || pids == "" {
		t.Fatalf("instance cgroup %s: memory.max %q, pids.max %q; want 67108864 and a bound", cg, mem, pids)
	}
}

// A medic that died (detached here) left an instance and its setsid
// escapee in its cgroups; RemoveTreeOf (for a caller that starts no medic
// there again) kills both and removes the tree, which Trees no longer lists.
func TestRemoveTreeOfKillsAndRemoves(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	var pid int
	medicRun(t, dir, map[string]*config.Service{"web": escapee(dir)}, true, nil, running(&pid))
	child := readPID(t, filepath.Join(dir, "child"))
	tree := ""
	for _, d := range supervise.Trees() {
		ps, _ := filepath.Glob(filepath.Join(d, "*", "cgroup.procs"))
		for _, p := range ps {
			if b, _ := os.ReadFile(p); strings.Contains("\n"+string(b), fmt.Sprintf("\n%d\n", pid)) {
				tree = d
			}
		}
	}
	if tree == "" || !supervise.TreePopulated(tree) {
		t.Fatalf("no populated medic-* tree in %v holds the instance %d", supervise.TreeParents(), pid)
	}
	if n := supervise.RemoveTreeOf(dir); n != 2 {
		t.Fatalf("RemoveTreeOf killed %d processes, want 2 (the instance and its escapee)", n)
	}
	eventually(t, 5*time.Second, "instance and escapee gone", func() bool { return !alive(pid) && !alive(child) })
	if _, err := os.Stat(tree); !os.IsNotExist(err) {
		t.Fatalf("tree %s still there after RemoveTreeOf: %v", tree, err)
	}
}

// A previous medic on this data dir ran from other cgroups (a shell, then
// systemd): its record names a run cgroup in a medic-* tree that is not this
// medic's. The run is gone; the next medic removes the emptied tree instead
// of leaving it for good.
func TestForeignTreeOfAPreviousMedicIsRemoved(t *testing.T) {
	requireCgroups(t)
	parents := supervise.TreeParents()
	if len(parents) == 0 {
		t.Fatal("no cgroup parent for medic trees")
	}
	foreign := filepath.Join(parents[0], fmt.Sprintf("medic-foreign-%d", os.Getpid()))
	run := filepath.Join(foreign, "web.0.previous")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { supervise.RemoveEmptyTree(foreign) })
	dir := t.TempDir()
	// A pid that cannot be alive: above the kernel's maximum.
	rec := fmt.Sprintf(`{"web/0": {"pgid": 4194305, "start": 1, "cgroup_mount": %q, "cgroup": %q, "spec": "other"}}`,
		parents[0], "/"+filepath.Base(foreign)+"/web.0.previous")
	if err := os.WriteFile(filepath.Join(dir, "processes.json"), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	medicRun(t, dir, map[string]*config.Service{"web": service("exec sleep 300")}, false, nil, running(nil))
	if _, err := os.Stat(foreign); !os.IsNotExist(err) {
		t.Fatalf("the previous medic's tree %s is still there: %v", foreign, err)
	}
}
