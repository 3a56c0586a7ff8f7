package supervise

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/medic-dev/medic/internal/config"
)

// Start priority: an instance started beside instances that serve (a
// rolling deploy's surge copies and replacements, a blue-green deploy's
// green set, a canary and its baseline) may start at a lower CPU priority
// (a nice value) and return to nice 0 when it first becomes ready, so that
// on a machine with few cores its start (exec, runtime init, first probes)
// takes CPU from the serving instances only when they leave some
// (docs/deploys.md, "Cheap deploys").
//
// The value is set with setpriority(PRIO_PGRP) on the instance's process
// group right after the start, which reaches every thread of every process in
// it; threads created later inherit it. Going back to 0 needs CAP_SYS_NICE
// (root) or an RLIMIT_NICE of 20: without either the start priority is not
// lowered at all, since it could not be raised again.

// MaxStartNice is the largest start nice value accepted (the kernel's 19).
const MaxStartNice = 19

var (
	reniceOnce sync.Once
	reniceOK   bool
)

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
