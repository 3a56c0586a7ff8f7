package e2e_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// TestUpgradeKeepsDatabaseConnections: `medic upgrade` of an agent whose
// primary listener leads to another host's postgres does not cut the
// PostgreSQL sessions it holds. Two agents keep a cluster; a leads. Through
// b's primary listener (which routes to a's postgres) one session stays
// idle inside an open transaction and another runs a query every 20 ms.
// b is upgraded: both sessions keep working on the old medic (which stops
// accepting but keeps piping for databases.*.proxy.handover_drain), a new session
// reaches the new medic, b's own postgres comes back streaming under the new
// medic, and the old medic exits once its sessions ended.
func TestUpgradeKeepsDatabaseConnections(t *testing.T) {
	pgtest.Require(t)
	srv := etcdtest.Start(t)
	a, b := newDBNode(t, "a", srv.Endpoint, "async"), newDBNode(t, "b", srv.Endpoint, "async")
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	b.start()
	a.eventually(60*time.Second, "b streams from a", streams("b", "a", false))
	oldPID := b.cmd.Process.Pid
	pidFile := filepath.Join(b.dir, "medic", "medic.pid")
	t.Cleanup(func() { // the new medic is not the test's child: stop it by its pid
		if pid, err := readPIDFile(pidFile); err == nil && pid != oldPID {
			syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 800 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
			if syscall.Kill(pid, 0) == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			b.killPostgres()
			// b.cmd.Wait returns once the new medic (which shares its stderr)
			// is gone; then b's own cleanup sees it ended.
			select {
			case err := <-b.done:
				b.done <- err
			case <-time.After(10 * time.Second):
			}
		}
	})

	ctx := context.Background()
	idle := pgtest.Connect(t, b.prim)
	var before int
	if err := idle.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&before); err != nil {
		t.Fatal(err)
	}
	tx, err := idle.Begin(ctx) // idle in transaction: a cut would lose it
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE held (x int)"); err != nil {
		t.Fatal(err)
	}
	active := pgtest.Connect(t, b.prim)
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		okN      atomic.Int64
		firstErr atomic.Value
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; n < 5000 && !stop.Load(); n++ {
			qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			var one int
			err := active.QueryRow(qctx, "SELECT 1").Scan(&one)
			cancel()
			if err != nil {
				firstErr.CompareAndSwap(nil, fmt.Sprintf("query %d: %v", n, err))
				return
			}
			okN.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)

	t0 := time.Now()
	out, err := runMedic("upgrade", "-c", filepath.Join(b.dir, "medic.yaml"))
	if err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("medic upgrade: %v\n%s\nagent stderr:\n%s", err, out, tail(b.stderr.String(), 3000))
	}
	took := time.Since(t0)
	newPID, err := readPIDFile(pidFile)
	if err != nil || newPID == oldPID {
		t.Fatalf("pid file after the upgrade: %d %v", newPID, err)
	}
	// A new session reaches the new medic, which routes to a as well.
	fresh := pgtest.Connect(t, b.prim)
	if err := fresh.QueryRow(ctx, "SELECT 1").Scan(new(int)); err != nil {
		t.Fatalf("a new session after the upgrade: %v", err)
	}
	fresh.Close(ctx)
	// b's own postgres (a replica) is stopped by the old medic after the
	// handover and started again by the new one, not fought over.
	b.eventually(90*time.Second, "b streams from a under the new medic", streams("b", "a", false))
	time.Sleep(500 * time.Millisecond)
	if _, err := tx.Exec(ctx, "INSERT INTO held VALUES (1)"); err != nil {
		t.Fatalf("the session idle in a transaction, after the upgrade: %v", err)
	}
	var after int
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&after); err != nil || after != before {
		t.Fatalf("the idle session after the upgrade: backend %d (was %d), %v", after, before, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit on the idle session after the upgrade: %v", err)
	}
	stop.Store(true)
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		t.Fatalf("the active session failed across the upgrade: %v\nold medic stderr:\n%s", e, tail(b.stderr.String(), 3000))
	}
	if syscall.Kill(oldPID, 0) != nil || isZombie(oldPID) {
		t.Fatalf("the old medic exited while it held 2 database sessions")
	}
	t.Logf("figures: upgrade with 2 sessions through the database listener: medic upgrade returned after %v (it waits up to 10s for the old medic to exit); the active one answered %d queries, 0 failed; the one idle in a transaction committed after the handover",
		took.Round(time.Millisecond), okN.Load())
	idle.Close(ctx)
	active.Close(ctx)
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(oldPID, 0) == nil && !isZombie(oldPID) {
		if time.Now().After(deadline) {
			t.Fatalf("the old medic (pid %d) still runs 15s after its last session ended; its stderr:\n%s", oldPID, tail(b.stderr.String(), 8000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
