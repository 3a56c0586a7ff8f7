package pgha

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/medic-dev/medic/internal/procstat"
)

// pgProc is the running postmaster: a child of this medic, or one adopted
// from the previous medic (not a child: signals go through its pidfd, its
// exit is seen when the pidfd becomes readable).
type pgProc struct {
	pid   int
	child *os.Process // a child: signals stop once it was reaped
	pidfd *os.File    // adopted: the pidfd pins the process
}

// signal sends sig to the postmaster (never to a recycled pid).
func (pr *pgProc) signal(sig syscall.Signal) error {
	if pr.child != nil {
		return pr.child.Signal(sig)
	}
	rc, err := pr.pidfd.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return err // the pidfd was closed: the process is gone
	}
	return serr
}

// killGroup SIGKILLs the postmaster's process group (its backends), if the
// postmaster is still there.
func (pr *pgProc) killGroup() {
	if pr.signal(0) == nil {
		_ = syscall.Kill(-pr.pid, syscall.SIGKILL)
	}
}

// gone forgets proc once it exited.
func (p *Postgres) gone(proc *pgProc) {
	p.mu.Lock()
	if p.proc == proc {
		p.proc, p.writable = nil, false
		p.wd.exit()
		p.wd = nil
	}
	p.mu.Unlock()
	if proc.pidfd != nil {
		proc.pidfd.Close()
	}
}

// PostgresHandover is what a medic that hands its running postmaster over
// to the next medic (an upgrade) tells it: which process it is, what medic
// made of it, and its watchdog, which keeps the fence deadline until the
// next medic has armed its own.
type PostgresHandover struct {
	PID           int    `json:"pid"`
	Start         uint64 `json:"start"` // clock ticks since boot, /proc/PID/stat field 22
	Writable      bool   `json:"writable"`
	Upstream      string `json:"upstream,omitempty"`
	UpstreamDSN   string `json:"upstream_dsn,omitempty"`
	SyncStandby   string `json:"sync_standby,omitempty"`
	WatchdogPID   int    `json:"watchdog_pid,omitempty"`
	WatchdogStart uint64 `json:"watchdog_start,omitempty"`
}

// Detach lets go of the running postmaster without stopping it, for the
// next medic to adopt. Its watchdog is told to fence at the deadline left
// from now (the leader's fence deadline) whatever happens to this medic,
// unless the next medic takes over first; left <= 0 ends the watchdog (a
// replica, which no deadline protects). ok is false when no postgres runs.
func (p *Postgres) Detach(left time.Duration) (h PostgresHandover, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return h, false
	}
	st, err := procstat.StartTime(p.proc.pid)
	if err != nil {
		return h, false
	}
	h = PostgresHandover{PID: p.proc.pid, Start: st, Writable: p.writable, Upstream: p.upstream, UpstreamDSN: p.upstreamDSN, SyncStandby: p.syncStandby}
	if wd := p.wd; wd != nil && wd.cmd != nil {
		h.WatchdogPID = wd.cmd.Process.Pid
		h.WatchdogStart, _ = procstat.StartTime(h.WatchdogPID)
	}
	p.wd.handover(left)
	// The exit goroutine of a child finds p.proc changed and leaves the
	// watchdog alone; the process stays this medic's child until it exits.
	p.proc, p.wd, p.writable = nil, nil, false
	p.epoch++ // nothing decided before the handover may start a postgres
	return h, true
}

// Adopt takes over the postmaster a previous medic handed over: it opens
// a pidfd (which pins the process), checks the start time and that it is
// the postmaster of this data directory, and watches it with a watchdog of
// its own (disarmed until the agent arms it). Its exit is seen when the
// pidfd becomes readable.
func (p *Postgres) Adopt(h PostgresHandover) error {
	fd, err := unix.PidfdOpen(h.PID, unix.PIDFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("pgha: adopt postmaster %d: open a pidfd: %w", h.PID, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	if st, err := procstat.StartTime(h.PID); err != nil || st != h.Start {
		f.Close()
		return fmt.Errorf("pgha: adopt postmaster %d: not the process handed over (start time %d, recorded %d)", h.PID, st, h.Start)
	}
	if pid, err := p.postmasterPID(); err != nil || pid != h.PID {
		f.Close()
		return fmt.Errorf("pgha: adopt postmaster %d: postmaster.pid names %d (%v)", h.PID, pid, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("pgha: adopt postmaster %d: %w", h.PID, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		f.Close()
		return fmt.Errorf("pgha: adopt postmaster %d: postgres already runs (pid %d)", h.PID, p.proc.pid)
	}
	proc := &pgProc{pid: h.PID, pidfd: f}
	exited := make(chan struct{})
	p.proc, p.exited, p.writable = proc, exited, h.Writable
	p.upstream, p.upstreamDSN, p.syncStandby = h.Upstream, h.UpstreamDSN, h.SyncStandby
	p.wd = startWatchdog(h.PID, p.log)
	// This medic's settings (its config may differ from the previous
	// one's) take effect as far as a reload can apply them; best effort.
	if err := p.reloadLocked(); err != nil {
		p.log.Warn("adopted postmaster: write and reload the configuration", "pid", h.PID, "err", err)
	}
	go func() {
		// Read waits in the runtime's poller until the pidfd is readable:
		// the process exited. A non-parent cannot read its exit status.
		_ = rc.Read(func(fd uintptr) bool {
			n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
			return n > 0
		})
		p.gone(proc)
		p.log.Info("postgres exited", "pid", proc.pid, "status", "adopted postmaster: its exit status goes to its parent")
		close(exited)
	}()
	return nil
}

// EndWatchdog ends the watchdog a previous medic left watching the
// adopted postmaster (after this medic armed its own), if it is still the
// same process. It reports whether one was ended.
func EndWatchdog(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if st, err := procstat.StartTime(pid); err != nil || st != start {
		return false
	}
	// The watchdog runs in a process group of its own (bash and its sleep).
	if unix.PidfdSendSignal(fd, syscall.SIGKILL, nil, 0) != nil {
		return false
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return true
}

// postmasterPID is the pid in the data directory's postmaster.pid when a
// postgres process has it (0 when none runs).
func (p *Postgres) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(p.o.Data, "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("pgha: read postmaster.pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	var n int
	if _, err := fmt.Sscan(strings.TrimSpace(first), &n); err != nil || n <= 0 {
		return 0, nil
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", n))
	if err != nil || filepath.Base(exe) != "postgres" {
		return 0, nil // stale file: no such process, or the pid was reused
	}
	return n, nil
}
