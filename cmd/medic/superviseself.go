package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/medic-dev/medic/internal/config"
)

// selfRestartDelay is how long --supervise-self waits before starting medic
// again after it died; the instances keep running meanwhile. 100ms.
const selfRestartDelay = 100 * time.Millisecond

// superviseSelf runs `medic run` (args, without --supervise-self) as a child
// and starts it again whenever it dies, for hosts without systemd. The agent
// it watches is the pid in data_dir/medic.pid, through a pidfd: after a
// seamless upgrade the new agent (not this process's child) is watched in
// turn. SIGTERM and SIGINT are passed on to the agent, and this process exits
// when the agent did.
func superviseSelf(cfg *config.Config, args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("supervise-self: find own binary: %w", err)
	}
	pidFile := filepath.Join(cfg.DataDir, "medic.pid")
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	stopping := false
	for {
		cmd := exec.Command(exe, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("supervise-self: start medic: %w", err)
		}
		reaped := make(chan struct{})
		go func() { cmd.Wait(); close(reaped) }()
		pid := cmd.Process.Pid
		for pid != 0 {
			exited := watchPID(pid)
			select {
			case s := <-sigs:
				stopping = true
				syscall.Kill(pid, s.(syscall.Signal))
				<-exited
			case <-exited:
			}
			// A handover leaves the new agent's pid in the pid file.
			next, err := readPID(pidFile)
			if !stopping && err == nil && next != pid && sameBinary(next, exe) && !zombie(next) {
				pid = next
				continue
			}
			pid = 0
		}
		select {
		case <-reaped:
		case <-time.After(time.Second):
		}
		if stopping {
			return nil
		}
		fmt.Fprintf(os.Stderr, "medic --supervise-self: the agent died; starting it again in %v\n", selfRestartDelay)
		time.Sleep(selfRestartDelay)
	}
}

// watchPID returns a channel closed when pid has exited (pidfd; polling
// /proc every 100ms where pidfd is not available).
func watchPID(pid int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			defer unix.Close(fd)
			for {
				_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
				if !errors.Is(err, unix.EINTR) {
					return
				}
			}
		}
		for syscall.Kill(pid, 0) == nil && !zombie(pid) {
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return done
}

// sameBinary reports whether pid runs exe (a stale pid file may name a
// recycled pid).
func sameBinary(pid int, exe string) bool {
	got, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && (got == exe || got == exe+" (deleted)")
}
