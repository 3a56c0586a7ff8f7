package supervise

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/procstat"
)

// leftovers remembers which process groups this medic started, in a small
// file, so that a medic started after a crash (SIGKILL, OOM kill) of the
// previous one stops the groups it left behind before starting new ones on
// the same ports. A pid is trusted only while its start time (from
// /proc/PID/stat) matches the recorded one: a recycled pid is never signalled.
type leftovers struct {
	path string
	mu   sync.Mutex
	m    map[string]procRecord
}

type procRecord struct {
	PGID  int    `json:"pgid"`
	Start uint64 `json:"start"` // clock ticks since boot, field 22 of /proc/PID/stat
	// The instance's cgroup (absent when cgroups could not be used): every
	// process in it belongs to the instance, whatever its pid or group.
	Mount string `json:"cgroup_mount,omitempty"`
	Group string `json:"cgroup,omitempty"`
	// The run's cgroups in v1 hierarchies (limits, or tracking without v2).
	V1 []string `json:"cgroups_v1,omitempty"`
	// Stop signal and grace of the instance when it started.
	Signal string        `json:"stop_signal,omitempty"`
	Grace  time.Duration `json:"grace,omitempty"`
	// What a next medic needs to adopt the process instead of replacing it.
	Spec      string    `json:"spec,omitempty"`          // Spec.Hash: adopted only if the config still asks for the same
	StartedAt time.Time `json:"started_at,omitempty"`    // wall clock: how long it has run across medic restarts
	Restarts  int       `json:"restarts,omitempty"`      // the instance's restart count so far
	Notify    string    `json:"notify_socket,omitempty"` // the NOTIFY_SOCKET the process was given
	// Ready is the run's last known readiness: a next medic that adopts the
	// process routes to it at once when it was ready, until a probe of its
	// own says otherwise.
	Ready bool `json:"ready,omitempty"`
	// StartNice: the nice value the run started at (deploy.start_nice over
	// medic's own); 0: not lowered. A next medic that adopts it before it was
	// ready sets it back to its own nice when it is ready (nice.go).
	StartNice int `json:"start_nice,omitempty"`
}

func openLeftovers(dir string) *leftovers {
	return &leftovers{path: filepath.Join(dir, "processes.json"), m: map[string]procRecord{}}
}

// started records a group; exited forgets it.
func (l *leftovers) started(id string, r procRecord) {
	st, err := procstat.StartTime(r.PGID)
	if err != nil {
		return
	}
	r.Start = st
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[id] = r
	l.saveLocked()
}

// ready records the readiness of id's run (no entry: nothing to do).
func (l *leftovers) ready(id string, ready bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.m[id]; ok && r.Ready != ready {
		r.Ready = ready
		l.m[id] = r
		l.saveLocked()
	}
}

// any reports whether the file holds a record (read only).
func (l *leftovers) any() bool {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return false
	}
	var m map[string]procRecord
	return json.Unmarshal(b, &m) == nil && len(m) > 0
}

func (l *leftovers) exited(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.m[id]; ok {
		delete(l.m, id)
		l.saveLocked()
	}
}

func (l *leftovers) saveLocked() {
	b, _ := json.Marshal(l.m)
	tmp := l.path + ".tmp"
	if os.WriteFile(tmp, b, 0o644) == nil {
		os.Rename(tmp, l.path)
	}
}

// reapOne stops one recorded instance; "" when nothing of it was left. What
// is left in the run's v1 cgroups after the stop (an escapee when v2 was not
// used) is SIGKILLed, and the v1 cgroups removed.
func reapOne(id string, r procRecord, grace time.Duration) string {
	if r.Grace > 0 {
		grace = r.Grace
	}
	n := 0
	if r.Group == "" && len(r.V1) > 0 {
		// Tracked in v1 only: every process of the run gets the stop signal
		// (a setsid escapee too), then the grace, shared with the group's.
		sig := syscall.SIGTERM
		if r.Signal != "" {
			sig = parseSignal(r.Signal)
		}
		for _, dir := range r.V1 {
			ps := v1Procs(dir)
			n = max(n, len(ps))
			for _, pid := range ps {
				syscall.Kill(pid, sig)
			}
		}
	}
	deadline := time.Now().Add(grace)
	line := reapMain(id, r, grace)
	for _, dir := range r.V1 {
		for len(v1Procs(dir)) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		n = max(n, len(v1Procs(dir)))
		removeV1(dir)
	}
	if n > 0 {
		if line != "" {
			line += "; "
		} else {
			line = id + ": "
		}
		line += fmt.Sprintf("stopped %d processes of its cgroup v1 %s", n, strings.Join(r.V1, ", "))
	}
	return line
}

func reapMain(id string, r procRecord, grace time.Duration) string {
	if r.Grace > 0 {
		grace = r.Grace
	}
	sig := syscall.SIGTERM
	if r.Signal != "" {
		sig = parseSignal(r.Signal)
	}
	if r.Group != "" {
		cg, err := loadCgroup(r.Mount, r.Group)
		if err == nil && cg.populated() {
			n := len(cg.pids())
			if st, err := procstat.StartTime(r.PGID); err == nil && st == r.Start {
				signalGroup(r.PGID, sig)
			}
			cg.signal(sig)
			how := signalName(sig)
			if !cg.waitEmpty(grace) {
				cg.kill(time.Second)
				how = fmt.Sprintf("SIGKILL after %v", grace)
			}
			cg.remove()
			return fmt.Sprintf("%s: stopped %d processes of cgroup %s left by a previous medic (%s)", id, n, r.Group, how)
		}
		if err == nil {
			cg.remove()
		}
	}
	st, err := procstat.StartTime(r.PGID)
	if err != nil || st != r.Start {
		return "" // gone, or the pid now belongs to another process
	}
	signalGroup(r.PGID, sig)
	deadline := time.Now().Add(grace)
	for groupAlive(r.PGID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	how := signalName(sig)
	if groupAlive(r.PGID) {
		signalGroup(r.PGID, syscall.SIGKILL)
		how = fmt.Sprintf("SIGKILL after %v", grace)
	}
	return fmt.Sprintf("%s: stopped process group %d left by a previous medic (%s)", id, r.PGID, how)
}

// load reads what the previous medic recorded and keeps it as the current
// record until each entry is adopted (and recorded again) or stopped: a
// medic that dies during its start leaves an accurate file.
func (l *leftovers) load() map[string]procRecord {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return nil
	}
	var old map[string]procRecord
	if json.Unmarshal(b, &old) != nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, r := range old {
		l.m[id] = r
	}
	return old
}

// reapRecords stops, in parallel, the recorded instances no configured
// instance adopts, and forgets them.
func (l *leftovers) reapRecords(recs map[string]procRecord, defaultGrace time.Duration) []string {
	var (
		mu  sync.Mutex
		out []string
		wg  sync.WaitGroup
	)
	for id, r := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := reapOne(id, r, defaultGrace)
			l.exited(id)
			if line != "" {
				mu.Lock()
				out = append(out, line)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(out)
	return out
}
