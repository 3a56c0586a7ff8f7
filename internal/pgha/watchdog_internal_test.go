package pgha

import (
	"log/slog"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/procstat"
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

// watchdogGone waits for the watchdog process itself to end.
func watchdogGone(wd *watchdog, d time.Duration) bool {
	pid := wd.cmd.Process.Pid
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := procstat.StartTime(pid); err != nil { // gone, or a zombie not yet reaped
			return true
		}
	}
	return false
}

// A handover with a deadline outlives the agent's pipe and fences at the
// deadline; the next medic ends it first by EndWatchdog.
func TestWatchdogHandover(t *testing.T) {
	cmd, done := victim(t)
	wd := startWatchdog(cmd.Process.Pid, slog.New(slog.DiscardHandler))
	wd.arm(5 * time.Second)
	start := time.Now()
	wd.handover(400 * time.Millisecond) // and the pipe is closed, as when the old medic exits
	if diesWithin(done, 200*time.Millisecond) {
		t.Fatal("killed before the deadline handed over")
	}
	if !diesWithin(done, 2*time.Second) {
		t.Fatal("not killed at the deadline handed over")
	}
	t.Logf("fenced %v after the handover of a 400ms deadline", time.Since(start).Round(time.Millisecond))

	cmd2, done2 := victim(t)
	wd2 := startWatchdog(cmd2.Process.Pid, slog.New(slog.DiscardHandler))
	wd2.arm(5 * time.Second)
	wd2.handover(500 * time.Millisecond)
	st, err := procstat.StartTime(wd2.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if EndWatchdog(wd2.cmd.Process.Pid, st+1) {
		t.Fatal("ended a watchdog whose start time differs")
	}
	if !EndWatchdog(wd2.cmd.Process.Pid, st) {
		t.Fatal("EndWatchdog did not end the watchdog")
	}
	if diesWithin(done2, time.Second) {
		t.Fatal("an ended watchdog still fenced")
	}
}

// A replica's handover ("handover off") ends the watchdog without killing.
func TestWatchdogHandoverOff(t *testing.T) {
	cmd, done := victim(t)
	wd := startWatchdog(cmd.Process.Pid, slog.New(slog.DiscardHandler))
	wd.disarm()
	wd.handover(0)
	if !watchdogGone(wd, 2*time.Second) {
		t.Fatal("the watchdog still runs after handover off")
	}
	if diesWithin(done, 300*time.Millisecond) {
		t.Fatal("handover off killed the process")
	}
}
