package main

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the harness started, in its own process group so that
// stopping it never touches the harness or anything else on the machine.
type proc struct {
	name string
	cmd  *exec.Cmd
	pid  int
	log  string        // file receiving stdout and stderr
	done chan struct{} // closed once Wait returned
	err  error         // Wait's result, valid after done
}

// startProc starts argv in dir with its output in logPath.
func startProc(name string, argv []string, dir, logPath string, env []string) (*proc, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: create log: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(argv, " "), err)
	}
	p := &proc{name: name, cmd: cmd, pid: cmd.Process.Pid, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits at most d for the process to exit; true if it did.
func (p *proc) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// logTail returns the last n bytes of the process's output, for error reports.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// stop sends sig to the process, waits up to grace, then SIGKILLs its group.
// The processes in extra (its descendants, captured while it ran) get the
// rest of the grace period to exit on their own — runsvdir exits on HUP
// before its runsv children have stopped their services — and are then
// SIGKILLed by PID: a supervisor that dies leaving children behind must not
// leave them to the next benchmark. It reports what it had to kill.
func (p *proc) stop(sig syscall.Signal, grace time.Duration, extra []procID) []string {
	deadline := time.Now().Add(grace)
	var forced []string
	if !p.exited() {
		_ = syscall.Kill(p.pid, sig)
		if !p.wait(grace) {
			forced = append(forced, fmt.Sprintf("%s pid %d (group)", p.name, p.pid))
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			p.wait(10 * time.Second)
		}
	}
	extra = slices.Compact(slices.SortedFunc(slices.Values(extra), func(a, b procID) int { return cmp.Compare(a.pid, b.pid) }))
	waitGone(extra, deadline)
	for _, id := range extra {
		if id.alive() {
			forced = append(forced, fmt.Sprintf("%s descendant pid %d", p.name, id.pid))
			_ = syscall.Kill(id.pid, syscall.SIGKILL)
		}
	}
	waitGone(extra, time.Now().Add(5*time.Second))
	return forced
}

// waitGone polls until none of ids is alive or the deadline passes.
func waitGone(ids []procID, deadline time.Time) {
	for _, id := range ids {
		for id.alive() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// procID names a process by PID and start time, so that a recycled PID is
// never mistaken for (and never killed as) a process the harness saw.
type procID struct {
	pid   int
	start uint64 // clock ticks since boot, /proc/PID/stat field 22
}

// alive reports whether the same process still runs (zombies count as gone).
func (id procID) alive() bool {
	st, err := readStat(id.pid)
	return err == nil && st.start == id.start && st.state != 'Z' && st.state != 'X'
}

// stat is the part of /proc/PID/stat the harness uses.
type stat struct {
	pid, ppid   int
	state       byte
	utime, stim uint64 // clock ticks
	start       uint64
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// The command name (field 2) may hold spaces and parentheses: split after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 20 {
		return stat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	num := func(k int) uint64 { v, _ := strconv.ParseUint(f[k-3], 10, 64); return v }
	return stat{pid: pid, ppid: int(num(4)), state: f[0][0], utime: num(14), stim: num(15), start: num(22)}, nil
}

// rssKB reads VmRSS from /proc/PID/status.
func rssKB(pid int) (uint64, error) { return procKB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:") }

// pssKB reads the proportional set size from /proc/PID/smaps_rollup: shared
// pages divided among their users, so a sum over processes (runit's 50 runsv)
// does not count libc fifty times as an RSS sum does.
func pssKB(pid int) (uint64, error) {
	return procKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
}

// procKB reads the "key: N kB" line of a /proc file.
func procKB(path, key string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			if f := strings.Fields(rest); len(f) >= 1 {
				return strconv.ParseUint(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s line (kernel thread or zombie)", path, key)
}

// descendants returns every live process below root (not root itself).
func descendants(root int) []procID {
	ents, _ := filepath.Glob("/proc/[0-9]*")
	children := map[int][]stat{}
	for _, e := range ents {
		pid, err := strconv.Atoi(filepath.Base(e))
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			children[st.ppid] = append(children[st.ppid], st)
		}
	}
	var out []procID
	queue := []int{root}
	for len(queue) > 0 && len(out) < 10000 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, procID{c.pid, c.start})
			queue = append(queue, c.pid)
		}
	}
	return out
}

// isDescendant reports whether pid runs below root; the harness kills only
// such processes, so a port taken by a stranger can never make it kill one.
func isDescendant(pid, root int) bool {
	for range 64 { // bounded: a PID chain is never this deep
		st, err := readStat(pid)
		if err != nil || st.ppid <= 1 {
			return false
		}
		if st.ppid == root {
			return true
		}
		pid = st.ppid
	}
	return false
}
