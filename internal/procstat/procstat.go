// Package procstat reads what medic needs of /proc/PID/stat: a live
// process's start time, which with its pid names one process for good (a
// pid alone may be reused).
package procstat

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrNotLive: no such process, or only its zombie is left.
var ErrNotLive = errors.New("no such live process")

// StartTime returns the start time of the live process pid, in clock ticks
// since boot (field 22 of /proc/PID/stat).
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, ErrNotLive
		}
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces and parentheses
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, the state
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, ErrNotLive
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return v, nil
}

// Usage is what a running process uses.
type Usage struct {
	RSSBytes   uint64  // resident set (field 24 of stat, in pages)
	CPUSeconds float64 // user + system time (fields 14 and 15, in clock ticks)
	FDs        int32   // open file descriptors (entries of /proc/PID/fd; 0 if unreadable)
}

// clockTicks is USER_HZ, the unit of utime and stime: 100 on every Linux
// architecture Go supports (getconf CLK_TCK).
const clockTicks = 100

// ReadUsage reads the usage of pid from /proc/PID/stat and /proc/PID/fd: one
// read of stat instead of gopsutil's three files (stat twice, statm) per
// sample.
func ReadUsage(pid int) (Usage, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Usage{}, ErrNotLive
		}
		return Usage{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Usage{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 22 {
		return Usage{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	rss, err3 := strconv.ParseInt(f[21], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Usage{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	u := Usage{CPUSeconds: float64(ut+st) / clockTicks}
	if rss > 0 {
		u.RSSBytes = uint64(rss) * uint64(os.Getpagesize())
	}
	if d, err := os.Open(dir + "/fd"); err == nil {
		names, _ := d.Readdirnames(-1)
		d.Close()
		u.FDs = int32(len(names))
	}
	return u, nil
}
