package pgha_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// TestRewindAfterAStopMidCrashRecovery reproduces issue 14's measured bug
// with two bare postgres servers: the old primary a crashed with WAL past
// the fork from b, was started in recovery and stopped while still
// replaying its own WAL ("shut down in recovery", its control file
// recording only how far it got). pg_rewind alone then trusted that
// record, answered "no rewind required", and a could never follow b's
// timeline. Rewind must find the divergence and a must stream from b.
func TestRewindAfterAStopMidCrashRecovery(t *testing.T) {
	pgtest.Require(t)
	dir := filepath.Join(t.TempDir(), "rewind")
	os.MkdirAll(dir, 0o755)
	for d := dir; strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // the postgres user must reach its data directory
	}
	ctx := context.Background()
	mk := func(name string) (*pgha.Postgres, string) {
		addr := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
		p, err := pgha.NewPostgres(pgha.PostgresOptions{Member: name, BinDir: pgtest.CachedBinDir(t), Data: filepath.Join(dir, name),
			Listen: addr, Superuser: "postgres", LogPath: filepath.Join(dir, name+".log"), StatePath: filepath.Join(dir, name+".json")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Kill() })
		return p, addr
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "a.log"))
			t.Logf("a's postgres log:\n%s", lastLines(string(b), 40))
		}
	})
	a, aAddr := mk("a")
	b, bAddr := mk("b")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ready := func(addr string, primary bool) {
		t.Helper()
		waitFor(t, 60*time.Second, addr+" ready", func() (bool, string) {
			w := pgtest.Writable(addr)
			return w == primary, fmt.Sprint("writable ", w)
		})
	}
	must(a.InitDB(ctx))
	must(a.Start(true, "", "", a.Epoch(), 0))
	ready(aAddr, true)
	exec1(t, pgtest.Connect(t, aAddr), "CREATE TABLE t (id int, pad text)")
	must(b.Basebackup(ctx, aAddr, nil))
	must(b.Start(false, "a", aAddr, b.Epoch(), 0))
	waitFor(t, 60*time.Second, "b streams from a", func() (bool, string) { return streamsOn(t, bAddr, 1) })

	// The fork: b is promoted; a goes on writing (as a primary killed a
	// moment later would have), then crashes.
	exec1(t, pgtest.Connect(t, bAddr), "SELECT pg_promote(true)")
	ca := pgtest.Connect(t, aAddr)
	for i := 0; i < 6; i++ {
		exec1(t, ca, "INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series(1, 20000) g")
	}
	ca.Close(ctx)
	exited := a.Exited()
	a.Crash()
	<-exited

	// Started in recovery with no upstream, stopped while it replays.
	// (A backend of the killed postmaster may hold its shared memory for a
	// moment: postgres then refuses to start, and is started again.)
	waitFor(t, 30*time.Second, "a replays its WAL in recovery", func() (bool, string) {
		if running, _, _, _ := a.State(); !running {
			must(a.Start(false, "", "", a.Epoch(), 0))
		}
		st, err := a.ClusterState(ctx)
		return err == nil && strings.Contains(st, "recovery"), st
	})
	must(a.Stop(ctx, 10*time.Second))
	state, err := a.ClusterState(ctx)
	must(err)
	t.Logf("a stopped during its recovery: cluster state %q", state)

	must(a.CheckpointSource(ctx, bAddr))
	verdict, err := a.Rewind(ctx, bAddr)
	must(err)
	t.Logf("rewind: %s", verdict)
	if strings.Contains(verdict, "no rewind required") {
		t.Fatalf("pg_rewind found nothing to rewind for data that went past the fork: %s", verdict)
	}
	must(a.Start(false, "b", bAddr, a.Epoch(), 0))
	waitFor(t, 30*time.Second, "a streams from b on timeline 2", func() (bool, string) { return streamsOn(t, aAddr, 2) })
}

// streamsOn says whether the replica at addr streams on timeline tl.
func streamsOn(t *testing.T, addr string, tl int) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	host, port, _ := strings.Cut(addr, ":")
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable", host, port))
	if err != nil {
		return false, err.Error()
	}
	defer c.Close(context.Background())
	var status string
	var got int
	err = c.QueryRow(ctx, "SELECT COALESCE((SELECT status FROM pg_stat_wal_receiver), 'none'), "+
		"COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), 0)").Scan(&status, &got)
	if err != nil {
		return false, err.Error()
	}
	return status == "streaming" && got == tl, fmt.Sprintf("receiver %s on timeline %d", status, got)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
