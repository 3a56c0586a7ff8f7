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

	"golang.org/x/sys/unix"

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

// policies counts the threads of process group pgid by scheduling policy
// (every process /proc names with that group, every thread of each).
func policies(t *testing.T, pgid int) (procs int, by map[uint32]int) {
	t.Helper()
	by = map[uint32]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]); f[2] != strconv.Itoa(pgid) {
			continue
		}
		procs++
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			if a, err := unix.SchedGetAttr(tid, 0); err == nil {
				by[a.Policy]++
			}
		}
	}
	return procs, by
}

// With deploy.start_idle a group's instance starts in SCHED_IDLE, and so
// does a process it forks before it is ready; when it becomes ready every
// thread of both is back in SCHED_OTHER. A failed liveness try sets it back
// at once, ready or not.
func TestGroupStartsIdle(t *testing.T) {
	if !supervise.CanRenice() {
		t.Skip("needs CAP_SYS_NICE (root) or an RLIMIT_NICE of 20 to leave SCHED_IDLE")
	}
	hooks := &groupHooks{readyHooks: readyHooks{ready: map[string]bool{}, min: 99}, groups: map[string]string{}}
	s, _ := start(t, map[string]*config.Service{"web": readyService(1)}, hooks)
	eventually(t, 15*time.Second, "web ready", func() bool { return hooks.count() == 1 })
	if _, by := policies(t, pids(s, "web")[0]); by[unix.SCHED_IDLE] != 0 {
		t.Fatalf("the service's own instance has %d threads in SCHED_IDLE", by[unix.SCHED_IDLE])
	}

	dir := t.TempDir()
	fork, forked, gate := filepath.Join(dir, "fork"), filepath.Join(dir, "forked"), filepath.Join(dir, "ready")
	// Once told to (after medic set its policy), the shell forks a sleep,
	// says so, and waits: two processes in the group.
	green := service("i=0; while [ ! -e " + fork + " ] && [ $i -lt 1500 ]; do sleep 0.01; i=$((i+1)); done; sleep 300 & touch " + forked + "; wait")
	green.Probes.Readiness = execProbe("test -e "+gate, 20*time.Millisecond, 1)
	yes := true
	green.Deploy = &config.Deploy{StartIdle: &yes}
	if err := s.StartGroup(context.Background(), "web", "green", green, 1); err != nil {
		t.Fatal(err)
	}
	var pid int
	eventually(t, 15*time.Second, "green started", func() bool {
		pid = s.GroupInstances("web", "green")[0].PID
		return pid != 0
	})
	if err := os.WriteFile(fork, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "green forked", func() bool {
		_, err := os.Stat(forked)
		return err == nil
	})
	if n, by := policies(t, pid); n != 2 || by[unix.SCHED_IDLE] != 2 || len(by) != 1 {
		t.Fatalf("green starting: %d processes, threads by policy %v; want 2 in SCHED_IDLE (%d)", n, by, unix.SCHED_IDLE)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "green ready", func() bool { return s.GroupStatus("web", "green").Ready == 1 })
	if n, by := policies(t, pid); n != 2 || by[unix.SCHED_NORMAL] != 2 || len(by) != 1 {
		t.Fatalf("green ready: %d processes, threads by policy %v; want 2 in SCHED_OTHER", n, by)
	}
	if err := s.StopGroup(context.Background(), "web", "green"); err != nil {
		t.Fatal(err)
	}

	starved := service("exec sleep 300")
	starved.Probes.Readiness = execProbe("false", 20*time.Millisecond, 1)
	starved.Probes.Liveness = execProbe("false", 20*time.Millisecond, 1000)
	starved.Deploy = green.Deploy
	if err := s.StartGroup(context.Background(), "web", "starved", starved, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the starved instance out of SCHED_IDLE", func() bool {
		ins := s.GroupInstances("web", "starved")
		if ins[0].PID == 0 {
			return false
		}
		_, by := policies(t, ins[0].PID)
		return by[unix.SCHED_NORMAL] == 1 && len(by) == 1
	})
	if st := s.GroupStatus("web", "starved"); st.Ready != 0 || st.Restarts != 0 {
		t.Fatalf("starved: %+v", st)
	}
}
