package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
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
}

func openLeftovers(dir string) *leftovers {
	return &leftovers{path: filepath.Join(dir, "processes.json"), m: map[string]procRecord{}}
}

// started records a group; exited forgets it.
func (l *leftovers) started(id string, pid int) {
	st, err := procStart(pid)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[id] = procRecord{PGID: pid, Start: st}
	l.saveLocked()
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

// reap stops every recorded group that is still the same process: the stop
// signal, then SIGKILL after grace. It returns a line per group it stopped.
func (l *leftovers) reap(grace time.Duration) []string {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return nil
	}
	var old map[string]procRecord
	if json.Unmarshal(b, &old) != nil {
		return nil
	}
	var out []string
	for id, r := range old {
		st, err := procStart(r.PGID)
		if err != nil || st != r.Start {
			continue // gone, or the pid now belongs to another process
		}
		signalGroup(r.PGID, syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		for groupAlive(r.PGID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		how := "SIGTERM"
		if groupAlive(r.PGID) {
			signalGroup(r.PGID, syscall.SIGKILL)
			how = fmt.Sprintf("SIGKILL after %v", grace)
		}
		out = append(out, fmt.Sprintf("%s: stopped process group %d left by a previous medic (%s)", id, r.PGID, how))
	}
	os.Remove(l.path)
	return out
}

// procStart returns the start time of pid in clock ticks since boot.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" {
		return 0, errors.New("no such live process")
	}
	var v uint64
	_, err = fmt.Sscan(f[19], &v) // field 22 overall; f[0] is field 3
	return v, err
}
