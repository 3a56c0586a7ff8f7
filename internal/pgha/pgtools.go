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
	return p.run(ctx, "initdb", "-D", p.o.Data, "-U", p.o.Superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-instructions")
}

// Basebackup replaces the data directory with a copy of the primary at addr.
func (p *Postgres) Basebackup(ctx context.Context, addr string) error {
	if err := p.emptyDataDir(); err != nil {
		return err
	}
	// Its own application_name: the copy's WAL stream must never count as the
	// synchronous standby the member will be.
	dsn := strings.Replace(p.dsn(addr), "application_name="+p.o.Member, "application_name="+p.o.Member+"-basebackup", 1)
	if err := p.run(ctx, "pg_basebackup", "-D", p.o.Data, "-d", dsn, "-X", "stream", "-c", "fast", "-w"); err != nil {
		_ = p.emptyDataDir() // a half copy must not look initialized
		return err
	}
	return nil
}

// Rewind makes the stopped data directory a possible replica of the
// primary at addr: pg_rewind copies back what diverged since the timelines
// forked (nothing when they did not). It runs crash recovery first when the
// data was not shut down cleanly (PostgreSQL 13 and later).
//
// A freshly promoted source still shows its old timeline in its control
// file until its first checkpoint, and pg_rewind would then report "no
// rewind required" for data that did diverge: the source is checkpointed
// first (as Patroni does).
func (p *Postgres) Rewind(ctx context.Context, addr string) error {
	h, port, _ := net.SplitHostPort(addr)
	src := fmt.Sprintf("host=%s port=%s user=%s dbname=postgres sslmode=disable", h, port, p.o.Superuser)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(cctx, src+" connect_timeout=5")
	if err != nil {
		return fmt.Errorf("pgha: rewind: connect to the source %s: %w", addr, err)
	}
	_, err = conn.Exec(cctx, "CHECKPOINT")
	conn.Close(context.Background())
	if err != nil {
		return fmt.Errorf("pgha: rewind: checkpoint the source %s: %w", addr, err)
	}
	// pg_rewind recovers an unclean target in single-user mode, which refuses
	// standby mode: the signal files go, and the next start writes its own.
	for _, f := range []string{"standby.signal", "recovery.signal"} {
		if err := os.Remove(filepath.Join(p.o.Data, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("pgha: rewind: remove %s: %w", f, err)
		}
	}
	return p.run(ctx, "pg_rewind", "-D", p.o.Data, "--source-server="+src)
}

// emptyDataDir (re)creates the data directory empty, mode 0700, owned by the postgres user.
func (p *Postgres) emptyDataDir() error {
	if err := os.RemoveAll(p.o.Data); err != nil {
		return fmt.Errorf("pgha: clear the data directory %s: %w", p.o.Data, err)
	}
	if err := os.MkdirAll(p.o.Data, 0o700); err != nil {
		return fmt.Errorf("pgha: create the data directory %s: %w", p.o.Data, err)
	}
	if err := os.Chown(p.o.Data, p.uid, p.gid); err != nil {
		return fmt.Errorf("pgha: chown the data directory %s: %w", p.o.Data, err)
	}
	return nil
}

// run runs one of the PostgreSQL tools as the postgres user and returns its
// output's tail on failure.
func (p *Postgres) run(ctx context.Context, tool string, args ...string) error {
	cmd := p.command(filepath.Join(p.o.BinDir, tool), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgha: %s: %w", tool, err)
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
		return fmt.Errorf("pgha: %s: %w: %s", tool, err, lastLines(out.String(), 5))
	}
	p.log.Info(tool+" done", "output", lastLines(out.String(), 3))
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// marker is the member's record of how its data last ran, kept outside the
// data directory so that pg_basebackup and pg_rewind never copy it.
type marker struct {
	WasPrimary bool      `json:"was_primary"`
	At         time.Time `json:"at"`
}

// WasPrimary reports whether the data last ran read-write (or may have:
// the mark is set before a promotion, cleared after a clone or a rewind).
func (p *Postgres) WasPrimary() bool {
	b, err := os.ReadFile(p.o.StatePath)
	if err != nil {
		return false
	}
	var m marker
	return json.Unmarshal(b, &m) == nil && m.WasPrimary
}

// SetWasPrimary records the mark durably.
func (p *Postgres) SetWasPrimary(v bool) error {
	b, _ := json.Marshal(marker{WasPrimary: v, At: p.clock.Now().UTC()})
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
// line). It returns the pid it stopped, or 0.
func (p *Postgres) KillLeftover() (int, error) {
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
