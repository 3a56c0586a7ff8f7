package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// TestUpgradeKeepsDatabaseConnections: `medic upgrade` of an agent whose
// primary listener leads to another host's postgres does not cut the
// PostgreSQL sessions it holds. Two agents keep a cluster; a leads. Through
// b's primary listener (which routes to a's postgres) one session stays
// idle inside an open transaction and another runs a query every 20 ms.
// b is upgraded: both sessions keep working on the old medic (which stops
// accepting but keeps piping for databases.*.proxy.handover_drain), a new session
// reaches the new medic, b's own postgres streams on under the new medic
// (adopted), and the old medic exits once its sessions ended.
func TestUpgradeKeepsDatabaseConnections(t *testing.T) {
	pgtest.Require(t)
	srv := etcdtest.Start(t)
	a, b := newDBNode(t, "a", srv.Endpoint, "async"), newDBNode(t, "b", srv.Endpoint, "async")
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	b.start()
	a.eventually(60*time.Second, "b streams from a", streams("b", "a", false))
	oldPID := b.cmd.Process.Pid
	bPM := postmasterPID(t, b)
	pidFile := filepath.Join(b.dir, "medic", "medic.pid")
	stopUpgradedOnCleanup(t, b, pidFile, oldPID)

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
	// fatal stops the querying goroutine first: the connections it uses are
	// closed by the test's cleanups.
	fatal := func(format string, args ...any) {
		t.Helper()
		stop.Store(true)
		wg.Wait()
		t.Fatalf(format, args...)
	}
	time.Sleep(300 * time.Millisecond)

	t0 := time.Now()
	out, err := runMedic("upgrade", "-c", filepath.Join(b.dir, "medic.yaml"))
	if err != nil {
		fatal("medic upgrade: %v\n%s\nagent stderr:\n%s", err, out, tail(b.stderr.String(), 3000))
	}
	took := time.Since(t0)
	newPID, err := readPIDFile(pidFile)
	if err != nil || newPID == oldPID {
		fatal("pid file after the upgrade: %d %v", newPID, err)
	}
	// A new session reaches the new medic, which routes to a as well.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	fresh, err := pgx.Connect(cctx, "postgres://postgres@"+b.prim+"/postgres?sslmode=disable")
	cancel()
	if err != nil {
		fatal("a new session after the upgrade: %v\nagents' stderr (old and new):\n%s", err, tail(b.stderr.String(), 6000))
	}
	if err := fresh.QueryRow(ctx, "SELECT 1").Scan(new(int)); err != nil {
		fresh.Close(ctx)
		fatal("a new session after the upgrade: %v", err)
	}
	fresh.Close(ctx)
	// b's own postgres (a replica) is handed over and adopted by the new
	// medic, still streaming.
	b.eventually(90*time.Second, "b streams from a under the new medic", streams("b", "a", false))
	if pm := postmasterPID(t, b); pm != bPM {
		t.Fatalf("b's postmaster pid %d after the upgrade, was %d: not adopted", pm, bPM)
	}
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

// TestUpgradeAdoptsPrimaryPostgres: `medic upgrade` of the primary's host
// keeps its postmaster running and the new medic adopts it with the
// leadership (Patroni's restart: postgres carries on, the primary stays
// primary). Two agents keep a cluster; a leads. Directly to a's postgres,
// one session stays idle inside an open transaction and another inserts a
// row every 10 ms. a is upgraded: the postmaster pid is the same before and
// after, the leader key (same creation revision: the fencing token) is
// never missing or replaced while the test watches it every 10 ms, both
// sessions keep their backends, and every acknowledged insert is there.
func TestUpgradeAdoptsPrimaryPostgres(t *testing.T) {
	pgtest.Require(t)
	srv := etcdtest.Start(t)
	a, b := newDBNode(t, "a", srv.Endpoint, "async"), newDBNode(t, "b", srv.Endpoint, "async")
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	b.start()
	a.eventually(60*time.Second, "b streams from a", streams("b", "a", false))
	oldPID := a.cmd.Process.Pid
	pidFile := filepath.Join(a.dir, "medic", "medic.pid")
	stopUpgradedOnCleanup(t, a, pidFile, oldPID)
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	const leaderPrefix = "/medic/e2e/pg/leader"
	lead0, err := cli.Leader(ctx, leaderPrefix)
	if err != nil {
		t.Fatal(err)
	}
	pm0 := postmasterPID(t, a)

	idle := pgtest.Connect(t, a.pg)
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
	busy := pgtest.Connect(t, a.pg)
	if _, err := busy.Exec(ctx, "CREATE TABLE upgrade_writes (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		acked    []int32
		ackAt    []time.Time
		firstErr atomic.Value
		lapses   atomic.Value
	)
	wg.Add(2)
	go func() { // the busy session: an acknowledged insert every 10 ms
		defer wg.Done()
		for n := int32(0); n < 20000 && !stop.Load(); n++ {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := busy.Exec(qctx, "INSERT INTO upgrade_writes VALUES ($1)", n)
			cancel()
			if err != nil {
				firstErr.CompareAndSwap(nil, fmt.Sprintf("insert %d: %v", n, err))
				return
			}
			mu.Lock()
			acked, ackAt = append(acked, n), append(ackAt, time.Now())
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	go func() { // the leader key, every 10 ms: never missing, never another
		defer wg.Done()
		for i := 0; i < 20000 && !stop.Load(); i++ {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			l, err := cli.Leader(qctx, leaderPrefix)
			cancel()
			if err != nil || l.CreateRev != lead0.CreateRev || l.Lease != lead0.Lease {
				lapses.CompareAndSwap(nil, fmt.Sprintf("leader key %+v, %v (was revision %d, lease %x)", l, err, lead0.CreateRev, lead0.Lease))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)

	t0 := time.Now()
	out, err := runMedic("upgrade", "-c", filepath.Join(a.dir, "medic.yaml"))
	if err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("medic upgrade: %v\n%s\nagent stderr:\n%s", err, out, tail(a.stderr.String(), 3000))
	}
	took := time.Since(t0)
	newPID, err := readPIDFile(pidFile)
	if err != nil || newPID == oldPID {
		t.Fatalf("pid file after the upgrade: %d %v", newPID, err)
	}
	// The new medic publishes itself as a's agent with the same postmaster.
	a.eventually(30*time.Second, "the new medic keeps a as the leader with the same postmaster", func(st pgha.Status) bool {
		if !leaderIs("a")(st) {
			return false
		}
		for _, mi := range st.Members {
			if mi.Name == "a" {
				return mi.AgentPID == newPID && mi.Role == pgha.RolePrimary
			}
		}
		return false
	})
	adopted := time.Now()
	time.Sleep(time.Second) // writes go on under the new medic
	stop.Store(true)
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		t.Fatalf("the busy session failed across the upgrade: %v\nstderr:\n%s", e, tail(a.stderr.String(), 3000))
	}
	if e := lapses.Load(); e != nil {
		t.Fatalf("the leadership lapsed or changed hands across the upgrade: %v\nstderr:\n%s", e, tail(a.stderr.String(), 3000))
	}
	if pm := postmasterPID(t, a); pm != pm0 {
		t.Fatalf("postmaster pid %d after the upgrade, was %d: postgres was restarted", pm, pm0)
	}
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
	var found int
	if err := busy.QueryRow(ctx, "SELECT count(*) FROM upgrade_writes WHERE id = ANY($1)", acked).Scan(&found); err != nil {
		t.Fatal(err)
	}
	if found != len(acked) || len(acked) == 0 {
		t.Fatalf("%d acknowledged inserts, %d found: %d lost", len(acked), found, len(acked)-found)
	}
	code, body := getWithToken("http://"+a.api+"/v1/audit?kind=db.adopted", a.token)
	if code != 200 || !strings.Contains(body, "adopted the running postmaster") || !strings.Contains(body, "same lease") || !strings.Contains(body, "watchdog ended") {
		t.Fatalf("audit db.adopted: %d %s", code, body)
	}
	// The longest gap between acknowledgments from the upgrade until the
	// new medic published itself, and outside that window.
	var during, outside time.Duration
	for i := 1; i < len(ackAt); i++ {
		g := ackAt[i].Sub(ackAt[i-1])
		if ackAt[i].After(t0) && ackAt[i-1].Before(adopted) {
			during = max(during, g)
		} else {
			outside = max(outside, g)
		}
	}
	window := "?" // from the old agent's handover record to the adoption, as the new one saw it
	if m := regexp.MustCompile(`handed over by medic pid \d+ (\S+) ago`).FindStringSubmatch(body); m != nil {
		window = m[1]
	}
	t.Logf("figures: upgrade of the primary's host: medic upgrade returned after %v; handover record to adoption %s; postmaster pid %d kept; leader key revision %d never missing or replaced; 2 sessions directly to it kept (idle in a transaction, busy); %d inserts acknowledged, 0 lost; longest gap between acknowledgments during the upgrade %v, outside it %v",
		took.Round(time.Millisecond), window, pm0, lead0.CreateRev, len(acked), during.Round(time.Millisecond), outside.Round(time.Millisecond))
	idle.Close(ctx)
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(oldPID, 0) == nil && !isZombie(oldPID) {
		if time.Now().After(deadline) {
			t.Fatalf("the old medic (pid %d) still runs 15s after the upgrade; its stderr:\n%s", oldPID, tail(a.stderr.String(), 8000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The postmaster outlives the old medic, its parent.
	if _, err := busy.Exec(ctx, "INSERT INTO upgrade_writes VALUES (-1)"); err != nil {
		t.Fatalf("the busy session after the old medic exited: %v", err)
	}
	if pm := postmasterPID(t, a); pm != pm0 {
		t.Fatalf("postmaster pid %d after the old medic exited, was %d", pm, pm0)
	}
	busy.Close(ctx)
}

// postmasterPID is the pid in n's postmaster.pid, when it is a live postgres.
func postmasterPID(t *testing.T, n *dbNode) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "pg", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		t.Fatal(err)
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || filepath.Base(exe) != "postgres" {
		t.Fatalf("postmaster.pid names %d, not a running postgres (%v)", pid, err)
	}
	return pid
}

// stopUpgradedOnCleanup stops, when the test ends, the medic that an upgrade
// of n started (not the test's child: stopped by the pid in pidFile, when it
// is not oldPID), then n's postgres; n.cmd.Wait returns once that medic
// (which shares its stderr) is gone, so n's own cleanup sees it ended.
func stopUpgradedOnCleanup(t *testing.T, n *dbNode, pidFile string, oldPID int) {
	t.Cleanup(func() {
		pid, err := readPIDFile(pidFile)
		if err != nil || pid == oldPID {
			return
		}
		syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 800 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		n.killPostgres()
		select {
		case err := <-n.done:
			n.done <- err
		case <-time.After(10 * time.Second):
		}
	})
}
