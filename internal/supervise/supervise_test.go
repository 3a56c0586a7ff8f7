package supervise_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/supervise"
)

func dur(d time.Duration) config.Duration { return config.Duration(d) }

// service returns a service config with every default set explicitly and
// short timings for tests.
func service(cmd string) *config.Service {
	jitter := 0.0
	return &config.Service{
		Command:   []string{"sh", "-c", cmd},
		Instances: 1,
		Restart: config.Restart{Policy: "always", Initial: dur(20 * time.Millisecond), Multiplier: 2, Max: dur(200 * time.Millisecond),
			Jitter: &jitter, ResetAfter: dur(time.Minute), CrashLoop: config.CrashLoop{Restarts: 5, Window: dur(time.Minute)}},
		Stop: config.Stop{Signal: "TERM", Grace: dur(2 * time.Second)},
		Logs: config.Logs{MaxSize: 1 << 20, MaxFiles: 2},
	}
}

func execProbe(cmd string, period time.Duration, failures int) *config.Probe {
	return &config.Probe{Exec: &config.ExecProbe{Command: []string{"sh", "-c", cmd}}, Period: dur(period),
		Timeout: dur(period), SuccessThreshold: 1, FailureThreshold: failures}
}

// recorder collects events and lets tests wait for one.
type recorder struct {
	mu     sync.Mutex
	events []medic.Event
	ch     chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1)} }

func (r *recorder) emit(_ context.Context, ev medic.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *recorder) count(kind medic.EventKind, target string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind && (target == "" || e.Target == target) {
			n++
		}
	}
	return n
}

func (r *recorder) find(kind medic.EventKind, target string) (medic.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == kind && (target == "" || e.Target == target) {
			return e, true
		}
	}
	return medic.Event{}, false
}

// start runs a supervisor for services until the test ends.
func start(t *testing.T, svcs map[string]*config.Service, hooks supervise.Hooks) (*supervise.Supervisor, *recorder) {
	t.Helper()
	dir := t.TempDir()
	rec := newRecorder()
	cfg := &config.Config{DataDir: dir, Services: svcs, Path: filepath.Join(dir, "medic.yaml")}
	s, err := supervise.New(supervise.Options{Config: cfg, LogDir: filepath.Join(dir, "logs"),
		Env: supervise.Env{Emit: rec.emit, Hooks: hooks, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("supervisor did not stop within 20s")
		}
	})
	return s, rec
}

// eventually polls cond every 10ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func instance(s *supervise.Supervisor, svc string, i int) supervise.InstanceStatus {
	for _, st := range s.Status() {
		if st.Name == svc && i < len(st.Instances) {
			return st.Instances[i]
		}
	}
	return supervise.InstanceStatus{}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, 15*time.Second, "child pid file "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

func TestCrashRestartsAtOnce(t *testing.T) {
	dir := t.TempDir()
	svc := service(fmt.Sprintf(`if [ -f %[1]s/crashed ]; then exec sleep 300; else touch %[1]s/crashed; exit 3; fi`, dir))
	s, rec := start(t, map[string]*config.Service{"web": svc}, nil)
	eventually(t, 15*time.Second, "restart after crash", func() bool {
		st := instance(s, "web", 0)
		return st.Restarts == 1 && st.PID != 0 && st.State == medic.StateRunning
	})
	st := instance(s, "web", 0)
	if st.LastExit == nil || st.LastExit.Code != 3 {
		t.Fatalf("last exit = %+v, want code 3", st.LastExit)
	}
	ev, ok := rec.find(medic.EventRestart, "web/0")
	if !ok || !strings.Contains(ev.Reason, "at once") || ev.Fields["delay"] != "0s" {
		t.Fatalf("restart event = %+v, want an immediate restart with its reason", ev)
	}
}

func TestStopKillsWholeProcessGroup(t *testing.T) {
	dir := t.TempDir()
	// The main process ignores SIGTERM and forks a grandchild that would outlive it.
	svc := service(fmt.Sprintf(`trap '' TERM; sleep 300 & echo $! > %s/child; wait`, dir))
	svc.Stop.Grace = dur(300 * time.Millisecond)
	s, _ := start(t, map[string]*config.Service{"web": svc}, nil)
	child := readPID(t, filepath.Join(dir, "child"))
	eventually(t, 15*time.Second, "instance running", func() bool { return instance(s, "web", 0).State == medic.StateRunning })
	main := instance(s, "web", 0).PID
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := s.StopInstance(ctx, medic.InstanceID{Service: "web", Index: 0}, "test", "stop"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took < 300*time.Millisecond {
		t.Fatalf("stop took %v: the grace period was not honoured", took)
	}
	eventually(t, 10*time.Second, "main and grandchild gone", func() bool { return !alive(main) && !alive(child) })
	st := instance(s, "web", 0)
	if st.State != medic.StateStopped || st.LastExit == nil || !strings.Contains(st.LastExit.Reason, "SIGKILL after") {
		t.Fatalf("status = %s, exit %+v; want stopped by SIGKILL after grace", st.State, st.LastExit)
	}
}

func TestCrashLeavesNoOrphans(t *testing.T) {
	dir := t.TempDir()
	// The main process forks a grandchild and exits: the grandchild must not survive it.
	svc := service(fmt.Sprintf(`sleep 300 & echo $! > %s/child; sleep 0.2; exit 1`, dir))
	svc.Restart.Policy = "never"
	s, _ := start(t, map[string]*config.Service{"web": svc}, nil)
	child := readPID(t, filepath.Join(dir, "child"))
	eventually(t, 15*time.Second, "instance stopped by policy", func() bool { return instance(s, "web", 0).State == medic.StateStopped })
	eventually(t, 10*time.Second, "orphaned grandchild killed", func() bool { return !alive(child) })
}

func TestCrashLoopKeepsEvidence(t *testing.T) {
	svc := service(`echo "fatal: cannot open db.sqlite" >&2; exit 1`)
	svc.Restart.CrashLoop = config.CrashLoop{Restarts: 3, Window: dur(time.Minute)}
	s, rec := start(t, map[string]*config.Service{"web": svc}, nil)
	eventually(t, 10*time.Second, "crash loop", func() bool { return rec.count(medic.EventCrashLoop, "web/0") > 0 })
	ev, _ := rec.find(medic.EventCrashLoop, "web/0")
	if !strings.Contains(ev.Fields["stderr_tail"], "cannot open db.sqlite") || !strings.Contains(ev.Reason, "crash loop") {
		t.Fatalf("crash loop event lacks evidence: %+v", ev)
	}
	eventually(t, 15*time.Second, "state crashloop", func() bool {
		st := instance(s, "web", 0)
		return st.State == medic.StateCrashLoop && strings.Contains(st.Stderr, "cannot open")
	})
}

func TestLivenessFailureRestarts(t *testing.T) {
	dir := t.TempDir()
	svc := service("exec sleep 300")
	svc.Probes.Liveness = execProbe(fmt.Sprintf("test ! -f %s/hung", dir), 50*time.Millisecond, 2)
	svc.Stop.Grace = dur(500 * time.Millisecond)
	s, rec := start(t, map[string]*config.Service{"web": svc}, nil)
	eventually(t, 15*time.Second, "running", func() bool { return instance(s, "web", 0).State == medic.StateRunning })
	first := instance(s, "web", 0).PID
	if err := os.WriteFile(filepath.Join(dir, "hung"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "restart after liveness failure", func() bool { return rec.count(medic.EventRestart, "web/0") > 0 })
	ev, _ := rec.find(medic.EventRestart, "web/0")
	if !strings.Contains(ev.Reason, "liveness probe failed") {
		t.Fatalf("restart reason %q does not name the liveness failure", ev.Reason)
	}
	os.Remove(filepath.Join(dir, "hung"))
	eventually(t, 15*time.Second, "new process running", func() bool {
		st := instance(s, "web", 0)
		return st.PID != 0 && st.PID != first && st.State == medic.StateRunning
	})
	if alive(first) {
		t.Fatalf("old process %d still alive", first)
	}
}

func TestReadinessFailureDoesNotRestart(t *testing.T) {
	dir := t.TempDir()
	svc := service("exec sleep 300")
	svc.Probes.Readiness = execProbe(fmt.Sprintf("test ! -f %s/unready", dir), 50*time.Millisecond, 1)
	hooks := &readyHooks{ready: map[string]bool{}}
	s, rec := start(t, map[string]*config.Service{"web": svc}, hooks)
	eventually(t, 15*time.Second, "ready", func() bool { return instance(s, "web", 0).Ready && hooks.is("web/0") })
	pid := instance(s, "web", 0).PID
	os.WriteFile(filepath.Join(dir, "unready"), nil, 0o644)
	eventually(t, 15*time.Second, "not ready", func() bool { return !instance(s, "web", 0).Ready && !hooks.is("web/0") })
	time.Sleep(300 * time.Millisecond) // several more failing probes: still no restart
	if st := instance(s, "web", 0); st.PID != pid || st.Restarts != 0 || rec.count(medic.EventRestart, "") != 0 {
		t.Fatalf("readiness failure restarted the instance: %+v", st)
	}
	os.Remove(filepath.Join(dir, "unready"))
	eventually(t, 15*time.Second, "ready again", func() bool { return instance(s, "web", 0).Ready })
}

func TestStartupGatesAndRestarts(t *testing.T) {
	dir := t.TempDir()
	svc := service("exec sleep 300")
	// Startup never passes: after 3 failures the instance is restarted; liveness
	// (which would fail at once) must never run before startup passed.
	svc.Probes.Startup = execProbe(fmt.Sprintf("test -f %s/started", dir), 50*time.Millisecond, 3)
	svc.Probes.Liveness = execProbe("exit 1", 50*time.Millisecond, 1)
	s, rec := start(t, map[string]*config.Service{"web": svc}, nil)
	eventually(t, 15*time.Second, "startup failure restart", func() bool { return rec.count(medic.EventRestart, "web/0") > 0 })
	ev, _ := rec.find(medic.EventRestart, "web/0")
	if !strings.Contains(ev.Reason, "startup probe failed") {
		t.Fatalf("restart reason %q: want the startup probe", ev.Reason)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, e := range rec.events {
		if e.Kind == medic.EventProbe && e.Fields["probe"] == "liveness" {
			t.Fatalf("liveness ran before startup passed: %+v", e)
		}
	}
	if st := instance(s, "web", 0); st.Started {
		t.Fatalf("instance marked started although its startup probe never passed: %+v", st)
	}
}

func TestDependsOnWaitsForReady(t *testing.T) {
	dir := t.TempDir()
	db := service("exec sleep 300")
	db.Probes.Readiness = execProbe(fmt.Sprintf("test -f %s/db-ready", dir), 30*time.Millisecond, 1)
	web := service("exec sleep 300")
	web.DependsOn = []string{"db"}
	s, _ := start(t, map[string]*config.Service{"db": db, "web": web}, nil)
	eventually(t, 15*time.Second, "db running", func() bool { return instance(s, "db", 0).State == medic.StateRunning })
	time.Sleep(200 * time.Millisecond)
	if st := instance(s, "web", 0); st.State != medic.StatePending || st.PID != 0 {
		t.Fatalf("web started before db was ready: %+v", st)
	}
	os.WriteFile(filepath.Join(dir, "db-ready"), nil, 0o644)
	eventually(t, 15*time.Second, "web started after db ready", func() bool { return instance(s, "web", 0).PID != 0 })
}

func TestRollingRestartRespectsBudget(t *testing.T) {
	svc := service("exec sleep 300")
	svc.Instances = 3
	two := 2
	svc.MinAvailable = &two
	// As readyService: a probe of `true` slow on a loaded machine must not
	// make an instance unready (an unready instance may be restarted
	// whatever the budget, which made the refusal below pass as nil).
	svc.Probes.Readiness = execProbe("true", 30*time.Millisecond, 3)
	svc.Probes.Readiness.Timeout = dur(2 * time.Second)
	hooks := &readyHooks{ready: map[string]bool{}, min: 99}
	s, _ := start(t, map[string]*config.Service{"web": svc}, hooks)
	eventually(t, 15*time.Second, "3 ready", func() bool { return hooks.count() == 3 })
	hooks.track()
	before := map[int]int{}
	for i := 0; i < 3; i++ {
		before[i] = instance(s, "web", i).PID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.RollingRestart(ctx, "web", "test", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if st := instance(s, "web", i); st.PID == before[i] || !st.Ready {
			t.Fatalf("instance %d not restarted or not ready: %+v", i, st)
		}
	}
	if m := hooks.minSeen(); m < 2 {
		t.Fatalf("ready instances fell to %d during the rolling restart, min_available is 2", m)
	}
	// With min_available 3 nothing can be restarted: the budget refuses.
	three := 3
	svc.MinAvailable = &three
	s2, _ := start(t, map[string]*config.Service{"api": svc}, nil)
	eventually(t, 15*time.Second, "3 ready", func() bool { return s2.Status()[0].Ready == 3 })
	err := s2.RollingRestart(ctx, "api", "test", 300*time.Millisecond)
	if !errors.Is(err, supervise.ErrBudget) {
		t.Fatalf("rolling restart with min_available = instances: err = %v, want ErrBudget", err)
	}
}

// readyHooks tracks readiness as a proxy would see it.
type readyHooks struct {
	mu       sync.Mutex
	ready    map[string]bool
	ever     map[string]bool // ids that were ready once
	tracking bool
	min      int
}

func (h *readyHooks) Ready(id medic.InstanceID, port int, ready bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready[id.String()] = ready
	if ready {
		if h.ever == nil {
			h.ever = map[string]bool{}
		}
		h.ever[id.String()] = true
	}
	if h.tracking {
		if n := h.countLocked(); n < h.min {
			h.min = n
		}
	}
}

func (h *readyHooks) Drain(ctx context.Context, id medic.InstanceID) error { return nil }
func (h *readyHooks) Gone(id medic.InstanceID)                             {}

func (h *readyHooks) is(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ready[id]
}

func (h *readyHooks) seen(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ever[id]
}

func (h *readyHooks) countLocked() int {
	n := 0
	for _, r := range h.ready {
		if r {
			n++
		}
	}
	return n
}

func (h *readyHooks) count() int { h.mu.Lock(); defer h.mu.Unlock(); return h.countLocked() }
func (h *readyHooks) track()     { h.mu.Lock(); h.tracking, h.min = true, h.countLocked(); h.mu.Unlock() }
func (h *readyHooks) minSeen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.min
}
