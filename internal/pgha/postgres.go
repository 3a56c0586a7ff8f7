package pgha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/clock"
)

// Sentinel errors of the postgres manager.
var (
	// ErrFenced: the start was refused because the member was fenced after it was decided.
	ErrFenced = errors.New("pgha: fenced")
	// ErrNotRunning: postgres is not running.
	ErrNotRunning = errors.New("pgha: postgres not running")
)

// PostgresOptions describe the local server.
type PostgresOptions struct {
	Member     string // application_name towards the primary, for synchronous_standby_names
	BinDir     string
	Data       string // absolute path
	Listen     string // host:port
	User       string // OS user to run as ("" = medic's own)
	Superuser  string // database role
	Parameters map[string]string
	HBA        []string
	LogPath    string // postgres's stderr goes here
	StatePath  string // the member's role marker (outside the data dir: clones must not copy it)
	Logger     *slog.Logger
	Clock      clock.Clock

	// Settings are owned by other parts of medic (backup's WAL archiving) and
	// written after medic's own, so they win over both.
	Settings map[string]string
}

// Postgres runs, stops and reconfigures the local PostgreSQL server. Its
// methods are safe for concurrent use; Kill preempts everything.
type Postgres struct {
	o          PostgresOptions
	host       string
	port       int
	cred       *syscall.Credential // nil: run as medic's user
	uid, gid   int
	log        *slog.Logger
	clock      clock.Clock
	ConnString string // how medic connects to it

	markMu sync.Mutex // serializes read-modify-write of the marker file

	mu          sync.Mutex
	proc        *pgProc // the running postmaster, started or adopted (nil: none)
	exited      chan struct{}
	epoch       uint64
	writable    bool
	upstream    string // member
	upstreamDSN string
	syncStandby string
	wd          *watchdog
}

// NewPostgres checks the options and resolves the OS user.
func NewPostgres(o PostgresOptions) (*Postgres, error) {
	host, ps, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("pgha: postgres listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port <= 0 {
		return nil, fmt.Errorf("pgha: postgres listen %q: want a port from 1 to 65535", o.Listen)
	}
	p := &Postgres{o: o, host: host, port: port, log: o.Logger, clock: clock.Or(o.Clock), uid: os.Getuid(), gid: os.Getgid()}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	name := o.User
	if name == "" && os.Getuid() == 0 {
		name = "postgres" // postgres refuses to run as root
	}
	if name != "" {
		u, err := user.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("pgha: look up the postgres OS user %q: %w", name, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if uid != os.Getuid() {
			if os.Getuid() != 0 {
				return nil, fmt.Errorf("pgha: medic runs as uid %d and cannot run postgres as %s (uid %d): run medic as root or as %s", os.Getuid(), name, uid, name)
			}
			p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		}
		p.uid, p.gid = uid, gid
	}
	connHost := host
	if connHost == "" || connHost == "0.0.0.0" || connHost == "::" {
		connHost = "127.0.0.1"
	}
	p.ConnString = fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable application_name=medic", connHost, port, o.Superuser)
	for _, b := range []string{"postgres", "initdb", "pg_basebackup", "pg_rewind", "pg_controldata"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return nil, fmt.Errorf("pgha: %s not found in bin_dir %s (install PostgreSQL, e.g. the Debian package postgresql-15): %w", b, o.BinDir, err)
		}
	}
	return p, nil
}

// Initialized reports whether the data directory holds a cluster.
func (p *Postgres) Initialized() bool {
	_, err := os.Stat(filepath.Join(p.o.Data, "PG_VERSION"))
	return err == nil
}

// Epoch counts fences; a start decided in an older epoch is refused.
func (p *Postgres) Epoch() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epoch
}

// State reports whether postgres runs, whether medic made it writable, its upstream and its synchronous standby.
func (p *Postgres) State() (running, writable bool, upstream, syncStandby string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc != nil, p.proc != nil && p.writable, p.upstream, p.syncStandby
}

// Exited returns a channel closed when the running postgres exits (nil when none runs).
func (p *Postgres) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// Start starts postgres read-write (primary) or in recovery streaming from
// upstream at upstreamAddr ("" for none). It refuses with ErrFenced when a
// fence happened since epoch was read: the decision to start is stale. A
// primary's watchdog is armed with deadline (0: disarmed, only while
// bootstrapping a cluster no one else can lead).
func (p *Postgres) Start(primary bool, upstream, upstreamAddr string, epoch uint64, deadline time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch != p.epoch {
		return fmt.Errorf("pgha: start postgres: %w (epoch %d, now %d)", ErrFenced, epoch, p.epoch)
	}
	if p.proc != nil {
		return fmt.Errorf("pgha: start postgres: already running (pid %d)", p.proc.pid)
	}
	p.upstream, p.upstreamDSN = "", ""
	if !primary && upstreamAddr != "" {
		p.upstream, p.upstreamDSN = upstream, p.dsn(upstreamAddr)
	}
	if primary {
		p.upstream = ""
	}
	if err := p.writeConfigLocked(); err != nil {
		return err
	}
	signal := filepath.Join(p.o.Data, "standby.signal")
	if primary {
		if err := os.Remove(signal); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("pgha: remove %s: %w", signal, err)
		}
	} else if err := p.writeOwned(signal, ""); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(p.o.Data, "recovery.signal"))
	logf, err := os.OpenFile(p.o.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("pgha: open the postgres log %s: %w", p.o.LogPath, err)
	}
	cmd := p.command(filepath.Join(p.o.BinDir, "postgres"), "-D", p.o.Data)
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("pgha: start postgres: %w", err)
	}
	proc := &pgProc{pid: cmd.Process.Pid, child: cmd.Process}
	p.proc, p.writable = proc, primary
	exited := make(chan struct{})
	p.exited = exited
	p.wd = startWatchdog(proc.pid, p.log)
	if primary && deadline > 0 {
		p.wd.arm(deadline)
	}
	go func() {
		err := cmd.Wait()
		p.gone(proc)
		p.log.Info("postgres exited", "pid", proc.pid, "status", fmt.Sprint(err))
		close(exited)
	}()
	role := "replica of " + orNone(upstream)
	if primary {
		role = "primary"
	}
	p.log.Info("postgres started", "pid", cmd.Process.Pid, "as", role)
	return nil
}

func (p *Postgres) dsn(addr string) string {
	h, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("host=%s port=%s user=%s application_name=%s sslmode=disable", h, port, p.o.Superuser, p.o.Member)
}

// Command builds a command running as the postgres OS user in its own
// process group, with a minimal environment (tools such as pgbackrest that
// must own what postgres owns run this way).
func (p *Postgres) Command(bin string, args ...string) *exec.Cmd { return p.command(bin, args...) }

// Owner is the OS user and group postgres runs as.
func (p *Postgres) Owner() (uid, gid int) { return p.uid, p.gid }

// command builds a command running as the postgres OS user in its own process group.
func (p *Postgres) command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "HOME=/"}
	if pw := os.Getenv("PGPASSWORD"); pw != "" {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+pw)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	return cmd
}

// Stop shuts postgres down and waits: fast (SIGINT: sessions are ended, a
// shutdown checkpoint is written and streamed to the replicas) for up to
// grace, then immediate (SIGQUIT), then SIGKILL to its process group.
func (p *Postgres) Stop(ctx context.Context, grace time.Duration) error {
	p.mu.Lock()
	proc, exited := p.proc, p.exited
	if proc != nil {
		p.wd.disarm() // a clean stop is not a fence
	}
	p.mu.Unlock()
	if proc == nil {
		return nil
	}
	_ = proc.signal(syscall.SIGINT)
	if p.wait(ctx, exited, grace) {
		return nil
	}
	p.log.Warn("postgres did not stop in time; immediate shutdown", "grace", grace)
	_ = proc.signal(syscall.SIGQUIT)
	if p.wait(ctx, exited, 2*time.Second) {
		return nil
	}
	proc.killGroup()
	<-exited
	return nil
}

// PID is the running postmaster's process id, 0 when none runs.
func (p *Postgres) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return 0
	}
	return p.proc.pid
}

// Crash SIGKILLs postgres and its children at once, as a crash would: no
// shutdown, no fencing (the agent sees it exit and decides as for any
// crash). It returns the postmaster's pid, or 0 when none was running.
func (p *Postgres) Crash() int {
	p.mu.Lock()
	proc := p.proc
	p.mu.Unlock()
	if proc == nil {
		return 0
	}
	proc.killGroup()
	return proc.pid
}

// Kill is the fence: it makes any start decided before it fail, and stops a
// running postgres at once (immediate shutdown, SIGKILL to the group if that
// takes over a second). It returns once postgres is gone.
func (p *Postgres) Kill() {
	p.mu.Lock()
	p.epoch++
	proc, exited := p.proc, p.exited
	p.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.signal(syscall.SIGQUIT)
	if p.wait(context.Background(), exited, time.Second) {
		return
	}
	proc.killGroup()
	<-exited
}

func (p *Postgres) wait(ctx context.Context, exited <-chan struct{}, d time.Duration) bool {
	t := p.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-exited:
		return true
	case <-t.C():
		return false
	case <-ctx.Done():
		return false
	}
}

// Arm tells the watchdog that postgres must be killed unless re-armed
// within d (the time left before the fence deadline); Disarm lifts it.
func (p *Postgres) Arm(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wd != nil {
		p.wd.arm(d)
	}
}

// Disarm lifts the watchdog's deadline (a replica cannot accept writes).
func (p *Postgres) Disarm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wd != nil {
		p.wd.disarm()
	}
}

// MarkWritable records that the running postgres was promoted.
func (p *Postgres) MarkWritable() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		p.writable, p.upstream, p.upstreamDSN = true, "", ""
	}
}

// Follow points a running replica at a new upstream (primary_conninfo is
// reloaded without a restart since PostgreSQL 13).
func (p *Postgres) Follow(upstream, addr string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.upstream, p.upstreamDSN = upstream, p.dsn(addr)
	return p.reloadLocked()
}

// SetSyncStandby sets synchronous_standby_names to member ("" for none) and reloads.
func (p *Postgres) SetSyncStandby(member string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncStandby = member
	return p.reloadLocked()
}

func (p *Postgres) reloadLocked() error {
	if err := p.writeConfigLocked(); err != nil {
		return err
	}
	if p.proc == nil {
		return ErrNotRunning
	}
	if err := p.proc.signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("pgha: reload postgres: %w", err)
	}
	return nil
}

// writeConfigLocked writes medic.conf (included from postgresql.conf) and,
// when configured, pg_hba.conf. medic's settings come last, so they win.
func (p *Postgres) writeConfigLocked() error {
	var b strings.Builder
	b.WriteString("# Written by medic on every start and change; edits are lost.\n")
	keys := make([]string, 0, len(p.o.Parameters))
	for k := range p.o.Parameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, quote(p.o.Parameters[k]))
	}
	listen := p.host
	if listen == "" {
		listen = "*"
	}
	sync := ""
	if p.syncStandby != "" {
		sync = `FIRST 1 ("` + p.syncStandby + `")`
	}
	for _, kv := range [][2]string{
		{"listen_addresses", listen}, {"port", strconv.Itoa(p.port)}, {"unix_socket_directories", ""},
		{"wal_level", "replica"}, {"hot_standby", "on"}, {"wal_log_hints", "on"}, {"full_page_writes", "on"},
		{"max_wal_senders", "10"}, {"max_replication_slots", "10"}, {"wal_keep_size", "256MB"},
		{"hot_standby_feedback", "on"}, {"wal_retrieve_retry_interval", "250ms"}, {"wal_receiver_status_interval", "1s"},
		{"recovery_target_timeline", "latest"}, {"primary_conninfo", p.upstreamDSN},
		{"synchronous_standby_names", sync}, {"synchronous_commit", "on"},
	} {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], quote(kv[1]))
	}
	keys = keys[:0]
	for k := range p.o.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, quote(p.o.Settings[k]))
	}
	if err := p.writeOwned(filepath.Join(p.o.Data, "medic.conf"), b.String()); err != nil {
		return err
	}
	if err := p.ensureInclude(); err != nil {
		return err
	}
	if len(p.o.HBA) > 0 {
		return p.writeOwned(filepath.Join(p.o.Data, "pg_hba.conf"), strings.Join(p.o.HBA, "\n")+"\n")
	}
	return nil
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ensureInclude makes postgresql.conf include medic.conf, once.
func (p *Postgres) ensureInclude() error {
	path := filepath.Join(p.o.Data, "postgresql.conf")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("pgha: read %s: %w", path, err)
	}
	const line = "include_if_exists = 'medic.conf'"
	if strings.Contains(string(b), line) {
		return nil
	}
	return p.writeOwned(path, string(b)+"\n"+line+"\n")
}

// writeOwned writes a file in the data directory owned by the postgres user.
func (p *Postgres) writeOwned(path, content string) error {
	tmp := path + ".medic-tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return fmt.Errorf("pgha: write %s: %w", path, err)
	}
	if err := os.Chown(tmp, p.uid, p.gid); err != nil {
		return fmt.Errorf("pgha: chown %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pgha: write %s: %w", path, err)
	}
	return nil
}
