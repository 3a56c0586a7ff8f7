package probe_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/probe"
)

func execProbe(argv ...string) *config.Probe {
	return &config.Probe{Exec: &config.ExecProbe{Command: argv}}
}

func TestExecExitStatus(t *testing.T) {
	tests := []struct {
		script string
		want   medic.Health
		detail string
	}{
		{"exit 0", medic.HealthSuccess, "exit status 0"},
		{"exit 1", medic.HealthFailure, "exit status 1"},
		{"echo '  replica lag 30s  ' >&2; exit 2", medic.HealthFailure, "exit status 2: replica lag 30s"},
		{"echo ok", medic.HealthSuccess, "exit status 0: ok"},
		{"kill -SEGV $$", medic.HealthFailure, "signal: segmentation fault"},
	}
	for _, tt := range tests {
		c := mustChecker(t, execProbe("sh", "-c", tt.script), probe.Target{})
		if o := c.Check(context.Background()); o.Health != tt.want || o.Detail != tt.detail {
			t.Errorf("%s: got %v %q, want %v %q", tt.script, o.Health, o.Detail, tt.want, tt.detail)
		}
	}
}

func TestExecDetailIsShort(t *testing.T) {
	c := mustChecker(t, execProbe("sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x; exit 1"), probe.Target{})
	o := c.Check(context.Background())
	if o.Health != medic.HealthFailure || !strings.HasPrefix(o.Detail, "exit status 1: xxx") || len(o.Detail) > 230 {
		t.Fatalf("got %v %q (%d bytes), want a failure with at most 200 bytes of output", o.Health, o.Detail[:min(len(o.Detail), 40)], len(o.Detail))
	}
}

func TestExecStartFailure(t *testing.T) {
	c := mustChecker(t, execProbe(filepath.Join(t.TempDir(), "missing")), probe.Target{})
	if o := c.Check(context.Background()); o.Health != medic.HealthFailure || !strings.HasPrefix(o.Detail, "start: ") {
		t.Fatalf("got %v %q, want a start failure", o.Health, o.Detail)
	}
}

func TestExecDirAndEnv(t *testing.T) {
	dir := t.TempDir()
	c := mustChecker(t, execProbe("sh", "-c", `echo "$MEDIC_SERVICE" > seen`),
		probe.Target{Dir: dir, Env: []string{"PATH=" + os.Getenv("PATH"), "MEDIC_SERVICE=web"}})
	if o := c.Check(context.Background()); o.Health != medic.HealthSuccess {
		t.Fatalf("got %v %q", o.Health, o.Detail)
	}
	b, err := os.ReadFile(filepath.Join(dir, "seen"))
	if err != nil || strings.TrimSpace(string(b)) != "web" {
		t.Fatalf("the command did not run in Dir with Env: %q, %v", b, err)
	}
}

func TestExecRelativeProgramIsFoundInDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "check.sh"), []byte("#!/bin/sh\necho fine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := mustChecker(t, execProbe("./check.sh"), probe.Target{Dir: dir})
	if o := c.Check(context.Background()); o.Health != medic.HealthSuccess || o.Detail != "exit status 0: fine" {
		t.Fatalf("got %v %q", o.Health, o.Detail)
	}
}

// The timeout kills the whole process group, not only the shell, and Check
// returns only once it is gone.
func TestExecTimeoutKillsTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	c := mustChecker(t, execProbe("sh", "-c", `sleep 30 & echo $! > bg.pid; echo $$ > sh.pid; sleep 30`), probe.Target{Dir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	o := c.Check(ctx)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Check took %v with a 500ms deadline", took)
	}
	wantTimeout(t, o, 500*time.Millisecond)
	for _, f := range []string{"sh.pid", "bg.pid"} {
		pid := readPID(t, filepath.Join(dir, f))
		eventually(t, 2*time.Second, f+" "+strconv.Itoa(pid)+" killed", func() bool { return gone(pid) })
	}
}

// A command that exits on its own does not leave its background children
// running, and Check does not wait for them to close the output pipe.
func TestExecSweepsLeftoverChildren(t *testing.T) {
	dir := t.TempDir()
	c := mustChecker(t, execProbe("sh", "-c", `sleep 30 & echo $! > bg.pid; exit 1`), probe.Target{Dir: dir})
	start := time.Now()
	o := c.Check(context.Background())
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Check took %v: it waited for the background child", took)
	}
	if o.Health != medic.HealthFailure || o.Detail != "exit status 1" {
		t.Errorf("got %v %q, want failure \"exit status 1\"", o.Health, o.Detail)
	}
	pid := readPID(t, filepath.Join(dir, "bg.pid"))
	eventually(t, 2*time.Second, "background child "+strconv.Itoa(pid)+" killed", func() bool { return gone(pid) })
}

// Two checks of one exec probe never run at the same time.
func TestExecRunsNeverOverlap(t *testing.T) {
	dir := t.TempDir()
	c := mustChecker(t, execProbe("sh", "-c", `mkdir lock || exit 3; sleep 0.2; rmdir lock`), probe.Target{Dir: dir})
	var wg sync.WaitGroup
	outs := make([]probe.Outcome, 3)
	for i := range outs {
		wg.Go(func() { outs[i] = c.Check(context.Background()) })
	}
	wg.Wait()
	for i, o := range outs {
		if o.Health != medic.HealthSuccess {
			t.Errorf("run %d: %v %q (runs overlapped)", i, o.Health, o.Detail)
		}
	}
}

// A check waiting for the previous run of the same probe gives up at its own
// deadline instead of waiting the previous run out.
func TestExecCancelledWhileWaitingForTheTurn(t *testing.T) {
	dir := t.TempDir()
	c := mustChecker(t, execProbe("sh", "-c", `touch started; sleep 2`), probe.Target{Dir: dir})
	done := make(chan probe.Outcome)
	go func() { done <- c.Check(context.Background()) }()
	eventually(t, 5*time.Second, "first run started", func() bool {
		_, err := os.Stat(filepath.Join(dir, "started"))
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	o := c.Check(ctx)
	if took := time.Since(start); took > time.Second {
		t.Errorf("second run returned after %v: it waited for the first run", took)
	}
	wantTimeout(t, o, 50*time.Millisecond)
	if o := <-done; o.Health != medic.HealthSuccess {
		t.Errorf("first run: got %v %q", o.Health, o.Detail)
	}
}

func readPID(tb testing.TB, path string) int {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		tb.Fatalf("pid file %s: %q", path, b)
	}
	return pid
}

// gone reports whether pid no longer runs: it does not exist, or it is a
// zombie waiting for its parent (or for an init that may not reap) to collect it.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
