package backup

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	if pid := m.reapServer(); pid > 0 {
		m.log.Warn("backup: stopped the pgBackRest TLS server a previous medic left running", "pid", pid)
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
	// The server runs in its own process group: a medic killed with SIGKILL
	// leaves it running, and the next medic stops it by this file.
	_ = os.WriteFile(m.serverPIDPath(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	defer os.Remove(m.serverPIDPath())
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

// serverPIDPath records the running server's process id.
func (m *Manager) serverPIDPath() string { return m.ServerConfigPath() + ".pid" }

// ServerPID is the process id of this member's running TLS server, 0 when
// none runs: the process the pid file names, if its command line names
// this member's server configuration (a recycled pid is never taken for it).
func (m *Manager) ServerPID() int { return ServerPIDOf(m.o.StateDir) }

// ServerPIDOf is ServerPID for the backup state directory stateDir.
func ServerPIDOf(stateDir string) int {
	conf := filepath.Join(stateDir, "pgbackrest-server.conf")
	b, err := os.ReadFile(conf + ".pid")
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cl, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !strings.Contains(string(cl), "--config="+conf+"\x00") {
		return 0
	}
	return pid
}

// reapServer kills the TLS server a previous medic left running (its pid
// file names it), and returns its pid (0 when none).
func (m *Manager) reapServer() int {
	pid := m.ServerPID()
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		for i := 0; i < 50 && m.ServerPID() == pid; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	_ = os.Remove(m.serverPIDPath())
	return pid
}
