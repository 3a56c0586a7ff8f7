package supervise

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// TreeParents lists the cgroup directories in which a medic started by this
// process (so in the same cgroups) creates its medic-* trees: the unified
// hierarchy's and each v1 hierarchy medic may use (memory, pids, freezer).
// Tests list the medic-* groups in them before and after a run to find the
// ones a test left behind.
func TreeParents() []string {
	var out []string
	if mount, err := cgroup2Mount(); err == nil {
		if own, err := ownCgroup(); err == nil {
			out = append(out, filepath.Join(mount, own))
		}
	}
	for _, c := range slices.Concat(limitControllers, trackControllers) {
		mount, err := v1Mount(c)
		if err != nil {
			continue
		}
		own, err := ownV1Cgroup(c)
		if err != nil {
			continue
		}
		if dir := filepath.Join(mount, own); !slices.Contains(out, dir) {
			out = append(out, dir)
		}
	}
	return out
}

// Trees lists the medic-* groups in the directories of TreeParents.
func Trees() []string {
	var out []string
	for _, p := range TreeParents() {
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), "medic-") {
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	return out
}

// TreePopulated reports whether any process is left in the cgroup dir or
// below it (a v2 group's cgroup.events; a v1 group's cgroup.procs, walked).
func TreePopulated(dir string) bool {
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup.events")); err == nil {
		return strings.Contains(string(b), "populated 1")
	}
	populated := false
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && len(v1Procs(path)) > 0 {
			populated = true
			return filepath.SkipAll
		}
		return nil
	})
	return populated
}

// RemoveEmptyTree removes dir and every empty cgroup below it (rmdir: a
// group that still holds a process is left).
func RemoveEmptyTree(dir string) { removeEmptyTree(dir) }

// RemoveTreeOf SIGKILLs every process left in the cgroups of a medic that
// ran on stateDir (started from this process's cgroups) and removes them, v2
// and v1: what a medic started again on stateDir does to the cgroups it does
// not adopt, for a caller that starts none there (the fleet demo, whose
// killed host stays dead). It returns how many processes it killed.
func RemoveTreeOf(stateDir string) int {
	key, err := filepath.Abs(stateDir)
	if err != nil {
		return 0
	}
	name, n := treeName(key), 0
	for _, parent := range TreeParents() {
		dir := filepath.Join(parent, name)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			child := filepath.Join(dir, e.Name())
			if _, err := os.Stat(filepath.Join(child, "cgroup.events")); err == nil { // v2
				if mount, err := cgroup2Mount(); err == nil {
					if rel, err := filepath.Rel(mount, child); err == nil {
						if cg, err := loadCgroup(mount, "/"+rel); err == nil {
							n += len(cg.pids())
							cg.kill(time.Second)
						}
					}
				}
				continue
			}
			n += len(v1Procs(child))
			removeV1(child)
		}
		removeEmptyTree(dir)
	}
	return n
}
