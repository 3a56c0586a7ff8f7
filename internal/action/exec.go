package action

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Exec runs a command (no shell) in its own process group. At the timeout
// (in.Timeout, or ctx's deadline) the whole group is killed — a script's
// children included — and Do waits for the exit before it returns, so that
// a runbook never starts the next step while the last one still runs
// (consul's CheckMonitor). Leftover processes of the group are killed when
// the command exits too. The last 4 KiB of stdout and stderr, interleaved,
// are kept.
//
// The command inherits medic's environment plus in.Env and MEDIC_TARGET,
// MEDIC_INCIDENT and MEDIC_ACTOR.
type Exec struct{}

// Do runs in.Command.
func (Exec) Do(ctx context.Context, in Input) (Output, error) {
	if len(in.Command) == 0 || in.Command[0] == "" {
		return Output{}, errors.New("exec: empty command")
	}
	if in.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, in.Timeout)
		defer cancel()
	}
	cmd := exec.Command(in.Command[0], in.Command[1:]...)
	cmd.Dir = in.Dir
	cmd.Env = append(os.Environ(), "MEDIC_TARGET="+in.Target, "MEDIC_INCIDENT="+in.Incident, "MEDIC_ACTOR="+in.Actor)
	keys := make([]string, 0, len(in.Env))
	for k := range in.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+in.Env[k])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Our own pipe rather than an io.Writer: Wait then returns when the
	// process exits, not when the last grandchild closes its stdout.
	r, w, err := os.Pipe()
	if err != nil {
		return Output{}, fmt.Errorf("exec %s: pipe: %w", in.Command[0], err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	tail := &tailBuffer{max: MaxOutput}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(tail, r)
	}()
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		<-copied
		return Output{Summary: "could not start"}, fmt.Errorf("exec %s: %w", in.Command[0], err)
	}
	pgid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var timedOut bool
	select {
	case err = <-exited:
	case <-ctx.Done():
		timedOut = true
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		err = <-exited // wait for the exit before the next step
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // leftovers of the group, if any
	// Every writer in the group is dead; only a process that left the group
	// (setsid) can hold the pipe now. Do not wait for it forever.
	select {
	case <-copied:
	case <-time.After(time.Second):
		r.Close()
		<-copied
	}
	r.Close()

	out := Output{Detail: tail.String(), Changed: true, Fields: map[string]string{}}
	if cmd.ProcessState != nil {
		out.Fields["exit_code"] = strconv.Itoa(cmd.ProcessState.ExitCode())
	}
	switch {
	case timedOut:
		out.Summary = fmt.Sprintf("%s killed: %v", in.Command[0], context.Cause(ctx))
		return out, fmt.Errorf("exec %s: killed the process group: %w", in.Command[0], ctx.Err())
	case err != nil:
		out.Summary = fmt.Sprintf("%s failed: %v", in.Command[0], err)
		return out, fmt.Errorf("exec %s: %w", in.Command[0], err)
	}
	out.Summary = in.Command[0] + " exited 0"
	return out, nil
}

// tailBuffer keeps the last max bytes written and counts the rest.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += len(p)
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.total > len(t.buf) {
		return fmt.Sprintf("[captured the last %d of %d bytes]\n%s", len(t.buf), t.total, t.buf)
	}
	return string(t.buf)
}
