package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
	"github.com/medic-dev/medic/internal/ports"
)

// requirePgBackRest skips without PostgreSQL 15 or pgBackRest, naming the
// missing package, and fails instead under MEDIC_REQUIRE_INTEGRATION=1.
func requirePgBackRest(t *testing.T) {
	t.Helper()
	pgtest.Require(t)
	if _, err := os.Stat(backup.Binary); err != nil {
		msg := backup.Binary + " not found (install the Debian package pgbackrest)"
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// reachableDir is a temporary directory the postgres user can reach.
func reachableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	return dir
}

// primary is a standalone postgres archiving into a fresh repository.
type primary struct {
	pg   *pgha.Postgres
	m    *backup.Manager
	addr string
	dir  string
}

func startPrimary(t *testing.T) *primary {
	t.Helper()
	dir := reachableDir(t)
	port, err := ports.Free(1)
	if err != nil {
		t.Fatal(err)
	}
	bc := &config.Backup{Repository: filepath.Join(dir, "repo")}
	bc.SetDefaults()
	bc.Archive.Timeout = config.Duration(5 * time.Second)
	o := pgha.PostgresOptions{Member: "a", BinDir: pgtest.CachedBinDir(t), Data: filepath.Join(dir, "pg"), Listen: fmt.Sprintf("127.0.0.1:%d", port),
		Superuser: "postgres", LogPath: filepath.Join(dir, "pg.log"), StatePath: filepath.Join(dir, "role.json")}
	// The manager needs the postgres user's identity, which NewPostgres resolves.
	probe, err := pgha.NewPostgres(o)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := probe.Owner()
	m, err := backup.New(backup.Options{Cluster: "pg", Config: bc, Repository: bc.Repository, Data: o.Data, Port: port,
		BinDir: pgtest.BinDir, StateDir: filepath.Join(dir, "state"), Command: probe.Command, UID: uid, GID: gid})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Prepare(); err != nil {
		t.Fatal(err)
	}
	o.Settings = m.Settings()
	pg, err := pgha.NewPostgres(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := pg.InitDB(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(true, "", "", pg.Epoch(), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop(context.Background(), 10*time.Second) })
	p := &primary{pg: pg, m: m, addr: o.Listen, dir: dir}
	deadline := time.Now().Add(30 * time.Second)
	for !pgtest.Writable(p.addr) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(o.LogPath)
			t.Fatalf("postgres did not start: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// write inserts one row and returns when its commit was acknowledged.
func write(t *testing.T, c *pgx.Conn, v string) time.Time {
	t.Helper()
	if _, err := c.Exec(context.Background(), "INSERT INTO marks (v) VALUES ($1)", v); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

func marks(t *testing.T, dsn string) []string {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(context.Background(), "SELECT v FROM marks ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestPointInTimeRestore restores to a moment between two acknowledged
// writes: the first is there, the second is not; a restore to latest has both.
func TestPointInTimeRestore(t *testing.T) {
	requirePgBackRest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startPrimary(t)
	c := pgtest.Connect(t, p.addr)
	if _, err := c.Exec(ctx, "CREATE TABLE marks (id serial PRIMARY KEY, v text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if err := p.m.StanzaCreate(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := p.m.Backup(ctx, backup.Full)
	if err != nil {
		t.Fatal(err)
	}
	if last := info.Last(); last == nil || last.Type != "full" || last.Size <= 0 {
		t.Fatalf("after a full backup the repository lists %+v", info)
	}
	// pgBackRest records the backup's stop in whole seconds; a time target
	// needs a backup that stopped before it.
	time.Sleep(1100 * time.Millisecond)
	write(t, c, "first")
	time.Sleep(300 * time.Millisecond)
	target := time.Now()
	time.Sleep(300 * time.Millisecond)
	write(t, c, "second")
	if err := p.m.Check(ctx); err != nil { // switches WAL and waits for it to be archived
		t.Fatal(err)
	}

	if _, err := p.m.Restore(ctx, filepath.Join(p.dir, "pg"), 1, backup.Latest); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("a restore over the member's data directory: err %v, want refused", err)
	}
	for _, tc := range []struct {
		name   string
		target backup.Target
		want   string
	}{{"pitr", backup.Target{Time: target}, "first"}, {"latest", backup.Latest, "first,second"}} {
		port, err := ports.Free(1)
		if err != nil {
			t.Fatal(err)
		}
		s, err := p.m.Restore(ctx, filepath.Join(p.dir, "restore-"+tc.name), port, tc.target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Remove(context.Background()) })
		if err := s.Start(ctx); err != nil {
			b, _ := os.ReadFile(s.LogPath())
			t.Fatalf("%s: %v\n%s", tc.name, err, b)
		}
		if got := strings.Join(marks(t, s.DSN()), ","); got != tc.want {
			t.Errorf("restore to %s: rows %q, want %q", tc.name, got, tc.want)
		}
		t.Logf("restore to %s: files %v, recovery %v", tc.name, s.Restore, s.Recover)
		if err := s.Remove(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// A target past the end of the archive: the recovery fails (before or
	// after pg_ctl saw the standby accept reads); Start says why at once
	// instead of waiting for a promotion that cannot come.
	port, err := ports.Free(1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.m.Restore(ctx, filepath.Join(p.dir, "restore-future"), port, backup.Target{Time: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Remove(context.Background()) })
	start := time.Now()
	if err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), "recovery ended before configured recovery target was reached") {
		t.Fatalf("restore to a target past the archive: Start = %v, want the recovery's failure", err)
	} else {
		t.Logf("a target past the archive fails in %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
}

// TestFailingArchiveShowsLag: when archive-push fails (the repository's
// archive cannot be written), the primary's archiver reports failures and
// the lag grows in segments and seconds, which the signals page on; once
// the repository is writable again the lag returns to nothing.
func TestFailingArchiveShowsLag(t *testing.T) {
	requirePgBackRest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startPrimary(t)
	if err := p.m.StanzaCreate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(p.dir, "repo", "archive")
	if err := os.Chmod(archive, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(archive, 0o750) })
	c := pgtest.Connect(t, p.addr)
	for i := 0; i < 2; i++ {
		if _, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS filler (x int); INSERT INTO filler SELECT generate_series(1, 1000); SELECT pg_switch_wal()"); err != nil {
			t.Fatal(err)
		}
	}
	broken := time.Now()
	var a backup.Archiver
	for {
		var err error
		a, err = backup.ReadArchiver(ctx, p.m.LocalDSN())
		if err != nil {
			t.Fatal(err)
		}
		if a.FailedCount > 0 && time.Since(broken) > 2*time.Second {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("archive-push never failed: %+v", a)
		}
		time.Sleep(200 * time.Millisecond)
	}
	lag := backup.ArchiveLag(time.Now(), a)
	t.Logf("archive broken: %+v → lag %+v", a, lag)
	if lag.Segments < 1 || lag.Seconds < 2 {
		t.Fatalf("a failing archive shows lag %+v, want segments ≥ 1 and seconds ≥ 2", lag)
	}
	if err := os.Chmod(archive, 0o750); err != nil {
		t.Fatal(err)
	}
	for {
		a, err := backup.ReadArchiver(ctx, p.m.LocalDSN())
		if err != nil {
			t.Fatal(err)
		}
		if l := backup.ArchiveLag(time.Now(), a); l.Segments == 0 && a.LastArchivedAt.After(broken) {
			t.Logf("archive repaired: lag %+v", l)
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the archive did not catch up: %+v", a)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
