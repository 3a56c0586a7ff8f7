package pgha

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// InitDB creates a new cluster in the data directory (which must be empty
// or missing), owned by the postgres user, with trust authentication on
// loopback (replace it with postgres.hba for anything else).
func (p *Postgres) InitDB(ctx context.Context) error {
	if err := p.emptyDataDir(); err != nil {
		return err
	}
	_, err := p.run(ctx, "initdb", "-D", p.o.Data, "-U", p.o.Superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-instructions")
	return err
}

// Basebackup replaces the data directory with a copy of the primary at
// addr. The copy is made beside it and swapped in only once complete, so
// that a failed clone (the primary unreachable, the disk full) leaves the
// old data as it was. stop, when set, stops the running postgres before the
// swap (it keeps serving while the copy is made).
func (p *Postgres) Basebackup(ctx context.Context, addr string, stop func(context.Context, time.Duration) error) error {
	tmp := p.o.Data + ".medic-clone"
	if err := p.emptyDir(tmp); err != nil {
		return err
	}
	// Its own application_name: the copy's WAL stream must never count as the
	// synchronous standby the member will be.
	dsn := strings.Replace(p.dsn(addr), "application_name="+p.o.Member, "application_name="+p.o.Member+"-basebackup", 1)
	if _, err := p.run(ctx, "pg_basebackup", "-D", tmp, "-d", dsn, "-X", "stream", "-c", "fast", "-w"); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if stop != nil {
		if err := stop(ctx, 10*time.Second); err != nil {
			_ = os.RemoveAll(tmp)
			return err
		}
	}
	old := p.o.Data + ".medic-old"
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("pgha: clone: clear %s: %w", old, err)
	}
	if err := os.Rename(p.o.Data, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pgha: clone: set the old data aside: %w", err)
	}
	if err := os.Rename(tmp, p.o.Data); err != nil {
		return fmt.Errorf("pgha: clone: put the copy in place: %w", err)
	}
	if err := os.RemoveAll(old); err != nil {
		p.log.Warn("the old data directory could not be removed", "path", old, "err", err)
	}
	return nil
}

// CheckpointSource connects to the primary at addr and runs CHECKPOINT. A
// freshly promoted source still shows its old timeline in its control file
// until its first checkpoint, and pg_rewind would then report "no rewind
// required" for data that did diverge (Patroni does the same). It also
// proves the source reachable before anything local is stopped.
func (p *Postgres) CheckpointSource(ctx context.Context, addr string) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(cctx, p.sourceDSN(addr)+" connect_timeout=5")
	if err != nil {
		return fmt.Errorf("pgha: rewind: connect to the source %s: %w", addr, err)
	}
	_, err = conn.Exec(cctx, "CHECKPOINT")
	conn.Close(context.Background())
	if err != nil {
		return fmt.Errorf("pgha: rewind: checkpoint the source %s: %w", addr, err)
	}
	return nil
}

func (p *Postgres) sourceDSN(addr string) string {
	h, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("host=%s port=%s user=%s dbname=postgres sslmode=disable", h, port, p.o.Superuser)
}

// ClusterState is the "Database cluster state" pg_controldata reads from
// the stopped data directory ("shut down", "shut down in recovery", "in
// production", "in crash recovery", "in archive recovery" …).
func (p *Postgres) ClusterState(ctx context.Context) (string, error) {
	out, err := p.run(ctx, "pg_controldata", "-D", p.o.Data)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "Database cluster state" {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("pgha: pg_controldata: no cluster state in its output")
}

// Rewind makes the stopped data directory a possible replica of the
// primary at addr (checkpointed first, see CheckpointSource): crash
// recovery to the end of the local WAL, then pg_rewind, which copies back
// what diverged since the timelines forked (nothing when they did not). It
// returns pg_rewind's verdict ("servers diverged at …", "no rewind
// required").
//
// Crash recovery comes first unless the data was shut down cleanly as a
// primary: a postgres stopped while still replaying its own WAL (in
// recovery, "shut down in recovery") records only how far it replayed, and
// pg_rewind, which trusts that record, answered "no rewind required" for
// data whose WAL went past the fork; postgres could then never follow the
// new timeline (issue 14). Single-user mode replays every local record and
// writes a shutdown checkpoint at the true end of the WAL, as Patroni does.
func (p *Postgres) Rewind(ctx context.Context, addr string) (string, error) {
	// Single-user mode refuses standby mode: the signal files go, and the
	// next start writes its own.
	for _, f := range []string{"standby.signal", "recovery.signal"} {
		if err := os.Remove(filepath.Join(p.o.Data, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("pgha: rewind: remove %s: %w", f, err)
		}
	}
	state, err := p.ClusterState(ctx)
	if err != nil {
		return "", fmt.Errorf("pgha: rewind: %w", err)
	}
	if state != "shut down" {
		p.log.Info("crash recovery in single-user mode before pg_rewind", "state", state)
		if _, err := p.run(ctx, "postgres", "--single", "-F", "-D", p.o.Data, "-c", "archive_mode=off", "template1"); err != nil {
			return "", fmt.Errorf("pgha: rewind: crash recovery (state %q): %w", state, err)
		}
	}
	out, err := p.run(ctx, "pg_rewind", "-D", p.o.Data, "--source-server="+p.sourceDSN(addr))
	if err != nil {
		return "", err
	}
	verdict := "rewound"
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "no rewind required") || strings.Contains(line, "diverged at") {
			verdict = strings.TrimSpace(strings.TrimPrefix(line, "pg_rewind: "))
		}
	}
	return fmt.Sprintf("%s (cluster state was %q)", verdict, state), nil
}

// emptyDataDir (re)creates the data directory empty, mode 0700, owned by the postgres user.
func (p *Postgres) emptyDataDir() error { return p.emptyDir(p.o.Data) }

// emptyDir (re)creates dir empty, mode 0700, owned by the postgres user.
func (p *Postgres) emptyDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("pgha: clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pgha: create %s: %w", dir, err)
	}
	if err := os.Chown(dir, p.uid, p.gid); err != nil {
		return fmt.Errorf("pgha: chown %s: %w", dir, err)
	}
	return nil
}

// run runs one of the PostgreSQL tools as the postgres user and returns its
// output, with the output's tail in the error on failure.
func (p *Postgres) run(ctx context.Context, tool string, args ...string) (string, error) {
	cmd := p.command(filepath.Join(p.o.BinDir, tool), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("pgha: %s: %w", tool, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		err = ctx.Err()
	}
	if err != nil {
		return out.String(), fmt.Errorf("pgha: %s: %w: %s", tool, err, lastLines(out.String(), 5))
	}
	p.log.Info(tool+" done", "output", lastLines(out.String(), 3))
	return out.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// marker is the member's record of how its data last ran and of the
// repairs it made, kept outside the data directory so that pg_basebackup
// and pg_rewind never copy it.
type marker struct {
	WasPrimary bool        `json:"was_primary"`
	At         time.Time   `json:"at"`
	Repairs    []time.Time `json:"repairs,omitempty"` // rewinds and re-clones of a replica that did not stream
}

func (p *Postgres) readMarker() marker {
	var m marker
	if b, err := os.ReadFile(p.o.StatePath); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

// WasPrimary reports whether the data last ran read-write (or may have:
// the mark is set before a promotion, cleared after a clone or a rewind).
func (p *Postgres) WasPrimary() bool { return p.readMarker().WasPrimary }

// Repairs returns the times of the repairs recorded within window before now.
func (p *Postgres) Repairs(now time.Time, window time.Duration) []time.Time {
	var out []time.Time
	for _, t := range p.readMarker().Repairs {
		if now.Sub(t) < window {
			out = append(out, t)
		}
	}
	return out
}

// AddRepair records a repair at now durably, forgetting those older than window.
func (p *Postgres) AddRepair(now time.Time, window time.Duration) error {
	p.markMu.Lock()
	defer p.markMu.Unlock()
	m := p.readMarker()
	m.Repairs = append(p.Repairs(now, window), now.UTC())
	return p.writeMarker(m)
}

// SetWasPrimary records the mark durably.
func (p *Postgres) SetWasPrimary(v bool) error {
	p.markMu.Lock()
	defer p.markMu.Unlock()
	m := p.readMarker()
	m.WasPrimary, m.At = v, p.clock.Now().UTC()
	return p.writeMarker(m)
}

func (p *Postgres) writeMarker(m marker) error {
	b, _ := json.Marshal(m)
	tmp := p.o.StatePath + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("pgha: write %s: %w", p.o.StatePath, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p.o.StatePath)
	}
	if err != nil {
		return fmt.Errorf("pgha: write %s: %w", p.o.StatePath, err)
	}
	return nil
}

// KillLeftover stops a postmaster left running on the data directory by a
// previous agent (its watchdog should have killed it; this is the second
// line). A positive wait first gives that postmaster up to wait to exit on
// its own (a medic started by an upgrade: the previous medic stops it after
// the handover). It returns the pid it stopped, or 0.
func (p *Postgres) KillLeftover(ctx context.Context, wait time.Duration) (int, error) {
	b, err := os.ReadFile(filepath.Join(p.o.Data, "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("pgha: read postmaster.pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, nil
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(exe) != "postgres" {
		return 0, nil // stale file: no such process, or the pid was reused
	}
	if wait > 0 {
		p.log.Info("a postmaster runs on the data directory: waiting for the previous medic to stop it", "pid", pid, "at_most", wait)
		until := p.clock.Now().Add(wait)
		for syscall.Kill(pid, 0) == nil && p.clock.Now().Before(until) && ctx.Err() == nil {
			t := p.clock.NewTimer(50 * time.Millisecond)
			select {
			case <-t.C():
			case <-ctx.Done():
				t.Stop()
			}
		}
		if syscall.Kill(pid, 0) != nil {
			return 0, nil
		}
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	deadline := p.clock.Now().Add(2 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if p.clock.Now().After(deadline) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		t := p.clock.NewTimer(20 * time.Millisecond)
		<-t.C()
	}
	return pid, nil
}
