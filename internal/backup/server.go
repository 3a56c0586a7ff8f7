package backup

import (
	"bytes"
	"context"
	"fmt"
	"syscall"
	"time"
)

// TLS server supervision bounds.
const (
	// serverRestartMin and serverRestartMax bound the wait before a TLS
	// server that exited is started again (doubling from the first).
	serverRestartMin = time.Second
	serverRestartMax = 30 * time.Second
	// serverStable: a server that ran this long resets the wait.
	serverStable = time.Minute
	// serverStopGrace: SIGTERM, then SIGKILL to its process group after this.
	serverStopGrace = 5 * time.Second
)

// ServeTLS runs this member's pgBackRest TLS server (pgbackrest server, as
// the postgres user, in its own process group) until ctx ends, and starts
// it again when it exits, after serverRestartMin doubling to
// serverRestartMax. up reports whether it runs (may be nil); record makes its
// unexpected exits durable (may be nil). Without TLS it returns at once.
func (m *Manager) ServeTLS(ctx context.Context, up func(bool), record func(kind, reason string)) {
	if m.o.TLS == nil {
		return
	}
	if up == nil {
		up = func(bool) {}
	}
	wait := serverRestartMin
	for ctx.Err() == nil {
		started := m.clock.Now()
		err := m.runServer(ctx, up)
		if ctx.Err() != nil {
			return
		}
		if m.clock.Now().Sub(started) >= serverStable {
			wait = serverRestartMin
		}
		reason := fmt.Sprintf("pgBackRest TLS server of %s on %s exited: %v; starting it again in %v", m.o.Cluster, m.o.TLS.Listen, err, wait)
		m.log.Warn(reason)
		if record != nil {
			record("db.backup.server", reason)
		}
		t := m.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		wait = min(2*wait, serverRestartMax)
	}
}

// runServer runs the server once, until it exits or ctx ends.
func (m *Manager) runServer(ctx context.Context, up func(bool)) error {
	cmd := m.o.Command(Binary, "--config="+m.ServerConfigPath(), "server")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	up(true)
	defer up(false)
	m.log.Info("backup: pgBackRest TLS server started", "listen", m.o.TLS.Listen, "pid", cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			err = fmt.Errorf("exit status 0")
		}
		return fmt.Errorf("%w: %s", err, tail(out.String(), 4))
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		t := m.clock.NewTimer(serverStopGrace)
		defer t.Stop()
		select {
		case err := <-done:
			return err
		case <-t.C():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			return <-done
		}
	}
}
