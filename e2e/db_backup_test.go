package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic/internal/app"
	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// requireBackup skips without PostgreSQL 15, etcd or pgBackRest, naming the
// missing package, and fails instead under MEDIC_REQUIRE_INTEGRATION=1.
func requireBackup(t *testing.T) {
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

// withBackup adds a backup section to node n's database: the shared
// repository, WAL switched at least every archiveTimeout.
func (n *dbNode) withBackup(repo string, archiveTimeout time.Duration) {
	appendFile(n.t, filepath.Join(n.dir, "medic.yaml"), fmt.Sprintf("    backup: {repository: %s, archive: {timeout: %s}}\n    objectives: {rto: 30s, rpo: %s}\n",
		repo, archiveTimeout, 2*archiveTimeout))
}

func (n *dbNode) backupState() (backup.State, error) {
	req, _ := http.NewRequest("GET", "http://"+n.api+"/v1/db/status", nil)
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return backup.State{}, err
	}
	defer resp.Body.Close()
	var doc app.DBStatusDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || len(doc.Backups) != 1 {
		return backup.State{}, fmt.Errorf("decode status: %v (%d backup states)", err, len(doc.Backups))
	}
	return doc.Backups[0], nil
}

func (n *dbNode) medic(args ...string) ([]byte, error) {
	args = append(args, "--addr", n.api, "--token", n.token)
	cmd := exec.Command(medicBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("medic %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// archivedSince waits until the postgres at addr archived a WAL segment
// after at (archive_timeout switches one after any write).
func archivedSince(t *testing.T, addr string, at time.Time, within time.Duration) {
	t.Helper()
	c := pgtest.Connect(t, addr)
	deadline := time.Now().Add(within)
	for {
		var last time.Time
		err := c.QueryRow(context.Background(), "SELECT coalesce(last_archived_time, 'epoch') FROM pg_stat_archiver").Scan(&last)
		if err == nil && last.After(at) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s archived nothing after %s within %v (last %v, %v)", addr, at.Format("15:04:05.000"), within, last, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// archivedNow waits until the postgres at addr archived the WAL segment
// holding its current position: every write acknowledged before the call
// is in the archive (a recovery to a time before the newest of them finds
// a commit past its target and ends there).
func archivedNow(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	c := pgtest.Connect(t, addr)
	ctx := context.Background()
	var seg string
	if err := c.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&seg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for {
		var last string
		err := c.QueryRow(ctx, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").Scan(&last)
		if err == nil && len(last) == 24 && last >= seg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not archive %s within %v (last %q, %v)", addr, seg, within, last, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restoreInto runs medic db restore on n and returns where the scratch
// postgres runs; it is stopped when the test ends.
func (n *dbNode) restoreInto(t *testing.T, to string) app.RestoreDoc {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restore")
	os.Chmod(filepath.Dir(dir), 0o755)
	out, err := n.medic("db", "restore", "--to", to, "--into", dir, "--json")
	if err != nil {
		t.Fatalf("%v\nagent stderr:\n%s", err, tail(n.stderr.String(), 3000))
	}
	var doc app.RestoreDoc
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("medic db restore: %v: %s", err, out)
	}
	t.Cleanup(func() { stopScratch(doc.Dir) })
	if !doc.Running || doc.Dir != dir {
		t.Fatalf("restore: %+v, want a running scratch postgres in %s", doc, dir)
	}
	return doc
}

// stopScratch stops the postgres running on dir (fast shutdown) and waits.
func stopScratch(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return
	}
	syscall.Kill(pid, syscall.SIGINT)
	for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGKILL)
}

func strings1(t *testing.T, addr, query string) []string {
	t.Helper()
	rows, err := pgtest.Connect(t, addr).Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestDBBackupRestoreFailover: a two-member sync cluster archives into a
// shared pgBackRest repository and takes its first full backup at once.
// A point-in-time restore (medic db restore) to a moment between two
// acknowledged writes has the first and not the second. The restore drill
// (db-restore) under 100 writes/s loses no write acknowledged more than
// archive.timeout before its target. Then, under 100
// writes/s, the primary's host is lost: on the new primary pgBackRest's
// check passes (its WAL reaches the archive: no gap) and the next backup
// succeeds; a restore to latest has every acknowledged write. Last, every
// member is lost with its data: medic db bootstrap --from-backup makes one
// the primary again with every acknowledged write, and the other clones from it.
func TestDBBackupRestoreFailover(t *testing.T) {
	requireBackup(t)
	srv := etcdtest.Start(t)
	repo := filepath.Join(t.TempDir(), "repo")
	os.Chmod(filepath.Dir(repo), 0o755)
	const archiveTimeout = 2 * time.Second
	a, b := newDBNode(t, "a", srv.Endpoint, "sync"), newDBNode(t, "b", srv.Endpoint, "sync")
	a.withBackup(repo, archiveTimeout)
	b.withBackup(repo, archiveTimeout)
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	b.start()
	a.eventually(60*time.Second, "b is the synchronous standby", streams("b", "a", true))

	st := a.firstFullBackup(t, 60*time.Second)
	t.Logf("first full backup %s: %d bytes in %v", st.Last.Label, st.Last.Size, st.Last.Duration())
	if out, err := a.medic("db", "status"); err != nil || !strings.Contains(string(out), "WAL archive lag") {
		t.Fatalf("medic db status shows no archive lag: %v\n%s", err, out)
	}
	req, _ := http.NewRequest("GET", "http://"+a.api+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+a.token)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range []string{`medic_backup_last_success_timestamp_seconds{database="pg"}`, `medic_backup_archive_lag_seconds{database="pg"}`} {
			if !strings.Contains(string(b), m) {
				t.Errorf("/metrics has no %s", m)
			}
		}
	}

	// Point in time: between two acknowledged writes.
	c := pgtest.Connect(t, a.pg)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "CREATE TABLE marks (id serial PRIMARY KEY, v text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO marks (v) VALUES ('first')"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	target := time.Now()
	time.Sleep(300 * time.Millisecond)
	if _, err := c.Exec(ctx, "INSERT INTO marks (v) VALUES ('second')"); err != nil {
		t.Fatal(err)
	}
	archivedNow(t, a.pg, 10*archiveTimeout)
	pitr := a.restoreInto(t, target.UTC().Format(time.RFC3339Nano))
	if got := strings.Join(strings1(t, pitr.Addr, "SELECT v FROM marks ORDER BY id"), ","); got != "first" {
		t.Fatalf("restore to %s (between the writes): rows %q, want \"first\"", pitr.Target, got)
	}
	t.Logf("point-in-time restore: files %.1fs, recovery %.1fs", pitr.RestoreSeconds, pitr.RecoverSeconds)
	stopScratch(pitr.Dir)

	// The restore drill, under the drill's own 100 writes/s: the archive as
	// it stood at the injection, restored, verified and measured.
	res := a.drill("db-restore")
	f := res.Figures
	t.Logf("restore drill: %s; figures %v", res.Summary, f)
	if _, ok := f["data_loss_seconds"]; !ok || f["missing_writes_beyond_archive_timeout"] != 0 {
		t.Fatalf("restore drill: figures %v: want a measured data loss and no write older than archive.timeout missing", f)
	}
	if loss := f["data_loss_seconds"]; loss > (archiveTimeout + time.Second).Seconds() {
		t.Errorf("restore drill lost %.2fs of writes, more than archive.timeout %v (+1s for the push)", loss, archiveTimeout)
	}

	// A failover during archiving, under load.
	if _, err := c.Exec(ctx, "CREATE TABLE acks (id int PRIMARY KEY, at timestamptz DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	w := &writer{dsn: fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%s,%s user=postgres dbname=postgres sslmode=disable connect_timeout=1",
		port(a.prim), port(b.prim))}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.run(wctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitAcks(t, w, 300, 20*time.Second)
	a.crash()
	b.eventually(30*time.Second, "b leads", leaderIs("b"))
	waitAcks(t, w, w.count()+300, 30*time.Second)
	cancel()
	<-done
	stopped := time.Now()

	check := exec.Command("runuser", "-u", "postgres", "--", backup.Binary,
		"--config="+filepath.Join(b.dir, "pg.backup", "pgbackrest.conf"), "--stanza=pg", "check")
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("pgbackrest check on the new primary: %v\n%s", err, out)
	}
	out, err := b.medic("db", "backup", "--type", "incr", "--json")
	if err != nil {
		t.Fatalf("the next backup, on the new primary: %v", err)
	}
	var bi backup.BackupInfo
	if err := json.Unmarshal(out, &bi); err != nil || bi.Type != backup.Incr {
		t.Fatalf("backup on the new primary: %v %s", err, out)
	}
	t.Logf("after the failover: pgbackrest check passed on b; incremental backup %s in %v", bi.Label, bi.Duration())

	archivedSince(t, b.pg, stopped, 10*archiveTimeout)
	latest := b.restoreInto(t, "latest")
	acked := w.acked()
	var found int
	if err := pgtest.Connect(t, latest.Addr).QueryRow(ctx, "SELECT count(*) FROM acks WHERE id = ANY($1)", acked).Scan(&found); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore to latest after the failover: %d of %d acknowledged writes (files %.1fs, recovery %.1fs)",
		found, len(acked), latest.RestoreSeconds, latest.RecoverSeconds)
	if found != len(acked) {
		t.Fatalf("the archive lost %d of %d acknowledged writes across the failover", len(acked)-found, len(acked))
	}
	stopScratch(latest.Dir)

	// Every member lost, data directories and all: a bootstraps from the
	// repository, b clones from it.
	b.crash()
	for _, n := range []*dbNode{a, b} {
		if err := os.RemoveAll(filepath.Join(n.dir, "pg")); err != nil {
			t.Fatal(err)
		}
	}
	a.start()
	b.start()
	a.eventually(30*time.Second, "no primary left", func(st pgha.Status) bool { return st.Etcd && st.Leader == nil })
	out, err = a.medic("db", "bootstrap", "--from-backup", "--json")
	if err != nil {
		t.Fatalf("%v\nagent stderr:\n%s", err, tail(a.stderr.String(), 3000))
	}
	var boot app.BootstrapDoc
	if err := json.Unmarshal(out, &boot); err != nil || boot.Primary != "a" {
		t.Fatalf("bootstrap from backup: %v %s", err, out)
	}
	a.eventually(90*time.Second, "b clones from the bootstrapped primary", streams("b", "a", true))
	if err := pgtest.Connect(t, a.pg).QueryRow(ctx, "SELECT count(*) FROM acks WHERE id = ANY($1)", acked).Scan(&found); err != nil {
		t.Fatal(err)
	}
	t.Logf("bootstrap from backup after losing every member: a is the primary in %.1fs (files %.1fs, recovery %.1fs); %d of %d acknowledged writes; b streams from it",
		boot.Seconds, boot.RestoreSeconds, boot.RecoverSeconds, found, len(acked))
	if found != len(acked) {
		t.Fatalf("the bootstrapped cluster lacks %d of %d acknowledged writes", len(acked)-found, len(acked))
	}
}

// firstFullBackup waits until n's agent took its first full backup, then
// until a time target can follow it (pgBackRest records the stop in whole
// seconds: a time target needs a backup that stopped before it).
func (n *dbNode) firstFullBackup(t *testing.T, within time.Duration) backup.State {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := n.backupState()
		if err == nil && st.Backups >= 1 && st.Last != nil && st.Last.Type == backup.Full {
			time.Sleep(time.Until(st.Last.Stop.Add(2 * time.Second)))
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no full backup within %v: %+v %v\nstderr:\n%s", n.name, within, st, err, tail(n.stderr.String(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDBBootstrapToTime: a one-member cluster archives and backs up; two
// writes are acknowledged with a known moment between them; the member is
// lost with its data. medic db bootstrap --from-backup --to <that moment>
// makes it the primary again holding the first write and not the second,
// on a new timeline whose WAL reaches the archive (pgbackrest check
// passes on it).
func TestDBBootstrapToTime(t *testing.T) {
	requireBackup(t)
	srv := etcdtest.Start(t)
	repo := filepath.Join(t.TempDir(), "repo")
	os.Chmod(filepath.Dir(repo), 0o755)
	const archiveTimeout = 2 * time.Second
	a := newDBNode(t, "a", srv.Endpoint, "async")
	a.withBackup(repo, archiveTimeout)
	tok, err := runMedic("token", "add", "watcher", "--role", "viewer", "-f", filepath.Join(a.dir, "tokens.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	viewer := strings.TrimSpace(tok)
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	a.firstFullBackup(t, 60*time.Second)

	c := pgtest.Connect(t, a.pg)
	ctx := context.Background()
	for _, q := range []string{"CREATE TABLE marks (id serial PRIMARY KEY, v text NOT NULL)", "INSERT INTO marks (v) VALUES ('first')"} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	target := time.Now()
	time.Sleep(300 * time.Millisecond)
	if _, err := c.Exec(ctx, "INSERT INTO marks (v) VALUES ('second')"); err != nil {
		t.Fatal(err)
	}
	archivedNow(t, a.pg, 10*archiveTimeout)
	c.Close(ctx)

	a.crash()
	if err := os.RemoveAll(filepath.Join(a.dir, "pg")); err != nil {
		t.Fatal(err)
	}
	a.start()
	a.eventually(60*time.Second, "no primary left", func(st pgha.Status) bool { return st.Etcd && st.Leader == nil })

	// Restores and bootstraps are operator actions: a viewer is refused and
	// nothing is restored.
	for _, path := range []string{"/v1/db/bootstrap", "/v1/db/restore"} {
		req, _ := http.NewRequest("POST", "http://"+a.api+path, strings.NewReader(`{"database": "pg", "to": "latest", "as_new_cluster": true}`))
		req.Header.Set("Authorization", "Bearer "+viewer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("POST %s as a viewer: %s, want 403 Forbidden", path, resp.Status)
		}
	}
	if es, _ := os.ReadDir(filepath.Join(a.dir, "pg")); len(es) > 0 {
		t.Fatalf("a viewer's refused bootstrap left %d entries in the data directory", len(es))
	}

	out, err := a.medic("db", "bootstrap", "--from-backup", "--to", target.UTC().Format(time.RFC3339Nano), "--json")
	if err != nil {
		t.Fatalf("%v\nagent stderr:\n%s", err, tail(a.stderr.String(), 3000))
	}
	var boot app.BootstrapDoc
	if err := json.Unmarshal(out, &boot); err != nil || boot.Primary != "a" {
		t.Fatalf("bootstrap from backup: %v %s", err, out)
	}
	if got := strings.Join(strings1(t, a.pg, "SELECT v FROM marks ORDER BY id"), ","); got != "first" {
		t.Fatalf("bootstrap to %s (between the writes): rows %q, want \"first\"", boot.Target, got)
	}
	t.Logf("bootstrap from backup to %s: a is the primary in %.1fs (files %.1fs, recovery %.1fs) with the first write and not the second",
		boot.Target, boot.Seconds, boot.RestoreSeconds, boot.RecoverSeconds)

	// The new timeline archives: pgBackRest's check switches a segment and
	// waits for it in the repository.
	check := exec.Command("runuser", "-u", "postgres", "--", backup.Binary,
		"--config="+filepath.Join(a.dir, "pg.backup", "pgbackrest.conf"), "--stanza=pg", "check")
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("pgbackrest check on the bootstrapped primary: %v\n%s", err, out)
	}
}

// waitBackup waits until n's backup state satisfies ok.
func (n *dbNode) waitBackup(t *testing.T, within time.Duration, what string, ok func(backup.State) bool) backup.State {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := n.backupState()
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not within %v: %+v %v\nstderr:\n%s", n.name, what, within, st, err, tail(n.stderr.String(), 3000))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestDBBackupFromStandby: with a replica streaming, the scheduled backups
// copy their files from it (pgBackRest --backup-standby, the replica as
// pg2), recorded with which member and why; a restore to latest of such a
// backup holds the rows written before it. With the replica gone, the next
// scheduled backup falls back to the primary, saying why.
func TestDBBackupFromStandby(t *testing.T) {
	requireBackup(t)
	srv := etcdtest.Start(t)
	repo := filepath.Join(t.TempDir(), "repo")
	os.Chmod(filepath.Dir(repo), 0o755)
	a, b := newDBNode(t, "a", srv.Endpoint, "async"), newDBNode(t, "b", srv.Endpoint, "async")
	for _, n := range []*dbNode{a, b} {
		appendFile(t, filepath.Join(n.dir, "medic.yaml"), fmt.Sprintf("    backup: {repository: %s, schedule: {diff: \"@every 10s\"}, archive: {timeout: 2s}}\n", repo))
	}
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	a.firstFullBackup(t, 60*time.Second)
	b.start()
	a.eventually(90*time.Second, "b streams from a", streams("b", "a", false))

	c := pgtest.Connect(t, a.pg)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "CREATE TABLE before_standby_backup AS SELECT g AS id FROM generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	st := a.waitBackup(t, 120*time.Second, "a scheduled differential backup from b", func(st backup.State) bool {
		return st.Last != nil && st.Last.Type == backup.Diff && st.LastFrom == "b" && st.Last.Start.After(written)
	})
	if st.LastFromWhy != "" {
		t.Errorf("a backup from the replica says why not a replica: %q", st.LastFromWhy)
	}
	t.Logf("scheduled %s backup %s copied from replica b: %d bytes in %v", st.Last.Type, st.Last.Label, st.Last.Size, st.Last.Duration())
	fromStandby := st.Last.Label

	// The backup restores: the rows written before it are there.
	archivedSince(t, a.pg, written, 20*time.Second)
	latest := a.restoreInto(t, "latest")
	if got := strings1(t, latest.Addr, "SELECT count(*)::text FROM before_standby_backup"); len(got) != 1 || got[0] != "1000" {
		t.Fatalf("restore of the backup taken from the replica: %v rows, want 1000", got)
	}
	stopScratch(latest.Dir)

	// The replica is lost: the next scheduled backup copies from the primary.
	b.crash()
	st = a.waitBackup(t, 120*time.Second, "a scheduled backup from the primary once b is gone", func(st backup.State) bool {
		return st.Last != nil && st.Last.Label != fromStandby && st.LastFrom == "a"
	})
	if st.LastFromWhy == "" {
		t.Errorf("a backup from the primary does not say why not from a replica")
	}
	t.Logf("with b gone: %s backup %s from the primary a (%s)", st.Last.Type, st.Last.Label, st.LastFromWhy)
}

// conditionState is the state of condition's alert for database pg on n
// ("" while it has none).
func (n *dbNode) conditionState(condition string) (string, error) {
	req, _ := http.NewRequest("GET", "http://"+n.api+"/v1/conditions", nil)
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var doc struct {
		Alerts []struct {
			Condition string            `json:"condition"`
			Labels    map[string]string `json:"labels"`
			State     string            `json:"state"`
		} `json:"alerts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return "", err
	}
	for _, a := range doc.Alerts {
		if a.Condition == condition && a.Labels["database"] == "pg" {
			return a.State, nil
		}
	}
	return "", nil
}

// TestDBBackupArchiveFailingEscalates: the repository is made unwritable
// under a running primary, so pgBackRest's archive-push fails: the failed
// pushes show in the backup state and backup_archive_failing fires and
// escalates to automation.escalate (a webhook here) with the database; once
// the repository is writable again the archive catches up and the condition
// resolves. The condition is the built-in's (its signal, its rate and no
// runbook: config.BackupConditions) with shorter windows, written as the
// documented same-name override, so that the test takes about a minute
// instead of five: the built-in's own windows are proven on the signal
// timeline (internal/detect TestBackupConditionsFire), and that it is there
// without configuration in internal/config TestBackupConditionsBuiltin. The
// repository's free space is a signal: a condition on
// backup_repository_free_bytes fires from it, and /metrics reports it as
// statfs does.
func TestDBBackupArchiveFailingEscalates(t *testing.T) {
	requireBackup(t)
	var mu sync.Mutex
	var bodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	notified := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bodies {
			if strings.Contains(b, s) {
				return true
			}
		}
		return false
	}
	srv := etcdtest.Start(t)
	repo := filepath.Join(t.TempDir(), "repo")
	os.Chmod(filepath.Dir(repo), 0o755)
	a := newDBNode(t, "a", srv.Endpoint, "async")
	a.withBackup(repo, 2*time.Second)
	builtin := config.BackupConditions()[config.BackupArchiveFailing]
	const window, holdFor = 20 * time.Second, 2 * time.Second // the built-in's: 2m and 2m
	appendFile(t, filepath.Join(a.dir, "medic.yaml"), fmt.Sprintf(`receivers:
  hook: {webhook: {url: "%s"}}
automation: {notify: {receiver: hook}, escalate: {receiver: hook}}
conditions:
  repository_space_seen: {signal: backup_repository_free_bytes, below: 1000000TiB}
  %s: {signal: %s, trend: {window: %s, above_per_hour: %v, min_points: 3}, for: %s}
`, hook.URL, config.BackupArchiveFailing, builtin.Signal, window, float64(*builtin.Trend.AbovePerHour), holdFor))
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	a.firstFullBackup(t, 60*time.Second)

	// The repository's free space: a signal conditions see, and a metric.
	deadline := time.Now().Add(60 * time.Second)
	for !notified("repository_space_seen") {
		if time.Now().After(deadline) {
			t.Fatalf("the condition on backup_repository_free_bytes did not fire within 60s; notifications: %v", bodies)
		}
		time.Sleep(250 * time.Millisecond)
	}
	free, ok := metric(t, a.rest, `medic_backup_repository_free_bytes{database="pg"}`)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(repo, &fs); err != nil {
		t.Fatal(err)
	}
	if want := float64(fs.Bavail) * float64(fs.Bsize); !ok || free <= 0 || free < want*0.9 || free > want*1.1 {
		t.Fatalf("medic_backup_repository_free_bytes = %v (%v), statfs says %.0f", free, ok, want)
	}
	t.Logf("repository free space %.0f MiB: a condition on backup_repository_free_bytes fired, /metrics agrees with statfs", free/(1<<20))

	// Break the archive: pgBackRest (as postgres) can no longer write the repository.
	if err := os.Chmod(repo, 0); err != nil {
		t.Fatal(err)
	}
	broken := time.Now()
	restored := false
	defer func() {
		if !restored {
			os.Chmod(repo, 0o750)
		}
	}()
	c := pgtest.Connect(t, a.pg)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "CREATE TABLE during_outage (id int); INSERT INTO during_outage VALUES (1); SELECT pg_switch_wal()"); err != nil {
		t.Fatal(err)
	}
	a.waitBackup(t, 60*time.Second, "failed archive pushes in the backup state", func(st backup.State) bool { return st.ArchiveFailures > 0 })
	// Writes keep completing segments, as a live primary does: each wakes
	// the archiver, whose pushes keep failing (one segment every 5 s, until
	// the escalation or the bound: at most 18 segments held in pg_wal).
	const fireBound = 90 * time.Second // window + for + a signal period, with room for the shared machine
	deadline = broken.Add(fireBound)
	for i := 0; !notified(config.BackupArchiveFailing); i++ {
		if i%5 == 0 {
			if _, err := c.Exec(ctx, "INSERT INTO during_outage VALUES (2); SELECT pg_switch_wal()"); err != nil {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			st, _ := a.backupState()
			s, _ := a.conditionState(config.BackupArchiveFailing)
			t.Fatalf("%s did not escalate within %v of the break (alert %q, state %+v)\nstderr:\n%s", config.BackupArchiveFailing, fireBound, s, st, tail(a.stderr.String(), 3000))
		}
		time.Sleep(time.Second)
	}
	fired := time.Since(broken)
	if s, err := a.conditionState(config.BackupArchiveFailing); err != nil || s != "firing" {
		t.Fatalf("%s escalated but its alert is %q (%v)", config.BackupArchiveFailing, s, err)
	}
	st, _ := a.backupState()
	t.Logf("archive broken: %d failed pushes; %s fired and escalated %.0fs after the break", st.ArchiveFailures, config.BackupArchiveFailing, fired.Seconds())

	// Repair: the archive catches up and the condition resolves.
	if err := os.Chmod(repo, 0o750); err != nil {
		t.Fatal(err)
	}
	restored = true
	fixed := time.Now()
	archivedNow(t, a.pg, 2*time.Minute)
	const resolveBound = 90 * time.Second // the failures leave the trend window
	deadline = fixed.Add(resolveBound)
	for {
		s, err := a.conditionState(config.BackupArchiveFailing)
		if err == nil && s != "firing" && s != "pending" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %q %v after the repair (%v)", config.BackupArchiveFailing, s, resolveBound, err)
		}
		time.Sleep(time.Second)
	}
	t.Logf("repository writable again: the archive caught up and %s resolved %.0fs after the repair", config.BackupArchiveFailing, time.Since(fixed).Seconds())
}
