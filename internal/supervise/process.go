package supervise

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/medic-dev/medic"
)

// process is one run of an instance's command, in its own process group and,
// where cgroups can be used, in its own cgroup.
type process struct {
	cmd    *exec.Cmd
	pid    int
	cg     *cgroup         // nil: tracked by its process group only
	exited chan medic.Exit // receives once, when the main process ends (from wait(2), no polling)
	output chan struct{}   // closed when both output pipes reached EOF
}

// startProcess starts argv in a new process group with stdout and stderr sent
// to out (and stderr also to errTail). The pipes are our own os.Pipe so that
// Wait returns when the process exits even if a grandchild keeps them open.
//
// With cg set, the process is born in that cgroup (clone3 with
// CLONE_INTO_CGROUP), so not even a fork in its first instruction escapes.
func startProcess(argv, env []string, dir string, cg *cgroup, out io.Writer, errTail io.Writer, now func() time.Time) (*process, error) {
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
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        argv,
		Env:         env,
		Dir:         dir,
		Stdout:      outW,
		Stderr:      errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if cg != nil {
		d, err := cg.dir()
		if err != nil {
			outR.Close()
			outW.Close()
			errR.Close()
			errW.Close()
			return nil, err
		}
		defer d.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(d.Fd())
	}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, cg: cg, exited: make(chan medic.Exit, 1), output: make(chan struct{})}
	copied := make(chan struct{}, 2)
	go func() { io.Copy(out, outR); outR.Close(); copied <- struct{}{} }()
	go func() { io.Copy(io.MultiWriter(out, errTail), errR); errR.Close(); copied <- struct{}{} }()
	go func() { <-copied; <-copied; close(p.output) }()
	go func() {
		err := cmd.Wait()
		p.exited <- exitOf(cmd.ProcessState, err, now())
	}()
	return p, nil
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
	return err
}

// leftoversAlive reports whether any process of this run is left: in the
// cgroup, or in the process group without one.
func (p *process) leftoversAlive() bool {
	if p.cg != nil {
		return p.cg.populated()
	}
	return groupAlive(p.pid)
}

// killAll SIGKILLs every process of this run and, with a cgroup, waits up to
// a second for the cgroup to be empty (SIGKILLed processes leave within
// milliseconds; the next run starts in the same cgroup).
func (p *process) killAll() error {
	if p.cg == nil {
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
