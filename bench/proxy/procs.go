package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/ports"
)

// proc is a process the harness started, in its own process group, stopped
// by its PID (and that group) and nothing else.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// procs is every process started, so that all of them are stopped on exit.
var procs []*proc

func start(name, logPath string, argv ...string) (*proc, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); out.Close(); close(p.done) }()
	procs = append(procs, p)
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process's group (its PID is the group id).
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		_ = syscall.Kill(-p.pid(), sig)
	}
}

// stop asks politely (SIGTERM), then SIGKILLs the group after grace.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	p.signal(syscall.SIGCONT) // a stopped process cannot act on SIGTERM
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

func stopAll() {
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(5 * time.Second)
	}
	procs = nil
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) { return ports.Free(1) }

// waitPort polls until something accepts on port, the process exits, or within passes.
func waitPort(p *proc, port int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %d", p.name, port)
		}
		c, err := net.DialTimeout("tcp", addr(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s: nothing listening on %d after %v", p.name, port, within)
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// cpuSeconds is the user+system CPU time of pid and its descendants.
func cpuSeconds(pid int) (float64, error) {
	pids := append([]int{pid}, descendants(pid)...)
	var ticks uint64
	for _, p := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "stat"))
		if err != nil {
			if p == pid {
				return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
			}
			continue
		}
		f := statFields(string(b))
		if len(f) < 15 {
			return 0, errors.New("short /proc stat")
		}
		u, _ := strconv.ParseUint(f[13], 10, 64)
		s, _ := strconv.ParseUint(f[14], 10, 64)
		ticks += u + s
	}
	return float64(ticks) / 100, nil // USER_HZ is 100 on Linux
}

// selfCPUSeconds is this process's user+system CPU time.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// procsCPUSeconds is the CPU time of ps and their descendants together
// (a process gone is counted as 0).
func procsCPUSeconds(ps []*proc) float64 {
	var t float64
	for _, p := range ps {
		c, _ := cpuSeconds(p.pid())
		t += c
	}
	return t
}

// statFields splits /proc/PID/stat, whose 2nd field (comm) may hold spaces.
func statFields(s string) []string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return append([]string{"pid", "comm"}, strings.Fields(s[i+1:])...)
}

func descendants(root int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if f := statFields(string(b)); len(f) > 3 {
			pp, _ := strconv.Atoi(f[3])
			parent[pid] = pp
		}
	}
	var out []int
	for pid := range parent {
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == root {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
