package supervise_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/supervise"
)

// niceOf reads the nice value of pid's main thread (/proc/PID/stat, field 19).
func niceOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // field 3 on
	n, err := strconv.Atoi(f[16])
	if err != nil {
		t.Fatalf("nice of %d in %q: %v", pid, s, err)
	}
	return n
}

// A group's instance starts at deploy.start_nice and returns to medic's own
// nice (the test process's, 0 unless the test runs under nice) when it
// becomes ready; the service's own instances start at medic's; a command
// that reniced itself is left at its value.
func TestGroupStartsAtStartNice(t *testing.T) {
	if !supervise.CanRenice() {
		t.Skip("needs CAP_SYS_NICE (root) or an RLIMIT_NICE of 20 to raise a nice value back to 0")
	}
	hooks := &groupHooks{readyHooks: readyHooks{ready: map[string]bool{}, min: 99}, groups: map[string]string{}}
	base := niceOf(t, os.Getpid())
	s, _ := start(t, map[string]*config.Service{"web": readyService(1)}, hooks)
	eventually(t, 15*time.Second, "web ready", func() bool { return hooks.count() == 1 })
	if n := niceOf(t, pids(s, "web")[0]); n != base {
		t.Fatalf("the service's own instance runs at nice %d, want %d (medic's)", n, base)
	}

	gate := filepath.Join(t.TempDir(), "ready")
	green := service("exec sleep 300")
	green.Probes.Readiness = execProbe("test -e "+gate, 20*time.Millisecond, 1)
	seven := 7
	green.Deploy = &config.Deploy{StartNice: &seven}
	if err := s.StartGroup(context.Background(), "web", "green", green, 1); err != nil {
		t.Fatal(err)
	}
	var pid int
	eventually(t, 15*time.Second, "green started", func() bool {
		ins := s.GroupInstances("web", "green")
		pid = ins[0].PID
		return pid != 0
	})
	if n := niceOf(t, pid); n != base+7 {
		t.Fatalf("green starts at nice %d, want %d", n, base+7)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "green ready", func() bool { return s.GroupStatus("web", "green").Ready == 1 })
	if n := niceOf(t, pid); n != base {
		t.Fatalf("green ready at nice %d, want %d", n, base)
	}
	if err := s.StopGroup(context.Background(), "web", "green"); err != nil {
		t.Fatal(err)
	}

	// A command that renices itself keeps its own choice: 7 + 3, or 0 + 3
	// when nice(1) read its priority before medic set 7 (glibc's nice() is
	// getpriority then setpriority); never medic's 0.
	reniced := filepath.Join(t.TempDir(), "reniced")
	own := service("exec nice -n 3 sh -c 'touch " + reniced + "; exec sleep 300'")
	own.Probes.Readiness = execProbe("test -e "+reniced, 20*time.Millisecond, 1) // ready once it reniced itself
	own.Deploy = green.Deploy
	if err := s.StartGroup(context.Background(), "web", "own", own, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "own ready", func() bool { return s.GroupStatus("web", "own").Ready == 1 })
	if n := niceOf(t, s.GroupInstances("web", "own")[0].PID); n != base+10 && n != base+3 {
		t.Fatalf("a command that reniced itself (to 10 or 3) runs at nice %d once ready", n)
	}

	// A failed liveness try sets it back at once (a start starved of CPU
	// must not fail its probes for the start priority), ready or not.
	starved := service("exec sleep 300")
	starved.Probes.Readiness = execProbe("false", 20*time.Millisecond, 1)
	starved.Probes.Liveness = execProbe("false", 20*time.Millisecond, 1000)
	starved.Deploy = green.Deploy
	if err := s.StartGroup(context.Background(), "web", "starved", starved, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the starved instance back at medic's nice", func() bool {
		ins := s.GroupInstances("web", "starved")
		return ins[0].PID != 0 && niceOf(t, ins[0].PID) == base
	})
	if st := s.GroupStatus("web", "starved"); st.Ready != 0 || st.Restarts != 0 {
		t.Fatalf("starved: %+v", st)
	}
}
