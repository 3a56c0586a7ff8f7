package supervise

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/medic-dev/medic/internal/config"
)

// Start priority: an instance started beside instances that serve (a
// rolling deploy's surge copies and replacements, a blue-green deploy's
// green set, a canary and its baseline) may start at a lower CPU priority
// (a nice value: medic's own plus deploy.start_nice) and return to medic's
// own (what it would have inherited, usually 0) when it first becomes ready, so that
// on a machine with few cores its start (exec, runtime init, first probes)
// takes CPU from the serving instances only when they leave some
// (docs/deploys.md, "Cheap deploys").
//
// The process group is set to that value right after the fork (startNiced).
// When it is ready, setpriority(PRIO_PGRP) sets its process group back,
// which reaches every thread of every process in it; a group whose nice is no
// longer the one it started at (the command reniced itself) is left as it is.
// Going back to 0 needs CAP_SYS_NICE
// (root) or an RLIMIT_NICE of 20: without either the start priority is not
// lowered at all, since it could not be raised again.

// MaxStartNice is the largest start nice value accepted (the kernel's 19).
const MaxStartNice = 19

var (
	reniceOnce sync.Once
	reniceOK   bool
	ownOnce    sync.Once
	own        int
)

// ownNice is medic's own nice value (what its instances inherit): the
// priority a started instance returns to.
func ownNice() int {
	ownOnce.Do(func() {
		// The raw getpriority(2) answers 20 − nice.
		if p, err := unix.Getpriority(unix.PRIO_PROCESS, 0); err == nil {
			own = 20 - p
		}
	})
	return own
}

// canRenice reports whether this process may set a nice value back to 0
// (CAP_SYS_NICE in its effective set, or RLIMIT_NICE ≥ 20).
func canRenice() bool {
	reniceOnce.Do(func() {
		var rl unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NICE, &rl); err == nil && rl.Cur >= 20 {
			reniceOK = true
			return
		}
		reniceOK = hasCapSysNice()
	})
	return reniceOK
}

// hasCapSysNice reads CapEff in /proc/self/status (bit 23: CAP_SYS_NICE).
func hasCapSysNice() bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_NICE) != 0
		}
	}
	return false
}

// setGroupNice sets the nice value of every thread in process group pgid.
func setGroupNice(pgid, nice int) error {
	if err := unix.Setpriority(unix.PRIO_PGRP, pgid, nice); err != nil {
		return fmt.Errorf("set the nice value of process group %d to %d: %w", pgid, nice, err)
	}
	return nil
}

// startNice is the nice value a deploy's new instance of cfg starts at: its
// deploy.start_nice (StartIdle with deploy.start_idle), or 0 where it
// could not be raised back.
func startNice(cfg *config.Service) int {
	n := cfg.Deploy.StartNiceOrDefault()
	if cfg.Deploy.StartIdleOrDefault() {
		n = StartIdle
	}
	if n <= 0 || !canRenice() {
		return 0
	}
	if n == StartIdle {
		return n
	}
	return min(n, MaxStartNice)
}

// CanRenice reports whether deploy.start_nice can be applied here (tests
// skip without it).
func CanRenice() bool { return canRenice() }

// restoreGroupNice sets process group pgid back to medic's own nice value
// if it still runs at start, the value medic started it at: a command that
// reniced itself meanwhile keeps its own choice. getpriority(PRIO_PGRP)
// answers the group's highest priority (lowest nice).
//
// start StartIdle: the group's threads are set back from SCHED_IDLE
// (restoreGroupIdle); pids lists its processes (nil: found by pgid).
func restoreGroupNice(pgid, start int, pids func() []int) error {
	if start == StartIdle {
		return restoreGroupIdle(pgid, pids)
	}
	p, err := unix.Getpriority(unix.PRIO_PGRP, pgid)
	if err != nil {
		return fmt.Errorf("read the nice value of process group %d: %w", pgid, err)
	}
	if 20-p != start {
		return nil
	}
	return setGroupNice(pgid, ownNice())
}

// startNiced starts cmd (through lr: a run with cgroup v1 limits forks
// from a thread that joined its cgroups) at medic's own priority and, when
// nice is not 0, sets the new process group (the child's pid: it starts
// with Setpgid) to nice at once, before medic goes on with anything else.
// The child has run from its fork to its exec and maybe the first
// microseconds of its own start at medic's priority; every thread of every
// process in the group is set, threads created later inherit the value.
//
// It used to fork from a thread set to nice for the moment, so that the
// child was born at that value; but that thread holds one of the agent's
// Ps (Go's scheduler slots) for all of exec.Cmd.Start's own code, and at
// nice 10 on a loaded machine the kernel runs it seldom: with 2 Ps and two
// or three instances starting at once the proxy's goroutines waited for a
// P for tens to hundreds of milliseconds (docs/deploys.md, "Attribution").
// nice StartIdle puts the child's threads in SCHED_IDLE instead.
// Should setting the value fail, the process runs at medic's priority (a
// start is never refused for it) and restoreGroupNice finds nothing to undo.
func startNiced(lr *limitRun, nice int, cmd *exec.Cmd) error {
	if err := lr.start(cmd.Start); err != nil {
		return err
	}
	switch pid := cmd.Process.Pid; nice {
	case 0:
	case StartIdle:
		// Only the child itself: it has not had the time to start another.
		_ = idleGroup(pid, func() []int { return []int{pid} })
	default:
		_ = setGroupNice(pid, nice)
	}
	return nil
}

// StartIdle, as a start value (instance.startNice, the niced value of a run,
// procRecord.StartNice), is deploy.start_idle: the new instance starts in
// the SCHED_IDLE policy rather than at a nice value, so that it runs only
// when no other task of the machine wants the CPU (the kernel still gives an
// idle task a sliver, about 3/1024 of a nice-0 task's share, so a start
// under full load is slow but not stopped). It is one past the largest nice
// value: the lowest start priority. A policy is per thread: every thread of
// every process of the group is set (idleGroup), and set back to
// SCHED_OTHER at medic's own nice value when the instance is first ready, or
// when a liveness or startup probe try fails (restoreGroupIdle).
const StartIdle = MaxStartNice + 1

// maxPolicyPasses bounds the passes over a group's threads when setting or
// restoring a policy: a thread created during a pass by a thread not yet set
// is found by the next one; a group that keeps creating threads faster is
// left with the last pass done (its new threads inherit the creator's policy).
const maxPolicyPasses = 8

// groupThreads lists the threads (task ids) of every process of process group
// pgid: the processes of the run's cgroup (v2, else its v1 tracking cgroups)
// when it has one, else those /proc names with that process group.
func groupThreads(pgid int, pids []int) []int {
	if len(pids) == 0 {
		pids = pgroupPids(pgid)
	}
	var out []int
	for _, pid := range pids {
		ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			continue // gone meanwhile
		}
		for _, e := range ents {
			if tid, err := strconv.Atoi(e.Name()); err == nil {
				out = append(out, tid)
			}
		}
	}
	return out
}

// pgroupPids lists the processes whose process group is pgid (/proc/PID/stat,
// field 5), pgid itself first.
func pgroupPids(pgid int) []int {
	out := []int{pgid}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pgid {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …: comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) >= 3 && f[2] == strconv.Itoa(pgid) {
			out = append(out, pid)
		}
	}
	return out
}

// setGroupPolicy sets every thread of the group (groupThreads) whose policy
// is from to the policy to at nice value nice, in passes until one finds no
// thread left to set (at most maxPolicyPasses). It answers how many threads
// it set and the first error other than a thread that ended meanwhile.
func setGroupPolicy(pgid int, pids func() []int, from, to uint32, nice int) (int, error) {
	set := 0
	var first error
	for range maxPolicyPasses {
		n := 0
		for _, tid := range groupThreads(pgid, pids()) {
			a, err := unix.SchedGetAttr(tid, 0)
			if err != nil || a.Policy != from {
				continue
			}
			na := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: to, Nice: int32(nice)}
			if err := unix.SchedSetAttr(tid, &na, 0); err != nil {
				if !errors.Is(err, unix.ESRCH) && first == nil {
					first = fmt.Errorf("set the scheduling policy of thread %d of process group %d: %w", tid, pgid, err)
				}
				continue
			}
			n++
		}
		set += n
		if n == 0 {
			break
		}
	}
	return set, first
}

// idleGroup puts every thread of process group pgid in SCHED_IDLE (at
// medic's own nice value, which it keeps for when it is set back).
func idleGroup(pgid int, pids func() []int) error {
	_, err := setGroupPolicy(pgid, pids, unix.SCHED_NORMAL, unix.SCHED_IDLE, ownNice())
	return err
}

// restoreGroupIdle sets every thread of process group pgid still in
// SCHED_IDLE back to SCHED_OTHER at medic's own nice value. A thread the
// command put in another policy itself keeps it; one it put in SCHED_IDLE
// itself cannot be told apart and is set back too.
func restoreGroupIdle(pgid int, pids func() []int) error {
	_, err := setGroupPolicy(pgid, pids, unix.SCHED_IDLE, unix.SCHED_NORMAL, ownNice())
	return err
}
