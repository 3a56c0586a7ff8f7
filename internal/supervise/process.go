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

// process is one run of an instance's command, in its own process group.
type process struct {
	cmd    *exec.Cmd
	pid    int
	exited chan medic.Exit // receives once, when the main process ends (from wait(2), no polling)
	output chan struct{}   // closed when both output pipes reached EOF
}

// startProcess starts argv in a new process group with stdout and stderr sent
// to out (and stderr also to errTail). The pipes are our own os.Pipe so that
// Wait returns when the process exits even if a grandchild keeps them open.
func startProcess(argv, env []string, dir string, out io.Writer, errTail io.Writer, now func() time.Time) (*process, error) {
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
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan medic.Exit, 1), output: make(chan struct{})}
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
