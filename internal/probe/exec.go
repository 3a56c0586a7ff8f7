package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

const (
	// maxOutput is how much of an exec probe's output is kept: the last 4 KiB,
	// consul's bound, so a chatty or runaway script cannot grow medic's memory.
	maxOutput = 4 << 10
	// maxDetailOutput is how much of that output goes into Outcome.Detail.
	maxDetailOutput = 200
	// outputGrace bounds the wait for the output pipe to close once the whole
	// process group is dead. Only a descendant that left the group (setsid)
	// can hold it open longer; its output is then abandoned, not waited for.
	outputGrace = 500 * time.Millisecond
)

// execChecker runs a command in its own process group and passes on exit 0.
type execChecker struct {
	argv []string
	dir  string
	env  []string
	// running holds a token while a run is in flight: the next run waits for
	// the previous one to be reaped, so a slow script is never run twice at
	// once (consul: "so we never start another instance concurrently").
	running chan struct{}
}

func newExecChecker(c *config.ExecProbe, t Target) (*execChecker, error) {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return nil, errors.New("probe: exec: empty command")
	}
	return &execChecker{
		argv:    append([]string(nil), c.Command...),
		dir:     t.Dir,
		env:     t.Env,
		running: make(chan struct{}, 1),
	}, nil
}

// Check runs the command once, in Target.Dir with Target.Env. The program is
// looked up in medic's PATH (os/exec's rule), or relative to Dir if it
// contains a slash. When ctx ends first, the whole process group is killed
// with SIGKILL and reaped before Check returns; on Linux processes the command
// left behind in its group are killed even when it exits on its own, so a
// probe never leaves anything running.
func (e *execChecker) Check(ctx context.Context) Outcome {
	start := time.Now()
	select {
	case e.running <- struct{}{}:
	case <-ctx.Done():
		return ended(ctx, start)
	}
	defer func() { <-e.running }()

	// The output goes to a pipe we own (an *os.File), so cmd.Wait returns when
	// the process exits, not when every holder of the pipe has closed it.
	r, w, err := os.Pipe()
	if err != nil {
		if o, ok := own(err); ok {
			return o
		}
		return Fail(fmt.Sprintf("exec %s: output pipe: %v", e.argv[0], err))
	}
	defer r.Close()
	cmd := exec.Command(e.argv[0], e.argv[1:]...)
	cmd.Dir, cmd.Env = e.dir, e.env
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	_ = w.Close() // the child holds its own copy; ours would keep the pipe open forever
	if err != nil {
		if o, ok := own(err); ok {
			return o
		}
		return Fail(fmt.Sprintf("start: %v", err))
	}

	out := &tailBuffer{max: maxOutput}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, r) // ends at EOF, or when r is closed below
	}()

	cut, err := runGroup(ctx, cmd)

	grace := time.NewTimer(outputGrace)
	select {
	case <-copied:
	case <-grace.C:
		_ = r.Close() // unblocks the copy
		<-copied
	}
	grace.Stop()

	var o Outcome
	switch {
	case cut:
		o = ended(ctx, start) // "timeout after 1s"
	case err == nil:
		o = Pass("exit status 0")
	default:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return Fail(fmt.Sprintf("wait: %v", err))
		}
		o = Fail(ee.String()) // "exit status 1", "signal: segmentation fault"
	}
	if s := strings.TrimSpace(out.String()); s != "" {
		o.Detail += ": " + clip(s, maxDetailOutput)
	}
	return o
}

// waitOrKill waits for cmd to exit or for ctx to end. At the cut it kills
// cmd's process group and reaps the leader before returning.
func waitOrKill(ctx context.Context, cmd *exec.Cmd) (cut bool, err error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
		return false, err
	case <-ctx.Done():
		_ = killGroup(cmd.Process.Pid) // ESRCH aside, signalling our own child's group cannot fail
		<-done
		return true, nil
	}
}

// killGroup sends SIGKILL to the process group led by pid. ESRCH (the group is
// already gone) is not an error.
func killGroup(pid int) error {
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", pid, err)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf   []byte
	max   int
	total int64
}

// Write keeps the tail of p and never fails.
func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	b.total += int64(n)
	if len(p) >= b.max {
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return n, nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = b.buf[:copy(b.buf, b.buf[over:])]
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

func (b *tailBuffer) String() string { return string(b.buf) }
