package probe

import (
	"context"
	"errors"
	"os/exec"

	"golang.org/x/sys/unix"
)

// runGroup waits for cmd, which leads its own process group, to exit or for
// ctx to end, whichever is first, and reports whether ctx cut it.
//
// Either way the group is sent SIGKILL while the leader is exited but not yet
// reaped (waitid with WNOWAIT). Until the reap the leader's pid cannot be
// reused, so the signal cannot reach an unrelated group; and a probe never
// leaves background children behind. Only then is the leader reaped.
func runGroup(ctx context.Context, cmd *exec.Cmd) (cut bool, err error) {
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- waitExitedNoReap(pid) }()
	var werr error
	select {
	case werr = <-exited:
	case <-ctx.Done():
		cut = true
	}
	if werr != nil {
		// waitid refused (it should not for our own child): fall back to
		// waiting the ordinary way, which still kills the group at the cut.
		return waitOrKill(ctx, cmd)
	}
	kerr := killGroup(pid)
	if cut {
		<-exited // SIGKILL cannot be caught: the leader exits
	}
	err = cmd.Wait()
	if cut {
		return true, nil
	}
	if err == nil && kerr != nil {
		err = kerr
	}
	return false, err
}

// waitExitedNoReap blocks until pid has exited, leaving it a zombie for
// cmd.Wait to reap.
func waitExitedNoReap(pid int) error {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
