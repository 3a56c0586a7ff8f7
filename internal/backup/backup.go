// Package backup makes a PostgreSQL cluster recoverable with pgBackRest:
// medic writes pgBackRest's configuration, turns WAL archiving on through
// the postgres settings it owns (archive_mode on every member, so that
// whichever member is the primary archives and a promoted replica starts at
// once), runs stanza-create, backups and retention from the member that
// holds the lease, reads the repository's state, and restores a backup into
// a scratch data directory with a scratch postgres on a free port. It never
// reimplements what pgBackRest does, and never restores over a member.
package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
)

// Binary is pgBackRest's command (Debian's package pgbackrest installs it in /usr/bin).
const Binary = "/usr/bin/pgbackrest"

// ErrNoBackup: the repository holds no backup to restore.
var ErrNoBackup = errors.New("backup: no backup in the repository")

// Commander builds a command that runs as the postgres OS user (pgBackRest
// must own the repository and read the data directory as postgres does).
type Commander func(bin string, args ...string) *exec.Cmd

// Options describe one database's backups on this member.
type Options struct {
	Cluster    string         // the database's name
	Config     *config.Backup // defaults applied
	Repository string         // absolute repository path
	Data       string         // this member's data directory, absolute
	Port       int            // this member's postgres port
	Superuser  string         // database role pgBackRest connects as
	BinDir     string         // PostgreSQL binaries, for scratch instances
	StateDir   string         // pgbackrest.conf, its logs, lock and the postgres socket go here
	Command    Commander
	UID, GID   int // owner of the repository and the state directory
	// TLS, when set, runs pgBackRest's TLS server on this member and lets
	// its backups reach the other members' servers (see TLS).
	TLS    *TLS
	Clock  clock.Clock
	Logger *slog.Logger
}

// Manager runs pgBackRest for one database.
type Manager struct {
	o      Options
	stanza string
	clock  clock.Clock
	log    *slog.Logger
	// repoLock admits one of medic's own pgBackRest commands that take the
	// repository's lock (backup, stanza-create, check, expire) at a time:
	// a backup asked for through the API while the schedule's or a new
	// term's stanza-create runs waits for it instead of failing on
	// pgBackRest's lock file.
	repoLock chan struct{}
}

// locking lists the pgBackRest commands serialized by repoLock.
var locking = map[string]bool{"backup": true, "stanza-create": true, "stanza-upgrade": true, "check": true, "expire": true}

// New checks the options. Prepare writes the files.
func New(o Options) (*Manager, error) {
	if o.Cluster == "" || o.Config == nil || o.Repository == "" || o.Data == "" || o.StateDir == "" || o.Command == nil {
		return nil, errors.New("backup: cluster, config, repository, data, state dir and command are required")
	}
	if o.Superuser == "" {
		o.Superuser = "postgres"
	}
	if o.BinDir == "" {
		o.BinDir = config.DefaultPostgresBinDir
	}
	m := &Manager{o: o, stanza: o.Config.Stanza, clock: clock.Or(o.Clock), log: o.Logger, repoLock: make(chan struct{}, 1)}
	if m.stanza == "" {
		m.stanza = o.Cluster
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m, nil
}

// Stanza is the pgBackRest stanza name.
func (m *Manager) Stanza() string { return m.stanza }

// ConfigPath is the pgbackrest.conf medic writes.
func (m *Manager) ConfigPath() string { return filepath.Join(m.o.StateDir, "pgbackrest.conf") }

// SocketDir is where postgres puts its unix socket: pgBackRest reaches
// postgres only through one.
func (m *Manager) SocketDir() string { return socketDirOf(m.o.StateDir) }

// Settings are the postgres settings archiving needs, for every member:
// with archive_mode on (not always) only the primary archives, so a
// promoted replica takes over archiving at its promotion with nothing to
// change; restore_command lets a replica that fell behind catch up from the
// archive.
func (m *Manager) Settings() map[string]string { return Settings(m.o) }

// Settings are the postgres settings of o's Manager, known before the
// member's postgres (which the Manager's commands need) exists.
func Settings(o Options) map[string]string {
	m := &Manager{o: o, stanza: o.Config.Stanza}
	if m.stanza == "" {
		m.stanza = o.Cluster
	}
	base := Binary + " --config=" + m.ConfigPath() + " --stanza=" + m.stanza
	return map[string]string{
		"archive_mode":            "on",
		"archive_command":         base + " archive-push %p",
		"archive_timeout":         strconv.Itoa(int(m.o.Config.Archive.Timeout.D().Seconds())) + "s",
		"restore_command":         base + ` archive-get %f "%p"`,
		"unix_socket_directories": m.SocketDir(),
	}
}

// Prepare creates the repository and the state directory owned by the
// postgres user and writes pgbackrest.conf.
func (m *Manager) Prepare() error {
	for _, d := range []string{m.o.Repository, m.o.StateDir, m.SocketDir(), filepath.Join(m.o.StateDir, "log"),
		filepath.Join(m.o.StateDir, "lock"), filepath.Join(m.o.StateDir, "spool")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("backup: create %s: %w", d, err)
		}
		if err := os.Chown(d, m.o.UID, m.o.GID); err != nil {
			return fmt.Errorf("backup: chown %s: %w", d, err)
		}
	}
	if err := m.prepareTLS(); err != nil {
		return err
	}
	// The directories above the state directory must let postgres through.
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by medic on every start; edits are lost.\n[global]\n")
	for _, kv := range [][2]string{
		{"repo1-path", m.o.Repository},
		{"repo1-retention-full", strconv.Itoa(m.o.Config.Retention)},
		{"log-path", filepath.Join(m.o.StateDir, "log")},
		{"lock-path", filepath.Join(m.o.StateDir, "lock")},
		{"spool-path", filepath.Join(m.o.StateDir, "spool")},
		{"log-level-console", "warn"},
		{"log-level-file", "info"},
		{"start-fast", "y"},
		{"compress-type", "lz4"},
		{"process-max", "2"},
		{"archive-timeout", "60"},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	fmt.Fprintf(&b, "\n[%s]\npg1-path=%s\npg1-port=%d\npg1-socket-path=%s\npg1-user=%s\n",
		m.stanza, m.o.Data, m.o.Port, m.SocketDir(), m.o.Superuser)
	path := m.ConfigPath()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o640); err != nil {
		return fmt.Errorf("backup: write %s: %w", path, err)
	}
	if err := os.Chown(tmp, m.o.UID, m.o.GID); err != nil {
		return fmt.Errorf("backup: chown %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("backup: write %s: %w", path, err)
	}
	return nil
}

// run runs one pgBackRest command with medic's config and the stanza, and
// returns its standard output; a failure carries the tail of its output.
func (m *Manager) run(ctx context.Context, command string, args ...string) ([]byte, error) {
	if locking[command] {
		select {
		case m.repoLock <- struct{}{}:
			defer func() { <-m.repoLock }()
		case <-ctx.Done():
			return nil, fmt.Errorf("backup: pgbackrest %s: waiting for medic's other pgBackRest command: %w", command, ctx.Err())
		}
	}
	full := append([]string{"--config=" + m.ConfigPath(), "--stanza=" + m.stanza}, args...)
	full = append(full, command)
	cmd := m.o.Command(Binary, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("backup: pgbackrest %s: %w", command, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		t := m.clock.NewTimer(5 * time.Second)
		select {
		case err = <-done:
		case <-t.C():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
		t.Stop()
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("backup: pgbackrest %s: %w: %s", command, err, tail(errb.String()+out.String(), 4))
	}
	return out.Bytes(), nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// StanzaCreate creates the stanza in the repository (idempotent: an
// existing stanza of the same cluster is accepted). It needs the primary.
func (m *Manager) StanzaCreate(ctx context.Context) error {
	_, err := m.run(ctx, "stanza-create")
	return err
}

// Check proves that archiving works end to end: pgBackRest switches WAL on
// the primary and waits for the segment to reach the repository.
func (m *Manager) Check(ctx context.Context) error {
	_, err := m.run(ctx, "check")
	return err
}

// Backup types.
const (
	Full = "full"
	Diff = "diff"
	Incr = "incr"
)

// Backup takes one backup of the given type from the primary (this
// member) and expires what the retention no longer keeps. It returns what
// pgBackRest recorded.
func (m *Manager) Backup(ctx context.Context, typ string) (Info, error) {
	return m.BackupFrom(ctx, typ, nil)
}

// BackupFrom is Backup copying the data files from the replica sb when it
// is not nil (pgBackRest --backup-standby, sb as pg2): the backup starts and
// stops on this member, the primary. pgBackRest refuses when sb is not a
// standby of this primary or does not answer.
func (m *Manager) BackupFrom(ctx context.Context, typ string, sb *Standby) (Info, error) {
	if typ != Full && typ != Diff && typ != Incr {
		return Info{}, fmt.Errorf("backup: type %q: want full, diff or incr", typ)
	}
	// A freshly promoted primary shows its old timeline in pg_control until
	// its first checkpoint, and pgBackRest refuses to back it up until then.
	if err := m.checkpoint(ctx); err != nil {
		return Info{}, err
	}
	args := []string{"--type=" + typ}
	if sb != nil {
		sargs, err := m.StandbyArgs(*sb)
		if err != nil {
			return Info{}, err
		}
		args = append(args, sargs...)
	}
	if _, err := m.run(ctx, "backup", args...); err != nil {
		return Info{}, err
	}
	info, err := m.Info(ctx)
	if err != nil {
		return Info{}, err
	}
	if info.Last() == nil {
		return info, fmt.Errorf("backup: pgbackrest backup succeeded but the repository lists no backup")
	}
	return info, nil
}

// checkpoint runs CHECKPOINT on this member's postgres.
func (m *Manager) checkpoint(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := pgx.Connect(cctx, m.LocalDSN())
	if err != nil {
		return fmt.Errorf("backup: checkpoint before the backup: %w", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(cctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("backup: checkpoint before the backup: %w", err)
	}
	return nil
}

// Config is the backup section the manager runs with.
func (m *Manager) Config() *config.Backup { return m.o.Config }

// Amcheck verifies every table and index of the postgres at 127.0.0.1:port
// with pg_amcheck (installing the amcheck extension where missing). It
// returns false, nil when pg_amcheck is not installed.
func (m *Manager) Amcheck(ctx context.Context, port int) (bool, error) {
	bin := filepath.Join(m.o.BinDir, "pg_amcheck")
	if _, err := os.Stat(bin); err != nil {
		return false, nil
	}
	cmd := m.o.Command(bin, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", m.o.Superuser, "--install-missing", "--heapallindexed", "--all")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return true, fmt.Errorf("backup: pg_amcheck: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return true, fmt.Errorf("backup: pg_amcheck found corruption or failed: %w: %s", err, tail(out.String(), 5))
		}
		return true, nil
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return true, fmt.Errorf("backup: pg_amcheck: %w", ctx.Err())
	}
}
