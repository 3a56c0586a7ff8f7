package drill

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/procstat"
)

var signals = map[string]syscall.Signal{
	"KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"HUP": syscall.SIGHUP, "ABRT": syscall.SIGABRT, "SEGV": syscall.SIGSEGV, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
}

func parseSignal(s string) (syscall.Signal, error) {
	sig, ok := signals[strings.TrimPrefix(strings.ToUpper(s), "SIG")]
	if !ok {
		return 0, fmt.Errorf("signal %q: want KILL, TERM, INT, QUIT, HUP, ABRT, SEGV, USR1 or USR2", s)
	}
	return sig, nil
}

// procStart returns the start time of pid in clock ticks since boot (field
// 22 of /proc/PID/stat), which tells a process from a later one that reused
// its pid. It returns 0 when the process is gone (or only its zombie is
// left) or /proc is unavailable.
func procStart(pid int) uint64 {
	v, _ := procstat.StartTime(pid)
	return v
}

// requirePID checks that the instance under fault has a process.
func requirePID(t *Target) error {
	if t.PID <= 0 {
		return fmt.Errorf("instance %s has no running process", t.Instance)
	}
	return nil
}

// injectKill sends a signal (default SIGKILL) to the instance's main
// process: a crash. There is nothing to restore; recovering is medic's job.
func injectKill(ctx context.Context, t *Target) (Restore, error) {
	if err := requirePID(t); err != nil {
		return nil, err
	}
	sig, err := parseSignal(t.param("signal", "KILL"))
	if err != nil {
		return nil, err
	}
	if err := syscall.Kill(t.PID, sig); err != nil {
		return nil, fmt.Errorf("send SIG%s to %s (pid %d): %w", t.param("signal", "KILL"), t.Instance, t.PID, err)
	}
	t.Note("sent SIG%s to %s pid %d", strings.ToUpper(t.param("signal", "KILL")), t.Instance, t.PID)
	return nil, nil
}

// injectStop freezes the instance's process group with SIGSTOP: alive, holding
// its sockets, answering nothing. Restore sends SIGCONT if the same process is
// still there (medic usually replaced it).
func injectStop(ctx context.Context, t *Target) (Restore, error) {
	if err := requirePID(t); err != nil {
		return nil, err
	}
	start := procStart(t.PID)
	target := -t.PID // the process group the supervisor made for the instance
	if err := syscall.Kill(target, syscall.SIGSTOP); err != nil {
		target = t.PID
		if err := syscall.Kill(target, syscall.SIGSTOP); err != nil {
			return nil, fmt.Errorf("SIGSTOP %s (pid %d): %w", t.Instance, t.PID, err)
		}
	}
	t.Note("sent SIGSTOP to %s pid %d (process group %v)", t.Instance, t.PID, target < 0)
	return func(ctx context.Context) error {
		if start == 0 || procStart(t.PID) != start {
			t.Note("pid %d is gone: nothing to continue", t.PID)
			return nil
		}
		if err := syscall.Kill(target, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("SIGCONT %s (pid %d): %w", t.Instance, t.PID, err)
		}
		t.Note("sent SIGCONT to pid %d", t.PID)
		return nil
	}, nil
}

// injectCrashLoop kills every process of the instance as soon as the
// supervisor reports it (every 20ms), as a binary that dies at start would.
// Restore stops the killing and cuts the backoff short, so the instance
// comes back without waiting out a delay of minutes.
func injectCrashLoop(ctx context.Context, t *Target) (Restore, error) {
	if err := requirePID(t); err != nil {
		return nil, err
	}
	sig, err := parseSignal(t.param("signal", "KILL"))
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var mu sync.Mutex
	kills := 0
	killed := map[int]bool{}
	kill := func() {
		st, ok := t.status(t.Instance)
		if !ok || st.PID <= 0 || killed[st.PID] {
			return
		}
		killed[st.PID] = true
		if err := syscall.Kill(st.PID, sig); err == nil {
			mu.Lock()
			kills++
			mu.Unlock()
		}
	}
	kill()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for t.wait(lctx, 20*time.Millisecond) {
			kill()
		}
	}()
	t.Note("crash loop: killing every process of %s with SIG%s as it starts", t.Instance, strings.ToUpper(t.param("signal", "KILL")))
	return func(ctx context.Context) error {
		cancel()
		wg.Wait()
		mu.Lock()
		n := kills
		mu.Unlock()
		t.Note("crash loop ended after %d kills", n)
		st, ok := t.status(t.Instance)
		if !ok {
			return nil
		}
		switch st.State {
		case medic.StateBackoff, medic.StateCrashLoop, medic.StateFailed, medic.StateStopped:
			if err := t.Sup.StartInstance(ctx, t.Instance, t.Actor(), "drill over: cut the crash-loop backoff short"); err != nil {
				return fmt.Errorf("start %s after the crash loop: %w", t.Instance, err)
			}
			t.Note("started %s again (it was in %s)", t.Instance, st.State)
		}
		return nil
	}, nil
}
