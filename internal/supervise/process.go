package supervise

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/logfile"
	"github.com/medic-dev/medic/internal/procstat"
)

// process is one run of an instance's command, in its own process group and,
// where cgroups can be used, in its own cgroup. It is either our child
// (started) or a process a previous medic started (adopted).
type process struct {
	pid    int
	cg     *cgroup         // nil: tracked by its process group only
	lr     *limitRun       // its limits (nil: none)
	exited chan medic.Exit // receives once, when the main process ends (wait(2) or pidfd; no polling)
	pidfd  *os.File        // adopted: the pidfd watched for the exit; nil for a child
}

// startProcess starts argv in a new process group with stdout and stderr
// written straight to logPath (opened for appending): the instance's output
// does not pass through medic, so it survives medic's death and a next medic
// adopts the instance without losing a line. medic rotates the file by
// copy-truncate (logfile.CopyTruncate).
//
// With cg set, the process is born in that cgroup (clone3 with
// CLONE_INTO_CGROUP), so not even a fork in its first instruction escapes.
//
// With nice set, the process is born at that nice value (forked from a
// thread set to it for the moment: nice.go).
func startProcess(argv, env []string, dir string, cg *cgroup, lr *limitRun, nice int, logPath string, logMode os.FileMode, now func() time.Time) (*process, error) {
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil && !errors.Is(err, exec.ErrDot) {
		return nil, fmt.Errorf("find %q: %w", argv[0], err)
	}
	if path == "" {
		path = argv[0]
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	if logMode == 0 {
		logMode = logfile.DefaultMode
	}
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, logMode)
	if err != nil {
		return nil, fmt.Errorf("open instance log: %w", err)
	}
	defer out.Close() // the child has its own copy
	// A log created by an older medic (0644) or under another umask gets the mode it should have.
	if err := out.Chmod(logMode); err != nil {
		return nil, fmt.Errorf("set the mode of instance log %s: %w", logPath, err)
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        argv,
		Env:         env,
		Dir:         dir,
		Stdout:      out,
		Stderr:      out,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if cg != nil {
		d, err := cg.dir()
		if err != nil {
			return nil, err
		}
		defer d.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(d.Fd())
	}
	if err := startNiced(lr, nice, cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &process{pid: cmd.Process.Pid, cg: cg, lr: lr, exited: make(chan medic.Exit, 1)}
	go func() {
		err := waitChild(cmd)
		p.exited <- exitOf(cmd.ProcessState, err, now())
	}()
	return p, nil
}

// waitChild waits for the child to exit in the runtime's poller (its pidfd
// becomes readable then), and only then reaps it with cmd.Wait, which no
// longer blocks: a running instance costs a parked goroutine, not an OS
// thread blocked in wait(2) (50 instances held 50 threads). Where pidfds
// cannot be polled (Linux < 5.3), cmd.Wait blocks as before. The pid cannot
// be recycled before: only cmd.Wait reaps it.
func waitChild(cmd *exec.Cmd) error {
	if fd, err := unix.PidfdOpen(cmd.Process.Pid, unix.PIDFD_NONBLOCK); err == nil {
		f := os.NewFile(uintptr(fd), "pidfd")
		if rc, err := f.SyscallConn(); err == nil {
			_ = rc.Read(func(fd uintptr) bool {
				n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
				return n > 0
			})
		}
		f.Close()
	}
	return cmd.Wait()
}

// errNotSame: the recorded pid is gone or now names another process.
var errNotSame = errors.New("not the recorded process")

// adoptProcess takes over a process a previous medic started: it opens a
// pidfd, which pins the process, then checks that its start time is the
// recorded one (a recycled pid is never adopted). Its exit is seen when the
// pidfd becomes readable; a non-parent cannot read its exit status.
func adoptProcess(pid int, start uint64, cg *cgroup, now func() time.Time) (*process, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil, errNotSame
		}
		return nil, fmt.Errorf("open pidfd of %d: %w", pid, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	if st, err := procstat.StartTime(pid); err != nil || st != start {
		f.Close()
		return nil, errNotSame
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("watch pidfd of %d: %w", pid, err)
	}
	p := &process{pid: pid, cg: cg, exited: make(chan medic.Exit, 1), pidfd: f}
	go func() {
		// Read waits in the runtime's poller until the pidfd is readable (the
		// process exited), or fails once release closes it.
		err := rc.Read(func(fd uintptr) bool {
			n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
			return n > 0
		})
		if err == nil {
			p.exited <- medic.Exit{At: now(), Code: -1, Reason: "exited (adopted process: its exit status goes to its parent, not to medic)"}
		}
	}()
	return p, nil
}

// release stops watching the process without stopping it (medic detaches).
func (p *process) release() {
	if p.pidfd != nil {
		p.pidfd.Close()
	}
}

func exitOf(ps *os.ProcessState, err error, at time.Time) medic.Exit {
	ex := medic.Exit{At: at, Code: -1}
	if ps == nil {
		ex.Reason = fmt.Sprintf("wait: %v", err)
		return ex
	}
	ws, _ := ps.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		ex.Signal = signalName(ws.Signal())
		ex.Reason = "killed by signal " + ex.Signal
	default:
		ex.Code = ps.ExitCode()
		ex.Reason = fmt.Sprintf("exit status %d", ex.Code)
	}
	return ex
}

// signalGroup sends sig to the process group pgid. A group that is already
// gone is not an error.
func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to process group %d: %w", signalName(sig), pgid, err)
	}
	return nil
}

// signal sends sig to the process group and, with a cgroup, to every process
// in it (setsid escapees left the group but not the cgroup).
func (p *process) signal(sig syscall.Signal) error {
	err := signalGroup(p.pid, sig)
	if p.cg != nil {
		p.cg.signal(sig)
	}
	for _, pid := range p.lr.pids() {
		syscall.Kill(pid, sig)
	}
	return err
}

// leftoversAlive reports whether any process of this run is left: in the
// cgroup, or in the process group without one.
func (p *process) leftoversAlive() bool {
	if p.cg != nil {
		return p.cg.populated()
	}
	return groupAlive(p.pid) || len(p.lr.pids()) > 0
}

// killAll SIGKILLs every process of this run and, with a cgroup, waits up to
// a second for the cgroup to be empty (SIGKILLed processes leave within
// milliseconds; the next run starts in the same cgroup).
func (p *process) killAll() error {
	if p.cg == nil {
		for _, pid := range p.lr.pids() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		return signalGroup(p.pid, syscall.SIGKILL)
	}
	signalGroup(p.pid, syscall.SIGKILL)
	return p.cg.kill(time.Second)
}

// groupAlive reports whether any process of group pgid still exists.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

var signals = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "HUP": syscall.SIGHUP,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "KILL": syscall.SIGKILL,
}

func parseSignal(s string) syscall.Signal {
	if sig, ok := signals[s]; ok {
		return sig
	}
	return syscall.SIGTERM
}

func signalName(sig syscall.Signal) string {
	for n, s := range signals {
		if s == sig {
			return "SIG" + n
		}
	}
	return sig.String()
}
