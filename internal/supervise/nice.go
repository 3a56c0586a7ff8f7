package supervise

import (
	"bufio"
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
// deploy.start_nice, or 0 where it could not be raised back.
func startNice(cfg *config.Service) int {
	n := cfg.Deploy.StartNiceOrDefault()
	if n <= 0 || !canRenice() {
		return 0
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
func restoreGroupNice(pgid, start int) error {
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
// Should setting the value fail, the process runs at medic's priority (a
// start is never refused for it) and restoreGroupNice finds nothing to undo.
func startNiced(lr *limitRun, nice int, cmd *exec.Cmd) error {
	if err := lr.start(cmd.Start); err != nil {
		return err
	}
	if nice != 0 {
		_ = setGroupNice(cmd.Process.Pid, nice)
	}
	return nil
}
