package supervise_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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

// A medic that died (here: a detached one, which leaves its processes as a
// SIGKILLed one does) left an instance with a setsid escapee; the next medic
// on the same data dir finds both.
func TestNextMedicFindsEscapeesOfTheLast(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir, Path: filepath.Join(dir, "medic.yaml"),
		Services: map[string]*config.Service{"web": escapee(dir)}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func(detach bool, until func(*supervise.Supervisor) bool) {
		s, err := supervise.New(supervise.Options{Config: cfg, LogDir: filepath.Join(dir, "logs"), StateDir: dir,
			Env: supervise.Env{Logger: log, Detach: detach}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Serve(ctx); close(done) }()
		eventually(t, 15*time.Second, "supervisor reached its state", func() bool { return until(s) })
		cancel()
		<-done
	}
	run(true, func(s *supervise.Supervisor) bool { return instance(s, "web", 0).State == medic.StateRunning })
	child := readPID(t, filepath.Join(dir, "child"))
	os.Remove(filepath.Join(dir, "child"))
	if !alive(child) {
		t.Fatal("the detached medic's escapee is already gone")
	}
	run(false, func(s *supervise.Supervisor) bool { return instance(s, "web", 0).State == medic.StateRunning })
	eventually(t, 5*time.Second, "escapee of the previous medic stopped", func() bool { return !alive(child) })
}
