package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Latest as a restore target: the end of the archived WAL.
var Latest = Target{}

// Target is where a restore's recovery stops: a time, a WAL position
// (LSN, "16/B374D848"), or neither for the end of the archive.
type Target struct {
	Time time.Time
	LSN  string
	// Exclusive stops just before the target instead of just after it.
	Exclusive bool
}

// String names the target.
func (t Target) String() string {
	switch {
	case t.LSN != "":
		return "LSN " + t.LSN
	case !t.Time.IsZero():
		return t.Time.UTC().Format(time.RFC3339Nano)
	}
	return "latest"
}

// LSNAfter is the WAL position just past segment name (the start of the
// next segment): a restore to it with Exclusive replays exactly the
// segments up to and including name. False for a name that is not a segment.
func LSNAfter(name string, segSize int64) (string, bool) {
	n, ok := segNo(name, segSize)
	if !ok || len(name) != 24 {
		return "", false
	}
	pos := uint64(n+1) * uint64(segSize)
	return fmt.Sprintf("%X/%X", pos>>32, uint32(pos)), true
}

// Scratch is a restored data directory and the scratch postgres that runs
// on it: never a member, never archiving into the repository.
type Scratch struct {
	Dir    string `json:"dir"`
	Port   int    `json:"port"`
	Target Target `json:"-"`
	// Restore is pgBackRest's restore of the files; Recover the scratch
	// postgres's start until it accepts writes (the WAL replayed up to the target).
	Restore time.Duration `json:"restore_ns"`
	Recover time.Duration `json:"recover_ns"`
	Started bool          `json:"started"`

	m *Manager
}

// Addr is the scratch postgres's address.
func (s *Scratch) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// DSN connects to the scratch postgres as the superuser.
func (s *Scratch) DSN() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable", s.Port, s.m.o.Superuser)
}

// Restore restores the newest backup plus the archived WAL up to target
// (Latest: all of it) into dir, which must be missing or empty and is never
// a member's data directory; the scratch postgres will listen on
// 127.0.0.1:port. Start runs it.
func (m *Manager) Restore(ctx context.Context, dir string, port int, target Target) (*Scratch, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: restore: %w", err)
	}
	if err := m.scratchDir(dir); err != nil {
		return nil, err
	}
	s := &Scratch{Dir: dir, Port: port, Target: target, m: m}
	args := append([]string{"--pg1-path=" + dir, "--archive-mode=off", "--link-all=n"}, targetArgs(target)...)
	start := m.clock.Now()
	if _, err := m.run(ctx, "restore", args...); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.Restore = m.clock.Now().Sub(start)
	if err := m.scratchConfig(s); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// targetArgs are pgbackrest restore's options for target: a time or an LSN
// ends the recovery there and promotes; Latest replays the whole archive.
// For a time target pgBackRest picks the newest backup that ended before it.
func targetArgs(target Target) []string {
	var args []string
	switch {
	case target.LSN != "":
		args = append(args, "--type=lsn", "--target="+target.LSN, "--target-action=promote")
	case !target.Time.IsZero():
		args = append(args, "--type=time", "--target="+target.Time.UTC().Format("2006-01-02 15:04:05.999999-07"), "--target-action=promote")
	default:
		args = append(args, "--type=default")
	}
	if target.Exclusive && (target.LSN != "" || !target.Time.IsZero()) {
		args = append(args, "--target-exclusive")
	}
	return args
}

// scratchDir checks that dir may receive a restore and creates it owned by
// the postgres user.
func (m *Manager) scratchDir(dir string) error {
	data, _ := filepath.Abs(m.o.Data)
	if dir == data || strings.HasPrefix(dir+"/", data+"/") || strings.HasPrefix(data+"/", dir+"/") {
		return fmt.Errorf("backup: restore into %s: refused, it is (or holds) this member's data directory %s", dir, data)
	}
	if es, err := os.ReadDir(dir); err == nil && len(es) > 0 {
		return fmt.Errorf("backup: restore into %s: refused, the directory is not empty (a restore never overwrites)", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backup: restore into %s: %w", dir, err)
	}
	// The parents are created traversable: the postgres user must reach dir.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("backup: create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("backup: create %s: %w", dir, err)
	}
	if err := os.Chown(dir, m.o.UID, m.o.GID); err != nil {
		return fmt.Errorf("backup: chown %s: %w", dir, err)
	}
	return nil
}

// scratchConfig replaces the member's medic.conf that came with the backup:
// the scratch postgres listens on loopback at its own port, follows no
// primary, names no synchronous standby and archives nothing.
func (m *Manager) scratchConfig(s *Scratch) error {
	var b strings.Builder
	b.WriteString("# Written by medic for a scratch restore: not a member, not archiving.\n")
	for _, kv := range [][2]string{
		{"listen_addresses", "127.0.0.1"}, {"port", strconv.Itoa(s.Port)}, {"unix_socket_directories", ""},
		{"hot_standby", "on"}, {"primary_conninfo", ""}, {"synchronous_standby_names", ""},
		{"archive_mode", "off"}, {"archive_command", ""},
	} {
		fmt.Fprintf(&b, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	path := filepath.Join(s.Dir, "medic.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("backup: write %s: %w", path, err)
	}
	if err := os.Chown(path, m.o.UID, m.o.GID); err != nil {
		return fmt.Errorf("backup: chown %s: %w", path, err)
	}
	// A backup taken from a standby carries no signal file; one left by
	// anything else would keep the scratch postgres a standby forever.
	_ = os.Remove(filepath.Join(s.Dir, "standby.signal"))
	return nil
}

// LogPath is the scratch postgres's log.
func (s *Scratch) LogPath() string {
	return filepath.Join(s.m.o.StateDir, "scratch-"+strconv.Itoa(s.Port)+".log")
}

// Start starts the scratch postgres (pg_ctl: it outlives medic, as an
// operator's restore should) and waits until it has replayed the WAL to the
// target and accepts writes, or ctx ends.
func (s *Scratch) Start(ctx context.Context) error {
	start := s.m.clock.Now()
	cmd := s.m.o.Command(filepath.Join(s.m.o.BinDir, "pg_ctl"), "start", "-D", s.Dir, "-l", s.LogPath(), "-w", "-t", "3600")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("backup: start the scratch postgres on %s: %w: %s: %s (log %s)", s.Dir, err, tail(string(out), 1), logProblem(s.LogPath()), s.LogPath())
	}
	s.Started = true
	for {
		if err := promoted(ctx, s.DSN()); err == nil {
			s.Recover = s.m.clock.Now().Sub(start)
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("backup: the scratch postgres on %s did not finish recovery: %w (last: %v)", s.Dir, ctx.Err(), err)
		}
		// pg_ctl -w returns once a hot standby accepts reads; the recovery
		// may still fail after that (a target past the archive's end), and
		// the postmaster then exits, removing its pid file.
		if _, err := os.Stat(filepath.Join(s.Dir, "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
			s.Started = false
			return fmt.Errorf("backup: the scratch postgres on %s stopped during recovery: %s (log %s)", s.Dir, logProblem(s.LogPath()), s.LogPath())
		}
		t := s.m.clock.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C():
		}
		t.Stop()
	}
}

// logProblem is the newest FATAL or PANIC line of a postgres log (why it
// stopped), else its last lines.
func logProblem(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log: " + err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "FATAL:") || strings.Contains(lines[i], "PANIC:") {
			return strings.TrimSpace(lines[i])
		}
	}
	return tail(string(b), 3)
}

func promoted(ctx context.Context, dsn string) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	var rec bool
	if err := c.QueryRow(cctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
		return err
	}
	if rec {
		return errors.New("still in recovery")
	}
	return nil
}

// Stop stops the scratch postgres (fast, then immediate).
func (s *Scratch) Stop(ctx context.Context) error {
	if !s.Started {
		return nil
	}
	cmd := s.m.o.Command(filepath.Join(s.m.o.BinDir, "pg_ctl"), "stop", "-D", s.Dir, "-m", "fast", "-w", "-t", "30")
	if out, err := cmd.CombinedOutput(); err != nil {
		cmd = s.m.o.Command(filepath.Join(s.m.o.BinDir, "pg_ctl"), "stop", "-D", s.Dir, "-m", "immediate", "-w", "-t", "10")
		if out2, err2 := cmd.CombinedOutput(); err2 != nil {
			return fmt.Errorf("backup: stop the scratch postgres on %s: %w: %s / %s", s.Dir, err2, tail(string(out), 2), tail(string(out2), 2))
		}
	}
	s.Started = false
	return nil
}

// Remove stops the scratch postgres and deletes its data directory.
func (s *Scratch) Remove(ctx context.Context) error {
	if err := s.Stop(ctx); err != nil {
		return err
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("backup: remove %s: %w", s.Dir, err)
	}
	return nil
}

// RestoreMember restores the newest backup before target and the archived
// WAL up to target (Latest: the whole archive) into this member's own data
// directory, which must be empty or missing (a cluster that lost every
// member): the recovery runs in a scratch postgres on
// 127.0.0.1:port that archives nothing, ends on a new timeline, is
// checkpointed and stopped cleanly, and the recovery settings pgBackRest
// wrote are removed, so that the member's agent starts it as any
// initialized data directory. The caller keeps the agent from acting
// meanwhile (pgha's Agent.Exclusive).
//
// A time target ends the recovery there on a new timeline: PostgreSQL picks
// a timeline no history file in the archive uses yet (it asks
// restore_command), so the later timelines of the lost cluster stay in the
// archive and the new primary's WAL never collides with them.
func (m *Manager) RestoreMember(ctx context.Context, port int, target Target) (*Scratch, error) {
	dir := m.o.Data
	if es, err := os.ReadDir(dir); err == nil && len(es) > 0 {
		return nil, fmt.Errorf("backup: restore into the member's data directory %s: refused, it is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup: create %s: %w", dir, err)
	}
	if err := os.Chown(dir, m.o.UID, m.o.GID); err != nil {
		return nil, fmt.Errorf("backup: chown %s: %w", dir, err)
	}
	s := &Scratch{Dir: dir, Port: port, Target: target, m: m}
	start := m.clock.Now()
	if _, err := m.run(ctx, "restore", append([]string{"--pg1-path=" + dir, "--link-all=n"}, targetArgs(target)...)...); err != nil {
		_ = emptyDir(dir)
		return nil, err
	}
	s.Restore = m.clock.Now().Sub(start)
	fail := func(err error) (*Scratch, error) {
		_ = s.Stop(context.WithoutCancel(ctx))
		_ = emptyDir(dir)
		return nil, err
	}
	if err := m.scratchConfig(s); err != nil {
		return fail(err)
	}
	if err := s.Start(ctx); err != nil {
		return fail(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	c, err := pgx.Connect(cctx, s.DSN())
	if err == nil {
		_, err = c.Exec(cctx, "CHECKPOINT")
		c.Close(context.Background())
	}
	cancel()
	if err != nil {
		return fail(fmt.Errorf("backup: checkpoint the restored cluster: %w", err))
	}
	if err := s.Stop(ctx); err != nil {
		return fail(err)
	}
	if err := cleanAutoConf(filepath.Join(dir, "postgresql.auto.conf")); err != nil {
		return fail(err)
	}
	return s, nil
}

// cleanAutoConf removes the recovery settings a restore wrote into
// postgresql.auto.conf (they would steer the member's next recovery).
func cleanAutoConf(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("backup: read %s: %w", path, err)
	}
	var keep []string
	for _, line := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "restore_command") || strings.HasPrefix(t, "recovery_target") || strings.HasPrefix(t, "archive_mode") {
			continue
		}
		keep = append(keep, line)
	}
	if err := os.WriteFile(path, []byte(strings.Join(keep, "\n")), 0o600); err != nil {
		return fmt.Errorf("backup: write %s: %w", path, err)
	}
	return nil
}

// emptyDir removes what a failed restore left in dir, keeping dir.
func emptyDir(dir string) error {
	es, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range es {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
