package pgha

import (
	"log/slog"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// victim is a stand-in for a postmaster: a process in its own group that
// exits only when signalled.
func victim(t *testing.T) (*exec.Cmd, chan struct{}) {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-done })
	return cmd, done
}

func diesWithin(done chan struct{}, d time.Duration) bool {
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func TestWatchdogKillsWhenTheDeadlinePasses(t *testing.T) {
	cmd, done := victim(t)
	wd := startWatchdog(cmd.Process.Pid, slog.New(slog.DiscardHandler))
	defer wd.exit()
	start := time.Now()
	wd.arm(300 * time.Millisecond)
	for range 3 { // re-armed in time: alive
		time.Sleep(150 * time.Millisecond)
		wd.arm(300 * time.Millisecond)
	}
	if diesWithin(done, 100*time.Millisecond) {
		t.Fatal("killed while re-armed in time")
	}
	if !diesWithin(done, 2*time.Second) {
		t.Fatal("not killed after the deadline passed")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("killed %v after the last arm", took)
	}
}

func TestWatchdogKillsWhenTheAgentDies(t *testing.T) {
	cmd, done := victim(t)
	wd := startWatchdog(cmd.Process.Pid, slog.New(slog.DiscardHandler))
	wd.disarm()
	if diesWithin(done, 300*time.Millisecond) {
		t.Fatal("killed while disarmed")
	}
	wd.mu.Lock()
	wd.w.Close() // what the kernel does when the agent is SIGKILLed
	wd.w = nil
	wd.mu.Unlock()
	if !diesWithin(done, 2*time.Second) {
		t.Fatal("not killed when its pipe from the agent closed")
	}
}

func TestWatchdogExitLeavesTheProcess(t *testing.T) {
	cmd, done := victim(t)
	wd := startWatchdog(cmd.Process.Pid, slog.New(slog.DiscardHandler))
	wd.arm(200 * time.Millisecond)
	wd.exit()
	if diesWithin(done, 600*time.Millisecond) {
		t.Fatal("exit killed the process")
	}
}
