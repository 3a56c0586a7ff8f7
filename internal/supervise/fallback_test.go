package supervise_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/supervise"
)

// requireV1 skips with the reason when no v1 hierarchy can track instances
// here (none mounted, not root), and fails in CI where one is mounted.
func requireV1(t *testing.T) {
	t.Helper()
	if err := supervise.V1TrackingSupport(); err != nil {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" && os.Getenv("MEDIC_CGROUP_V1") == "1" {
			t.Fatalf("cgroup v1 tracking is required (MEDIC_CGROUP_V1=1): %v", err)
		}
		t.Skipf("no cgroup v1 hierarchy can track instances here: %v", err)
	}
}

// v1Cgroups lists the v1 cgroups (of every hierarchy) holding pid.
func v1Cgroups(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && (f[1] == "pids" || f[1] == "freezer") {
			out = append(out, f[1]+":"+f[2])
		}
	}
	return strings.Join(out, " ")
}

// Without cgroup v2 (cgroups: v1), every instance runs in its own cgroup of
// the v1 pids (or freezer) hierarchy, entered at its fork: a setsid escapee is
// in it and is stopped with its instance; a medic that died leaves a record
// by which the next one adopts the instance and, once it stops it, the
// escapee goes too.
func TestV1TrackingFindsEscapees(t *testing.T) {
	requireV1(t)
	dir := t.TempDir()
	svcs := map[string]*config.Service{"web": escapee(dir)}
	var pid1 int
	medicRunWith(t, supervise.CgroupsV1, dir, svcs, true, nil, running(&pid1))
	child := readPID(t, filepath.Join(dir, "child"))
	if cg := v1Cgroups(child); !strings.Contains(cg, "/medic-") {
		t.Fatalf("the setsid escapee is in %q, not in its instance's v1 cgroup", cg)
	}
	if cg1, cg2 := v1Cgroups(pid1), v1Cgroups(child); cg1 != cg2 {
		t.Fatalf("instance in %q, its escapee in %q", cg1, cg2)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "processes.json"))
	if !strings.Contains(string(b), `"cgroups_v1"`) {
		t.Fatalf("the record lacks the run's v1 cgroup: %s", b)
	}
	rec := newRecorder()
	var pid2 int
	medicRunWith(t, supervise.CgroupsV1, dir, svcs, false, rec, running(&pid2))
	if pid2 != pid1 {
		t.Fatalf("pid %d after the restart of medic, was %d: not adopted", pid2, pid1)
	}
	eventually(t, 5*time.Second, "escapee stopped with the adopted instance", func() bool { return !alive(child) && !alive(pid1) })

	// A removed service's leftovers are found through the record, escapee included.
	medicRunWith(t, supervise.CgroupsV1, dir, svcs, true, nil, running(&pid1))
	child = readPID(t, filepath.Join(dir, "child"))
	rec = newRecorder()
	medicRunWith(t, supervise.CgroupsV1, dir, map[string]*config.Service{}, false, rec, func(*supervise.Supervisor) bool { return !alive(child) && !alive(pid1) })
	if ev, ok := rec.find(medic.EventLeftover, "web/0"); !ok || !strings.Contains(ev.Reason, "cgroup v1") {
		t.Fatalf("leftover stop recorded as %+v, want it to name the v1 cgroup", ev)
	}
}

// Without any cgroup (cgroups: none) the record of every process group id
// with its start time still finds what a dead medic left: the next medic
// stops the group of a service no longer configured (a setsid escapee is not
// found: the documented limit of this mode).
func TestNoCgroupsReapsRecordedGroups(t *testing.T) {
	dir := t.TempDir()
	svc := service(fmt.Sprintf(`sleep 303 & echo $! > %s/grandchild; exec sleep 300`, dir))
	var pid1 int
	medicRunWith(t, supervise.CgroupsNone, dir, map[string]*config.Service{"web": svc}, true, nil, running(&pid1))
	gc := readPID(t, filepath.Join(dir, "grandchild"))
	b, _ := os.ReadFile(filepath.Join(dir, "processes.json"))
	if strings.Contains(string(b), `"cgroup`) || !strings.Contains(string(b), `"start"`) {
		t.Fatalf("record %s: want a process group and its start time, no cgroup", b)
	}
	rec := newRecorder()
	medicRunWith(t, supervise.CgroupsNone, dir, map[string]*config.Service{}, false, rec, func(*supervise.Supervisor) bool { return !alive(gc) && !alive(pid1) })
	if ev, ok := rec.find(medic.EventLeftover, "web/0"); !ok || !strings.Contains(ev.Reason, "process group") {
		t.Fatalf("leftover stop recorded as %+v", ev)
	}
}
